//! Dense masked attention through GEMMs: the honest baseline the fused kernel is benchmarked against.
//! It does what PyTorch's SDPA "math" path does: full score matrices S = scale·Q·Kᵀ + bias via GEMM,
//! a masked row softmax, out = P·V, and the matching backward, with one rayon task per (b, h) and a
//! single-threaded GEMM inside. The element-wise parts share the fused kernel's vectorized code.
//!
//! The additive `bias` is `[B, Hm, Tq, Tk]` (Hm = 1 or H) holding 0 where attention is allowed and −∞
//! where it is not ([`mask_bias`] builds it from a BlockMask).

use rayon::prelude::*;

use super::simd::{masked_softmax_rows, softmax_rows_grad};
use crate::strided_gemm::{strided_gemm, MatRef, Threads};
use super::AttnShape;
use crate::block_mask::BlockMask;

/// bias `[B, Hm, Tq, Tk]` ← 0 where `mask` allows, −∞ elsewhere.
pub fn mask_bias(bias: &mut [f32], mask: &BlockMask) {
    let dense = mask.to_dense();
    assert_eq!(bias.len(), dense.len(), "mask_bias: bias must be [B, Hm, Tq, Tk]");
    bias.iter_mut().zip(dense).for_each(|(x, a)| *x = if a { 0.0 } else { f32::NEG_INFINITY });
}

/// Dense forward. q `[B,H,Tq,D]`, k, v `[B,H,Tk,D]`, bias `[B,Hm,Tq,Tk]` → out `[B,H,Tq,D]`,
/// lse `[B,H,Tq]` and probs `[B,H,Tq,Tk]` (the softmax, kept for the backward), all overwritten.
#[allow(clippy::too_many_arguments)]
pub fn attention_forward_dense(out: &mut [f32], lse: &mut [f32], probs: &mut [f32], q: &[f32], k: &[f32], v: &[f32], bias: &[f32], bias_heads: usize, shape: AttnShape, scale: f32) {
    let AttnShape { batch, heads, tq, tk, head_dim: d } = shape;
    assert!(bias_heads == 1 || bias_heads == heads);
    assert_eq!(bias.len(), batch * bias_heads * tq * tk, "dense attention: bias must be [B,Hm,Tq,Tk]");
    assert_eq!(probs.len(), batch * heads * tq * tk, "dense attention: probs must be [B,H,Tq,Tk]");
    assert_eq!(out.len(), shape.q_len());
    assert_eq!(lse.len(), shape.lse_len());
    assert_eq!(q.len(), shape.q_len());
    assert_eq!(k.len(), shape.kv_len());
    assert_eq!(v.len(), shape.kv_len());
    if batch * heads * tq * tk * d == 0 {
        out.iter_mut().for_each(|x| *x = 0.0);
        lse.iter_mut().for_each(|x| *x = f32::NEG_INFINITY);
        return;
    }
    out.par_chunks_mut(tq * d).zip(lse.par_chunks_mut(tq)).zip(probs.par_chunks_mut(tq * tk)).enumerate().for_each(
        |(bh, ((o, l), p))| {
            let (b, h) = (bh / heads, bh % heads);
            let hb = if bias_heads == 1 { 0 } else { h };
            let bias_bh = &bias[(b * bias_heads + hb) * tq * tk..][..tq * tk];
            // S = scale · Q · Kᵀ   [Tq × Tk]
            strided_gemm(p, tk, 1, MatRef::rows(&q[bh * tq * d..][..tq * d], d), MatRef::transposed(&k[bh * tk * d..][..tk * d], d), tq, d, tk, scale, 0.0, Threads::Caller);
            // P = softmax(S + bias)
            masked_softmax_rows(p, bias_bh, l, tq, tk);
            // out = P · V   [Tq × D]
            strided_gemm(o, d, 1, MatRef::rows(p, tk), MatRef::rows(&v[bh * tk * d..][..tk * d], d), tq, tk, d, 1.0, 0.0, Threads::Caller);
        },
    );
}

/// Dense backward. probs `[B,H,Tq,Tk]` from the forward; `dprobs` is scratch of the same shape.
/// dq `[B,H,Tq,D]`, dk, dv `[B,H,Tk,D]` are overwritten.
#[allow(clippy::too_many_arguments)]
pub fn attention_backward_dense(dq: &mut [f32], dk: &mut [f32], dv: &mut [f32], dprobs: &mut [f32], dout: &[f32], q: &[f32], k: &[f32], v: &[f32], probs: &[f32], shape: AttnShape, scale: f32) {
    let AttnShape { batch, heads, tq, tk, head_dim: d } = shape;
    assert_eq!(probs.len(), batch * heads * tq * tk);
    assert_eq!(dprobs.len(), probs.len());
    assert_eq!(dq.len(), shape.q_len());
    assert_eq!(dk.len(), shape.kv_len());
    assert_eq!(dv.len(), shape.kv_len());
    assert_eq!(dout.len(), shape.q_len());
    if batch * heads * tq * tk * d == 0 {
        dq.iter_mut().chain(dk.iter_mut()).chain(dv.iter_mut()).for_each(|x| *x = 0.0);
        return;
    }
    dq.par_chunks_mut(tq * d)
        .zip(dk.par_chunks_mut(tk * d))
        .zip(dv.par_chunks_mut(tk * d))
        .zip(dprobs.par_chunks_mut(tq * tk))
        .enumerate()
        .for_each(|(bh, (((dq, dk), dv), dp))| {
            let p = &probs[bh * tq * tk..][..tq * tk];
            let q = &q[bh * tq * d..][..tq * d];
            let k = &k[bh * tk * d..][..tk * d];
            let v = &v[bh * tk * d..][..tk * d];
            let dout = &dout[bh * tq * d..][..tq * d];
            // dV = Pᵀ · dO   (from out = P·V)
            strided_gemm(dv, d, 1, MatRef::transposed(p, tk), MatRef::rows(dout, d), tk, tq, d, 1.0, 0.0, Threads::Caller);
            // dP = dO · Vᵀ
            strided_gemm(dp, tk, 1, MatRef::rows(dout, d), MatRef::transposed(v, d), tq, d, tk, 1.0, 0.0, Threads::Caller);
            // dS = P ∘ (dP − Σ_j P·dP)   (softmax backward)
            softmax_rows_grad(dp, p, tq, tk);
            // dQ = scale · dS · K, dK = scale · dSᵀ · Q   (from S = scale·Q·Kᵀ)
            strided_gemm(dq, d, 1, MatRef::rows(dp, tk), MatRef::rows(k, d), tq, tk, d, scale, 0.0, Threads::Caller);
            strided_gemm(dk, d, 1, MatRef::transposed(dp, tk), MatRef::rows(q, d), tk, tq, d, scale, 0.0, Threads::Caller);
        });
}
