//! One Transformer block: self-attention, optional cross-attention, feed-forward; each a residual
//! sublayer with its LayerNorm before (pre-LN: `x + f(LN(x))`) or after (post-LN: `LN(x + f(x))`).
//!
//! N = rows (B·T), C = channels, F = feed-forward width.

use remask_kernels::block_mask::BlockMask;
use remask_kernels::dropout::{dropout_backward, dropout_forward};
use remask_kernels::gelu::{gelu_backward_from_grad, gelu_forward_save_grad, GeluKind};

use super::buffers::{add, add_assign, copy, fit, zero, Grid, RowMap};
use super::config::NormPlacement;
use super::linear::{DInp, Linear};
use super::mha::{Attention, AttnActs, AttnInput, AttnScratch, InputGrads};
use super::norm::{LayerNorm, NormActs};
use super::params::{Grads, LinearWeight, Weights};

/// Saved activations of one residual sublayer.
#[derive(Clone, Debug, Default)]
pub struct ResidualActs {
    /// The LayerNorm. Pre-LN: LN(x), the input of f. Post-LN: LN(sum), the sublayer output. `[N,C]`
    pub ln: NormActs,
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
            NormPlacement::Post => &self.ln.out,
        }
    }

    /// The input of f: LN(x) (pre-LN) or x itself (post-LN).
    fn f_input<'a>(&'a self, x: &'a [f32], norm: NormPlacement) -> &'a [f32] {
        match norm {
            NormPlacement::Pre => &self.ln.out,
            NormPlacement::Post => x,
        }
    }
}

/// Gradient scratch of one residual sublayer's backward.
#[derive(Clone, Debug, Default)]
pub struct ResidualScratch {
    pub tmp: Vec<f32>,
    pub tmp2: Vec<f32>,
}

/// Gradient scratch shared by all blocks of a stack.
#[derive(Clone, Debug, Default)]
pub struct BlockScratch {
    pub res: ResidualScratch,
    /// d(fc2 input), then in place d(fc1 output) `[N,F]`.
    pub dh: Vec<f32>,
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
    /// fc1's output `[N,F]`, overwritten by the GELU's derivative there (all the backward needs of it).
    pub dgelu: Vec<f32>,
    /// GELU(fc1 output) `[N,F]`, fc2's input.
    pub h2: Vec<f32>,
}

/// The input of a block: its rows `x` (`[N, C]`, rows of `grid`) and the self-attention mask.
#[derive(Clone, Copy)]
pub struct BlockInput<'a> {
    pub x: &'a [f32],
    pub grid: Grid<'a>,
    pub mask: &'a BlockMask,
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

impl<'a> CrossInput<'a> {
    /// Cross-attention from the rows `q_grid` of `x` to the encoder output.
    fn attn_input(&self, x: &'a [f32], q_grid: Grid<'a>) -> AttnInput<'a> {
        AttnInput {
            x,
            q_grid,
            kv: self.enc,
            kv_grid: Grid {
                b: q_grid.b,
                t: self.tk,
                map: self.rows,
            },
            mask: self.mask,
        }
    }
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

/// One residual sublayer: its LayerNorm, where the norm sits, and its dropout probability.
#[derive(Clone, Copy)]
struct Sublayer<'a> {
    ln: &'a LayerNorm,
    norm: NormPlacement,
    dropout: f32,
}

