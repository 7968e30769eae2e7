//! A stack: embeddings, then blocks, then (pre-LN models) a final LayerNorm. The encoder, the
//! decoder and both halves of the encoder-decoder are stacks.
//!
//! B = batch, T = positions, N = B·T, C = channels.

use remask_kernels::block_mask::BlockMask;
use remask_kernels::rng::{key, Purpose};

use super::block::{Block, BlockActs, BlockInput, BlockScratch, CrossInput, DropoutSite};
use super::buffers::{copy, fit, zero, Grid, RowMap};
use super::embedding::{EmbActs, EmbScratch, Embeddings, Tokens};
use super::norm::{LayerNorm, NormActs};
use super::params::{Grads, LinearWeight, Weights};

/// The token-level inputs of one stack forward. With a row map, `ids`, `positions` and `types`
/// hold only the mapped (real) positions, and every per-row buffer has that many rows.
#[derive(Clone, Copy)]
pub struct StackInput<'a> {
    pub ids: &'a [u32],
    pub positions: &'a [u32],
    pub types: Option<&'a [u32]>,
    pub b: usize,
    pub t: usize,
    /// The self-attention mask.
    pub mask: &'a BlockMask,
    /// Grid position `b·T + t` of each row when padding rows are dropped.
    pub rows: RowMap<'a>,
}

impl<'a> StackInput<'a> {
    /// Rows every per-row buffer has: the mapped rows, or B·T.
    pub fn n(&self) -> usize {
        self.grid().n()
    }

    /// The rows of the B × T grid the per-row buffers hold.
    pub fn grid(&self) -> Grid<'a> {
        Grid {
            b: self.b,
            t: self.t,
            map: self.rows,
        }
    }

    /// What the embeddings read.
    pub fn tokens(&self) -> Tokens<'a> {
        Tokens {
            ids: self.ids,
            positions: self.positions,
            types: self.types,
        }
    }

    /// A block's input: the rows `x` and the self-attention mask.
    fn block_input(&self, x: &'a [f32]) -> BlockInput<'a> {
        BlockInput {
            x,
            grid: self.grid(),
            mask: self.mask,
        }
    }
}

/// Embeddings, blocks, optional final LayerNorm.
#[derive(Clone, Debug)]
pub struct Stack {
    pub emb: Embeddings,
    pub blocks: Vec<Block>,
    pub final_ln: Option<LayerNorm>,
    pub c: usize,
    pub dropout: f32,
    /// Distinguishes this stack's dropout keys from another stack's in the same model.
    pub site: u64,
}

/// Saved activations of a stack.
#[derive(Clone, Debug, Default)]
pub struct StackActs {
    pub emb: EmbActs,
    pub blocks: Vec<BlockActs>,
    /// The final LayerNorm (pre-LN models).
    pub final_ln: NormActs,
}

/// Gradient scratch of a stack. `dres` carries the gradient of the residual stream.
#[derive(Clone, Debug, Default)]
pub struct StackScratch {
    pub dres: Vec<f32>,
    pub block: BlockScratch,
    pub emb: EmbScratch,
}

impl Stack {
    /// The weights of its linear layers (what the bf16 copy holds).
    pub fn linear_weights(&self) -> Vec<LinearWeight> {
        self.blocks.iter().flat_map(Block::linear_weights).collect()
    }

    fn drop_site(&self, dropout_key: Option<u64>, layer: u64, sub: u64) -> Option<DropoutSite> {
        dropout_key.map(|k| DropoutSite {
            p: self.dropout,
            key: key(k, Purpose::Dropout, self.site, layer * 4 + sub),
        })
    }

    /// h[N,C] = stack(inputs); read it with [`Self::output`]. `dropout_key` = None disables dropout.
    pub fn forward(
        &self,
        a: &mut StackActs,
        inp: StackInput<'_>,
        cross: Option<CrossInput<'_>>,
        dropout_key: Option<u64>,
        w: Weights<'_>,
    ) {
        let n = inp.n();
        let dropout_key = dropout_key.filter(|_| self.dropout > 0.0);
        if a.blocks.len() != self.blocks.len() {
            a.blocks.resize_with(self.blocks.len(), BlockActs::default);
        }
        self.emb.forward(
            &mut a.emb,
            inp.tokens(),
            self.drop_site(dropout_key, 0, 3),
            w.values,
        );
        let mut x: &[f32] = self.emb.output(&a.emb);
        for (l, (blk, acts)) in self.blocks.iter().zip(a.blocks.iter_mut()).enumerate() {
            let l = l as u64 + 1;
            let drop = dropout_key.map(|_| {
                [0, 1, 2].map(|s| {
                    self.drop_site(dropout_key, l, s)
                        .unwrap_or(DropoutSite { p: 0.0, key: 0 })
                })
            });
            blk.forward(acts, inp.block_input(x), cross, drop, w);
            let acts: &BlockActs = acts;
            x = blk.output(acts);
        }
        if let Some(ln) = &self.final_ln {
            ln.forward(&mut a.final_ln, x, w.values, n);
        }
    }

    /// The input of the final LayerNorm (the last block's output, or the embeddings without blocks).
    fn last_block_output<'a>(&self, a: &'a StackActs) -> &'a [f32] {
        match (self.blocks.last(), a.blocks.last()) {
            (Some(blk), Some(acts)) => blk.output(acts),
            _ => self.emb.output(&a.emb),
        }
    }

    /// The stack output `[N,C]` after a forward.
    pub fn output<'a>(&self, a: &'a StackActs) -> &'a [f32] {
        if self.final_ln.is_some() {
            &a.final_ln.out
        } else {
            self.last_block_output(a)
        }
    }

    /// Zeroes and returns the buffer where the caller puts d(output) `[N,C]` before [`Self::backward`].
    pub fn begin_backward<'a>(&self, s: &'a mut StackScratch, n: usize) -> &'a mut [f32] {
        fit(&mut s.dres, n * self.c);
        zero(&mut s.dres);
        &mut s.dres
    }

    /// Backward of the whole stack from d(output) in `s.dres`; adds parameter gradients and, with
    /// cross-attention, d(encoder output) into the given buffer.
    pub fn backward(
        &self,
        a: &StackActs,
        s: &mut StackScratch,
        inp: StackInput<'_>,
        mut cross: Option<(CrossInput<'_>, &mut [f32])>,
        g: &mut Grads<'_>,
    ) {
        let n = inp.n();
        let StackScratch {
            dres,
            block: bs,
            emb: es,
        } = s;
        if let Some(ln) = &self.final_ln {
            let tmp = &mut bs.res.tmp;
            fit(tmp, n * self.c);
            zero(tmp);
            ln.backward(tmp, dres, self.last_block_output(a), &a.final_ln, g, n);
            copy(dres, tmp);
        }
        for l in (0..self.blocks.len()).rev() {
            let x: &[f32] = if l == 0 {
                self.emb.output(&a.emb)
            } else {
                self.blocks[l - 1].output(&a.blocks[l - 1])
            };
            let c = cross.as_mut().map(|(ci, d)| (*ci, &mut **d));
            self.blocks[l].backward(&a.blocks[l], bs, dres, inp.block_input(x), c, g);
        }
        self.emb.backward(&a.emb, es, dres, inp.tokens(), g);
    }
}
