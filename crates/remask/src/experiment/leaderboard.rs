//! The leaderboard (`remask compare --leaderboard`): every built-in MLM strategy against the baseline
//! (`dynamic`), equal token budgets, paired seeds, one regime over the whole corpus.
//!
//! The headline measure is the **token ratio**: for each seed s, the tokens strategy a needs to reach
//! the final validation loss of the baseline's run of the same seed (on the fixed 15% validation
//! masks, interpolated between evaluations), divided by the tokens the baseline's run trained on.
//! Below 1 is faster. Over the seeds it is reported as the mean with a 95% Student-t interval; a
//! strategy with a seed that never reaches the baseline's loss within the budget has no interval and
//! says "never reached" (with how many seeds did reach it).

use serde::{Deserialize, Serialize};

use super::paired::t_quantile;
use super::record::RunRecord;
use super::stats::time_to_target;

/// One strategy's row of the leaderboard.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LeaderboardRow {
    pub strategy: String,
    /// Seeds paired with a baseline run (both finished).
    pub seeds: usize,
    /// Seeds whose run reached the baseline's final validation loss of the same seed.
    pub reached: usize,
    /// Per-seed token ratios (seeds that reached the loss), in seed order.
    pub ratios: Vec<f64>,
    /// Mean token ratio over the seeds that reached it; `None` when none did.
    pub ratio: Option<f64>,
    /// 95% Student-t interval of the mean ratio; `None` unless every seed reached it and there are
    /// at least 2.
    pub ratio_ci95: Option<[f64; 2]>,
    /// True when at least one seed never reached the baseline's loss.
    pub never_reached: bool,
    /// Means over seeds of the final figures (`None`: not measured).
    pub final_val_loss: Option<f64>,
    pub final_ood_loss: Option<f64>,
    pub minimal_pairs: Option<f64>,
}

impl LeaderboardRow {
    /// The ratio as the report shows it: `0.62 [0.55, 0.70]`, or `never reached (2/4 seeds)`.
    pub fn ratio_cell(&self) -> String {
        match (self.ratio, self.ratio_ci95, self.never_reached) {
            (_, _, true) => format!("never reached ({}/{} seeds did)", self.reached, self.seeds),
            (Some(r), Some([lo, hi]), _) => format!("{r:.3} [{lo:.3}, {hi:.3}]"),
            (Some(r), None, _) => format!("{r:.3} (one seed, no interval)"),
            (None, _, _) => "no paired runs".to_string(),
        }
    }
}

fn mean(v: impl Iterator<Item = f64>) -> Option<f64> {
    let (mut s, mut n) = (0.0, 0usize);
    for x in v.filter(|x| x.is_finite()) {
        s += x;
        n += 1;
    }
    (n > 0).then(|| s / n as f64)
}

/// The leaderboard of `runs` (one regime: the whole corpus, `regime == None`) against `baseline`,
/// best ratio first (strategies that never reached the loss last, in their order of appearance).
pub fn leaderboard(runs: &[RunRecord], baseline: &str) -> Vec<LeaderboardRow> {
    let runs: Vec<&RunRecord> = runs.iter().filter(|r| r.regime.is_none()).collect();
    let mut names: Vec<&str> = Vec::new();
    for r in &runs {
        if !names.contains(&r.strategy.as_str()) {
            names.push(&r.strategy);
        }
    }
    let mut rows = Vec::new();
    for name in names {
        let mine: Vec<&&RunRecord> = runs.iter().filter(|r| r.strategy == name).collect();
        let (mut seeds, mut ratios) = (0usize, Vec::new());
        for r in &mine {
            let Some(b) = runs
                .iter()
                .find(|b| b.strategy == baseline && b.seed == r.seed)
            else {
                continue;
            };
            let (Some(last), true) = (b.eval_curve.last(), b.final_val_loss.is_finite()) else {
                continue;
            };
            if r.eval_curve.is_empty() || last.tokens == 0 {
                continue;
            }
            seeds += 1;
            if let Some((tokens, _)) = time_to_target(&r.eval_curve, b.final_val_loss) {
                ratios.push(tokens / last.tokens as f64);
            }
        }
        let reached = ratios.len();
        let ratio = mean(ratios.iter().copied());
        let never_reached = reached < seeds;
        let ratio_ci95 = match ratio {
            Some(m) if !never_reached && reached >= 2 => {
                let sd = (ratios.iter().map(|x| (x - m).powi(2)).sum::<f64>()
                    / (reached - 1) as f64)
                    .sqrt();
                let half = t_quantile(0.975, (reached - 1) as f64) * sd / (reached as f64).sqrt();
                Some([m - half, m + half])
            }
            _ => None,
        };
        rows.push(LeaderboardRow {
            strategy: name.to_string(),
            seeds,
            reached,
            ratios,
            ratio,
            ratio_ci95,
            never_reached,
            final_val_loss: mean(mine.iter().map(|r| r.final_val_loss)),
            final_ood_loss: mean(mine.iter().filter_map(|r| r.final_ood_loss)),
            minimal_pairs: mean(mine.iter().filter_map(|r| r.minimal_pairs)),
        });
    }
    rows.sort_by(|a, b| {
        let key = |r: &LeaderboardRow| {
            if r.never_reached || r.ratio.is_none() {
                f64::INFINITY
            } else {
                r.ratio.unwrap_or(f64::INFINITY)
            }
        };
        key(a).total_cmp(&key(b))
    });
    rows
}

