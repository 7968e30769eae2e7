//! Masks of the decoder side of an encoder-decoder: cross-attention padding and causal
//! self-attention over the decoder's real tokens.

use remask_kernels::block_mask::BlockMask;

use super::MaskFn;

/// Decoder → encoder attention: decoder query `q` of row `b` reads encoder keys `k < src_lengths[b]`.
/// `[B, 1, Tq, Tk]` with B = `src_lengths.len()`, tiles of `tile`.
pub fn cross_attention_mask(src_lengths: &[u32], tq: usize, tk: usize, tile: usize) -> BlockMask {
    MaskFn::padding(src_lengths).compile(src_lengths.len(), 1, tq, tk, tile)
}

/// Decoder self-attention: causal over the first `lengths[b]` decoder tokens. `[B, 1, Td, Td]`.
pub fn decoder_self_attention_mask(lengths: &[u32], td: usize, tile: usize) -> BlockMask {
    (MaskFn::causal() & MaskFn::padding(lengths)).compile(lengths.len(), 1, td, td, tile)
}
