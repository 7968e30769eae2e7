//! A row as masking sees it, where its masked form goes, and the key of its random draws.
//!
//! T = positions per row. Masking reads a row's token ids and word starts (never its documents or
//! positions: those belong to packing) and writes the corrupted input and the labels.

use crate::batch::IGNORE_INDEX;

/// One row to mask. Both slices are `[T]`.
#[derive(Clone, Copy, Debug)]
pub struct TokenRow<'a> {
    /// Token ids; positions from `length` on are padding.
    pub ids: &'a [u32],
    /// True where a token starts a word (the tokenizer's pre-tokenizer words, or jieba's).
    pub word_starts: &'a [bool],
    /// Real tokens at the start of the row; the rest is padding.
    pub length: usize,
}

/// An owned [`TokenRow`], for callers that keep rows (statistics, tests) or fill one buffer per row.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TokenRowBuf {
    pub ids: Vec<u32>,
    pub word_starts: Vec<bool>,
    pub length: usize,
}

impl TokenRowBuf {
    /// A buffer of T padding positions.
    pub fn new(t: usize) -> Self {
        Self {
            ids: vec![0; t],
            word_starts: vec![false; t],
            length: 0,
        }
    }

    pub fn view(&self) -> TokenRow<'_> {
        TokenRow {
            ids: &self.ids,
            word_starts: &self.word_starts,
            length: self.length,
        }
    }
}

/// Where the masked form of a row goes. Both slices are `[T]`.
#[derive(Debug)]
pub struct MaskedRow<'a> {
    /// The model's input: the corrupted id at chosen positions, the original id elsewhere.
    pub input: &'a mut [u32],
    /// The original id at chosen positions, [`IGNORE_INDEX`] elsewhere.
    pub labels: &'a mut [i32],
}

impl MaskedRow<'_> {
    /// Labels from chosen flags: the original token where chosen, [`IGNORE_INDEX`] elsewhere.
    pub fn set_labels(&mut self, original: &[u32], chosen: &[bool]) {
        for ((l, &id), &c) in self.labels.iter_mut().zip(original).zip(chosen) {
            *l = if c { id as i32 } else { IGNORE_INDEX };
        }
    }
}

/// The key of one row's random draws: (run seed, key epoch, row index). The same key gives the same
/// masks whatever thread, batch size or process computes them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MaskKey {
    pub seed: u64,
    /// The epoch the masks belong to (for static masking, the copy: see `MaskPlan::key_epoch`).
    pub epoch: u64,
    /// The row's index in its split.
    pub index: u64,
}
