//! Which input positions an output position may legitimately depend on: the transitive closure of a
//! per-layer attention mask over the depth of the model.
//!
//! One layer lets query q read the keys its mask allows, and the residual stream keeps q's own input;
//! after L layers q may depend on k when k reaches q in at most L hops of (mask ∪ identity). For
//! padding, causal, document and prefix-LM masks the closure equals the mask (plus q itself); for a
//! sliding window it widens by the window with every layer.
//!
//! Rows of a batch never mix: the relation is per row, `[B, T, T]`.

use crate::attention::MaskFn;

/// The allowed dependency relation of one batch, `[B, T, T]` as bitsets over keys.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reach {
    batch: usize,
    seq_len: usize,
    words: usize,
    /// Bit k of row (b, q) set = output (b, q) may depend on input (b, k). `[B, T, words]`
    bits: Vec<u64>,
}

impl Reach {
    /// The one-layer relation of `mask` (a head-dependent mask counts a key allowed for any head;
    /// `heads` is the model's head count), with each query also reading itself through the residual.
    pub fn one_layer(mask: &MaskFn, batch: usize, heads: usize, seq_len: usize) -> Self {
        let words = seq_len.div_ceil(64).max(1);
        let mut bits = vec![0u64; batch * seq_len * words];
        let heads = if mask.per_head() { heads.max(1) } else { 1 };
        for b in 0..batch {
            for q in 0..seq_len {
                let row = &mut bits[(b * seq_len + q) * words..][..words];
                for k in 0..seq_len {
                    if k == q || (0..heads).any(|h| mask.allows(b, h, q, k)) {
                        row[k / 64] |= 1 << (k % 64);
                    }
                }
            }
        }
        Reach { batch, seq_len, words, bits }
    }

    /// The relation after `layers` layers of `mask`: reach_L[q] = ∪ over j in reach_1[q] of
    /// reach_{L−1}[j]. Zero layers leave each position depending on itself only.
    pub fn closure(mask: &MaskFn, batch: usize, heads: usize, seq_len: usize, layers: usize) -> Self {
        let one = Self::one_layer(mask, batch, heads, seq_len);
        let words = one.words;
        let mut cur = Reach { bits: vec![0u64; one.bits.len()], ..one.clone() };
        for b in 0..batch {
            for q in 0..seq_len {
                cur.bits[(b * seq_len + q) * words + q / 64] |= 1 << (q % 64);
            }
        }
        for _ in 0..layers {
            let mut next = vec![0u64; cur.bits.len()];
            for b in 0..batch {
                for q in 0..seq_len {
                    let out = (b * seq_len + q) * words;
                    for j in 0..seq_len {
                        if one.get(b, q, j) {
                            let src = (b * seq_len + j) * words;
                            for w in 0..words {
                                next[out + w] |= cur.bits[src + w];
                            }
                        }
                    }
                }
            }
            cur.bits = next;
        }
        cur
    }

    /// Whether output (b, q) may depend on input (b, k).
    pub fn get(&self, b: usize, q: usize, k: usize) -> bool {
        self.bits[(b * self.seq_len + q) * self.words + k / 64] >> (k % 64) & 1 == 1
    }

    /// The keys of row b that output (b, q) must not depend on, ascending.
    pub fn forbidden(&self, b: usize, q: usize) -> Vec<usize> {
        (0..self.seq_len).filter(|&k| !self.get(b, q, k)).collect()
    }

    pub fn batch(&self) -> usize {
        self.batch
    }

    pub fn seq_len(&self) -> usize {
        self.seq_len
    }
}
