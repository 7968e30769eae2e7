//! Attention masks: which key positions each query position may read.
//!
//! A mask is a predicate `(batch, head, q, kv) -> bool`, `true` = may attend (FlexAttention's
//! convention) — see [`MaskFn`] for the built-ins and the combinators — compiled per batch into a
//! [`BlockMask`] that the fused attention kernel consumes. [`AttentionMaskSpec`] is what a config
//! names; [`AttentionMaskSpec::block_mask`] builds its mask for a batch.

pub mod bench;
pub mod cross;
pub mod predicate;
pub mod show;
pub mod spec;

pub use cross::{cross_attention_mask, decoder_self_attention_mask};
pub use predicate::{DocumentRuns, MaskClosure, MaskFn};
pub use remask_kernels::block_mask::{BlockMask, TileKind, DEFAULT_TILE};
pub use spec::AttentionMaskSpec;

#[cfg(test)]
mod tests;