/// The leaderboard as a markdown section.
pub fn to_markdown(rows: &[LeaderboardRow], baseline: &str) -> String {
    let fmt = |x: Option<f64>, d: usize| x.map_or("–".to_string(), |v| format!("{v:.d$}"));
    let mut m = String::new();
    m.push_str("## Leaderboard\n\n");
    m.push_str(&format!(
        "Tokens each strategy needs to reach `{baseline}`'s final validation loss of the same seed (fixed 15% validation masks), \
         as a ratio of `{baseline}`'s tokens (< 1 is faster): mean over seeds with its 95% Student-t interval. \
         The goal set for this project is a ratio ≤ 0.4 with the whole interval below 1.\n\n"
    ));
    m.push_str("| strategy | token ratio [95% interval] | final val loss | out-of-domain loss | minimal-pair accuracy |\n");
    m.push_str("|---|---|---|---|---|\n");
    for r in rows {
        m.push_str(&format!(
            "| {} | {} | {} | {} | {} |\n",
            r.strategy,
            r.ratio_cell(),
            fmt(r.final_val_loss, 3),
            fmt(r.final_ood_loss, 3),
            fmt(r.minimal_pairs, 3)
        ));
    }
    let best = rows
        .iter()
        .find(|r| r.strategy != baseline && !r.never_reached && r.ratio.is_some());
    m.push('\n');
    match best {
        Some(r) => {
            let whole_below = r.ratio_ci95.is_some_and(|[_, hi]| hi < 1.0);
            m.push_str(&format!(
                "Fastest: `{}` at {} of `{baseline}`'s tokens{}.{}\n",
                r.strategy,
                r.ratio_cell(),
                if whole_below {
                    ", its whole interval below 1"
                } else {
                    "; its interval reaches 1, so the speed-up is not resolved"
                },
                if r.ratio.is_some_and(|x| x <= 0.4) && whole_below {
                    " It meets the ≤ 0.4 goal."
                } else {
                    " The ≤ 0.4 goal is not met."
                }
            ));
        }
        None => m.push_str(&format!(
            "No strategy reached `{baseline}`'s final loss on every seed.\n"
        )),
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::experiment::record::EvalPoint;

    fn run(strategy: &str, seed: u64, losses: &[f64]) -> RunRecord {
        let eval_curve: Vec<EvalPoint> = losses
            .iter()
            .enumerate()
            .map(|(i, &loss)| EvalPoint {
                tokens: 1000 * (i as u64 + 1),
                seconds: i as f64,
                loss,
                accuracy: 0.0,
            })
            .collect();
        RunRecord {
            strategy: strategy.into(),
            seed,
            regime: None,
            train_rows: 0,
            train_curve: Vec::new(),
            final_val_loss: *losses.last().unwrap(),
            eval_curve,
            final_train_loss: 0.0,
            final_val_accuracy: 0.0,
            tokens_per_s: 1.0,
            wall_s: 1.0,
            masking_ms_per_step: 0.0,
            mask_bytes: 0,
            mask_bytes_per_token: 0.0,
            run_dir: String::new(),
            final_ood_loss: Some(6.0),
            final_ood_accuracy: None,
            minimal_pairs: Some(0.5),
            final_val_loss_isolated: None,
            failed: None,
            same_as: None,
        }
    }

    #[test]
    fn ratios_are_paired_per_seed_with_a_t_interval_and_never_reached_says_so() {
        let runs = vec![
            run("dynamic", 1, &[6.0, 5.5, 5.0, 4.5]),
            run("dynamic", 2, &[6.0, 5.6, 5.1, 4.6]),
            run("dynamic", 3, &[6.0, 5.4, 4.9, 4.4]),
            // Reaches the seed's final loss exactly at its second evaluation: ratio 0.5.
            run("fast", 1, &[5.0, 4.5, 4.0, 3.9]),
            run("fast", 2, &[5.0, 4.6, 4.0, 3.9]),
            // Halfway between 2000 (4.6 > 4.4) and 3000 (4.2): 2500 / 4000.
            run("fast", 3, &[5.0, 4.6, 4.2, 4.0]),
            run("slow", 1, &[6.5, 6.0, 5.5, 5.0]),
            run("slow", 2, &[6.5, 6.0, 5.5, 4.6]),
            run("slow", 3, &[6.5, 6.0, 5.5, 5.0]),
        ];
        let rows = leaderboard(&runs, "dynamic");
        assert_eq!(
            rows.iter().map(|r| r.strategy.as_str()).collect::<Vec<_>>(),
            ["fast", "dynamic", "slow"]
        );
        let fast = &rows[0];
        for (got, want) in fast.ratios.iter().zip([0.5, 0.5, 0.625]) {
            assert!((got - want).abs() < 1e-12, "{:?}", fast.ratios);
        }
        assert_eq!(fast.ratios.len(), 3);
        let m = 1.625 / 3.0;
        assert!((fast.ratio.unwrap() - m).abs() < 1e-12);
        let sd = ((0.5f64 - m).powi(2) * 2.0 + (0.625 - m).powi(2)).sqrt() / 2f64.sqrt();
        let half = 4.302652729911275 * sd / 3f64.sqrt();
        let [lo, hi] = fast.ratio_ci95.unwrap();
        assert!(
            (lo - (m - half)).abs() < 1e-6 && (hi - (m + half)).abs() < 1e-6,
            "{lo} {hi}"
        );
        let dynamic = &rows[1];
        assert_eq!(dynamic.ratios, vec![1.0, 1.0, 1.0]);
        let slow = &rows[2];
        assert!(
            slow.never_reached && slow.reached == 1 && slow.seeds == 3 && slow.ratio_ci95.is_none()
        );
        assert!(slow.ratio_cell().contains("never reached (1/3"));
        let md = to_markdown(&rows, "dynamic");
        assert!(
            md.contains("Fastest: `fast`") && md.contains("never reached"),
            "{md}"
        );
        assert!(md.contains("goal is not met"), "{md}");
    }
}
