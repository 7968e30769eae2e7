//! Attention masks: which key positions each query position may read.
//!
//! A mask is a predicate `(batch, head, q, kv) -> bool`, `true` = may attend (FlexAttention's
//! convention), compiled per batch into a `BlockMask` that the fused attention kernel consumes.

pub mod spec;

pub use spec::AttentionMaskSpec;
