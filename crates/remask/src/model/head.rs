//! The output head: (optional transform: dense + GELU + LayerNorm) then the vocabulary projection,
//! run only on the rows that carry a label (gather, project, cross-entropy, scatter the gradient
//! back), as the original BERT code does. An all-rows path gives full logits for fixtures and
//! inference.
//!
//! N = rows of the hidden state (B·T), M = rows the head runs on, C = channels, V = vocabulary.

use rayon::prelude::*;

use super::buffers::{fit, zero};
use super::layout::Param;
use super::linear::{DInp, Linear};
use super::norm::{LayerNorm, NormActs};
use super::params::{Grads, LinearWeight, Weights};
use crate::IGNORE_INDEX;
use remask_kernels::cross_entropy::{cross_entropy_forward, cross_entropy_fused, CeStats};
use remask_kernels::gelu::{gelu_backward_set, gelu_forward, GeluKind};

/// Rows per rayon task of the head's gather and scatter.
const ROWS_PER_TASK: usize = 64;

/// The vocabulary head.
#[derive(Clone, Debug)]
pub struct LmHead {
    /// BERT's `cls.predictions.transform` (dense, GELU, LayerNorm); `None` for GPT-2 and BART.
    pub transform: Option<(Linear, LayerNorm)>,
    pub gelu: GeluKind,
    /// Output matrix `[V, C]` (the token embeddings when tied).
    pub decoder: Param,
    /// Output bias `[V]`.
    pub bias: Option<Param>,
    /// Whether the bias is trained (BART's `final_logits_bias` is a frozen buffer in HF).
    pub bias_trainable: bool,
    pub v: usize,
    pub c: usize,
}

/// Saved activations of the head.
#[derive(Clone, Debug, Default)]
pub struct HeadActs {
    /// Rows of the hidden state the head ran on `[M]` (increasing), and their targets `[M]`.
    pub rows: Vec<u32>,
    pub targets: Vec<i32>,
    /// Gathered hidden rows `[M,C]`, transform activations `[M,C]` (dense, GELU, LayerNorm).
    pub x: Vec<f32>,
    pub t1: Vec<f32>,
    pub t2: Vec<f32>,
    pub ln: NormActs,
    /// Logits `[M,V]`; after a training step they hold the logits' gradient instead.
    pub logits: Vec<f32>,
    /// Per-row losses `[M]`.
    pub losses: Vec<f32>,
}

/// Gradient scratch of the head.
#[derive(Clone, Debug, Default)]
pub struct HeadScratch {
    pub dz: Vec<f32>,
    pub dt2: Vec<f32>,
    pub dt1: Vec<f32>,
    pub dx: Vec<f32>,
}

impl LmHead {
    /// The vocabulary projection as a linear layer: weight `[V, C]` (trainable bias or none).
    fn projection(&self) -> Linear {
        Linear {
            w: self.decoder,
            b: self.bias.filter(|_| self.bias_trainable),
            c: self.c,
            oc: self.v,
        }
    }

    /// The weights the bf16 copy holds: the projection and the transform's dense layer.
    pub fn linear_weights(&self) -> Vec<LinearWeight> {
        let mut out = vec![self.projection().weight()];
        out.extend(self.transform.as_ref().map(|(dense, _)| dense.weight()));
        out
    }

    /// Selects the labelled rows of `labels[N]` (row-major order).
    pub fn select_labelled(acts: &mut HeadActs, labels: &[i32]) {
        acts.rows.clear();
        acts.targets.clear();
        for (i, &l) in labels.iter().enumerate() {
            if l != IGNORE_INDEX {
                acts.rows.push(i as u32);
                acts.targets.push(l);
            }
        }
    }

    /// Selects every row of `labels[N]` (targets stay as given, ignored ones included).
    pub fn select_all(acts: &mut HeadActs, labels: &[i32]) {
        acts.rows.clear();
        acts.targets.clear();
        acts.rows.extend(0..labels.len() as u32);
        acts.targets.extend_from_slice(labels);
    }

