//! The comparison report: per-strategy figures over seeds (median and range), paired comparisons of
//! every measure against the baseline per regime (mean difference with a 95% interval, see
//! [`super::paired`]), failed runs, the audit, and verdicts stated only as strong as the intervals
//! allow.

use serde::{Deserialize, Serialize};

use super::leaderboard::LeaderboardRow;
use super::measure::{Measure, MeasureContext, MEASURES};
use super::paired::Comparison;
use super::plan::Regime;
use super::record::RunRecord;
use super::stats::{time_to_target, Spread};
use crate::audit::{AuditReport, MaskingAudit};

/// The result of the leakage audit for one attention-mask / masking setting used in the comparison.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AuditLine {
    /// What was audited, e.g. `attention padding` or `mlm targets hidden`.
    pub what: String,
    pub passed: bool,
    /// The first offending (query, key) pair or other detail when it failed; how it was checked when it passed.
    pub detail: String,
}

impl From<&AuditReport> for AuditLine {
    /// What the leakage table shows of an attention audit: `attention <kind>`, the verdict, and the
    /// number of queries checked or the offending pair.
    fn from(r: &AuditReport) -> Self {
        let detail = match &r.first_violation {
            None => format!(
                "{} queries, {} forbidden pairs; gradients and perturbation",
                r.checked_queries, r.forbidden_pairs
            ),
            Some(v) => format!(
                "query {} reads forbidden{} key {} (row {}, found by {})",
                v.query,
                v.side(),
                v.key,
                v.row,
                v.method
            ),
        };
        AuditLine {
            what: format!("attention {}", r.kind),
            passed: r.passed,
            detail,
        }
    }
}

impl From<&MaskingAudit> for AuditLine {
    /// What the leakage table shows of the MLM-target audit: `mlm targets hidden`, the verdict and the
    /// shares.
    fn from(m: &MaskingAudit) -> Self {
        let detail = format!(
            "{} labels; target visible at {:.3} (accepted <= {:.3})",
            m.labels, m.unchanged_share, m.max_unchanged_share
        );
        AuditLine {
            what: "mlm targets hidden".into(),
            passed: m.passed,
            detail,
        }
    }
}

/// What a comparison ran on, for the report's header.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Setup {
    /// `mlm` or `clm`.
    pub task: String,
    pub model: String,
    pub data: String,
    /// Training tokens per run (the equal budget).
    pub token_budget: u64,
    pub seeds: usize,
    /// Cross-entropy of the unigram distribution of the validation labels: the loss of a model that
    /// ignores context. A run that ends above it counts as failed.
    pub unigram_loss: Option<f64>,
    /// The accuracy of the same context-free model (always the most frequent training token).
    #[serde(default)]
    pub unigram_accuracy: Option<f64>,
    /// The strategy every other one is compared against.
    pub baseline: String,
    /// The regimes (one with `epochs: None` when the whole corpus is used).
    pub regimes: Vec<Regime>,
    /// What the out-of-domain evaluation reads, when it ran.
    pub ood: Option<String>,
    /// What the minimal-pair evaluation reads, when it ran.
    pub minimal_pairs: Option<String>,
    /// Wall-clock seconds of the whole comparison (preparation, training, evaluation, audits).
    #[serde(default)]
    pub wall_s: Option<f64>,
    /// K of the (first) static strategy compared, if any.
    #[serde(default)]
    pub dupe_factor: Option<u32>,
}

/// Per-strategy figures over the seeds of one regime (diverged runs left out).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StrategySummary {
    pub strategy: String,
    pub regime: Option<u32>,
    /// Runs, failed ones included.
    pub seeds: usize,
    /// Runs flagged as failed (diverged, or ending above the unigram loss).
    pub failed: usize,
    /// Runs without final figures (diverged).
    #[serde(default)]
    pub diverged: usize,
    pub final_val_loss: Option<Spread>,
    pub final_val_accuracy: Option<Spread>,
    /// Final validation loss minus final training loss (both on fixed masks).
    pub train_val_gap: Option<Spread>,
    pub ood_loss: Option<Spread>,
    pub minimal_pairs: Option<Spread>,
    pub val_loss_isolated: Option<Spread>,
    pub tokens_per_s: Option<Spread>,
    pub wall_s: Option<Spread>,
    /// Over the seeds that reached the target loss.
    pub tokens_to_target: Option<Spread>,
    pub seconds_to_target: Option<Spread>,
    /// How many seeds reached the target loss.
    pub reached_target: usize,
    pub masking_ms_per_step: Option<Spread>,
    /// Disk bytes of stored masks (the largest over seeds).
    pub mask_bytes: u64,
    /// The same per training token (the largest over seeds).
    #[serde(default)]
    pub mask_bytes_per_token: f64,
}

/// A run that failed: it diverged or ended above the unigram baseline.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FailedRun {
    pub run: String,
    pub reason: String,
}

/// The target loss of one regime's "tokens to target".
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RegimeTarget {
    pub regime: Option<u32>,
    /// The highest final median validation loss among the strategies: a loss every strategy's
    /// median run reaches.
    #[serde(deserialize_with = "super::record::f64_or_nan")]
    pub target_loss: f64,
}

/// One claim and what the data says about it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    pub claim: String,
    pub finding: String,
}

/// The whole report.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub setup: Setup,
    pub targets: Vec<RegimeTarget>,
    pub strategies: Vec<StrategySummary>,
    /// One per measure × (strategy, baseline) × regime where the measure was taken.
    pub comparisons: Vec<Comparison>,
    pub failed_runs: Vec<FailedRun>,
    pub audit: Vec<AuditLine>,
    pub verdicts: Vec<Verdict>,
    /// Every strategy against `dynamic` over the whole corpus (no regimes), when `dynamic` ran:
    /// tokens to reach its final loss as a ratio, with an interval over seeds (`super::leaderboard`).
    #[serde(default)]
    pub leaderboard: Vec<LeaderboardRow>,
    pub runs: Vec<RunRecord>,
}

