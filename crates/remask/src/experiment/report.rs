//! The comparison report: per-strategy figures over seeds, and verdicts stated only as strong as the
//! data allows (a difference inside the seed spread is reported as such).

use serde::{Deserialize, Serialize};

use super::leaderboard::LeaderboardRow;
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
            None => format!("{} queries, {} forbidden pairs; gradients and perturbation", r.checked_queries, r.forbidden_pairs),
            Some(v) => format!("query {} reads forbidden{} key {} (row {}, found by {})", v.query, v.side(), v.key, v.row, v.method),
        };
        AuditLine { what: format!("attention {}", r.kind), passed: r.passed, detail }
    }
}

impl From<&MaskingAudit> for AuditLine {
    /// What the leakage table shows of the MLM-target audit: `mlm targets hidden`, the verdict and the
    /// shares.
    fn from(m: &MaskingAudit) -> Self {
        let detail =
            format!("{} labels; target visible at {:.3} (accepted <= {:.3})", m.labels, m.unchanged_share, m.max_unchanged_share);
        AuditLine { what: "mlm targets hidden".into(), passed: m.passed, detail }
    }
}

/// What a comparison ran on, for the report's header.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Setup {
    pub model: String,
    pub data: String,
    /// Training tokens per run (the equal budget).
    pub token_budget: u64,
    pub seeds: usize,
    /// Cross-entropy of the unigram distribution of the validation labels: the loss of a model that
    /// ignores context. Losses clearly below it show that the models learned from context.
    pub unigram_loss: Option<f64>,
}

/// Per-strategy figures over seeds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StrategySummary {
    pub strategy: String,
    pub seeds: usize,
    pub final_val_loss: Option<Spread>,
    pub final_val_accuracy: Option<Spread>,
    /// Final validation loss minus final training loss (both on fixed masks).
    pub train_val_gap: Option<Spread>,
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
    /// The validation loss used for "tokens to target": the highest final median validation loss among
    /// the strategies, i.e. a loss every strategy's median run reaches.
    pub target_loss: f64,
    pub strategies: Vec<StrategySummary>,
    pub audit: Vec<AuditLine>,
    pub verdicts: Vec<Verdict>,
    /// Every strategy against `dynamic` (when it ran): tokens to reach its final loss as a ratio,
    /// with an interval over seeds (`super::leaderboard`).
    #[serde(default)]
    pub leaderboard: Vec<LeaderboardRow>,
    pub runs: Vec<RunRecord>,
}

/// The leaderboard's baseline.
pub const LEADERBOARD_BASELINE: &str = "dynamic";

fn spread_of(records: &[&RunRecord], f: impl Fn(&RunRecord) -> f64) -> Option<Spread> {
    Spread::of(&records.iter().map(|r| f(r)).collect::<Vec<_>>())
}

/// Builds the report from all runs (strategies in order of first appearance; the first is the baseline
/// the verdicts compare against).
pub fn build_report(setup: Setup, runs: Vec<RunRecord>, audit: Vec<AuditLine>) -> Report {
    let mut names: Vec<String> = Vec::new();
    for r in &runs {
        if !names.contains(&r.strategy) {
            names.push(r.strategy.clone());
        }
    }
    let group = |name: &str| runs.iter().filter(|r| r.strategy == name).collect::<Vec<_>>();
    let target_loss = names
        .iter()
        .filter_map(|n| spread_of(&group(n), |r| r.final_val_loss).map(|s| s.median))
        .fold(f64::NAN, f64::max);

    let strategies: Vec<StrategySummary> = names
        .iter()
        .map(|name| {
            let g = group(name);
            let hits: Vec<(f64, f64)> =
                g.iter().filter_map(|r| time_to_target(&r.eval_curve, target_loss)).collect();
            StrategySummary {
                strategy: name.clone(),
                seeds: g.len(),
                final_val_loss: spread_of(&g, |r| r.final_val_loss),
                final_val_accuracy: spread_of(&g, |r| r.final_val_accuracy),
                train_val_gap: spread_of(&g, |r| r.final_val_loss - r.final_train_loss),
                tokens_per_s: spread_of(&g, |r| r.tokens_per_s),
                wall_s: spread_of(&g, |r| r.wall_s),
                tokens_to_target: Spread::of(&hits.iter().map(|h| h.0).collect::<Vec<_>>()),
                seconds_to_target: Spread::of(&hits.iter().map(|h| h.1).collect::<Vec<_>>()),
                reached_target: hits.len(),
                masking_ms_per_step: spread_of(&g, |r| r.masking_ms_per_step),
                mask_bytes: g.iter().map(|r| r.mask_bytes).max().unwrap_or(0),
            }
        })
        .collect();

    let verdicts = verdicts(&setup, &strategies, &audit, target_loss);
    let leaderboard = if runs.iter().any(|r| r.strategy == LEADERBOARD_BASELINE) && names.len() > 1 {
        super::leaderboard::leaderboard(&runs, LEADERBOARD_BASELINE)
    } else {
        Vec::new()
    };
    Report { setup, target_loss, strategies, audit, verdicts, leaderboard, runs }
}

