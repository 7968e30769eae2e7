//! Dense masked attention through GEMMs: the honest baseline the fused kernel is benchmarked against.
//! It does what PyTorch's SDPA "math" path does: full score matrices S = scale·Q·Kᵀ + bias via GEMM,
//! a masked row softmax, out = P·V, and the matching backward, with one rayon task per (b, h) and a
//! single-threaded GEMM inside. The element-wise parts share the fused kernel's vectorized code.
//!
//! The additive `bias` is `[B, Hm, Tq, Tk]` (Hm = 1 or H) holding 0 where attention is allowed and −∞
//! where it is not ([`mask_bias`] builds it from a BlockMask).
//!
//! The `_bf16` variants are the baseline of the bf16 fused kernel: the same steps with every product
//! on bf16 operands (packed per head, f32 accumulation), softmax in f32.

use rayon::prelude::*;

use super::scratch::with_bf16_scratch;
use super::simd::{masked_softmax_rows, softmax_rows_grad};
use super::AttnShape;
use crate::block_mask::BlockMask;
use crate::cpu::Bf16Kernel;
use crate::gemm_bf16::pack::{self, Split};
use crate::gemm_bf16::{
    kernel_product, lhs_len, lhs_stride, rhs_len, rhs_panel_len, LhsView, Product, RhsView, Start,
    K_STEP,
};
use crate::strided_gemm::{strided_gemm, MatRef, Threads};

/// How the dense path multiplies: `c[m×n] (row stride ldc) = alpha·A·B` on the calling thread.
#[derive(Clone, Copy)]
enum Products {
    F32,
    Bf16(Bf16Kernel),
}

impl Products {
    #[allow(clippy::too_many_arguments)]
    fn mm(
        self,
        c: &mut [f32],
        ldc: usize,
        a: MatRef<'_>,
        b: MatRef<'_>,
        m: usize,
        k: usize,
        n: usize,
        alpha: f32,
    ) {
        match self {
            Products::F32 => strided_gemm(c, ldc, 1, a, b, m, k, n, alpha, 0.0, Threads::Caller),
            Products::Bf16(kernel) => {
                let (ld, pl) = (lhs_stride(k), rhs_panel_len(k));
                let a_len = lhs_len(m, ld);
                with_bf16_scratch(a_len + rhs_len(n, pl), |buf| {
                    let (pa, pb) = buf.split_at_mut(a_len);
                    pack::lhs(pa, ld, a, m, k, 1.0, Split::Caller);
                    pack::rhs(pb, pl, b, k, n, Split::Caller);
                    let p = Product {
                        a: LhsView { data: pa, ld },
                        b: RhsView {
                            data: pb,
                            panel_len: pl,
                        },
                        m,
                        n,
                        kpad: k.max(1).div_ceil(K_STEP) * K_STEP,
                        alpha,
                        start: Start::Zero,
                    };
                    kernel_product(kernel, c, ldc, &p);
                });
            }
        }
    }
}

/// bias `[B, Hm, Tq, Tk]` ← 0 where `mask` allows, −∞ elsewhere.
pub fn mask_bias(bias: &mut [f32], mask: &BlockMask) {
    let dense = mask.to_dense();
    assert_eq!(
        bias.len(),
        dense.len(),
        "mask_bias: bias must be [B, Hm, Tq, Tk]"
    );
    bias.iter_mut()
        .zip(dense)
        .for_each(|(x, a)| *x = if a { 0.0 } else { f32::NEG_INFINITY });
}

/// Dense forward. q `[B,H,Tq,D]`, k, v `[B,H,Tk,D]`, bias `[B,Hm,Tq,Tk]` → out `[B,H,Tq,D]`,
/// lse `[B,H,Tq]` and probs `[B,H,Tq,Tk]` (the softmax, kept for the backward), all overwritten.
#[allow(clippy::too_many_arguments)]
pub fn attention_forward_dense(
    out: &mut [f32],
    lse: &mut [f32],
    probs: &mut [f32],
    q: &[f32],
    k: &[f32],
    v: &[f32],
    bias: &[f32],
    bias_heads: usize,
    shape: AttnShape,
    scale: f32,
) {
    forward(
        Products::F32,
        out,
        lse,
        probs,
        q,
        k,
        v,
        bias,
        bias_heads,
        shape,
        scale,
    )
}

/// [`attention_forward_dense`] with bf16 products. Panics without CPU support for bf16.
#[allow(clippy::too_many_arguments)]
pub fn attention_forward_dense_bf16(
    out: &mut [f32],
    lse: &mut [f32],
    probs: &mut [f32],
    q: &[f32],
    k: &[f32],
    v: &[f32],
    bias: &[f32],
    bias_heads: usize,
    shape: AttnShape,
    scale: f32,
) {
    let kernel = crate::cpu::bf16_kernel().expect(crate::cpu::BF16_UNSUPPORTED);
    forward(
        Products::Bf16(kernel),
        out,
        lse,
        probs,
        q,
        k,
        v,
        bias,
        bias_heads,
        shape,
        scale,
    )
}