    /// logits[M,V] = head(h[rows]) for the selected rows of h[N,C].
    pub fn forward(&self, a: &mut HeadActs, h: &[f32], w: Weights<'_>) {
        let (m, c, v) = (a.rows.len(), self.c, self.v);
        fit(&mut a.x, m * c);
        if c > 0 {
            a.x.par_chunks_mut(c)
                .zip(a.rows.par_iter())
                .with_min_len(ROWS_PER_TASK)
                .for_each(|(x, &r)| {
                    let r = r as usize;
                    x.copy_from_slice(&h[r * c..(r + 1) * c]);
                });
        }
        if let Some((dense, ln)) = &self.transform {
            fit(&mut a.t1, m * c);
            fit(&mut a.t2, m * c);
            dense.forward(&mut a.t1, &a.x, w, m);
            gelu_forward(&mut a.t2, &a.t1, self.gelu);
            ln.forward(&mut a.ln, &a.t2, w.values, m);
        }
        let z = if self.transform.is_some() {
            &a.ln.out
        } else {
            &a.x
        };
        fit(&mut a.logits, m * v);
        // The bias is added whether or not it trains (BART's frozen `final_logits_bias`).
        Linear {
            b: self.bias,
            ..self.projection()
        }
        .forward(&mut a.logits, z, w, m);
    }

    /// Cross-entropy on the logits without gradients (evaluation).
    pub fn loss(&self, a: &mut HeadActs) -> CeStats {
        let m = a.rows.len();
        fit(&mut a.losses, m);
        if m == 0 {
            return CeStats::default();
        }
        cross_entropy_forward(&mut a.losses, &a.logits, &a.targets, m, self.v)
    }

    /// Cross-entropy and its backward: adds `grad_scale · d(Σ losses)` into the head parameters and
    /// scatters d(h[rows]) into dh[N,C] (which the caller zeroed). Turns `a.logits` into dlogits.
    pub fn loss_backward(
        &self,
        a: &mut HeadActs,
        s: &mut HeadScratch,
        dh: &mut [f32],
        grad_scale: f32,
        g: &mut Grads<'_>,
    ) -> CeStats {
        let (m, c, v) = (a.rows.len(), self.c, self.v);
        fit(&mut a.losses, m);
        if m == 0 {
            return CeStats::default();
        }
        let stats = cross_entropy_fused(&mut a.logits, &mut a.losses, &a.targets, grad_scale, m, v);
        let dlogits = &a.logits;
        // backward of logits = z · decoderᵀ + bias (a frozen bias gets no gradient).
        let z = if self.transform.is_some() {
            &a.ln.out
        } else {
            &a.x
        };
        fit(&mut s.dz, m * c);
        self.projection()
            .backward(DInp::Set(&mut s.dz), dlogits, z, g, m);
        let dx: &[f32] = if let Some((dense, ln)) = &self.transform {
            // backward of t3 = LN(t2), t2 = gelu(t1), t1 = dense(x).
            fit(&mut s.dt2, m * c);
            zero(&mut s.dt2);
            ln.backward(&mut s.dt2, &s.dz, &a.t2, &a.ln, g, m);
            fit(&mut s.dt1, m * c);
            gelu_backward_set(&mut s.dt1, &a.t1, &s.dt2, self.gelu);
            fit(&mut s.dx, m * c);
            dense.backward(DInp::Set(&mut s.dx), &s.dt1, &a.x, g, m);
            &s.dx
        } else {
            &s.dz
        };
        // Scatter: dh[rows[i]] += dx[i]; a task per run of dh's rows, each finding its row in the
        // (increasing) row list.
        let rows = &a.rows;
        debug_assert!(rows.windows(2).all(|w| w[0] < w[1]));
        dh.par_chunks_mut(c.max(1))
            .enumerate()
            .with_min_len(ROWS_PER_TASK)
            .for_each(|(r, out)| {
                if let Ok(i) = rows.binary_search(&(r as u32)) {
                    for (o, &g) in out.iter_mut().zip(&dx[i * c..(i + 1) * c]) {
                        *o += g;
                    }
                }
            });
        stats
    }
}