/// The leaderboard's baseline.
pub const LEADERBOARD_BASELINE: &str = "dynamic";

fn spread_of(records: &[&RunRecord], f: impl Fn(&RunRecord) -> Option<f64>) -> Option<Spread> {
    Spread::of(&records.iter().filter_map(|r| f(r)).collect::<Vec<_>>())
}

/// Builds the report from all runs. Strategies keep their order of first appearance; regimes their
/// order in `setup.regimes`.
pub fn build_report(setup: Setup, runs: Vec<RunRecord>, audit: Vec<AuditLine>) -> Report {
    let mut names: Vec<String> = Vec::new();
    for r in &runs {
        if !names.contains(&r.strategy) {
            names.push(r.strategy.clone());
        }
    }
    let regimes: Vec<Option<u32>> = if setup.regimes.is_empty() {
        let mut v: Vec<Option<u32>> = Vec::new();
        for r in &runs {
            if !v.contains(&r.regime) {
                v.push(r.regime);
            }
        }
        v
    } else {
        setup.regimes.iter().map(|r| r.epochs).collect()
    };
    // A diverged run has no final figures and leaves its pairs; a run that ends above the unigram
    // loss is flagged but stays in: its result is that strategy's outcome.
    let group = |name: &str, regime: Option<u32>, usable_only: bool| -> Vec<&RunRecord> {
        runs.iter()
            .filter(|r| {
                r.strategy == name
                    && r.regime == regime
                    && (!usable_only || r.final_val_loss.is_finite())
            })
            .collect()
    };

    let mut targets = Vec::new();
    let mut strategies = Vec::new();
    let mut comparisons = Vec::new();
    for &regime in &regimes {
        let target_loss = names
            .iter()
            .filter_map(|n| {
                spread_of(&group(n, regime, true), |r| Some(r.final_val_loss)).map(|s| s.median)
            })
            .fold(f64::NAN, f64::max);
        targets.push(RegimeTarget {
            regime,
            target_loss,
        });
        let ctx = MeasureContext { target_loss };
        for name in &names {
            let all = group(name, regime, false);
            if all.is_empty() {
                continue;
            }
            let g = group(name, regime, true);
            let hits: Vec<(f64, f64)> = g
                .iter()
                .filter_map(|r| time_to_target(&r.eval_curve, target_loss))
                .collect();
            strategies.push(StrategySummary {
                strategy: name.clone(),
                regime,
                seeds: all.len(),
                failed: all.iter().filter(|r| r.failed.is_some()).count(),
                diverged: all.len() - g.len(),
                final_val_loss: spread_of(&g, |r| Some(r.final_val_loss)),
                final_val_accuracy: spread_of(&g, |r| Some(r.final_val_accuracy)),
                train_val_gap: spread_of(&g, |r| Some(r.final_val_loss - r.final_train_loss)),
                ood_loss: spread_of(&g, |r| r.final_ood_loss),
                minimal_pairs: spread_of(&g, |r| r.minimal_pairs),
                val_loss_isolated: spread_of(&g, |r| r.final_val_loss_isolated),
                tokens_per_s: spread_of(&g, |r| Some(r.tokens_per_s)),
                wall_s: spread_of(&g, |r| Some(r.wall_s)),
                tokens_to_target: Spread::of(&hits.iter().map(|h| h.0).collect::<Vec<_>>()),
                seconds_to_target: Spread::of(&hits.iter().map(|h| h.1).collect::<Vec<_>>()),
                reached_target: hits.len(),
                masking_ms_per_step: spread_of(&g, |r| Some(r.masking_ms_per_step)),
                mask_bytes: all.iter().map(|r| r.mask_bytes).max().unwrap_or(0),
                mask_bytes_per_token: all
                    .iter()
                    .map(|r| r.mask_bytes_per_token)
                    .fold(0.0, f64::max),
            });
        }
        for a in names.iter().filter(|n| **n != setup.baseline) {
            let pairs: Vec<(&RunRecord, &RunRecord)> = group(a, regime, true)
                .into_iter()
                .filter_map(|ra| {
                    group(&setup.baseline, regime, true)
                        .into_iter()
                        .find(|rb| rb.seed == ra.seed)
                        .map(|rb| (ra, rb))
                })
                .collect();
            let identical = !pairs.is_empty()
                && pairs.iter().all(|(ra, rb)| {
                    ra.same_as.as_deref() == Some(rb.run_dir.as_str())
                        || rb.same_as.as_deref() == Some(ra.run_dir.as_str())
                });
            for m in &MEASURES {
                let values: Vec<(f64, f64)> = pairs
                    .iter()
                    .filter_map(|(ra, rb)| Some(((m.get)(ra, &ctx)?, (m.get)(rb, &ctx)?)))
                    .collect();
                if values.is_empty() {
                    continue;
                }
                comparisons.push(Comparison::of(
                    m.key,
                    a,
                    &setup.baseline,
                    regime,
                    &values,
                    m.lower_is_better,
                    identical,
                ));
            }
        }
    }
    let failed_runs = runs
        .iter()
        .filter_map(|r| {
            r.failed.as_ref().map(|why| FailedRun {
                run: r.name(),
                reason: why.clone(),
            })
        })
        .collect();
    let leaderboard = if runs
        .iter()
        .any(|r| r.strategy == LEADERBOARD_BASELINE && r.regime.is_none())
    {
        super::leaderboard::leaderboard(&runs, LEADERBOARD_BASELINE)
    } else {
        Vec::new()
    };
    let mut report = Report {
        setup,
        targets,
        strategies,
        comparisons,
        failed_runs,
        audit,
        verdicts: Vec::new(),
        leaderboard,
        runs,
    };
    report.verdicts = verdicts(&report);
    report
}