/// Compares one figure of `other` against the baseline; `lower_is_better` orients the wording.
fn compare(
    what: &str,
    base: &StrategySummary,
    other: &StrategySummary,
    pick: impl Fn(&StrategySummary) -> Option<Spread>,
    lower_is_better: bool,
    unit: &str,
) -> String {
    let (Some(a), Some(b)) = (pick(base), pick(other)) else {
        return format!("{what}: not measured for both `{}` and `{}`.", base.strategy, other.strategy);
    };
    let fmt = |s: &Spread| format!("{} [{}–{}]", num(s.median), num(s.min), num(s.max));
    if a.n < 2 || b.n < 2 {
        return format!(
            "{what}: `{}` {} vs `{}` {}{unit} — a single seed per strategy gives no spread to judge a difference against.",
            other.strategy, num(b.median), base.strategy, num(a.median)
        );
    }
    if a.overlaps(&b) {
        return format!(
            "{what}: `{}` {} vs `{}` {}{unit} — inside the seed spread (ranges over the seeds overlap), so no difference is shown.",
            other.strategy, fmt(&b), base.strategy, fmt(&a)
        );
    }
    let better = if lower_is_better { b.median < a.median } else { b.median > a.median };
    format!(
        "{what}: `{}` {} vs `{}` {}{unit} — `{}` is {} on every seed (ranges do not overlap over {} and {} seeds).",
        other.strategy,
        fmt(&b),
        base.strategy,
        fmt(&a),
        other.strategy,
        if better { "better" } else { "worse" },
        b.n,
        a.n
    )
}

fn verdicts(setup: &Setup, s: &[StrategySummary], audit: &[AuditLine], target: f64) -> Vec<Verdict> {
    let mut out = Vec::new();
    let Some(base) = s.first() else { return out };
    let seeds_note = if setup.seeds < 3 {
        format!(" With {} seed(s), any difference is anecdotal.", setup.seeds)
    } else {
        String::new()
    };

    let mut eff = Vec::new();
    for o in &s[1..] {
        eff.push(compare(
            &format!("tokens to reach validation loss {}", num(target)),
            base,
            o,
            |x| x.tokens_to_target,
            true,
            "",
        ));
        eff.push(compare("training throughput (tokens/s)", base, o, |x| x.tokens_per_s, false, ""));
    }
    for x in s {
        if x.reached_target < x.seeds {
            eff.push(format!(
                "`{}`: {} of {} seeds reached the target loss.",
                x.strategy, x.reached_target, x.seeds
            ));
        }
    }
    out.push(Verdict { claim: "Training efficiency".into(), finding: eff.join(" ") + &seeds_note });

    let leak = if audit.is_empty() {
        "Not audited in this run.".to_string()
    } else if audit.iter().all(|a| a.passed) {
        format!(
            "No leakage found: {}.",
            audit.iter().map(|a| format!("{} ({})", a.what, a.detail)).collect::<Vec<_>>().join("; ")
        )
    } else {
        format!(
            "LEAKAGE FOUND: {}.",
            audit
                .iter()
                .filter(|a| !a.passed)
                .map(|a| format!("{}: {}", a.what, a.detail))
                .collect::<Vec<_>>()
                .join("; ")
        )
    };
    out.push(Verdict { claim: "Information leakage".into(), finding: leak });

    let mut gen = Vec::new();
    for o in &s[1..] {
        gen.push(compare("final validation loss", base, o, |x| x.final_val_loss, true, ""));
        gen.push(compare("train−validation gap", base, o, |x| x.train_val_gap, true, ""));
    }
    if let (Some(u), Some(v)) = (setup.unigram_loss, base.final_val_loss) {
        gen.push(format!(
            "For scale: the unigram baseline loss (no context) is {}; `{}` ends at {}, {} nats lower ({}).",
            num(u),
            base.strategy,
            num(v.median),
            num(u - v.median),
            if v.max < u - 0.2 {
                "clearly below it on every seed: the model uses context"
            } else {
                "not clearly below it: at this budget the models barely use context, so differences between strategies say little"
            }
        ));
    }
    out.push(Verdict { claim: "Generalization".into(), finding: gen.join(" ") + &seeds_note });
    out
}

