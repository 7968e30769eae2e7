//! Multi-head attention: input projections, the fused block-sparse attention kernel (its bf16 variant in
//! bf16 precision), output projection.
//!
//! B = batch, Tq = query positions, Tk = key positions, C = channels, H = heads, D = C / H.
//! Nq = B·Tq and Nk = B·Tk rows. q, k, v live in `[B,H,T,D]` layout for the kernel.

use remask_kernels::attention::{
    attention_backward, attention_backward_bf16, attention_forward, attention_forward_bf16,
    AttnShape,
};
use remask_kernels::block_mask::BlockMask;

use super::buffers::{fit, merge_heads, split_heads, Grid, Heads};
use super::config::Precision;
use super::linear::{DInp, Linear};
use super::params::{Grads, LinearWeight, Weights};

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

/// What one attention layer reads: queries from `x` (`[Nq, C]`, rows of the B × Tq grid `q_grid`),
/// keys and values from `kv` (`[Nk, C]`, rows of the B × Tk grid `kv_grid`; the same rows as `x`
/// for self-attention), and the attention mask `[B, 1 or H, Tq, Tk]`.
#[derive(Clone, Copy)]
pub struct AttnInput<'a> {
    pub x: &'a [f32],
    pub q_grid: Grid<'a>,
    pub kv: &'a [f32],
    pub kv_grid: Grid<'a>,
    pub mask: &'a BlockMask,
}

impl<'a> AttnInput<'a> {
    /// Self-attention over the rows `x` of `grid`.
    pub fn self_attention(x: &'a [f32], grid: Grid<'a>, mask: &'a BlockMask) -> Self {
        Self {
            x,
            q_grid: grid,
            kv: x,
            kv_grid: grid,
            mask,
        }
    }

    fn shape(&self, heads: Heads) -> AttnShape {
        AttnShape {
            batch: self.q_grid.b,
            heads: heads.h,
            tq: self.q_grid.t,
            tk: self.kv_grid.t,
            head_dim: heads.d,
        }
    }
}