/// A signed figure with about four significant digits.
fn signed(x: f64) -> String {
    if x >= 0.0 {
        format!("+{}", num(x))
    } else {
        num(x)
    }
}

/// `+0.031 [+0.012, +0.050]`, or `0 (identical runs)`.
fn diff_cell(c: &Comparison) -> String {
    if c.identical {
        return "0 (identical runs)".into();
    }
    match c.ci95 {
        Some([lo, hi]) => format!("{} [{}, {}]", signed(c.mean_diff), signed(lo), signed(hi)),
        None if c.seeds == 1 => format!("{} (1 seed, no interval)", signed(c.mean_diff)),
        None => "—".into(),
    }
}

/// One comparison in words.
fn describe(c: &Comparison, m: &Measure) -> String {
    let what = format!("{}: `{}` − `{}` = {}", m.label, c.a, c.b, diff_cell(c));
    if c.identical {
        return format!("{what}: the same run by construction");
    }
    if c.called {
        format!(
            "{what} ({} seeds): `{}` is {}",
            c.seeds,
            c.a,
            if c.a_is_better() { "better" } else { "worse" }
        )
    } else if c.seeds < 2 {
        format!("{what}: too few seeds for an interval")
    } else {
        format!(
            "{what} ({} seeds): the interval includes 0, no difference resolved (smallest resolvable ≈ {})",
            c.seeds,
            c.resolvable.map_or("—".into(), num)
        )
    }
}

fn regime_name(r: Option<u32>) -> String {
    match r {
        Some(e) => format!("E = {e}"),
        None => "whole corpus".into(),
    }
}

impl Report {
    fn comparisons_of<'a>(
        &'a self,
        measure: &'a str,
        a: &'a str,
    ) -> impl Iterator<Item = &'a Comparison> + 'a {
        self.comparisons
            .iter()
            .filter(move |c| c.measure == measure && c.a == a)
    }

    /// Every strategy, in order of first appearance among the runs.
    fn strategy_names(&self) -> Vec<String> {
        let mut v: Vec<String> = Vec::new();
        for r in &self.runs {
            if !v.contains(&r.strategy) {
                v.push(r.strategy.clone());
            }
        }
        v
    }

    fn compared_strategies(&self) -> Vec<String> {
        let mut v: Vec<String> = Vec::new();
        for c in &self.comparisons {
            if !v.contains(&c.a) {
                v.push(c.a.clone());
            }
        }
        v
    }
}

/// The regime-map sentence for one strategy: from which repetition on it costs validation loss
/// against the baseline, or that it never does in the range.
fn regime_sentence(report: &Report, a: &str) -> Option<String> {
    let m = super::measure::measure("val_loss")?;
    let cs: Vec<&Comparison> = report
        .comparisons_of("val_loss", a)
        .filter(|c| c.regime.is_some())
        .collect();
    if cs.len() < 2 {
        return None;
    }
    let b = &report.setup.baseline;
    let worse = |c: &Comparison| c.called && !c.a_is_better();
    let better = |c: &Comparison| c.called && c.a_is_better();
    let lo = cs.first().and_then(|c| c.regime).unwrap_or(0);
    let hi = cs.last().and_then(|c| c.regime).unwrap_or(0);
    let detail = cs
        .iter()
        .map(|c| format!("E = {}: {}", c.regime.unwrap_or(0), diff_cell(c)))
        .collect::<Vec<_>>()
        .join("; ");
    // The first regime from which every larger regime is called worse.
    let from = (0..cs.len()).find(|&i| cs[i..].iter().all(|c| worse(c)));
    let res: Vec<f64> = cs
        .iter()
        .filter(|c| !c.identical)
        .filter_map(|c| c.resolvable)
        .collect();
    let res_note = if res.is_empty() {
        String::new()
    } else {
        format!(
            " The smallest differences this run resolves (80% power) are {}–{} nats.",
            num(res.iter().cloned().fold(f64::INFINITY, f64::min)),
            num(res.iter().cloned().fold(f64::NEG_INFINITY, f64::max))
        )
    };
    let sentence = match from {
        Some(i) => format!(
            "`{a}` costs {} against `{b}` from E = {} epochs of repetition on (called in every regime from there up to E = {hi}); below that no cost is resolved.",
            m.label,
            cs[i].regime.unwrap_or(0)
        ),
        None if cs.iter().any(|c| worse(c)) => format!(
            "`{a}` costs {} against `{b}` in some regimes ({}) but not consistently from one repetition on.",
            m.label,
            cs.iter().filter(|c| worse(c)).map(|c| format!("E = {}", c.regime.unwrap_or(0))).collect::<Vec<_>>().join(", ")
        ),
        None if cs.iter().any(|c| better(c)) => format!(
            "`{a}` never costs {} against `{b}` between E = {lo} and E = {hi}; it is better at {}.",
            m.label,
            cs.iter().filter(|c| better(c)).map(|c| format!("E = {}", c.regime.unwrap_or(0))).collect::<Vec<_>>().join(", ")
        ),
        None => format!("`{a}` never costs {} against `{b}` that this run can resolve, between E = {lo} and E = {hi}.", m.label),
    };
    Some(format!(
        "{sentence} Mean paired differences ({a} − {b}) with 95% intervals: {detail}.{res_note}"
    ))
}

