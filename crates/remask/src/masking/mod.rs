//! MLM masking: which input tokens are hidden and must be predicted, and how they are corrupted.
//!
//! - [`MaskingStrategy`] chooses positions: [`TokenMasking`], [`WholeWordMasking`], [`SpanMasking`].
//!   To add a strategy, implement the trait in a new file, add a [`StrategyKind`] variant and a match
//!   arm in [`strategy_for`].
//! - [`Replacement`] corrupts the chosen positions (80% mask / 10% random / 10% unchanged by default).
//! - [`MaskingConfig::rate_at`] is the rate schedule; [`When`] says whether masks are decided at
//!   `prepare` time (static, K stored copies), per batch (dynamic) or per batch from model feedback
//!   ([`AdaptiveStats`]).
//! - [`Masker`] ties them together for one vocabulary and masks a row from a key.

pub mod adaptive;
pub mod config;
pub mod masker;
pub mod replace;
pub mod span;
pub mod stats;
pub mod strategy;
pub mod token;
pub mod whole_word;

#[cfg(test)]
mod tests;

pub use adaptive::AdaptiveStats;
pub use config::{CountRule, Language, MaskingConfig, ScheduleKind, SpanConfig, StrategyKind, When};
pub use masker::{strategy_for, MaskScratch, Masker};
pub use replace::Replacement;
pub use span::{sample_span_length, SpanMasking};
pub use stats::{collect_stats, key_epoch, MaskingStats, StatRow};
pub use strategy::{MaskingStrategy, RowView, Scratch};
pub use token::TokenMasking;
pub use whole_word::WholeWordMasking;
