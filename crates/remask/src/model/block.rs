//! One Transformer block: self-attention, optional cross-attention, feed-forward; each a residual
//! sublayer with its LayerNorm before (pre-LN: `x + f(LN(x))`) or after (post-LN: `LN(x + f(x))`).
//!
//! N = rows (B·T), C = channels, F = feed-forward width.

use remask_kernels::block_mask::BlockMask;
use remask_kernels::dropout::{dropout_backward, dropout_forward};
use remask_kernels::gelu::{gelu_backward, gelu_forward, GeluKind};

use super::buffers::{add, add_assign, fit, RowMap};
use super::config::NormPlacement;
use super::linear::Linear;
use super::mha::{Attention, AttnActs, AttnScratch};
use super::norm::LayerNorm;

/// Saved activations of one residual sublayer.
#[derive(Clone, Debug, Default)]
pub struct ResidualActs {
    /// Pre-LN: LN(x), the input of f. Post-LN: LN(sum), the sublayer output. `[N,C]`
    pub normed: Vec<f32>,
    pub mean: Vec<f32>,
    pub rstd: Vec<f32>,
    /// x + dropout(f(...)). Pre-LN: the sublayer output. Post-LN: the LayerNorm input. `[N,C]`
    pub sum: Vec<f32>,
    /// f's output before dropout `[N,C]`.
    pub f_out: Vec<f32>,
    /// Dropout keep mask `[N,C]` (empty when dropout was off).
    pub keep: Vec<u8>,
}

impl ResidualActs {
    /// The sublayer output.
    pub fn output(&self, norm: NormPlacement) -> &[f32] {
        match norm {
            NormPlacement::Pre => &self.sum,
            NormPlacement::Post => &self.normed,
        }
    }

    fn fit(&mut self, n: usize, c: usize) {
        fit(&mut self.normed, n * c);
        fit(&mut self.mean, n);
        fit(&mut self.rstd, n);
        fit(&mut self.sum, n * c);
        fit(&mut self.f_out, n * c);
    }
}

/// Gradient scratch shared by all blocks of a stack.
#[derive(Clone, Debug, Default)]
pub struct BlockScratch {
    pub tmp: Vec<f32>,
    pub tmp2: Vec<f32>,
    pub dh1: Vec<f32>,
    pub dh2: Vec<f32>,
    pub attn: AttnScratch,
}

/// Saved activations of one block.
#[derive(Clone, Debug, Default)]
pub struct BlockActs {
    pub attn_res: ResidualActs,
    pub attn: AttnActs,
    pub cross_res: ResidualActs,
    pub cross: AttnActs,
    pub ffn_res: ResidualActs,
    /// fc1 output `[N,F]` and its GELU `[N,F]`.
    pub h1: Vec<f32>,
    pub h2: Vec<f32>,
}

/// Cross-attention input of a decoder block: the encoder output `[B·Tk, C]` and its mask.
#[derive(Clone, Copy)]
pub struct CrossInput<'a> {
    pub enc: &'a [f32],
    pub tk: usize,
    pub mask: &'a BlockMask,
    /// Grid positions of the rows of `enc` when its padding rows were dropped.
    pub rows: RowMap<'a>,
}

/// One Transformer block.
#[derive(Clone, Debug)]
pub struct Block {
    pub attn: Attention,
    pub attn_ln: LayerNorm,
    pub cross: Option<(Attention, LayerNorm)>,
    pub fc1: Linear,
    pub fc2: Linear,
    pub ffn_ln: LayerNorm,
    pub norm: NormPlacement,
    pub gelu: GeluKind,
    pub dropout: f32,
}

/// Dropout settings of one forward: `None` in evaluation.
#[derive(Clone, Copy, Debug)]
pub struct DropoutSite {
    pub p: f32,
    pub key: u64,
}

