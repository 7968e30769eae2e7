//! Masked scaled-dot-product attention over a [`BlockMask`](crate::block_mask::BlockMask).
//!
//! Shapes: B = batch, H = heads, Tq = query positions, Tk = key positions, D = head dimension.
//! `q` is `[B, H, Tq, D]`, `k` and `v` are `[B, H, Tk, D]`, `out` is `[B, H, Tq, D]` and `lse`
//! (the log-sum-exp of each query's masked, scaled scores, saved for the backward pass) is `[B, H, Tq]`.
//!
//! `out[b,h,i] = Σ_j softmax_j(scale · q[b,h,i]·k[b,h,j] | mask allows (b,h,i,j)) · v[b,h,j]`.
//! A query whose every key is masked gets `out = 0`, `lse = -∞`, and zero gradients (never NaN).
//!
//! - [`attention_forward`] / [`attention_backward`]: the fused, tiled (flash-style, online softmax)
//!   kernels; they never materialize a whole T×T score matrix and skip empty tiles.
//! - [`attention_forward_bf16`] / [`attention_backward_bf16`]: the same kernels with every tile
//!   product on bf16 operands, accumulating in f32 (mixed precision; AMX where present).
//! - [`attention_forward_reference`] / [`attention_backward_reference`]: the plain twins (of both;
//!   the bf16 kernels agree with them to bf16's rounding, see `tests.rs`).
//! - [`dense`]: an efficient dense-masked implementation (GEMM scores, masked softmax, GEMM with V),
//!   the honest baseline the benchmarks compare against.

use crate::block_mask::BlockMask;

pub mod dense;
mod fused;
mod fused_bf16;
mod microkernel;
mod reference;
mod scratch;
mod simd;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_bf16;
#[cfg(test)]
mod tests_common;
mod tile_softmax;
mod transpose;

pub use reference::{attention_backward_reference, attention_forward_reference};

/// Sizes of one attention call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AttnShape {
    /// B: batch rows.
    pub batch: usize,
    /// H: attention heads.
    pub heads: usize,
    /// Tq: query positions.
    pub tq: usize,
    /// Tk: key positions.
    pub tk: usize,
    /// D: head dimension.
    pub head_dim: usize,
}

impl AttnShape {
    /// Elements of `q` / `out`: B·H·Tq·D.
    pub fn q_len(&self) -> usize {
        self.batch * self.heads * self.tq * self.head_dim
    }
    /// Elements of `k` / `v`: B·H·Tk·D.
    pub fn kv_len(&self) -> usize {
        self.batch * self.heads * self.tk * self.head_dim
    }
    /// Elements of `lse`: B·H·Tq.
    pub fn lse_len(&self) -> usize {
        self.batch * self.heads * self.tq
    }

    /// Checks buffer sizes and that the mask fits this shape (programmer errors: panics).
    pub(crate) fn check(&self, mask: &BlockMask, q: usize, k: usize, v: usize) {
        assert_eq!(q, self.q_len(), "attention: q must be [B,H,Tq,D]");
        assert_eq!(k, self.kv_len(), "attention: k must be [B,H,Tk,D]");
        assert_eq!(v, self.kv_len(), "attention: v must be [B,H,Tk,D]");
        assert_eq!(
            mask.batch(),
            self.batch,
            "attention: mask batch differs from B"
        );
        assert_eq!(mask.tq(), self.tq, "attention: mask Tq differs");
        assert_eq!(mask.tk(), self.tk, "attention: mask Tk differs");
        assert!(
            mask.heads() == 1 || mask.heads() == self.heads,
            "attention: mask heads must be 1 or H"
        );
    }
}

/// Fused masked attention forward.
/// q `[B,H,Tq,D]`, k, v `[B,H,Tk,D]` → out `[B,H,Tq,D]` (overwritten), lse `[B,H,Tq]` (overwritten).
/// Fully masked query rows give out = 0 and lse = -∞.
#[allow(clippy::too_many_arguments)]
pub fn attention_forward(
    out: &mut [f32],
    lse: &mut [f32],
    q: &[f32],
    k: &[f32],
    v: &[f32],
    mask: &BlockMask,
    shape: AttnShape,
    scale: f32,
) {
    fused::forward(out, lse, q, k, v, mask, shape, scale)
}

/// Fused masked attention backward. dout, out `[B,H,Tq,D]`, lse `[B,H,Tq]` from the forward.
/// dq `[B,H,Tq,D]`, dk, dv `[B,H,Tk,D]` are OVERWRITTEN (not accumulated).
#[allow(clippy::too_many_arguments)]
pub fn attention_backward(
    dq: &mut [f32],
    dk: &mut [f32],
    dv: &mut [f32],
    dout: &[f32],
    q: &[f32],
    k: &[f32],
    v: &[f32],
    out: &[f32],
    lse: &[f32],
    mask: &BlockMask,
    shape: AttnShape,
    scale: f32,
) {
    fused::backward(dq, dk, dv, dout, q, k, v, out, lse, mask, shape, scale)
}

/// [`attention_forward`] with bf16 tile products (f32 softmax, log-sum-exp and accumulation).
/// Panics when the CPU has no bf16 support (callers refuse bf16 earlier, with a message).
#[allow(clippy::too_many_arguments)]
pub fn attention_forward_bf16(
    out: &mut [f32],
    lse: &mut [f32],
    q: &[f32],
    k: &[f32],
    v: &[f32],
    mask: &BlockMask,
    shape: AttnShape,
    scale: f32,
) {
    let kernel = crate::cpu::bf16_kernel().expect(crate::cpu::BF16_UNSUPPORTED);
    fused_bf16::forward(kernel, out, lse, q, k, v, mask, shape, scale)
}

/// [`attention_backward`] with bf16 tile products (f32 softmax gradient and accumulation).
/// Panics when the CPU has no bf16 support.
#[allow(clippy::too_many_arguments)]
pub fn attention_backward_bf16(
    dq: &mut [f32],
    dk: &mut [f32],
    dv: &mut [f32],
    dout: &[f32],
    q: &[f32],
    k: &[f32],
    v: &[f32],
    out: &[f32],
    lse: &[f32],
    mask: &BlockMask,
    shape: AttnShape,
    scale: f32,
) {
    let kernel = crate::cpu::bf16_kernel().expect(crate::cpu::BF16_UNSUPPORTED);
    fused_bf16::backward(
        kernel, dq, dk, dv, dout, q, k, v, out, lse, mask, shape, scale,
    )
}