fn verdicts(report: &Report) -> Vec<Verdict> {
    let mut out = Vec::new();
    let s = &report.setup;
    let others = report.compared_strategies();
    let seeds_note = if s.seeds < 3 {
        format!(
            " With {} seed(s) per strategy, intervals are wide or missing.",
            s.seeds
        )
    } else {
        String::new()
    };

    if s.regimes.iter().filter(|r| r.epochs.is_some()).count() >= 2 {
        let lines: Vec<String> = others
            .iter()
            .filter_map(|a| regime_sentence(report, a))
            .collect();
        if !lines.is_empty() {
            out.push(Verdict {
                claim: "Data repetition (regime map)".into(),
                finding: lines.join(" ") + &seeds_note,
            });
        }
    }

    // Efficiency: tokens to the target loss, and throughput.
    let mut eff = Vec::new();
    if let Some(m) = super::measure::measure("tokens_to_target") {
        for a in &others {
            for c in report
                .comparisons_of("tokens_to_target", a)
                .filter(|c| !c.identical)
            {
                eff.push(capitalize(&format!(
                    "{}: {}.",
                    regime_name(c.regime),
                    describe(c, m)
                )));
            }
        }
    }
    for x in &report.strategies {
        if x.reached_target < x.seeds - x.diverged {
            eff.push(format!(
                "`{}` ({}): {} of {} seeds reached the target loss.",
                x.strategy,
                regime_name(x.regime),
                x.reached_target,
                x.seeds - x.diverged
            ));
        }
    }
    let mut speeds = Vec::new();
    for name in report.strategy_names() {
        // Runs identical to another one were not trained: their speed is the other run's.
        let v: Vec<f64> = report
            .runs
            .iter()
            .filter(|r| r.strategy == name && r.same_as.is_none())
            .map(|r| r.tokens_per_s)
            .collect();
        if let Some(t) = Spread::of(&v) {
            speeds.push(format!(
                "`{name}` {} [{}–{}]",
                num(t.median),
                num(t.min),
                num(t.max)
            ));
        }
    }
    if !speeds.is_empty() {
        eff.push(format!(
            "Throughput (tokens/s, median [min–max] over the runs trained): {}.",
            speeds.join(", ")
        ));
    }
    out.push(Verdict {
        claim: "Training efficiency".into(),
        finding: eff.join(" ") + &seeds_note,
    });

    out.push(Verdict {
        claim: "Information leakage".into(),
        finding: leakage_finding(report),
    });

    let mut gen = Vec::new();
    let keys: &[&str] = if s.task == "clm" {
        &["val_loss", "val_loss_isolated", "ood_loss", "minimal_pairs"]
    } else {
        &["val_loss", "ood_loss", "minimal_pairs", "train_val_gap"]
    };
    for a in &others {
        for key in keys {
            let Some(m) = super::measure::measure(key) else {
                continue;
            };
            let cs: Vec<&Comparison> = report.comparisons_of(key, a).collect();
            if cs.is_empty() {
                continue;
            }
            let called: Vec<String> = cs
                .iter()
                .filter(|c| c.called)
                .map(|c| {
                    format!(
                        "{} ({} {})",
                        regime_name(c.regime),
                        if c.a_is_better() { "better" } else { "worse" },
                        diff_cell(c)
                    )
                })
                .collect();
            if cs.len() == 1 {
                gen.push(capitalize(&format!("{}.", describe(cs[0], m))));
            } else if called.is_empty() {
                gen.push(format!(
                    "{}: no difference between `{a}` and `{}` resolved in any regime.",
                    capitalize(m.label),
                    s.baseline
                ));
            } else {
                gen.push(format!(
                    "{}: `{a}` differs from `{}` at {}; elsewhere no difference is resolved.",
                    capitalize(m.label),
                    s.baseline,
                    called.join(", ")
                ));
            }
        }
    }
    gen.extend(scale_notes(report));
    out.push(Verdict {
        claim: "Generalization".into(),
        finding: gen.join(" ") + &seeds_note,
    });

    if !report.failed_runs.is_empty() {
        out.push(Verdict {
            claim: "Failed runs".into(),
            finding: format!(
                "{} of {} runs failed{}: {}. A run that ends above the unigram loss stays in the figures and comparisons (its result is that strategy's outcome in its regime); a diverged run has no final figures and leaves its pair.",
                report.failed_runs.len(),
                report.runs.len(),
                {
                    let copies = report.runs.iter().filter(|r| r.same_as.is_some()).count();
                    let trained_failed = report.runs.iter().filter(|r| r.same_as.is_none() && r.failed.is_some()).count();
                    if copies > 0 {
                        format!(" ({trained_failed} of the {} runs trained; the others are identical copies of trained runs)", report.runs.len() - copies)
                    } else {
                        String::new()
                    }
                },
                {
                    let mut v: Vec<String> = report.failed_runs.iter().take(8).map(|f| format!("`{}` ({})", f.run, f.reason)).collect();
                    if report.failed_runs.len() > 8 {
                        v.push(format!("and {} more (see Failed runs)", report.failed_runs.len() - 8));
                    }
                    v.join("; ")
                }
            ),
        });
    }
    out
}

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    c.next().map_or(String::new(), |f| {
        f.to_uppercase().collect::<String>() + c.as_str()
    })
}

