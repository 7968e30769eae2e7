//! Which runs a comparison needs: one per (regime, seed, strategy), except where a run is known to
//! be identical to another one (a static strategy that never reaches its K-th copy is the dynamic run
//! of the same seed, bit for bit, see [`super::subset`]).

use serde::{Deserialize, Serialize};

use super::config::Strategy;
use crate::masking::{MaskingConfig, When};
use crate::{Error, Result};

/// One data-repetition regime: a corpus subset of `rows` training rows that the equal budget reads
/// `epochs` times.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Regime {
    /// The nominal repetition E (`None`: the whole corpus, however often the budget reads it).
    pub epochs: Option<u32>,
    /// Training rows in the subset.
    pub rows: u64,
}

impl Regime {
    /// `E = 16` or `whole corpus`, for people.
    pub fn label(&self) -> String {
        match self.epochs {
            Some(e) => format!("E = {e}"),
            None => "whole corpus".into(),
        }
    }
}

/// The regimes for `epochs` (empty: one regime over all `train_rows`), for a budget of
/// `budget_rows` row visits (steps × rows per step). Each subset has `budget_rows / E` rows; the
/// largest (E = the smallest regime) must fit in the corpus and the smallest must fill a batch.
pub fn regimes(
    epochs: &[u32],
    budget_rows: u64,
    train_rows: u64,
    batch_rows: u64,
) -> Result<Vec<Regime>> {
    if epochs.is_empty() {
        return Ok(vec![Regime {
            epochs: None,
            rows: train_rows,
        }]);
    }
    epochs
        .iter()
        .map(|&e| {
            let rows = budget_rows / e as u64;
            if rows > train_rows {
                return Err(Error::config(
                    "compare.regimes",
                    format!(
                        "E = {e} needs {rows} distinct training rows ({budget_rows} row visits of the budget / {e}), but the corpus has {train_rows}: lower budget.steps, raise the smallest regime or use a larger corpus"
                    ),
                ));
            }
            if rows < batch_rows.max(1) {
                return Err(Error::config(
                    "compare.regimes",
                    format!("E = {e} leaves {rows} training rows, less than one batch of {batch_rows}: raise budget.steps or lower the largest regime"),
                ));
            }
            Ok(Regime { epochs: Some(e), rows })
        })
        .collect()
}

/// One run of the plan.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlannedRun {
    pub regime: usize,
    pub seed: u64,
    pub strategy: usize,
    /// The strategy whose run of the same (regime, seed) this one is identical to, trained instead.
    pub same_as: Option<usize>,
}

/// Whether `static_masking` trains exactly like `dynamic_masking` when `budget_rows` row visits
/// read a subset of `rows` rows: the same masking apart from *when*, a constant rate (static copies
/// are made at the start rate) and no epoch reaching copy K (epoch e reads copy e mod K, which is the
/// dynamic mask of epoch e).
pub fn static_equals_dynamic(
    static_masking: &MaskingConfig,
    dynamic_masking: &MaskingConfig,
    rows: u64,
    budget_rows: u64,
) -> bool {
    let When::Static { dupe_factor } = static_masking.when else {
        return false;
    };
    if dynamic_masking.when != When::Dynamic || rows == 0 {
        return false;
    }
    let frozen = MaskingConfig {
        when: When::Dynamic,
        ..static_masking.clone()
    };
    let last_epoch = budget_rows.saturating_sub(1) / rows;
    frozen == *dynamic_masking
        && static_masking.rate_at(0.0) == static_masking.rate_at(1.0)
        && last_epoch < dupe_factor as u64
}

/// Every run, regime by regime and seed by seed (so a stopped comparison has complete pairs), with
/// the runs known to be identical to another marked `same_as`.
pub fn plan(
    strategies: &[Strategy],
    regimes: &[Regime],
    seeds: u64,
    budget_rows: u64,
) -> Vec<PlannedRun> {
    let mut out = Vec::new();
    for (ri, regime) in regimes.iter().enumerate() {
        for seed in 1..=seeds {
            for (si, s) in strategies.iter().enumerate() {
                let same_as = strategies.iter().position(|d| {
                    d.attention == s.attention
                        && static_equals_dynamic(&s.masking, &d.masking, regime.rows, budget_rows)
                });
                out.push(PlannedRun {
                    regime: ri,
                    seed,
                    strategy: si,
                    same_as,
                });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attention::AttentionMaskSpec;

    fn strategy(name: &str, when: When) -> Strategy {
        Strategy {
            name: name.into(),
            masking: MaskingConfig {
                when,
                ..MaskingConfig::default()
            },
            attention: AttentionMaskSpec::Padding,
        }
    }

    #[test]
    fn regimes_split_the_budget_and_name_what_does_not_fit() {
        let r = regimes(&[1, 4, 64], 12_800, 20_000, 32).unwrap();
        assert_eq!(
            r.iter().map(|x| x.rows).collect::<Vec<_>>(),
            vec![12_800, 3_200, 200]
        );
        let e = regimes(&[1, 4], 12_800, 10_000, 32)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("compare.regimes") && e.contains("E = 1 needs 12800"),
            "{e}"
        );
        let e = regimes(&[1, 1000], 12_800, 20_000, 32)
            .unwrap_err()
            .to_string();
        assert!(e.contains("E = 1000 leaves 12 training rows"), "{e}");
        assert_eq!(
            regimes(&[], 12_800, 500, 32).unwrap(),
            vec![Regime {
                epochs: None,
                rows: 500
            }]
        );
    }

    #[test]
    fn static_is_dynamic_until_its_kth_copy() {
        let s = strategy("static", When::Static { dupe_factor: 10 });
        let d = strategy("dynamic", When::Dynamic);
        // 10 epochs read copies 0..9; the 11th would reread copy 0.
        assert!(static_equals_dynamic(&s.masking, &d.masking, 100, 1000));
        assert!(!static_equals_dynamic(&s.masking, &d.masking, 100, 1001));
        assert!(!static_equals_dynamic(&d.masking, &d.masking, 100, 10));
        let span = MaskingConfig {
            strategy: crate::masking::StrategyKind::Span,
            ..d.masking.clone()
        };
        assert!(
            !static_equals_dynamic(&s.masking, &span, 100, 10),
            "another strategy is not the same run"
        );

        let regimes = [
            Regime {
                epochs: Some(1),
                rows: 1000,
            },
            Regime {
                epochs: Some(64),
                rows: 15,
            },
        ];
        let p = plan(&[s, d], &regimes, 2, 1000);
        assert_eq!(p.len(), 8);
        assert_eq!(
            p[0],
            PlannedRun {
                regime: 0,
                seed: 1,
                strategy: 0,
                same_as: Some(1)
            }
        );
        assert_eq!(p[1].same_as, None);
        assert!(p[4..].iter().all(|r| r.same_as.is_none()), "{p:?}");
    }
}
