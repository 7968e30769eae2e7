//! Multi-head attention: input projections, the fused block-sparse attention kernel, output projection.
//!
//! B = batch, Tq = query positions, Tk = key positions, C = channels, H = heads, D = C / H.
//! Nq = B·Tq and Nk = B·Tk rows. q, k, v live in `[B,H,T,D]` layout for the kernel.

use remask_kernels::attention::{attention_backward, attention_forward, AttnShape};
use remask_kernels::block_mask::BlockMask;

use super::buffers::{fit, merge_heads, split_heads, RowMap};
use super::linear::Linear;

/// How queries, keys and values are projected.
#[derive(Clone, Copy, Debug)]
pub enum InProj {
    /// Self-attention: one fused projection C → 3C (q, k, v side by side).
    SelfQkv(Linear),
    /// Cross-attention: queries from the decoder (C → C), keys and values from the encoder (C → 2C).
    Cross { q: Linear, kv: Linear },
}

/// One multi-head attention layer.
#[derive(Clone, Copy, Debug)]
pub struct Attention {
    pub inp: InProj,
    pub out: Linear,
    pub heads: usize,
    pub head_dim: usize,
}

/// Saved activations of one attention layer.
#[derive(Clone, Debug, Default)]
pub struct AttnActs {
    /// Self: qkv `[Nq, 3C]`. Cross: q `[Nq, C]`.
    pub proj_q: Vec<f32>,
    /// Cross only: kv `[Nk, 2C]`.
    pub proj_kv: Vec<f32>,
    /// `[B,H,Tq,D]`, `[B,H,Tk,D]`, `[B,H,Tk,D]`.
    pub q: Vec<f32>,
    pub k: Vec<f32>,
    pub v: Vec<f32>,
    /// Kernel output `[B,H,Tq,D]` and log-sum-exp `[B,H,Tq]`.
    pub att: Vec<f32>,
    pub lse: Vec<f32>,
    /// Heads merged back: `[Nq, C]` (input of the output projection).
    pub y: Vec<f32>,
}

/// Gradient scratch shared by all attention layers of a stack.
#[derive(Clone, Debug, Default)]
pub struct AttnScratch {
    pub dy: Vec<f32>,
    pub datt: Vec<f32>,
    pub dq: Vec<f32>,
    pub dk: Vec<f32>,
    pub dv: Vec<f32>,
    pub dproj_q: Vec<f32>,
    pub dproj_kv: Vec<f32>,
}

impl Attention {
    fn c(&self) -> usize {
        self.heads * self.head_dim
    }

    fn scale(&self) -> f32 {
        1.0 / (self.head_dim as f32).sqrt()
    }

    /// out[Nq,C] = attention(x[Nq,C], kv_src[Nk,C]) (kv_src = x for self-attention). Overwrites `out`.
    #[allow(clippy::too_many_arguments)]
    /// `qmap` / `kmap` give the grid position of each row of `x` / `kv_src` when padding rows were
    /// dropped (then Nq, Nk are the map lengths).
    pub fn forward(&self, acts: &mut AttnActs, out: &mut [f32], x: &[f32], kv_src: &[f32], mask: &BlockMask, params: &[f32], b: usize, tq: usize, tk: usize, qmap: RowMap<'_>, kmap: RowMap<'_>) {
        let (c, h, d) = (self.c(), self.heads, self.head_dim);
        let (nq, nk) = (qmap.map_or(b * tq, <[u32]>::len), kmap.map_or(b * tk, <[u32]>::len));
        fit(&mut acts.q, b * tq * c);
        fit(&mut acts.k, b * tk * c);
        fit(&mut acts.v, b * tk * c);
        fit(&mut acts.att, b * tq * c);
        fit(&mut acts.lse, b * h * tq);
        fit(&mut acts.y, nq * c);
        match self.inp {
            InProj::SelfQkv(qkv) => {
                // pass 1: qkv = x · Wqkvᵀ + b, then split into heads.
                fit(&mut acts.proj_q, nq * 3 * c);
                qkv.forward(&mut acts.proj_q, x, params, nq);
                split_heads(&mut acts.q, &acts.proj_q, qmap, b, tq, h, d, 3 * c, 0);
                split_heads(&mut acts.k, &acts.proj_q, qmap, b, tq, h, d, 3 * c, c);
                split_heads(&mut acts.v, &acts.proj_q, qmap, b, tq, h, d, 3 * c, 2 * c);
            }
            InProj::Cross { q, kv } => {
                fit(&mut acts.proj_q, nq * c);
                fit(&mut acts.proj_kv, nk * 2 * c);
                q.forward(&mut acts.proj_q, x, params, nq);
                kv.forward(&mut acts.proj_kv, kv_src, params, nk);
                split_heads(&mut acts.q, &acts.proj_q, qmap, b, tq, h, d, c, 0);
                split_heads(&mut acts.k, &acts.proj_kv, kmap, b, tk, h, d, 2 * c, 0);
                split_heads(&mut acts.v, &acts.proj_kv, kmap, b, tk, h, d, 2 * c, c);
            }
        }
        // pass 2: att = softmax(q·kᵀ·scale, masked)·v, fused and block-sparse.
        let shape = AttnShape { batch: b, heads: h, tq, tk, head_dim: d };
        attention_forward(&mut acts.att, &mut acts.lse, &acts.q, &acts.k, &acts.v, mask, shape, self.scale());
        // pass 3: merge heads and project.
        merge_heads(&mut acts.y, &acts.att, qmap, b, tq, h, d, c, 0);
        self.out.forward(out, &acts.y, params, nq);
    }