impl Sublayer<'_> {
    /// Forward around `f(f_out, f_in)` on the rows `x` `[N,C]`.
    fn forward(
        &self,
        r: &mut ResidualActs,
        x: &[f32],
        drop: Option<DropoutSite>,
        params: &[f32],
        f: impl FnOnce(&mut [f32], &[f32]),
    ) {
        let (c, n) = (self.ln.c, x.len() / self.ln.c);
        fit(&mut r.sum, n * c);
        fit(&mut r.f_out, n * c);
        let pre = self.norm == NormPlacement::Pre;
        if pre {
            self.ln.forward(&mut r.ln, x, params, n);
            f(&mut r.f_out, &r.ln.out);
        } else {
            f(&mut r.f_out, x);
        }
        match drop {
            Some(d) if d.p > 0.0 => {
                fit(&mut r.keep, n * c);
                dropout_forward(&mut r.sum, &mut r.keep, &r.f_out, d.p, d.key);
                add_assign(&mut r.sum, x);
            }
            _ => {
                r.keep.clear();
                add(&mut r.sum, x, &r.f_out);
            }
        }
        if !pre {
            self.ln.forward(&mut r.ln, &r.sum, params, n);
        }
    }

    /// Backward. On entry `dres` holds d(output); on exit d(x). `f_back(dinp, df_out, g)` must
    /// accumulate d(f input) into `dinp`.
    fn backward(
        &self,
        r: &ResidualActs,
        x: &[f32],
        dres: &mut [f32],
        s: &mut ResidualScratch,
        g: &mut Grads<'_>,
        f_back: impl FnOnce(&mut [f32], &[f32], &mut Grads<'_>),
    ) {
        let len = x.len();
        let n = len / self.ln.c;
        let ResidualScratch { tmp, tmp2 } = s;
        fit(tmp, len);
        zero(tmp);
        let dropped = !r.keep.is_empty();
        if dropped {
            fit(tmp2, len);
        }
        match self.norm {
            NormPlacement::Pre => {
                // sum = x + drop(f(LN(x))): dx = dsum + LN'ᵀ·f'ᵀ·drop'ᵀ·dsum.
                let df: &[f32] = if dropped {
                    zero(tmp2);
                    dropout_backward(tmp2, dres, &r.keep, self.dropout);
                    tmp2
                } else {
                    dres
                };
                // `tmp` receives d(normed); f_back may not touch `dres` through df here.
                let mut dnormed = std::mem::take(tmp);
                f_back(&mut dnormed, df, g);
                self.ln.backward(dres, &dnormed, x, &r.ln, g, n);
                *tmp = dnormed;
            }
            NormPlacement::Post => {
                // out = LN(sum), sum = x + drop(f(x)): dsum = LN'ᵀ·dout; dx = dsum + f'ᵀ·drop'ᵀ·dsum.
                self.ln.backward(tmp, dres, &r.sum, &r.ln, g, n);
                copy(dres, tmp);
                let df: &[f32] = if dropped {
                    zero(tmp2);
                    dropout_backward(tmp2, tmp, &r.keep, self.dropout);
                    tmp2
                } else {
                    tmp
                };
                f_back(dres, df, g);
            }
        }
    }
}

impl Block {
    /// The weights of its linear layers (what the bf16 copy holds).
    pub fn linear_weights(&self) -> Vec<LinearWeight> {
        let mut out = self.attn.linear_weights();
        if let Some((cattn, _)) = &self.cross {
            out.extend(cattn.linear_weights());
        }
        out.extend([self.fc1.weight(), self.fc2.weight()]);
        out
    }

