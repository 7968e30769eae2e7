//! The attention-mask kinds a config can name.

use serde::{Deserialize, Serialize};

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
