//! Input embeddings: token · scale + position (learned or sinusoidal) + token type, then an optional
//! LayerNorm and dropout.
//!
//! N = rows (B·T), C = channels, V = vocabulary, P = position table rows.

use remask_kernels::dropout::{dropout_backward, dropout_forward};
use remask_kernels::embedding::{embedding_accumulate, embedding_backward, embedding_forward};

use super::block::DropoutSite;
use super::buffers::{fit, zero};
use super::layout::Param;
use super::norm::{LayerNorm, NormActs};
use super::params::Grads;

/// The token-level inputs of the embeddings, one entry per row: token ids, positions (before any
/// offset) and token types (when the model has a type table).
#[derive(Clone, Copy, Debug)]
pub struct Tokens<'a> {
    pub ids: &'a [u32],
    pub positions: &'a [u32],
    pub types: Option<&'a [u32]>,
}

/// How positions enter.
#[derive(Clone, Debug)]
pub enum Positions {
    /// A learned table `[P, C]`, read at `position + offset`.
    Learned { table: Param, offset: usize },
    /// A fixed sinusoidal table `[P, C]` (not a parameter): first half sin, second half cos.
    Sinusoidal { table: Vec<f32> },
}

/// The embedding layer.
#[derive(Clone, Debug)]
pub struct Embeddings {
    /// Token table `[V, C]` (shared with the output head when tied).
    pub word: Param,
    pub positions: Positions,
    /// Token-type table `[types, C]`.
    pub types: Option<Param>,
    pub ln: Option<LayerNorm>,
    pub scale: f32,
    pub c: usize,
    pub dropout: f32,
}

/// Saved activations of the embedding layer.
#[derive(Clone, Debug, Default)]
pub struct EmbActs {
    /// Position ids after the offset `[N]`.
    pub pos_ids: Vec<u32>,
    /// The sum of the embeddings `[N,C]`.
    pub sum: Vec<f32>,
    /// The LayerNorm after the sum.
    pub ln: NormActs,
    /// After dropout `[N,C]` (only when dropout ran).
    pub dropped: Vec<f32>,
    pub keep: Vec<u8>,
}

/// Scratch of the embedding backward.
#[derive(Clone, Debug, Default)]
pub struct EmbScratch {
    pub a: Vec<f32>,
    pub b: Vec<f32>,
}

/// The sinusoidal table `[P, C]` (Vaswani et al.; Marian / fairseq layout): for j < C/2,
/// `pe[p, j] = sin(p · 10000^(−2j/C))` and `pe[p, C/2 + j] = cos(p · 10000^(−2j/C))`.
pub fn sinusoidal_table(p: usize, c: usize) -> Vec<f32> {
    let half = c / 2;
    let mut t = vec![0.0f32; p * c];
    for pos in 0..p {
        for j in 0..half {
            let angle = pos as f64 * 10000f64.powf(-2.0 * j as f64 / c as f64);
            t[pos * c + j] = angle.sin() as f32;
            t[pos * c + half + j] = angle.cos() as f32;
        }
    }
    t
}

impl Embeddings {
    /// out[N,C] = LN(word[ids]·scale + pos[positions] + type[types]) with dropout, N = `t.ids.len()`;
    /// see [`Self::output`]. Ids and positions must already be validated against the tables.
    pub fn forward(
        &self,
        a: &mut EmbActs,
        t: Tokens<'_>,
        drop: Option<DropoutSite>,
        params: &[f32],
    ) {
        let (c, n) = (self.c, t.ids.len());
        fit(&mut a.sum, n * c);
        embedding_forward(&mut a.sum, t.ids, self.word.get(params), c);
        if self.scale != 1.0 {
            a.sum.iter_mut().for_each(|x| *x *= self.scale);
        }
        match &self.positions {
            Positions::Learned { table, offset } => {
                fit(&mut a.pos_ids, n);
                for (o, &p) in a.pos_ids.iter_mut().zip(t.positions) {
                    *o = p + *offset as u32;
                }
                embedding_accumulate(&mut a.sum, &a.pos_ids, table.get(params), c);
            }
            Positions::Sinusoidal { table } => {
                embedding_accumulate(&mut a.sum, t.positions, table, c)
            }
        }
        if let (Some(tt), Some(types)) = (self.types, t.types) {
            embedding_accumulate(&mut a.sum, types, tt.get(params), c);
        }
        if let Some(ln) = &self.ln {
            ln.forward(&mut a.ln, &a.sum, params, n);
        }
        match drop {
            Some(d) if d.p > 0.0 => {
                fit(&mut a.dropped, n * c);
                fit(&mut a.keep, n * c);
                let src = if self.ln.is_some() { &a.ln.out } else { &a.sum };
                dropout_forward(&mut a.dropped, &mut a.keep, src, d.p, d.key);
            }
            _ => a.keep.clear(),
        }
    }

    /// The embedding output `[N,C]` after a forward.
    pub fn output<'a>(&self, a: &'a EmbActs) -> &'a [f32] {
        if !a.keep.is_empty() {
            &a.dropped
        } else if self.ln.is_some() {
            &a.ln.out
        } else {
            &a.sum
        }
    }

    /// Given dout[N,C] (d of the output), adds the table gradients.
    pub fn backward(
        &self,
        a: &EmbActs,
        s: &mut EmbScratch,
        dout: &[f32],
        t: Tokens<'_>,
        g: &mut Grads<'_>,
    ) {
        let (c, n) = (self.c, t.ids.len());
        let mut d: &[f32] = dout;
        if !a.keep.is_empty() {
            fit(&mut s.a, n * c);
            zero(&mut s.a);
            dropout_backward(&mut s.a, d, &a.keep, self.dropout);
            d = &s.a;
        }
        if let Some(ln) = &self.ln {
            fit(&mut s.b, n * c);
            zero(&mut s.b);
            ln.backward(&mut s.b, d, &a.sum, &a.ln, g, n);
            d = &s.b;
        }
        // d is now d(sum).
        match &self.positions {
            Positions::Learned { table, .. } => {
                embedding_backward(table.get_mut(g.buf), d, &a.pos_ids, c)
            }
            // The sinusoidal table is fixed: nothing to learn.
            Positions::Sinusoidal { .. } => {}
        }
        if let (Some(tt), Some(types)) = (self.types, t.types) {
            embedding_backward(tt.get_mut(g.buf), d, types, c);
        }
        if self.scale == 1.0 {
            embedding_backward(self.word.get_mut(g.buf), d, t.ids, c);
            return;
        }
        // Token embeddings were scaled: d(word row) = scale · d(sum). Write the scaled copy into the
        // scratch buffer that does not hold d.
        if self.ln.is_some() {
            fit(&mut s.a, n * c);
            for (o, &x) in s.a.iter_mut().zip(&s.b) {
                *o = x * self.scale;
            }
            embedding_backward(self.word.get_mut(g.buf), &s.a, t.ids, c);
        } else {
            let src: &[f32] = if a.keep.is_empty() { dout } else { &s.a };
            let mut scaled = std::mem::take(&mut s.b);
            fit(&mut scaled, n * c);
            for (o, &x) in scaled.iter_mut().zip(src) {
                *o = x * self.scale;
            }
            embedding_backward(self.word.get_mut(g.buf), &scaled, t.ids, c);
            s.b = scaled;
        }
    }
}