/// How strongly the models learn: losses against the unigram baseline, minimal pairs against chance.
fn scale_notes(report: &Report) -> Vec<String> {
    let mut out = Vec::new();
    let s = &report.setup;
    let base: Vec<&StrategySummary> = report
        .strategies
        .iter()
        .filter(|x| x.strategy == s.baseline)
        .collect();
    if let Some(u) = s.unigram_loss {
        let cells: Vec<String> = base
            .iter()
            .filter_map(|x| {
                x.final_val_loss.map(|v| {
                    format!(
                        "{} {} (accuracy {})",
                        regime_name(x.regime),
                        num(v.median),
                        x.final_val_accuracy.map_or("—".into(), |a| num(a.median))
                    )
                })
            })
            .collect();
        if !cells.is_empty() {
            let best = base
                .iter()
                .filter_map(|x| x.final_val_loss.map(|v| v.max))
                .fold(f64::INFINITY, f64::min);
            out.push(format!(
                "For scale: the unigram loss (no context) is {}{}; `{}` ends at {} ({}).",
                num(u),
                s.unigram_accuracy
                    .map_or(String::new(), |a| format!(" and its accuracy {}", num(a))),
                s.baseline,
                cells.join(", "),
                if best < u - 0.5 {
                    "well below it on every seed: the models use context"
                } else if best < u - 0.2 {
                    "below it on every seed in its best regime: the models use some context"
                } else if best < u {
                    "barely below it: at this budget the models use little context, so differences between strategies say little"
                } else {
                    "not below it on every seed: at this budget the models have not even learnt the word frequencies, so differences between strategies say nothing"
                }
            ));
        }
    }
    let mp: Vec<String> = base
        .iter()
        .filter_map(|x| {
            x.minimal_pairs
                .map(|m| format!("{} {}", regime_name(x.regime), num(m.median)))
        })
        .collect();
    if !mp.is_empty() {
        out.push(format!(
            "Minimal-pair accuracy of `{}` (chance 0.5): {}.",
            s.baseline,
            mp.join(", ")
        ));
    }
    out
}

fn leakage_finding(report: &Report) -> String {
    let audit = &report.audit;
    if audit.is_empty() {
        return "Not audited in this run.".into();
    }
    let list = |v: &[&AuditLine]| {
        v.iter()
            .map(|a| format!("{} ({})", a.what, a.detail))
            .collect::<Vec<_>>()
            .join("; ")
    };
    let pass: Vec<&AuditLine> = audit.iter().filter(|a| a.passed).collect();
    let leak: Vec<&AuditLine> = audit.iter().filter(|a| !a.passed).collect();
    if report.setup.task == "clm" {
        // Every trained model is held to the document-causal relation: plain causal attention over
        // packed rows is expected to leak across documents, document-causal attention must not.
        let mut s = String::from("Each trained model was audited against the document-causal relation (no output may depend on another document of its row). ");
        if !leak.is_empty() {
            s += &format!(
                "LEAK: {}. ",
                leak.iter()
                    .map(|a| format!("{}: {}", a.what, a.detail))
                    .collect::<Vec<_>>()
                    .join("; ")
            );
        }
        if !pass.is_empty() {
            s += &format!("PASS: {}.", list(&pass));
        }
        return s.trim_end().to_string();
    }
    if leak.is_empty() {
        format!("No leakage found: {}.", list(&pass))
    } else {
        format!(
            "LEAKAGE FOUND: {}.",
            leak.iter()
                .map(|a| format!("{}: {}", a.what, a.detail))
                .collect::<Vec<_>>()
                .join("; ")
        )
    }
}

/// Formats a figure with about four significant digits.
pub fn num(x: f64) -> String {
    if !x.is_finite() {
        return format!("{x}");
    }
    let a = x.abs();
    if a >= 1e5 {
        format!("{x:.3e}")
    } else if a >= 100.0 {
        format!("{x:.0}")
    } else if a >= 1.0 {
        format!("{x:.3}")
    } else {
        format!("{x:.4}")
    }
}

fn cell(s: &Option<Spread>) -> String {
    match s {
        Some(s) if s.n > 1 => format!("{} [{}–{}]", num(s.median), num(s.min), num(s.max)),
        Some(s) => num(s.median),
        None => "—".into(),
    }
}

