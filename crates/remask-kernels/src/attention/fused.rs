//! Fused tiled attention (FlashAttention-2 style) over a BlockMask.
//!
//! Forward: one rayon task per (b, h, query tile). For each non-empty key tile: S = scale·Q_t·K_tᵀ
//! (a small GEMM), drop masked elements of partial tiles, an online-softmax step (running max and
//! sum per query), rescale the output accumulator, O_t += P·V_t. Only a tile_q × tile_k score block
//! exists at any time.
//!
//! Backward: one rayon task per (b, h), key tiles outer, query tiles inner; P is recomputed from the
//! saved lse, so nothing T×T is stored:
//!   P = exp(scale·Q_t·K_tᵀ − lse)        (forward: out = P·V)
//!   dV_t += Pᵀ·dO_t                       (from out = P·V)
//!   dP = dO_t·V_tᵀ                        (from out = P·V)
//!   dS = P ∘ (dP − D), D_i = dO_i·out_i   (softmax backward)
//!   dQ_t += scale·dS·K_t, dK_t += scale·dSᵀ·Q_t   (from S = scale·Q·Kᵀ)

use rayon::prelude::*;

use super::simd::{dot, online_softmax_step, probs_from_lse, softmax_grad};
use super::tile_gemm::tile_gemm;
use super::AttnShape;
use crate::block_mask::{BlockMask, TileKind};

struct FwdScratch {
    s: Vec<f32>,
    mrow: Vec<f32>,
    lrow: Vec<f32>,
    alpha: Vec<f32>,
}

/// q `[B,H,Tq,D]`, k, v `[B,H,Tk,D]` → out `[B,H,Tq,D]`, lse `[B,H,Tq]` (overwritten).
#[allow(clippy::too_many_arguments)]
pub(super) fn forward(out: &mut [f32], lse: &mut [f32], q: &[f32], k: &[f32], v: &[f32], mask: &BlockMask, shape: AttnShape, scale: f32) {
    shape.check(mask, q.len(), k.len(), v.len());
    assert_eq!(out.len(), shape.q_len(), "attention_forward: out must be [B,H,Tq,D]");
    assert_eq!(lse.len(), shape.lse_len(), "attention_forward: lse must be [B,H,Tq]");
    let AttnShape { heads, tq, tk, head_dim: d, .. } = shape;
    if shape.lse_len() == 0 {
        return;
    }
    if d == 0 {
        lse.iter_mut().for_each(|x| *x = f32::NEG_INFINITY);
        return;
    }
    let (bq, bk) = (mask.tile_q(), mask.tile_k());
    let words = mask.words_per_row();
    out.par_chunks_mut(tq * d).zip(lse.par_chunks_mut(tq)).enumerate().for_each(|(bh, (out_bh, lse_bh))| {
        let (b, h) = (bh / heads, bh % heads);
        let q_bh = &q[bh * tq * d..(bh + 1) * tq * d];
        let k_bh = &k[bh * tk * d..(bh + 1) * tk * d];
        let v_bh = &v[bh * tk * d..(bh + 1) * tk * d];
        out_bh.par_chunks_mut(bq * d).zip(lse_bh.par_chunks_mut(bq)).enumerate().for_each_init(
            || FwdScratch { s: vec![0.0; bq * bk], mrow: vec![0.0; bq], lrow: vec![0.0; bq], alpha: vec![0.0; bq] },
            |sc, (qt, (o, l))| {
                let m = l.len();
                let q0 = qt * bq;
                let q_t = &q_bh[q0 * d..(q0 + m) * d];
                sc.mrow[..m].iter_mut().for_each(|x| *x = f32::NEG_INFINITY);
                sc.lrow[..m].iter_mut().for_each(|x| *x = 0.0);
                o.iter_mut().for_each(|x| *x = 0.0);
                for kt in 0..mask.n_k_tiles() {
                    let kind = mask.kind(b, h, qt, kt);
                    if kind == TileKind::Empty {
                        continue;
                    }
                    let (k0, n) = (kt * bk, mask.tile_cols(kt));
                    // pass 1: S = scale · Q_t · K_tᵀ   [m × n]
                    tile_gemm(&mut sc.s, bk, q_t, d, false, &k_bh[k0 * d..(k0 + n) * d], d, true, m, d, n, false, scale);
                    // pass 2: mask, online softmax; S becomes exp(S − m_new)
                    let bits = if kind == TileKind::Partial { mask.tile_bits(b, h, qt, kt) } else { None };
                    online_softmax_step(&mut sc.s, bk, m, n, bits, words, &mut sc.mrow[..m], &mut sc.lrow[..m], &mut sc.alpha[..m]);
                    for i in 0..m {
                        let a = sc.alpha[i];
                        if a != 1.0 {
                            o[i * d..(i + 1) * d].iter_mut().for_each(|x| *x *= a);
                        }
                    }
                    // pass 3: O_t += P · V_t   [m × d]
                    tile_gemm(o, d, &sc.s, bk, false, &v_bh[k0 * d..(k0 + n) * d], d, false, m, n, d, true, 1.0);
                }
                // pass 4: normalise; fully masked rows stay 0 with lse = −∞
                for i in 0..m {
                    let li = sc.lrow[i];
                    if li > 0.0 {
                        let inv = 1.0 / li;
                        o[i * d..(i + 1) * d].iter_mut().for_each(|x| *x *= inv);
                        l[i] = sc.mrow[i] + li.ln();
                    } else {
                        o[i * d..(i + 1) * d].iter_mut().for_each(|x| *x = 0.0);
                        l[i] = f32::NEG_INFINITY;
                    }
                }
            },
        );
    });
}