/// Forward of one residual sublayer around `f(f_out, f_in)`.
#[allow(clippy::too_many_arguments)]
fn residual_forward(
    r: &mut ResidualActs,
    x: &[f32],
    ln: &LayerNorm,
    norm: NormPlacement,
    drop: Option<DropoutSite>,
    params: &[f32],
    n: usize,
    f: impl FnOnce(&mut [f32], &[f32]),
) {
    r.fit(n, ln.c);
    let pre = norm == NormPlacement::Pre;
    if pre {
        ln.forward(&mut r.normed, &mut r.mean, &mut r.rstd, x, params, n);
        f(&mut r.f_out, &r.normed);
    } else {
        f(&mut r.f_out, x);
    }
    match drop {
        Some(d) if d.p > 0.0 => {
            fit(&mut r.keep, n * ln.c);
            dropout_forward(&mut r.sum, &mut r.keep, &r.f_out, d.p, d.key);
            add_assign(&mut r.sum, x);
        }
        _ => {
            r.keep.clear();
            add(&mut r.sum, x, &r.f_out);
        }
    }
    if !pre {
        ln.forward(&mut r.normed, &mut r.mean, &mut r.rstd, &r.sum, params, n);
    }
}

/// Backward of one residual sublayer. On entry `dres` holds d(output); on exit d(x).
/// `f_back(dinp, df_out)` must accumulate d(f input) into `dinp`.
#[allow(clippy::too_many_arguments)]
fn residual_backward(
    r: &ResidualActs,
    x: &[f32],
    ln: &LayerNorm,
    norm: NormPlacement,
    p: f32,
    dres: &mut [f32],
    tmp: &mut Vec<f32>,
    tmp2: &mut Vec<f32>,
    params: &[f32],
    grads: &mut [f32],
    n: usize,
    f_back: impl FnOnce(&mut [f32], &[f32], &mut [f32]),
) {
    let len = n * ln.c;
    fit(tmp, len);
    tmp.fill(0.0);
    let dropped = !r.keep.is_empty();
    if dropped {
        fit(tmp2, len);
    }
    match norm {
        NormPlacement::Pre => {
            // sum = x + drop(f(LN(x))): dx = dsum + LN'ᵀ·f'ᵀ·drop'ᵀ·dsum.
            let df: &[f32] = if dropped {
                tmp2.fill(0.0);
                dropout_backward(tmp2, dres, &r.keep, p);
                tmp2
            } else {
                dres
            };
            // `tmp` receives d(normed); f_back may not touch `dres` through df here.
            let mut dnormed = std::mem::take(tmp);
            f_back(&mut dnormed, df, grads);
            ln.backward(dres, &dnormed, x, &r.mean, &r.rstd, params, grads, n);
            *tmp = dnormed;
        }
        NormPlacement::Post => {
            // out = LN(sum), sum = x + drop(f(x)): dsum = LN'ᵀ·dout; dx = dsum + f'ᵀ·drop'ᵀ·dsum.
            ln.backward(tmp, dres, &r.sum, &r.mean, &r.rstd, params, grads, n);
            dres.copy_from_slice(tmp);
            let df: &[f32] = if dropped {
                tmp2.fill(0.0);
                dropout_backward(tmp2, tmp, &r.keep, p);
                tmp2
            } else {
                tmp
            };
            f_back(dres, df, grads);
        }
    }
}

impl Block {
    /// y[N,C] = block(x[N,C]) (output in `acts`, see [`BlockActs::output`]).
    #[allow(clippy::too_many_arguments)]
    pub fn forward(
        &self,
        acts: &mut BlockActs,
        x: &[f32],
        mask: &BlockMask,
        cross: Option<CrossInput<'_>>,
        drop: Option<[DropoutSite; 3]>,
        params: &[f32],
        b: usize,
        t: usize,
        rows: RowMap<'_>,
    ) {
        let n = rows.map_or(b * t, <[u32]>::len);
        let norm = self.norm;
        // Sublayer 1: self-attention.
        let attn_acts = &mut acts.attn;
        residual_forward(&mut acts.attn_res, x, &self.attn_ln, norm, drop.map(|d| d[0]), params, n, |out, inp| {
            self.attn.forward(attn_acts, out, inp, inp, mask, params, b, t, t, rows, rows)
        });
        // Sublayer 2: cross-attention over the encoder output.
        let mut x2: &[f32] = acts.attn_res.output(norm);
        if let (Some((cattn, cln)), Some(ci)) = (&self.cross, cross) {
            let cross_acts = &mut acts.cross;
            residual_forward(&mut acts.cross_res, x2, cln, norm, drop.map(|d| d[1]), params, n, |out, inp| {
                cattn.forward(cross_acts, out, inp, ci.enc, ci.mask, params, b, t, ci.tk, rows, ci.rows)
            });
            x2 = acts.cross_res.output(norm);
        }
        // Sublayer 3: feed-forward, fc2(gelu(fc1(x))).
        let (h1, h2) = (&mut acts.h1, &mut acts.h2);
        fit(h1, n * self.fc1.oc);
        fit(h2, n * self.fc1.oc);
        residual_forward(&mut acts.ffn_res, x2, &self.ffn_ln, norm, drop.map(|d| d[2]), params, n, |out, inp| {
            self.fc1.forward(h1, inp, params, n);
            gelu_forward(h2, h1, self.gelu);
            self.fc2.forward(out, h2, params, n);
        });
    }

