//! The comparison experiment (`remask compare`): the same model, data and token budget trained once
//! per (strategy, seed), evaluated on the same fixed validation masks, summarised in a report with
//! verdicts and plots.

pub mod config;
pub mod leaderboard;
pub mod plot;
pub mod record;
pub mod report;
pub mod resume;
pub mod runner;
pub mod stats;

pub use config::{CompareConfig, CompareSection, BUILTIN_STRATEGIES};
pub use leaderboard::{leaderboard, LeaderboardRow};
pub use record::{CurvePoint, EvalPoint, RunRecord};
pub use report::{build_report, AuditLine, Report, Setup, StrategySummary, Verdict};
pub use runner::{run_compare, CompareOptions, CompareOutcome};
pub use stats::{time_to_target, Spread};