#[allow(clippy::too_many_arguments)]
fn forward(
    mm: Products,
    out: &mut [f32],
    lse: &mut [f32],
    probs: &mut [f32],
    q: &[f32],
    k: &[f32],
    v: &[f32],
    bias: &[f32],
    bias_heads: usize,
    shape: AttnShape,
    scale: f32,
) {
    let AttnShape {
        batch,
        heads,
        tq,
        tk,
        head_dim: d,
    } = shape;
    assert!(bias_heads == 1 || bias_heads == heads);
    assert_eq!(
        bias.len(),
        batch * bias_heads * tq * tk,
        "dense attention: bias must be [B,Hm,Tq,Tk]"
    );
    assert_eq!(
        probs.len(),
        batch * heads * tq * tk,
        "dense attention: probs must be [B,H,Tq,Tk]"
    );
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
    out.par_chunks_mut(tq * d)
        .zip(lse.par_chunks_mut(tq))
        .zip(probs.par_chunks_mut(tq * tk))
        .enumerate()
        .for_each(|(bh, ((o, l), p))| {
            let (b, h) = (bh / heads, bh % heads);
            let hb = if bias_heads == 1 { 0 } else { h };
            let bias_bh = &bias[(b * bias_heads + hb) * tq * tk..][..tq * tk];
            // S = scale · Q · Kᵀ   [Tq × Tk]
            mm.mm(
                p,
                tk,
                MatRef::rows(&q[bh * tq * d..][..tq * d], d),
                MatRef::transposed(&k[bh * tk * d..][..tk * d], d),
                tq,
                d,
                tk,
                scale,
            );
            // P = softmax(S + bias)
            masked_softmax_rows(p, bias_bh, l, tq, tk);
            // out = P · V   [Tq × D]
            mm.mm(
                o,
                d,
                MatRef::rows(p, tk),
                MatRef::rows(&v[bh * tk * d..][..tk * d], d),
                tq,
                tk,
                d,
                1.0,
            );
        });
}

/// Dense backward. probs `[B,H,Tq,Tk]` from the forward; `dprobs` is scratch of the same shape.
/// dq `[B,H,Tq,D]`, dk, dv `[B,H,Tk,D]` are overwritten.
#[allow(clippy::too_many_arguments)]
pub fn attention_backward_dense(
    dq: &mut [f32],
    dk: &mut [f32],
    dv: &mut [f32],
    dprobs: &mut [f32],
    dout: &[f32],
    q: &[f32],
    k: &[f32],
    v: &[f32],
    probs: &[f32],
    shape: AttnShape,
    scale: f32,
) {
    backward(
        Products::F32,
        dq,
        dk,
        dv,
        dprobs,
        dout,
        q,
        k,
        v,
        probs,
        shape,
        scale,
    )
}

/// [`attention_backward_dense`] with bf16 products. Panics without CPU support for bf16.
#[allow(clippy::too_many_arguments)]
pub fn attention_backward_dense_bf16(
    dq: &mut [f32],
    dk: &mut [f32],
    dv: &mut [f32],
    dprobs: &mut [f32],
    dout: &[f32],
    q: &[f32],
    k: &[f32],
    v: &[f32],
    probs: &[f32],
    shape: AttnShape,
    scale: f32,
) {
    let kernel = crate::cpu::bf16_kernel().expect(crate::cpu::BF16_UNSUPPORTED);
    backward(
        Products::Bf16(kernel),
        dq,
        dk,
        dv,
        dprobs,
        dout,
        q,
        k,
        v,
        probs,
        shape,
        scale,
    )
}

#[allow(clippy::too_many_arguments)]
fn backward(
    mm: Products,
    dq: &mut [f32],
    dk: &mut [f32],
    dv: &mut [f32],
    dprobs: &mut [f32],
    dout: &[f32],
    q: &[f32],
    k: &[f32],
    v: &[f32],
    probs: &[f32],
    shape: AttnShape,
    scale: f32,
) {
    let AttnShape {
        batch,
        heads,
        tq,
        tk,
        head_dim: d,
    } = shape;
    assert_eq!(probs.len(), batch * heads * tq * tk);
    assert_eq!(dprobs.len(), probs.len());
    assert_eq!(dq.len(), shape.q_len());
    assert_eq!(dk.len(), shape.kv_len());
    assert_eq!(dv.len(), shape.kv_len());
    assert_eq!(dout.len(), shape.q_len());
    if batch * heads * tq * tk * d == 0 {
        dq.iter_mut()
            .chain(dk.iter_mut())
            .chain(dv.iter_mut())
            .for_each(|x| *x = 0.0);
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
            mm.mm(
                dv,
                d,
                MatRef::transposed(p, tk),
                MatRef::rows(dout, d),
                tk,
                tq,
                d,
                1.0,
            );
            // dP = dO · Vᵀ
            mm.mm(
                dp,
                tk,
                MatRef::rows(dout, d),
                MatRef::transposed(v, d),
                tq,
                d,
                tk,
                1.0,
            );
            // dS = P ∘ (dP − Σ_j P·dP)   (softmax backward)
            softmax_rows_grad(dp, p, tq, tk);
            // dQ = scale · dS · K, dK = scale · dSᵀ · Q   (from S = scale·Q·Kᵀ)
            mm.mm(
                dq,
                d,
                MatRef::rows(dp, tk),
                MatRef::rows(k, d),
                tq,
                tk,
                d,
                scale,
            );
            mm.mm(
                dk,
                d,
                MatRef::transposed(dp, tk),
                MatRef::rows(q, d),
                tk,
                tq,
                d,
                scale,
            );
        });
}