    fn sublayer<'a>(&self, ln: &'a LayerNorm) -> Sublayer<'a> {
        Sublayer {
            ln,
            norm: self.norm,
            dropout: self.dropout,
        }
    }

    /// y[N,C] = block(x[N,C]) (output in `acts`, see [`Self::output`]).
    pub fn forward(
        &self,
        acts: &mut BlockActs,
        inp: BlockInput<'_>,
        cross: Option<CrossInput<'_>>,
        drop: Option<[DropoutSite; 3]>,
        w: Weights<'_>,
    ) {
        let (n, grid, norm) = (inp.grid.n(), inp.grid, self.norm);
        // Sublayer 1: self-attention.
        let attn_acts = &mut acts.attn;
        self.sublayer(&self.attn_ln).forward(
            &mut acts.attn_res,
            inp.x,
            drop.map(|d| d[0]),
            w.values,
            |out, x| {
                self.attn.forward(
                    attn_acts,
                    out,
                    AttnInput::self_attention(x, grid, inp.mask),
                    w,
                )
            },
        );
        // Sublayer 2: cross-attention over the encoder output.
        let mut x2: &[f32] = acts.attn_res.output(norm);
        if let (Some((cattn, cln)), Some(ci)) = (&self.cross, cross) {
            let cross_acts = &mut acts.cross;
            self.sublayer(cln).forward(
                &mut acts.cross_res,
                x2,
                drop.map(|d| d[1]),
                w.values,
                |out, x| cattn.forward(cross_acts, out, ci.attn_input(x, grid), w),
            );
            x2 = acts.cross_res.output(norm);
        }
        // Sublayer 3: feed-forward, fc2(gelu(fc1(x))). fc1 writes h1 into `dgelu`, where the GELU
        // replaces it by its derivative.
        let (h1, h2) = (&mut acts.dgelu, &mut acts.h2);
        fit(h1, n * self.fc1.oc);
        fit(h2, n * self.fc1.oc);
        self.sublayer(&self.ffn_ln).forward(
            &mut acts.ffn_res,
            x2,
            drop.map(|d| d[2]),
            w.values,
            |out, x| {
                self.fc1.forward(h1, x, w, n);
                gelu_forward_save_grad(h2, h1, self.gelu);
                self.fc2.forward(out, h2, w, n);
            },
        );
    }

    /// The block output after a forward.
    pub fn output<'a>(&self, acts: &'a BlockActs) -> &'a [f32] {
        acts.ffn_res.output(self.norm)
    }

    /// On entry `dres[N,C]` holds d(block output); on exit d(block input). Adds parameter gradients;
    /// adds d(encoder output) into `denc` for a block with cross-attention.
    pub fn backward(
        &self,
        acts: &BlockActs,
        s: &mut BlockScratch,
        dres: &mut [f32],
        inp: BlockInput<'_>,
        cross: Option<(CrossInput<'_>, &mut [f32])>,
        g: &mut Grads<'_>,
    ) {
        let (n, grid, norm) = (inp.grid.n(), inp.grid, self.norm);
        let has_cross = self.cross.is_some() && cross.is_some();
        let x_attn_out: &[f32] = acts.attn_res.output(norm);
        let x_ffn_in: &[f32] = if has_cross {
            acts.cross_res.output(norm)
        } else {
            x_attn_out
        };
        let BlockScratch { res, dh, attn: sa } = s;
        // Sublayer 3: feed-forward.
        self.sublayer(&self.ffn_ln).backward(
            &acts.ffn_res,
            x_ffn_in,
            dres,
            res,
            g,
            |dinp, df, g| {
                let f = n * self.fc1.oc;
                fit(dh, f);
                self.fc2.backward(DInp::Set(dh), df, &acts.h2, g, n);
                gelu_backward_from_grad(dh, &acts.dgelu);
                self.fc1.backward(
                    DInp::Add(dinp),
                    dh,
                    acts.ffn_res.f_input(x_ffn_in, norm),
                    g,
                    n,
                );
            },
        );
        // Sublayer 2: cross-attention.
        if let (Some((cattn, cln)), Some((ci, denc))) = (&self.cross, cross) {
            self.sublayer(cln).backward(
                &acts.cross_res,
                x_attn_out,
                dres,
                res,
                g,
                |dinp, df, g| {
                    let x = acts.cross_res.f_input(x_attn_out, norm);
                    cattn.backward(
                        &acts.cross,
                        sa,
                        df,
                        ci.attn_input(x, grid),
                        InputGrads {
                            dx: dinp,
                            dkv: Some(denc),
                        },
                        g,
                    );
                },
            );
        }
        // Sublayer 1: self-attention.
        self.sublayer(&self.attn_ln).backward(
            &acts.attn_res,
            inp.x,
            dres,
            res,
            g,
            |dinp, df, g| {
                let x = acts.attn_res.f_input(inp.x, norm);
                self.attn.backward(
                    &acts.attn,
                    sa,
                    df,
                    AttnInput::self_attention(x, grid, inp.mask),
                    InputGrads {
                        dx: dinp,
                        dkv: None,
                    },
                    g,
                );
            },
        );
    }
}