impl Report {
    /// The report as Markdown (`report.md`); `plot_files` are the PNGs to show, `regime_plot` the
    /// regime map's PNG when there is one.
    pub fn to_markdown(&self, plot_files: &[String], regime_plot: Option<&str>) -> String {
        let s = &self.setup;
        let mut m = String::new();
        m.push_str("# remask comparison report\n\n");
        let what = if s.task == "clm" {
            "Causal language models (GPT-style decoders) on packed rows, one per attention mask and seed"
        } else {
            "Masked language models, one per masking strategy, seed and regime"
        };
        m.push_str(&format!(
            "{what}. Model: {}. Data: {}. Equal budget: {} training tokens per run; {} seed(s) per strategy; baseline `{}`.\n\n",
            s.model, s.data, s.token_budget, s.seeds, s.baseline
        ));
        if s.regimes.iter().any(|r| r.epochs.is_some()) {
            m.push_str(&format!(
                "Regimes (data repetition at the equal budget): {}. Each regime trains on the first rows of one fixed permutation of the training rows (nested subsets), the same for every strategy and seed.\n\n",
                s.regimes.iter().map(|r| format!("{} ({} rows)", r.label(), r.rows)).collect::<Vec<_>>().join(", ")
            ));
        }
        m.push_str(if s.task == "clm" {
            "Evaluation, the same for every run: in-domain validation (next-token loss on fixed packed rows, with each model's own mask and with every document alone)"
        } else {
            "Evaluation, the same for every run: in-domain validation on fixed masks"
        });
        if let Some(o) = &s.ood {
            m.push_str(&format!("; out-of-domain: {o}"));
        }
        if let Some(p) = &s.minimal_pairs {
            m.push_str(&format!("; zero-shot minimal pairs: {p}"));
        }
        m.push_str(".\n\n");
        m.push_str(
            "Statistics: runs are paired by seed (the same seed gives every strategy the same initial weights and data order). \
             Each comparison is the mean over seeds of (strategy − baseline) with a 95% Student-t interval over the seeds; a difference is \
             called only when its interval excludes 0. \"Smallest resolvable\" is the difference that would be called with 80% power at the \
             observed spread. Tables of figures show the median and [min–max] over seeds. Failed runs are named and counted: a run ending \
             above the unigram loss stays in (its result is the outcome), a diverged run has no final figures and leaves its pair.\n\n",
        );
        if let Some(u) = s.unigram_loss {
            m.push_str(&format!(
                "Unigram loss (no context: the training tokens' add-one-smoothed frequencies, scored on the validation labels): {}{}.\n\n",
                num(u),
                s.unigram_accuracy.map_or(String::new(), |a| format!(
                    "; accuracy without context (always the most frequent training token): {}",
                    num(a)
                ))
            ));
        }
        m.push_str("## Verdicts\n\n");
        for v in &self.verdicts {
            m.push_str(&format!("- **{}.** {}\n", v.claim, v.finding));
        }
        if self.leaderboard.len() > 1 {
            m.push('\n');
            m.push_str(&super::leaderboard::to_markdown(
                &self.leaderboard,
                LEADERBOARD_BASELINE,
            ));
        }
        self.comparison_tables(&mut m, regime_plot);
        m.push_str("\n## Figures per strategy\n\nMedian [min–max] over the seeds (diverged runs left out). A run identical to another by construction (see Runs) repeats its figures. The train−val gap is the validation loss minus the loss on a fixed-mask sample of the run's own training subset.\n\n");
        m.push_str("| regime | strategy | seeds | failed | val loss | val accuracy | OOD loss | minimal pairs | train−val gap | tokens/s | tokens to target | masking ms/step | stored mask bytes |\n");
        m.push_str("|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
        for x in &self.strategies {
            m.push_str(&format!(
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} ({}/{}) | {} | {}{} |\n",
                regime_name(x.regime),
                x.strategy,
                x.seeds,
                x.failed,
                cell(&x.final_val_loss),
                cell(&x.final_val_accuracy),
                cell(&x.ood_loss),
                cell(&x.minimal_pairs),
                cell(&x.train_val_gap),
                cell(&x.tokens_per_s),
                cell(&x.tokens_to_target),
                x.reached_target,
                x.seeds - x.diverged,
                cell(&x.masking_ms_per_step),
                x.mask_bytes,
                if x.mask_bytes > 0 {
                    format!(" ({:.2} per token)", x.mask_bytes_per_token)
                } else {
                    String::new()
                }
            ));
        }
        if self
            .strategies
            .iter()
            .any(|x| x.val_loss_isolated.is_some())
        {
            m.push_str("\nValidation loss with every document read alone (document-causal attention at evaluation):\n\n| strategy | val loss, documents alone |\n|---|---|\n");
            for x in &self.strategies {
                m.push_str(&format!(
                    "| {} | {} |\n",
                    x.strategy,
                    cell(&x.val_loss_isolated)
                ));
            }
        }
        m.push_str("\nTarget validation loss for \"to target\" (the highest final median validation loss among the strategies): ");
        m.push_str(
            &self
                .targets
                .iter()
                .map(|t| format!("{} {}", regime_name(t.regime), num(t.target_loss)))
                .collect::<Vec<_>>()
                .join(", "),
        );
        m.push_str(".\n");
        if !self.failed_runs.is_empty() {
            m.push_str(&format!(
                "\n## Failed runs ({})\n\n| run | why |\n|---|---|\n",
                self.failed_runs.len()
            ));
            for f in &self.failed_runs {
                m.push_str(&format!("| {} | {} |\n", f.run, f.reason));
            }
        }
        if !self.audit.is_empty() {
            m.push_str("\n## Leakage audit\n\n| what | verdict | detail |\n|---|---|---|\n");
            for a in &self.audit {
                m.push_str(&format!(
                    "| {} | {} | {} |\n",
                    a.what,
                    if a.passed { "PASS" } else { "LEAK" },
                    a.detail
                ));
            }
        }
        if !plot_files.is_empty() {
            m.push_str("\n## Loss curves\n\n");
            for p in plot_files {
                m.push_str(&format!("![{p}]({p})\n\n"));
            }
            m.push_str("Lines are the median over seeds, bands the min–max range; failed runs are drawn on their own, dashed.\n");
        }
        if let Some(w) = s.wall_s {
            m.push_str(&format!("\nTotal wall time of the comparison: {w:.0} s.\n"));
        }
        m.push_str("\n## Runs\n\n| run | final val loss | final train loss | OOD loss | minimal pairs | note | directory |\n|---|---|---|---|---|---|---|\n");
        for r in &self.runs {
            let note = match (&r.failed, &r.same_as) {
                (Some(f), _) => format!("FAILED: {f}"),
                (None, Some(s)) => format!("identical to `{s}`"),
                _ => String::new(),
            };
            m.push_str(&format!(
                "| {} | {} | {} | {} | {} | {} | `{}` |\n",
                r.name(),
                num(r.final_val_loss),
                num(r.final_train_loss),
                r.final_ood_loss.map_or("—".into(), num),
                r.minimal_pairs.map_or("—".into(), num),
                note,
                r.run_dir
            ));
        }
        m
    }

