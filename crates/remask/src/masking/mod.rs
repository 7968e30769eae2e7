//! MLM masking: which input tokens are hidden and must be predicted, how they are corrupted, and when
//! that is decided.
//!
//! - [`MaskingStrategy`] chooses positions: [`TokenMasking`], [`WholeWordMasking`], [`SpanMasking`],
//!   [`PmiMasking`] (collocations from an [`NgramVocab`] built at `prepare` time by [`pmi_score`]).
//!   To add a strategy, implement the trait in a new file, add a [`StrategyKind`] variant and a match
//!   arm in [`strategy_for`].
//! - [`Replacement`] corrupts the chosen positions (80% mask / 10% random / 10% unchanged by default).
//! - [`Masker`] ties them together for one vocabulary and masks a [`TokenRow`] from a [`MaskKey`].
//! - [`MaskPlan`] owns *when* masks are decided ([`When`]): static (K copies stored at `prepare` time,
//!   [`static_store`]), dynamic (per batch), adaptive (per batch, weighted by [`AdaptiveStats`]) or
//!   per token id (per batch, a bounded probability per id from the same statistics,
//!   [`TokenIdAdaptive`]), and the fixed evaluation masks. [`MaskingConfig::rate_at`] is the rate schedule it follows.

pub mod adaptive;
pub mod config;
pub mod masker;
pub mod ngram_vocab;
pub mod plan;
pub mod pmi;
pub mod pmi_score;
pub mod replace;
pub mod row;
pub mod span;
pub mod static_store;
pub mod stats;
pub mod strategy;
pub mod token;
pub mod token_id;
pub mod whole_word;

#[cfg(test)]
mod tests;

pub use adaptive::{Adaptive, AdaptiveStats};
pub use config::{
    CountRule, Language, MaskingConfig, PmiConfig, ScheduleKind, SpanConfig, StrategyKind, When,
};
pub use masker::{strategy_for, MaskScratch, Masker, Vocab};
pub use ngram_vocab::{Ngram, NgramMeta, NgramStats, NgramVocab, NGRAMS_FILE};
pub use plan::{MaskPlan, StaticWriter, EVAL_EPOCH};
pub use pmi::PmiMasking;
pub use pmi_score::{build_vocab, COUNT_CAP};
pub use replace::Replacement;
pub use row::{MaskKey, MaskedRow, TokenRow, TokenRowBuf};
pub use span::{sample_span_length, SpanMasking};
pub use static_store::{StaticCopies, StaticMeta, StoredCopies};
pub use stats::{collect_ngram_stats, collect_stats, MaskingStats, NgramMaskStats};
pub use strategy::{MaskingStrategy, RowView, Scratch, SegmentScratch, SelectScratch, Selection};
pub use token::TokenMasking;
pub use token_id::TokenIdAdaptive;
pub use whole_word::WholeWordMasking;