    /// The block output after a forward.
    pub fn output<'a>(&self, acts: &'a BlockActs) -> &'a [f32] {
        acts.ffn_res.output(self.norm)
    }

    /// On entry `dres[N,C]` holds d(block output); on exit d(block input). Adds parameter gradients;
    /// adds d(encoder output) into `denc` for a block with cross-attention.
    #[allow(clippy::too_many_arguments)]
    pub fn backward(
        &self,
        acts: &BlockActs,
        s: &mut BlockScratch,
        dres: &mut [f32],
        x: &[f32],
        mask: &BlockMask,
        cross: Option<(CrossInput<'_>, &mut [f32])>,
        params: &[f32],
        grads: &mut [f32],
        b: usize,
        t: usize,
        rows: RowMap<'_>,
    ) {
        let n = rows.map_or(b * t, <[u32]>::len);
        let norm = self.norm;
        let has_cross = self.cross.is_some() && cross.is_some();
        let x_attn_out: &[f32] = acts.attn_res.output(norm);
        let x_ffn_in: &[f32] = if has_cross { acts.cross_res.output(norm) } else { x_attn_out };
        let BlockScratch { tmp, tmp2, dh1, dh2, attn: sa } = s;
        // Sublayer 3: feed-forward.
        residual_backward(&acts.ffn_res, x_ffn_in, &self.ffn_ln, norm, self.dropout, dres, tmp, tmp2, params, grads, n, |dinp, df, grads| {
            let f = n * self.fc1.oc;
            fit(dh2, f);
            dh2.fill(0.0);
            let inp = if norm == NormPlacement::Pre { &acts.ffn_res.normed[..] } else { x_ffn_in };
            self.fc2.backward(Some(dh2), df, &acts.h2, params, grads, n);
            fit(dh1, f);
            dh1.fill(0.0);
            gelu_backward(dh1, &acts.h1, dh2, self.gelu);
            self.fc1.backward(Some(dinp), dh1, inp, params, grads, n);
        });
        // Sublayer 2: cross-attention.
        if let (Some((cattn, cln)), Some((ci, denc))) = (&self.cross, cross) {
            residual_backward(&acts.cross_res, x_attn_out, cln, norm, self.dropout, dres, tmp, tmp2, params, grads, n, |dinp, df, grads| {
                let inp = if norm == NormPlacement::Pre { &acts.cross_res.normed[..] } else { x_attn_out };
                cattn.backward(&acts.cross, sa, dinp, Some(denc), df, inp, ci.enc, ci.mask, params, grads, b, t, ci.tk, rows, ci.rows);
            });
        }
        // Sublayer 1: self-attention.
        residual_backward(&acts.attn_res, x, &self.attn_ln, norm, self.dropout, dres, tmp, tmp2, params, grads, n, |dinp, df, grads| {
            let inp = if norm == NormPlacement::Pre { &acts.attn_res.normed[..] } else { x };
            self.attn.backward(&acts.attn, sa, dinp, None, df, inp, inp, mask, params, grads, b, t, t, rows, rows);
        });
    }
}