struct BwdScratch {
    p: Vec<f32>,
    dp: Vec<f32>,
    drow: Vec<f32>,
}

/// Backward; dq `[B,H,Tq,D]`, dk, dv `[B,H,Tk,D]` are overwritten.
#[allow(clippy::too_many_arguments)]
pub(super) fn backward(
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
    shape.check(mask, q.len(), k.len(), v.len());
    assert_eq!(dq.len(), shape.q_len(), "attention_backward: dq must be [B,H,Tq,D]");
    assert_eq!(dk.len(), shape.kv_len(), "attention_backward: dk must be [B,H,Tk,D]");
    assert_eq!(dv.len(), shape.kv_len(), "attention_backward: dv must be [B,H,Tk,D]");
    assert_eq!(dout.len(), shape.q_len(), "attention_backward: dout must be [B,H,Tq,D]");
    assert_eq!(out.len(), shape.q_len(), "attention_backward: out must be [B,H,Tq,D]");
    assert_eq!(lse.len(), shape.lse_len(), "attention_backward: lse must be [B,H,Tq]");
    dq.iter_mut().chain(dk.iter_mut()).chain(dv.iter_mut()).for_each(|x| *x = 0.0);
    let AttnShape { batch, heads, tq, tk, head_dim: d } = shape;
    if batch * heads == 0 || d == 0 || tq == 0 || tk == 0 {
        return;
    }
    let (bq, bk) = (mask.tile_q(), mask.tile_k());
    let words = mask.words_per_row();
    dq.par_chunks_mut(tq * d).zip(dk.par_chunks_mut(tk * d)).zip(dv.par_chunks_mut(tk * d)).enumerate().for_each_init(
        || BwdScratch { p: vec![0.0; bq * bk], dp: vec![0.0; bq * bk], drow: vec![0.0; tq] },
        |sc, (bh, ((dq_bh, dk_bh), dv_bh))| {
            let (b, h) = (bh / heads, bh % heads);
            let q_bh = &q[bh * tq * d..(bh + 1) * tq * d];
            let k_bh = &k[bh * tk * d..(bh + 1) * tk * d];
            let v_bh = &v[bh * tk * d..(bh + 1) * tk * d];
            let do_bh = &dout[bh * tq * d..(bh + 1) * tq * d];
            let o_bh = &out[bh * tq * d..(bh + 1) * tq * d];
            let lse_bh = &lse[bh * tq..(bh + 1) * tq];
            // D_i = dO_i · out_i (equals Σ_j P_ij dP_ij)
            for i in 0..tq {
                sc.drow[i] = dot(&do_bh[i * d..(i + 1) * d], &o_bh[i * d..(i + 1) * d]);
            }
            for kt in 0..mask.n_k_tiles() {
                let (k0, n) = (kt * bk, mask.tile_cols(kt));
                let k_t = &k_bh[k0 * d..(k0 + n) * d];
                let v_t = &v_bh[k0 * d..(k0 + n) * d];
                for qt in 0..mask.n_q_tiles() {
                    let kind = mask.kind(b, h, qt, kt);
                    if kind == TileKind::Empty {
                        continue;
                    }
                    let (q0, m) = (qt * bq, mask.tile_rows(qt));
                    let q_t = &q_bh[q0 * d..(q0 + m) * d];
                    let do_t = &do_bh[q0 * d..(q0 + m) * d];
                    // P = exp(scale · Q_t · K_tᵀ − lse), 0 where masked   [m × n]
                    tile_gemm(&mut sc.p, bk, q_t, d, false, k_t, d, true, m, d, n, false, scale);
                    let bits = if kind == TileKind::Partial { mask.tile_bits(b, h, qt, kt) } else { None };
                    probs_from_lse(&mut sc.p, bk, m, n, bits, words, &lse_bh[q0..q0 + m]);
                    // dV_t += Pᵀ · dO_t   [n × d]
                    tile_gemm(&mut dv_bh[k0 * d..(k0 + n) * d], d, &sc.p, bk, true, do_t, d, false, n, m, d, true, 1.0);
                    // dP = dO_t · V_tᵀ   [m × n]
                    tile_gemm(&mut sc.dp, bk, do_t, d, false, v_t, d, true, m, d, n, false, 1.0);
                    // dS = P ∘ (dP − D)
                    softmax_grad(&mut sc.dp, &sc.p, bk, m, n, &sc.drow[q0..q0 + m]);
                    // dQ_t += scale · dS · K_t   [m × d]
                    tile_gemm(&mut dq_bh[q0 * d..(q0 + m) * d], d, &sc.dp, bk, false, k_t, d, false, m, n, d, true, scale);
                    // dK_t += scale · dSᵀ · Q_t   [n × d]
                    tile_gemm(&mut dk_bh[k0 * d..(k0 + n) * d], d, &sc.dp, bk, true, q_t, d, false, n, m, d, true, scale);
                }
            }
        },
    );
}