/// Where the backward adds the input gradients: d(x) `[Nq, C]`, and for cross-attention d(kv)
/// `[Nk, C]` (for self-attention everything flows into `dx`).
pub struct InputGrads<'a> {
    pub dx: &'a mut [f32],
    pub dkv: Option<&'a mut [f32]>,
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
    /// The weights of its projections (what the bf16 copy holds).
    pub fn linear_weights(&self) -> Vec<LinearWeight> {
        let mut out = match self.inp {
            InProj::SelfQkv(qkv) => vec![qkv.weight()],
            InProj::Cross { q, kv } => vec![q.weight(), kv.weight()],
        };
        out.push(self.out.weight());
        out
    }

    fn c(&self) -> usize {
        self.heads * self.head_dim
    }

    fn heads(&self) -> Heads {
        Heads {
            h: self.heads,
            d: self.head_dim,
        }
    }

    fn scale(&self) -> f32 {
        1.0 / (self.head_dim as f32).sqrt()
    }

    /// out[Nq,C] = attention(inp). Overwrites `out`.
    pub fn forward(
        &self,
        acts: &mut AttnActs,
        out: &mut [f32],
        inp: AttnInput<'_>,
        w: Weights<'_>,
    ) {
        let (c, heads) = (self.c(), self.heads());
        let (qg, kg) = (inp.q_grid, inp.kv_grid);
        let (nq, nk) = (qg.n(), kg.n());
        let shape = inp.shape(heads);
        fit(&mut acts.q, shape.q_len());
        fit(&mut acts.k, shape.kv_len());
        fit(&mut acts.v, shape.kv_len());
        fit(&mut acts.att, shape.q_len());
        fit(&mut acts.lse, shape.lse_len());
        fit(&mut acts.y, nq * c);
        match self.inp {
            InProj::SelfQkv(qkv) => {
                // pass 1: qkv = x · Wqkvᵀ + b, then split into heads.
                fit(&mut acts.proj_q, nq * 3 * c);
                qkv.forward(&mut acts.proj_q, inp.x, w, nq);
                split_heads(&mut acts.q, &acts.proj_q, qg, heads, 3 * c, 0);
                split_heads(&mut acts.k, &acts.proj_q, qg, heads, 3 * c, c);
                split_heads(&mut acts.v, &acts.proj_q, qg, heads, 3 * c, 2 * c);
            }
            InProj::Cross { q, kv } => {
                fit(&mut acts.proj_q, nq * c);
                fit(&mut acts.proj_kv, nk * 2 * c);
                q.forward(&mut acts.proj_q, inp.x, w, nq);
                kv.forward(&mut acts.proj_kv, inp.kv, w, nk);
                split_heads(&mut acts.q, &acts.proj_q, qg, heads, c, 0);
                split_heads(&mut acts.k, &acts.proj_kv, kg, heads, 2 * c, 0);
                split_heads(&mut acts.v, &acts.proj_kv, kg, heads, 2 * c, c);
            }
        }
        // pass 2: att = softmax(q·kᵀ·scale, masked)·v, fused and block-sparse.
        let fwd = match w.precision() {
            Precision::Fp32 => attention_forward,
            Precision::Bf16 => attention_forward_bf16,
        };
        fwd(
            &mut acts.att,
            &mut acts.lse,
            &acts.q,
            &acts.k,
            &acts.v,
            inp.mask,
            shape,
            self.scale(),
        );
        // pass 3: merge heads and project.
        merge_heads(&mut acts.y, &acts.att, qg, heads, c, 0);
        self.out.forward(out, &acts.y, w, nq);
    }

    /// Given dout[Nq,C]: adds ∂/∂x (and ∂/∂kv for cross-attention) into `d`, and the parameter
    /// gradients into `g`.
    pub fn backward(
        &self,
        acts: &AttnActs,
        s: &mut AttnScratch,
        dout: &[f32],
        inp: AttnInput<'_>,
        d: InputGrads<'_>,
        g: &mut Grads<'_>,
    ) {
        let (c, heads) = (self.c(), self.heads());
        let (qg, kg) = (inp.q_grid, inp.kv_grid);
        let (nq, nk) = (qg.n(), kg.n());
        let shape = inp.shape(heads);
        // backward of pass 3: out = y · Woᵀ + bo.
        fit(&mut s.dy, nq * c);
        self.out
            .backward(DInp::Set(&mut s.dy), dout, &acts.y, g, nq);
        fit(&mut s.datt, shape.q_len());
        split_heads(&mut s.datt, &s.dy, qg, heads, c, 0);
        // backward of pass 2 (dq, dk, dv are overwritten by the kernel).
        fit(&mut s.dq, shape.q_len());
        fit(&mut s.dk, shape.kv_len());
        fit(&mut s.dv, shape.kv_len());
        let bwd = match g.w.precision() {
            Precision::Fp32 => attention_backward,
            Precision::Bf16 => attention_backward_bf16,
        };
        bwd(
            &mut s.dq,
            &mut s.dk,
            &mut s.dv,
            &s.datt,
            &acts.q,
            &acts.k,
            &acts.v,
            &acts.att,
            &acts.lse,
            inp.mask,
            shape,
            self.scale(),
        );
        // backward of pass 1.
        match self.inp {
            InProj::SelfQkv(qkv) => {
                fit(&mut s.dproj_q, nq * 3 * c);
                merge_heads(&mut s.dproj_q, &s.dq, qg, heads, 3 * c, 0);
                merge_heads(&mut s.dproj_q, &s.dk, qg, heads, 3 * c, c);
                merge_heads(&mut s.dproj_q, &s.dv, qg, heads, 3 * c, 2 * c);
                qkv.backward(DInp::Add(d.dx), &s.dproj_q, inp.x, g, nq);
            }
            InProj::Cross { q, kv } => {
                fit(&mut s.dproj_q, nq * c);
                fit(&mut s.dproj_kv, nk * 2 * c);
                merge_heads(&mut s.dproj_q, &s.dq, qg, heads, c, 0);
                merge_heads(&mut s.dproj_kv, &s.dk, kg, heads, 2 * c, 0);
                merge_heads(&mut s.dproj_kv, &s.dv, kg, heads, 2 * c, c);
                q.backward(DInp::Add(d.dx), &s.dproj_q, inp.x, g, nq);
                kv.backward(
                    d.dkv.map_or(DInp::None, DInp::Add),
                    &s.dproj_kv,
                    inp.kv,
                    g,
                    nk,
                );
            }
        }
    }
}
