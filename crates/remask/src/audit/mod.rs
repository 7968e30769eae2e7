//! Leakage audit: checks, on the real model, that the output at each position depends on no input
//! position its attention mask forbids (future tokens, other documents, padding, other rows), by
//! gradients and by perturbation, and that MLM batches do not show the model its own targets beyond
//! the configured "unchanged" share.
//!
//! - [`engine`]: the two methods (gradients, perturbation) over the inputs an output reads, and the
//!   report ([`AuditReport`]) they fill.
//! - [`audit_model`]: a model as it runs, against a mask kind ([`AuditReport`], one line per kind).
//! - [`audit_with_mask`]: the model's layers run with any compiled mask (a planted leak in tests).
//! - [`audit_seq2seq`] / [`audit_seq2seq_with_masks`]: an encoder-decoder's decoder (causal
//!   self-attention, cross-attention over the real source tokens), as it runs or with planted masks.
//! - [`audit_all`]: every audit of a model as it runs (the CLI's entry point).
//! - [`Reach`]: the allowed relation, closed over the model's layers.
//! - [`DependencyProbe`]: the model's layers with an injected mask, and d(output at q)/d(inputs).
//! - [`audit_masking`]: the MLM targets of real batches.

pub mod engine;
pub mod leakage;
pub mod probe;
pub mod reach;
pub mod sample;
pub mod seq2seq;
pub mod targets;

pub use engine::{AuditOptions, AuditReport, Violation};
pub use leakage::{audit_all, audit_model, audit_with_mask, kind_name};
pub use probe::DependencyProbe;
pub use reach::Reach;
pub use sample::audit_batch;
pub use seq2seq::{
    audit_seq2seq, audit_seq2seq_with_masks, Seq2SeqExpected, CROSS_PADDING, DECODER_CAUSAL,
};
pub use targets::{audit_masking, MaskingAudit};

#[cfg(test)]
mod tests;
