//! Which input positions an output position may legitimately depend on: the transitive closure of a
//! per-layer attention mask over the depth of the model.
//!
//! One layer lets query q read the keys its mask allows, and the residual stream keeps q's own input;
//! after L layers q may depend on k when k reaches q in at most L hops of (mask ∪ identity). For
//! padding, causal, document and prefix-LM masks the closure equals the mask (plus q itself); for a
//! sliding window it widens by the window with every layer.
//!
//! Relations compose: a decoder output reads target positions through its self-attention closure,
//! each of those reads encoder outputs through the cross-attention mask, and each encoder output reads
//! source positions through the encoder's closure ([`Reach::then`]).
//!
//! Rows of a batch never mix: the relation is per row, `[B, Tq, Tk]`.

use crate::attention::MaskFn;

/// The allowed dependency relation of one batch, `[B, Tq, Tk]` as bitsets over keys.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reach {
    batch: usize,
    tq: usize,
    tk: usize,
    words: usize,
    /// Bit k of row (b, q) set = output (b, q) may depend on input (b, k). `[B, Tq, words]`
    bits: Vec<u64>,
}

impl Reach {
    /// The empty relation `[B, Tq, Tk]`.
    fn empty(batch: usize, tq: usize, tk: usize) -> Self {
        let words = tk.div_ceil(64).max(1);
        Reach {
            batch,
            tq,
            tk,
            words,
            bits: vec![0u64; batch * tq * words],
        }
    }

    fn set(&mut self, b: usize, q: usize, k: usize) {
        self.bits[(b * self.tq + q) * self.words + k / 64] |= 1 << (k % 64);
    }

    /// The relation `mask` allows between `tq` queries and `tk` keys in one layer, without the
    /// residual (cross-attention: a decoder query reads encoder outputs). A head-dependent mask counts
    /// a key allowed for any head; `heads` is the model's head count.
    pub fn attention(mask: &MaskFn, batch: usize, heads: usize, tq: usize, tk: usize) -> Self {
        let mut r = Self::empty(batch, tq, tk);
        let heads = if mask.per_head() { heads.max(1) } else { 1 };
        for b in 0..batch {
            for q in 0..tq {
                for k in 0..tk {
                    if (0..heads).any(|h| mask.allows(b, h, q, k)) {
                        r.set(b, q, k);
                    }
                }
            }
        }
        r
    }

    /// The one-layer self-attention relation of `mask` (see [`Self::attention`]), with each query also
    /// reading itself through the residual.
    pub fn one_layer(mask: &MaskFn, batch: usize, heads: usize, seq_len: usize) -> Self {
        let mut r = Self::attention(mask, batch, heads, seq_len, seq_len);
        for b in 0..batch {
            for q in 0..seq_len {
                r.set(b, q, q);
            }
        }
        r
    }

    /// The identity `[B, T, T]`: each position depends on itself only.
    pub fn identity(batch: usize, seq_len: usize) -> Self {
        let mut r = Self::empty(batch, seq_len, seq_len);
        for b in 0..batch {
            for q in 0..seq_len {
                r.set(b, q, q);
            }
        }
        r
    }

    /// The relation after `layers` layers of `mask`: reach_L = reach_1 then reach_{L−1}. Zero layers
    /// leave each position depending on itself only.
    pub fn closure(
        mask: &MaskFn,
        batch: usize,
        heads: usize,
        seq_len: usize,
        layers: usize,
    ) -> Self {
        let one = Self::one_layer(mask, batch, heads, seq_len);
        let mut cur = Self::identity(batch, seq_len);
        for _ in 0..layers {
            cur = one.then(&cur);
        }
        cur
    }

    /// The composition `[B, Tq, Tk]` of `self` `[B, Tq, Tm]` and `next` `[B, Tm, Tk]`: q may depend
    /// on k when some j that q may depend on may itself depend on k.
    pub fn then(&self, next: &Reach) -> Reach {
        assert!(
            self.batch == next.batch && self.tk == next.tq,
            "composing [B, Tq, Tm] with [B, Tm, Tk]"
        );
        let mut out = Self::empty(self.batch, self.tq, next.tk);
        let words = next.words;
        for b in 0..self.batch {
            for q in 0..self.tq {
                let dst = (b * self.tq + q) * words;
                for j in 0..self.tk {
                    if self.get(b, q, j) {
                        let src = (b * next.tq + j) * words;
                        for w in 0..words {
                            out.bits[dst + w] |= next.bits[src + w];
                        }
                    }
                }
            }
        }
        out
    }

    /// Whether output (b, q) may depend on input (b, k).
    pub fn get(&self, b: usize, q: usize, k: usize) -> bool {
        self.bits[(b * self.tq + q) * self.words + k / 64] >> (k % 64) & 1 == 1
    }

    /// The keys of row b that output (b, q) must not depend on, ascending.
    pub fn forbidden(&self, b: usize, q: usize) -> Vec<usize> {
        (0..self.tk).filter(|&k| !self.get(b, q, k)).collect()
    }

    pub fn batch(&self) -> usize {
        self.batch
    }

    /// Output (query) positions per row.
    pub fn queries(&self) -> usize {
        self.tq
    }

    /// Input (key) positions per row; equal to [`Self::queries`] for self-attention.
    pub fn seq_len(&self) -> usize {
        self.tk
    }
}
