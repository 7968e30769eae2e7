//! The attention-mask kinds a config can name.

use remask_kernels::block_mask::BlockMask;
use serde::{Deserialize, Serialize};

use super::MaskFn;
use crate::batch::Batch;

/// Which attention mask a model's self-attention uses. Static kinds depend only on the shape;
/// dynamic kinds are built per batch from the data (lengths, document ids, prefix lengths).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum AttentionMaskSpec {
    /// Bidirectional, keys restricted to the real tokens of the row (dynamic: from `lengths`).
    Padding,
    /// Causal: query q reads keys 0..=q (and no padding).
    Causal,
    /// Packed documents: attend only within the same document (dynamic: from `doc_ids`),
    /// optionally causal inside it.
    Document { causal: bool },
    /// Sliding window of `window` keys ending at the query (causal) or centred on it.
    SlidingWindow { window: usize, causal: bool },
    /// Prefix-LM: bidirectional over the row's prefix (`prefix_lengths`), causal after it.
    PrefixLm,
}

impl AttentionMaskSpec {
    /// Whether the mask is fixed for a shape (causal, sliding window) rather than built from the
    /// batch's data. Both kinds still exclude padding keys, so both are compiled per batch, through
    /// the same path.
    pub fn is_static(&self) -> bool {
        matches!(
            self,
            AttentionMaskSpec::Causal | AttentionMaskSpec::SlidingWindow { .. }
        )
    }

    /// The predicate for one batch's self-attention. Every kind also excludes padding keys
    /// (`k >= lengths[b]`); padding queries of the document mask read nothing (their output is 0).
    pub fn predicate(&self, batch: &Batch) -> MaskFn {
        let t = batch.seq_len;
        let lengths: Vec<u32> = (0..batch.batch_size)
            .map(|b| batch.lengths.get(b).copied().unwrap_or(t as u32))
            .collect();
        let padding = MaskFn::padding(&lengths);
        match *self {
            AttentionMaskSpec::Padding => padding,
            AttentionMaskSpec::Causal => MaskFn::causal() & padding,
            AttentionMaskSpec::Document { causal } => {
                MaskFn::document(&batch.doc_ids, t, causal) & padding
            }
            AttentionMaskSpec::SlidingWindow { window, causal } => {
                MaskFn::sliding_window(window, causal) & padding
            }
            AttentionMaskSpec::PrefixLm => {
                let p: Vec<u32> = (0..batch.batch_size)
                    .map(|b| batch.prefix_lengths.get(b).copied().unwrap_or(0))
                    .collect();
                MaskFn::prefix_lm(&p) & padding
            }
        }
    }

    /// The compiled self-attention mask of `batch` (`[B, 1, T, T]` in tiles of `tile`, e.g.
    /// [`DEFAULT_TILE`](remask_kernels::block_mask::DEFAULT_TILE)). Shared by every head.
    pub fn block_mask(&self, batch: &Batch, tile: usize) -> BlockMask {
        self.predicate(batch)
            .compile(batch.batch_size, 1, batch.seq_len, batch.seq_len, tile)
    }
}
