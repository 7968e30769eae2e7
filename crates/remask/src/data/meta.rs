//! `meta.json`: what a prepared directory holds: the format version, the configs `prepare` ran with,
//! statistics per split, the special token ids and the static mask copies.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::config::DataConfig;
use super::tokenizer::SpecialTokens;
use super::vocab_sample::VocabSource;
use crate::atomic_write::write_atomic;
use crate::masking::{MaskingConfig, NgramMeta, StaticMeta, StoredCopies};
use crate::{Error, Result};

/// Version of the prepared-directory layout.
pub const FORMAT_VERSION: u32 = 1;

/// Which split of a prepared directory.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Split {
    Train,
    Validation,
}

impl Split {
    pub fn name(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Validation => "validation",
        }
    }
}

/// Statistics of one split.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SplitStats {
    pub documents: u64,
    /// Document tokens (no special tokens).
    pub tokens: u64,
    /// Rows of T after packing.
    pub rows: u64,
    /// Share of row positions that are padding.
    pub padding_share: f64,
    /// Shard file names.
    pub shards: Vec<String>,
    /// Target-side shard file names (TSV pairs only).
    pub target_shards: Vec<String>,
    /// Target-side tokens (TSV pairs only).
    pub target_tokens: u64,
}

/// `meta.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Meta {
    pub format_version: u32,
    pub data: DataConfig,
    pub masking: MaskingConfig,
    pub vocab_size: u32,
    pub special_tokens: SpecialTokens,
    /// True when the inputs were TSV sentence pairs (seq2seq available).
    pub pairs: bool,
    pub train: SplitStats,
    pub validation: SplitStats,
    pub static_masks: Option<StaticMeta>,
    /// What the vocabulary came from (absent in directories prepared before it was recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vocabulary: Option<VocabSource>,
    /// PMI masking's n-gram vocabulary (`ngrams.bin`); absent in directories prepared before it
    /// existed.
    #[serde(default)]
    pub ngrams: Option<NgramMeta>,
}

impl Meta {
    pub fn read(dir: &Path) -> Result<Self> {
        let path = dir.join("meta.json");
        let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
        let meta: Meta = serde_json::from_str(&text).map_err(|e| {
            Error::data(
                &path,
                format!("unreadable meta.json ({e}); run `remask prepare` again"),
            )
        })?;
        if meta.format_version != FORMAT_VERSION {
            return Err(Error::data(
                &path,
                format!(
                    "prepared with format version {}, this build reads {FORMAT_VERSION}",
                    meta.format_version
                ),
            ));
        }
        Ok(meta)
    }

    pub(crate) fn write(&self, dir: &Path) -> Result<()> {
        let text = serde_json::to_string_pretty(self)
            .map_err(|e| Error::Other(format!("meta.json: {e}")))?;
        write_atomic(&dir.join("meta.json"), text.as_bytes())
    }

    /// Statistics of a split.
    pub fn split(&self, split: Split) -> &SplitStats {
        match split {
            Split::Train => &self.train,
            Split::Validation => &self.validation,
        }
    }

    /// What the directory `dir` (described by this meta) stores for static masking of its `rows`
    /// training rows.
    pub fn stored_copies<'a>(&'a self, dir: &'a Path, rows: u64) -> StoredCopies<'a> {
        StoredCopies {
            dir,
            made_with: &self.masking,
            meta: self.static_masks.as_ref(),
            rows: rows as usize,
            seq_len: self.data.seq_len as usize,
        }
    }
}

/// One line per split for people.
pub fn describe(meta: &Meta) -> String {
    let mut s = format!(
        "vocab {} | seq_len {} | packing {:?}{}\n",
        meta.vocab_size,
        meta.data.seq_len,
        meta.data.packing,
        if meta.pairs { " | sentence pairs" } else { "" }
    );
    for (name, st) in [("train", &meta.train), ("validation", &meta.validation)] {
        s.push_str(&format!(
            "{name:>10}: {} documents, {} tokens, {} rows, padding {:.2}%\n",
            st.documents,
            st.tokens,
            st.rows,
            100.0 * st.padding_share
        ));
    }
    if let Some(ng) = &meta.ngrams {
        s.push_str(&format!(
            "n-grams (PMI masking): {} of 2-5 words, from {} training words\n",
            ng.entries, ng.stats.words
        ));
    }
    if let Some(sm) = &meta.static_masks {
        s.push_str(&format!(
            "static masks: {} copies, {} bytes ({:.3} bytes per training token)\n",
            sm.dupe_factor, sm.bytes, sm.bytes_per_training_token
        ));
    }
    if let Some(VocabSource::Learnt {
        documents,
        bytes,
        corpus_documents,
        corpus_bytes,
        ..
    }) = &meta.vocabulary
    {
        s.push_str(&format!(
            "vocabulary: learnt from {documents} of {corpus_documents} training documents ({:.1} of {:.1} MB)\n",
            *bytes as f64 / 1e6,
            *corpus_bytes as f64 / 1e6
        ));
    }
    s
}