    /// Given dout[Nq,C]: dx[Nq,C] += ∂/∂x, dkv_src[Nk,C] += ∂/∂kv_src (cross only; for
    /// self-attention everything flows into dx), and the parameter gradients.
    #[allow(clippy::too_many_arguments)]
    pub fn backward(
        &self,
        acts: &AttnActs,
        s: &mut AttnScratch,
        dx: &mut [f32],
        dkv_src: Option<&mut [f32]>,
        dout: &[f32],
        x: &[f32],
        kv_src: &[f32],
        mask: &BlockMask,
        params: &[f32],
        grads: &mut [f32],
        b: usize,
        tq: usize,
        tk: usize,
        qmap: RowMap<'_>,
        kmap: RowMap<'_>,
    ) {
        let (c, h, d) = (self.c(), self.heads, self.head_dim);
        let (nq, nk) = (qmap.map_or(b * tq, <[u32]>::len), kmap.map_or(b * tk, <[u32]>::len));
        // backward of pass 3: out = y · Woᵀ + bo.
        fit(&mut s.dy, nq * c);
        s.dy.fill(0.0);
        self.out.backward(Some(&mut s.dy), dout, &acts.y, params, grads, nq);
        fit(&mut s.datt, b * tq * c);
        split_heads(&mut s.datt, &s.dy, qmap, b, tq, h, d, c, 0);
        // backward of pass 2 (dq, dk, dv are overwritten by the kernel).
        fit(&mut s.dq, b * tq * c);
        fit(&mut s.dk, b * tk * c);
        fit(&mut s.dv, b * tk * c);
        let shape = AttnShape { batch: b, heads: h, tq, tk, head_dim: d };
        attention_backward(
            &mut s.dq, &mut s.dk, &mut s.dv, &s.datt, &acts.q, &acts.k, &acts.v, &acts.att, &acts.lse, mask, shape, self.scale(),
        );
        // backward of pass 1.
        match self.inp {
            InProj::SelfQkv(qkv) => {
                fit(&mut s.dproj_q, nq * 3 * c);
                merge_heads(&mut s.dproj_q, &s.dq, qmap, b, tq, h, d, 3 * c, 0);
                merge_heads(&mut s.dproj_q, &s.dk, qmap, b, tq, h, d, 3 * c, c);
                merge_heads(&mut s.dproj_q, &s.dv, qmap, b, tq, h, d, 3 * c, 2 * c);
                qkv.backward(Some(dx), &s.dproj_q, x, params, grads, nq);
            }
            InProj::Cross { q, kv } => {
                fit(&mut s.dproj_q, nq * c);
                fit(&mut s.dproj_kv, nk * 2 * c);
                merge_heads(&mut s.dproj_q, &s.dq, qmap, b, tq, h, d, c, 0);
                merge_heads(&mut s.dproj_kv, &s.dk, kmap, b, tk, h, d, 2 * c, 0);
                merge_heads(&mut s.dproj_kv, &s.dv, kmap, b, tk, h, d, 2 * c, c);
                q.backward(Some(dx), &s.dproj_q, x, params, grads, nq);
                kv.backward(dkv_src, &s.dproj_kv, kv_src, params, grads, nk);
            }
        }
    }
}