/// Formats a figure with about four significant digits.
fn num(x: f64) -> String {
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
    /// The report as Markdown (`report.md`).
    pub fn to_markdown(&self, plot_files: &[String]) -> String {
        let mut m = String::new();
        m.push_str("# remask comparison report\n\n");
        m.push_str(&format!(
            "Model: {}. Data: {}. Equal budget: {} training tokens per run, {} seed(s) per strategy. \
             All runs are evaluated on the same fixed validation masks. Cells show the median over seeds \
             and [min–max].\n\n",
            self.setup.model, self.setup.data, self.setup.token_budget, self.setup.seeds
        ));
        if let Some(u) = self.setup.unigram_loss {
            m.push_str(&format!("Unigram baseline loss (no context): {}.\n\n", num(u)));
        }
        m.push_str("## Verdicts\n\n");
        for v in &self.verdicts {
            m.push_str(&format!("- **{}.** {}\n", v.claim, v.finding));
        }
        if !self.leaderboard.is_empty() {
            m.push('\n');
            m.push_str(&super::leaderboard::to_markdown(&self.leaderboard, LEADERBOARD_BASELINE));
        }
        m.push_str("\n## Figures per strategy\n\n");
        m.push_str("| strategy | seeds | val loss | val accuracy | train−val gap | tokens/s | wall s | tokens to target | seconds to target | masking ms/step | stored mask bytes |\n");
        m.push_str("|---|---|---|---|---|---|---|---|---|---|---|\n");
        for s in &self.strategies {
            m.push_str(&format!(
                "| {} | {} | {} | {} | {} | {} | {} | {} ({}/{} reached) | {} | {} | {} |\n",
                s.strategy,
                s.seeds,
                cell(&s.final_val_loss),
                cell(&s.final_val_accuracy),
                cell(&s.train_val_gap),
                cell(&s.tokens_per_s),
                cell(&s.wall_s),
                cell(&s.tokens_to_target),
                s.reached_target,
                s.seeds,
                cell(&s.seconds_to_target),
                cell(&s.masking_ms_per_step),
                s.mask_bytes
            ));
        }
        m.push_str(&format!(
            "\nTarget validation loss for \"to target\": {} (the highest final median validation loss \
             among the strategies).\n",
            num(self.target_loss)
        ));
        if !self.audit.is_empty() {
            m.push_str("\n## Leakage audit\n\n| what | verdict | detail |\n|---|---|---|\n");
            for a in &self.audit {
                m.push_str(&format!(
                    "| {} | {} | {} |\n",
                    a.what,
                    if a.passed { "pass" } else { "FAIL" },
                    a.detail
                ));
            }
        }
        if !plot_files.is_empty() {
            m.push_str("\n## Loss curves\n\n");
            for p in plot_files {
                m.push_str(&format!("![{p}]({p})\n\n"));
            }
            m.push_str("Lines are the median over seeds, bands the min–max range.\n");
        }
        m.push_str("\n## Runs\n\n| strategy | seed | final val loss | final train loss | directory |\n|---|---|---|---|---|\n");
        for r in &self.runs {
            m.push_str(&format!(
                "| {} | {} | {} | {} | `{}` |\n",
                r.strategy,
                r.seed,
                num(r.final_val_loss),
                num(r.final_train_loss),
                r.run_dir
            ));
        }
        m
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

    fn run(strategy: &str, seed: u64, final_val: f64, speed: f64) -> RunRecord {
        let eval_curve = (0..=4)
            .map(|i| EvalPoint {
                tokens: i * 1000,
                seconds: i as f64 * 1000.0 / speed,
                loss: 8.0 - (8.0 - final_val) * i as f64 / 4.0,
                accuracy: 0.1 * i as f64,
            })
            .collect();
        RunRecord {
            strategy: strategy.into(),
            seed,
            train_curve: vec![CurvePoint { tokens: 0, loss: 8.0 }, CurvePoint { tokens: 4000, loss: final_val - 0.2 }],
            eval_curve,
            final_train_loss: final_val - 0.2,
            final_val_loss: final_val,
            final_val_accuracy: 0.4,
            tokens_per_s: speed,
            wall_s: 4000.0 / speed,
            masking_ms_per_step: 0.1,
            mask_bytes: if strategy == "static" { 1234 } else { 0 },
            run_dir: format!("runs/{strategy}-{seed}"),
        }
    }

    fn setup() -> Setup {
        Setup { model: "m".into(), data: "d".into(), token_budget: 4000, seeds: 3, unigram_loss: Some(7.0) }
    }

    #[test]
    fn separated_ranges_give_a_directional_verdict() {
        let runs = vec![
            run("static", 0, 5.0, 100.0),
            run("static", 1, 5.1, 100.0),
            run("static", 2, 5.2, 100.0),
            run("dynamic", 0, 4.5, 100.0),
            run("dynamic", 1, 4.6, 100.0),
            run("dynamic", 2, 4.7, 100.0),
        ];
        let r = build_report(setup(), runs, vec![]);
        assert!((r.target_loss - 5.1).abs() < 1e-12);
        let dynamic = &r.strategies[1];
        assert_eq!(dynamic.reached_target, 3);
        // dynamic reaches 5.1 before its last point; static's median seed exactly at its end.
        assert!(dynamic.tokens_to_target.unwrap().max < r.strategies[0].tokens_to_target.unwrap().min);
        let gen = &r.verdicts[2].finding;
        assert!(gen.contains("`dynamic` is better on every seed"), "{gen}");
        assert_eq!(r.strategies[0].mask_bytes, 1234);
        let md = r.to_markdown(&["loss.svg".into()]);
        assert!(md.contains("| dynamic | 3 | 4.600 [4.500–4.700]"), "{md}");
        assert!(md.contains("![loss.svg](loss.svg)"));
        // JSON keeps every field (serde_json's float parsing may differ in the last bit, so compare loosely).
        let back: Report = serde_json::from_str(&r.to_json()).unwrap();
        assert_eq!(back.strategies.len(), 2);
        assert_eq!(back.runs.len(), 6);
        assert!((back.target_loss - r.target_loss).abs() < 1e-12);
    }

    #[test]
    fn overlapping_ranges_are_called_inside_the_spread() {
        let runs = vec![
            run("static", 0, 5.0, 100.0),
            run("static", 1, 5.3, 100.0),
            run("dynamic", 0, 5.1, 100.0),
            run("dynamic", 1, 5.4, 100.0),
        ];
        let r = build_report(Setup { seeds: 2, ..setup() }, runs, vec![]);
        let gen = &r.verdicts[2].finding;
        assert!(gen.contains("inside the seed spread"), "{gen}");
        assert!(gen.contains("anecdotal"), "{gen}");
    }

    #[test]
    fn a_failed_audit_is_reported_loudly() {
        let audit = vec![
            AuditLine { what: "attention padding".into(), passed: true, detail: "gradients".into() },
            AuditLine { what: "attention causal".into(), passed: false, detail: "query 3 reads key 4".into() },
        ];
        let r = build_report(setup(), vec![run("static", 0, 5.0, 1.0)], audit);
        assert!(r.verdicts[1].finding.starts_with("LEAKAGE FOUND: attention causal: query 3 reads key 4"));
    }
}