    /// The paired comparisons: one table per compared strategy, a row per measure, a column per regime.
    fn comparison_tables(&self, m: &mut String, regime_plot: Option<&str>) {
        if self.comparisons.is_empty() {
            return;
        }
        let regimes: Vec<Option<u32>> = self.targets.iter().map(|t| t.regime).collect();
        let head = if regimes.iter().any(Option::is_some) {
            "Regime map: paired differences"
        } else {
            "Paired differences"
        };
        m.push_str(&format!("\n## {head}\n\n"));
        if let Some(p) = regime_plot {
            m.push_str(&format!("![{p}]({p})\n\n"));
        }
        m.push_str("Mean over seeds of (strategy − baseline) with its 95% interval; **bold** where the interval excludes 0.\n");
        for a in self.compared_strategies() {
            m.push_str(&format!(
                "\n`{a}` − `{}`:\n\n| measure | {} |\n|---|{}\n",
                self.setup.baseline,
                regimes
                    .iter()
                    .map(|r| regime_name(*r))
                    .collect::<Vec<_>>()
                    .join(" | "),
                "---|".repeat(regimes.len())
            ));
            for meas in &MEASURES {
                let cs: Vec<Option<&Comparison>> = regimes
                    .iter()
                    .map(|r| {
                        self.comparisons
                            .iter()
                            .find(|c| c.a == a && c.measure == meas.key && c.regime == *r)
                    })
                    .collect();
                if cs.iter().all(Option::is_none) {
                    continue;
                }
                let cells: Vec<String> = cs
                    .iter()
                    .map(|c| match c {
                        Some(c) if c.called => format!("**{}**", diff_cell(c)),
                        Some(c) => diff_cell(c),
                        None => "—".into(),
                    })
                    .collect();
                m.push_str(&format!(
                    "| {} ({}) | {} |\n",
                    meas.label,
                    if meas.lower_is_better {
                        "lower is better"
                    } else {
                        "higher is better"
                    },
                    cells.join(" | ")
                ));
                let res: Vec<String> = cs
                    .iter()
                    .map(|c| c.and_then(|c| c.resolvable).map_or("—".into(), num))
                    .collect();
                if cs
                    .iter()
                    .flatten()
                    .any(|c| c.resolvable.is_some() && !c.identical)
                {
                    m.push_str(&format!(
                        "| ↳ smallest resolvable | {} |\n",
                        res.join(" | ")
                    ));
                }
            }
        }
        let seeds: Vec<usize> = self.comparisons.iter().map(|c| c.seeds).collect();
        if let (Some(lo), Some(hi)) = (seeds.iter().min(), seeds.iter().max()) {
            m.push_str(&format!(
                "\nPairs per comparison: {}.\n",
                if lo == hi {
                    lo.to_string()
                } else {
                    format!("{lo}–{hi}")
                }
            ));
        }
    }

    /// The report as pretty JSON (`report.json`).
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
    }
}

#[cfg(test)]
mod tests {
    use super::super::record::{CurvePoint, EvalPoint};
    use super::*;

    fn run(strategy: &str, regime: Option<u32>, seed: u64, final_val: f64) -> RunRecord {
        let eval_curve = (0..=4)
            .map(|i| EvalPoint {
                tokens: i * 1000,
                seconds: i as f64,
                loss: 8.0 - (8.0 - final_val) * i as f64 / 4.0,
                accuracy: 0.1 * i as f64,
            })
            .collect();
        RunRecord {
            strategy: strategy.into(),
            seed,
            regime,
            train_rows: 100,
            train_curve: vec![
                CurvePoint {
                    tokens: 0,
                    loss: 8.0,
                },
                CurvePoint {
                    tokens: 4000,
                    loss: final_val - 0.2,
                },
            ],
            eval_curve,
            final_train_loss: final_val - 0.2,
            final_val_loss: final_val,
            final_val_accuracy: 0.4,
            tokens_per_s: 100.0,
            wall_s: 40.0,
            masking_ms_per_step: 0.1,
            mask_bytes: if strategy == "static" { 1234 } else { 0 },
            mask_bytes_per_token: if strategy == "static" { 0.75 } else { 0.0 },
            run_dir: format!(
                "runs/{}",
                super::super::record::run_name(strategy, regime, seed)
            ),
            final_ood_loss: Some(final_val + 1.0),
            final_ood_accuracy: None,
            minimal_pairs: Some(0.6),
            final_val_loss_isolated: None,
            failed: None,
            same_as: None,
        }
    }

    fn setup(regimes: &[u32]) -> Setup {
        Setup {
            task: "mlm".into(),
            model: "m".into(),
            data: "d".into(),
            token_budget: 4000,
            seeds: 3,
            unigram_loss: Some(7.0),
            unigram_accuracy: Some(0.05),
            baseline: "dynamic".into(),
            regimes: regimes
                .iter()
                .map(|&e| Regime {
                    epochs: Some(e),
                    rows: 4000 / e as u64,
                })
                .collect(),
            ood: Some("o".into()),
            minimal_pairs: Some("p".into()),
            wall_s: Some(12.0),
            dupe_factor: Some(10),
        }
    }

