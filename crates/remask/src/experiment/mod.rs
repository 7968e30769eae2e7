//! The comparison experiment (`remask compare`): the same model, budget and data order trained once
//! per (regime, seed, strategy), evaluated on the same fixed validation masks, out of domain and on
//! minimal pairs, summarised in a report of paired differences with intervals, verdicts and plots.
//!
//! - `config.rs`: [`CompareConfig`], presets, strategy names → [`Strategy`].
//! - `plan.rs`: data-repetition regimes and the runs they need (identical runs trained once).
//! - `subset.rs`: a regime's corpus subset in a seed's order ([`SubsetSource`]).
//! - `eval_sets.rs`: the shared evaluation sets (validation, out-of-domain, minimal pairs).
//! - `runner.rs`: [`run_compare`], training and evaluating every run, audits, outputs.
//! - `resume.rs`: what `compare --resume` keeps of an interrupted comparison (finished runs'
//!   `result.json`, partial runs' checkpoints and evaluation logs, prepared data).
//! - `record.rs`: what one run contributes; `measure.rs`: the measures and which way is better.
//! - `paired.rs`: paired differences over seeds with Student-t intervals ([`Comparison`]).
//! - `stats.rs`: median and range, tokens to a target loss; `report.rs`: report and verdicts;
//!   `plot.rs`: loss curves and the regime map.

pub mod config;
pub mod eval_sets;
pub mod leaderboard;
pub mod measure;
pub mod paired;
pub mod plan;
pub mod plot;
pub mod record;
pub mod report;
pub mod resume;
pub mod runner;
pub mod stats;
pub mod subset;

pub use config::{
    CompareConfig, CompareSection, CompareTask, Strategy, BUILTIN_STRATEGIES, CLM_STRATEGIES,
    PRESETS,
};
pub use eval_sets::{label_counts, unigram_loss};
pub use leaderboard::{leaderboard, LeaderboardRow};
pub use measure::{Measure, MEASURES};
pub use paired::Comparison;
pub use plan::Regime;
pub use record::{CurvePoint, EvalPoint, RunRecord};
pub use report::{build_report, AuditLine, FailedRun, Report, Setup, StrategySummary, Verdict};
pub use runner::{rerender, run_compare, run_compare_on, CompareOptions, CompareOutcome};
pub use stats::{time_to_target, Spread};
pub use subset::SubsetSource;