    #[test]
    fn paired_differences_per_regime_and_the_regime_sentence() {
        let mut runs = Vec::new();
        for (e, cost) in [(1u32, 0.0), (16, 0.01), (64, 0.1)] {
            for seed in 1..=3u64 {
                let noise = [0.0, 0.02, -0.01][seed as usize - 1];
                let d = run("dynamic", Some(e), seed, 5.0 + noise);
                let mut s = run(
                    "static",
                    Some(e),
                    seed,
                    5.0 + noise + cost + [0.0, 0.003, -0.002][seed as usize - 1],
                );
                if e == 1 {
                    s = RunRecord {
                        strategy: "static".into(),
                        same_as: Some(d.run_dir.clone()),
                        ..d.clone()
                    };
                }
                runs.push(s);
                runs.push(d);
            }
        }
        let r = build_report(setup(&[1, 16, 64]), runs, vec![]);
        let val: Vec<&Comparison> = r
            .comparisons
            .iter()
            .filter(|c| c.measure == "val_loss")
            .collect();
        assert_eq!(val.len(), 3);
        assert!(val[0].identical && !val[0].called && val[0].mean_diff == 0.0);
        assert!(val[2].called && !val[2].a_is_better() && (val[2].mean_diff - 0.1).abs() < 1e-3);
        // Every comparison names measure, pair and regime (tokens to target counts only the seeds
        // that reach it); minimal pairs are constant, so their differences are 0 and never called.
        assert!(r
            .comparisons
            .iter()
            .all(|c| c.a == "static" && c.b == "dynamic"));
        assert!(r
            .comparisons
            .iter()
            .filter(|c| c.measure != "tokens_to_target")
            .all(|c| c.seeds == 3));
        assert!(r
            .comparisons
            .iter()
            .any(|c| c.measure == "minimal_pairs" && !c.called));
        let regime = &r.verdicts[0];
        assert_eq!(regime.claim, "Data repetition (regime map)");
        assert!(
            regime.finding.contains("from E = 16 epochs")
                || regime.finding.contains("from E = 64 epochs"),
            "{}",
            regime.finding
        );
        let md = r.to_markdown(&["val_loss.png".into()], Some("regime_map.png"));
        assert!(
            md.contains("## Regime map: paired differences")
                && md.contains("![regime_map.png](regime_map.png)"),
            "{md}"
        );
        assert!(md.contains("| E = 64 | static | 3 | 0 |"), "{md}");
        assert!(md.contains("0 (identical runs)"), "{md}");
        let back: Report = serde_json::from_str(&r.to_json()).unwrap();
        assert_eq!(back.comparisons.len(), r.comparisons.len());
        assert_eq!(back.runs.len(), 18);
    }

    #[test]
    fn failed_runs_are_named_and_counted_and_only_diverged_ones_leave_their_pair() {
        let mut runs = vec![];
        for seed in 1..=3 {
            runs.push(run("static", None, seed, 5.0));
            runs.push(run("dynamic", None, seed, 4.9));
        }
        runs[4].failed = Some("diverged: non-finite loss at step 7".into());
        runs[4].final_val_loss = f64::NAN;
        runs[2].failed = Some("ends above the unigram loss (7.2 > 7.0)".into());
        runs[2].final_val_loss = 7.2;
        let r = build_report(
            Setup {
                regimes: vec![],
                ..setup(&[])
            },
            runs,
            vec![],
        );
        assert_eq!(r.failed_runs.len(), 2);
        assert_eq!(
            r.failed_runs[1],
            FailedRun {
                run: "static-seed3".into(),
                reason: "diverged: non-finite loss at step 7".into()
            }
        );
        let s = r
            .strategies
            .iter()
            .find(|s| s.strategy == "static")
            .unwrap();
        assert_eq!((s.seeds, s.failed, s.diverged), (3, 2, 1));
        // The run above the unigram loss is still in the figures; the diverged one is not.
        assert_eq!(s.final_val_loss.unwrap().n, 2);
        assert_eq!(s.final_val_loss.unwrap().max, 7.2);
        let c = r
            .comparisons
            .iter()
            .find(|c| c.measure == "val_loss")
            .unwrap();
        assert_eq!(c.seeds, 2);
        assert!(r.verdicts.iter().any(|v| v.claim == "Failed runs"
            && v.finding.contains("`static-seed3`")
            && v.finding.starts_with("2 of 6")));
        let md = r.to_markdown(&[], None);
        assert!(
            md.contains("## Failed runs (2)") && md.contains("FAILED: diverged"),
            "{md}"
        );
        // NaN figures are written as null and read back as NaN: the report can be rebuilt.
        let back: Report = serde_json::from_str(&r.to_json()).unwrap();
        assert!(back.runs[4].final_val_loss.is_nan());
        assert_eq!(
            build_report(back.setup, back.runs, back.audit).comparisons,
            r.comparisons
        );
    }

    #[test]
    fn audits_are_reported_loudly_and_clm_leaks_are_expected() {
        let audit = vec![
            AuditLine {
                what: "attention padding".into(),
                passed: true,
                detail: "gradients".into(),
            },
            AuditLine {
                what: "attention causal".into(),
                passed: false,
                detail: "query 3 reads key 4".into(),
            },
        ];
        let r = build_report(
            setup(&[]),
            vec![run("dynamic", None, 1, 5.0)],
            audit.clone(),
        );
        let leak = r
            .verdicts
            .iter()
            .find(|v| v.claim == "Information leakage")
            .unwrap();
        assert!(
            leak.finding
                .starts_with("LEAKAGE FOUND: attention causal: query 3 reads key 4"),
            "{}",
            leak.finding
        );
        let r = build_report(
            Setup {
                task: "clm".into(),
                ..setup(&[])
            },
            vec![run("dynamic", None, 1, 5.0)],
            audit,
        );
        let leak = r
            .verdicts
            .iter()
            .find(|v| v.claim == "Information leakage")
            .unwrap();
        assert!(
            leak.finding
                .contains("against the document-causal relation")
                && leak.finding.contains("LEAK: attention causal"),
            "{}",
            leak.finding
        );
    }
}
