//! `DataConfig`: the `[data]` section of a run config and the input of `remask prepare`. An empty
//! section prepares the embedded default corpus (the World English Bible) with a WordPiece tokenizer
//! of 8192 entries, rows of 128 tokens packed back to back, 2% held out for validation.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// How input files are read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum InputFormat {
    /// Chosen from each file's extension: `.jsonl`/`.json` → jsonl, `.parquet` → parquet,
    /// `.tsv` → tsv, anything else → text.
    #[default]
    Auto,
    /// Plain UTF-8 text; documents per `documents` (one per line, or separated by blank lines).
    Text,
    /// One JSON object per line; the document is the string field `text_field`.
    Jsonl,
    /// A Parquet file; the document is the string column `text_field`.
    Parquet,
    /// Sentence pairs `source TAB target`, one per line (translation, seq2seq).
    Tsv,
}

/// Where one document ends in a text file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DocumentSplit {
    /// Every non-empty line is a document.
    #[default]
    Line,
    /// Documents are separated by one or more blank lines; lines inside are joined with a newline.
    BlankLine,
}

/// Which tokenizer model to train.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TokenizerKind {
    /// BERT-style WordPiece (BERT normaliser: CJK characters split apart; `##` continuations).
    #[default]
    Wordpiece,
    /// GPT-2/RoBERTa-style byte-level BPE.
    Bpe,
}

/// The tokenizer: trained on the training inputs, or loaded from a `tokenizer.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TokenizerConfig {
    /// Load this `tokenizer.json` instead of training. Default: train.
    pub path: Option<PathBuf>,
    /// Model to train: `wordpiece` (default) or `bpe`.
    pub kind: TokenizerKind,
    /// Vocabulary size to train, special tokens included. Default 8192.
    pub vocab_size: u32,
    /// Lowercase the text before tokenizing (trained WordPiece only). Default false.
    pub lowercase: bool,
    /// Special tokens in the order pad, unk, cls/bos, sep/eos, mask; they get ids 0..5. Default:
    /// `[PAD] [UNK] [CLS] [SEP] [MASK]` for WordPiece, `<pad> <unk> <s> </s> <mask>` for BPE.
    pub special_tokens: Option<Vec<String>>,
    /// At most this many bytes of training text are sampled to learn the vocabulary from (a keyed,
    /// deterministic sample: [`crate::data::vocab_sample`]); a smaller corpus is used whole. Bounds
    /// the memory and time of learning. Default 64 MiB.
    pub sample_bytes: u64,
}

impl Default for TokenizerConfig {
    fn default() -> Self {
        Self {
            path: None,
            kind: TokenizerKind::Wordpiece,
            vocab_size: 8192,
            lowercase: false,
            special_tokens: None,
            sample_bytes: 64 << 20,
        }
    }
}

impl TokenizerConfig {
    /// The five special tokens (pad, unk, cls, sep, mask) this config names.
    pub fn special_token_names(&self) -> Vec<String> {
        if let Some(s) = &self.special_tokens {
            return s.clone();
        }
        let names: [&str; 5] = match self.kind {
            TokenizerKind::Wordpiece => ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"],
            TokenizerKind::Bpe => ["<pad>", "<unk>", "<s>", "</s>", "<mask>"],
        };
        names.iter().map(|s| s.to_string()).collect()
    }
}

/// How documents become rows of `seq_len` tokens.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Packing {
    /// Documents back to back (each as `[CLS] … [SEP]`), a row holds several; positions restart and
    /// document ids change at each boundary. Long documents continue in the next row. No padding
    /// except at the very end.
    #[default]
    Pack,
    /// One document per row, padded at the end; long documents are cut into several rows.
    Pad,
}

/// The `[data]` section.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DataConfig {
    /// A prepared directory (output of `remask prepare`) to train from. Default: none, the trainer
    /// prepares `inputs` itself (see [`crate::data::ensure_prepared`]).
    pub dir: Option<PathBuf>,
    /// Input files or directories (read recursively, files in sorted order). Empty (default): the
    /// embedded World English Bible (`data/web.en.txt`).
    pub inputs: Vec<PathBuf>,
    /// How files are read: `auto` (default, by extension), `text`, `jsonl`, `parquet`, `tsv`.
    pub format: InputFormat,
    /// Document boundaries in text files: `line` (default) or `blank-line`.
    pub documents: DocumentSplit,
    /// JSON field / Parquet column holding the text. Default `text`.
    pub text_field: String,
    /// The tokenizer to train or load.
    pub tokenizer: TokenizerConfig,
    /// T, tokens per row (special tokens included). Default 128.
    pub seq_len: u32,
    /// `pack` (default) or `pad`.
    pub packing: Packing,
    /// Share of documents held out for validation, chosen by a keyed hash of the document index.
    /// Default 0.02.
    pub validation_share: f32,
    /// Seed of the split, the static masks, the data order and the dynamic masks. Default 1234.
    pub seed: u64,
    /// A shard file is closed once it holds this many tokens (a longer document gets one of its own):
    /// bounds shard files (5 bytes a token) and `prepare`'s memory. Default 16777216 (about 84 MB).
    pub shard_tokens: u64,
}

impl Default for DataConfig {
    fn default() -> Self {
        Self {
            dir: None,
            inputs: Vec::new(),
            format: InputFormat::Auto,
            documents: DocumentSplit::Line,
            text_field: "text".to_string(),
            tokenizer: TokenizerConfig::default(),
            seq_len: 128,
            packing: Packing::Pack,
            validation_share: 0.02,
            seed: 1234,
            shard_tokens: 1 << 24,
        }
    }
}

impl DataConfig {
    /// Checks every value; errors name the dotted key under `prefix` (e.g. `data`).
    pub fn validate(&self, prefix: &str) -> Result<()> {
        let key = |k: &str| {
            if prefix.is_empty() {
                k.to_string()
            } else {
                format!("{prefix}.{k}")
            }
        };
        if self.seq_len < 4 || self.seq_len > 1 << 20 {
            return Err(Error::config(
                key("seq_len"),
                format!("must be between 4 and 1048576, got {}", self.seq_len),
            ));
        }
        let v = self.validation_share;
        if !(v.is_finite() && (0.0..1.0).contains(&v)) {
            return Err(Error::config(
                key("validation_share"),
                format!("must lie in [0, 1), got {v}"),
            ));
        }
        if self.shard_tokens == 0 || self.shard_tokens > 1 << 32 {
            return Err(Error::config(
                key("shard_tokens"),
                format!(
                    "must be between 1 and 4294967296, got {}",
                    self.shard_tokens
                ),
            ));
        }
        if self.tokenizer.sample_bytes == 0 {
            return Err(Error::config(
                key("tokenizer.sample_bytes"),
                "must be at least 1",
            ));
        }
        if self.text_field.is_empty() {
            return Err(Error::config(key("text_field"), "must not be empty"));
        }
        let names = self.tokenizer.special_token_names();
        if names.len() != 5 || names.iter().any(|n| n.is_empty()) {
            return Err(Error::config(
                key("tokenizer.special_tokens"),
                format!("must list 5 non-empty tokens (pad, unk, cls, sep, mask), got {names:?}"),
            ));
        }
        if self.tokenizer.path.is_none() {
            let min = names.len() as u32 + 64;
            if self.tokenizer.vocab_size < min {
                return Err(Error::config(
                    key("tokenizer.vocab_size"),
                    format!(
                        "{} is too small: it must hold the {} special tokens plus the alphabet (at least {min})",
                        self.tokenizer.vocab_size,
                        names.len()
                    ),
                ));
            }
            if self.tokenizer.vocab_size > 1 << 24 {
                return Err(Error::config(
                    key("tokenizer.vocab_size"),
                    "must be at most 16777216",
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_section_gives_documented_defaults() {
        let c: DataConfig = toml::from_str("").unwrap();
        assert_eq!(c, DataConfig::default());
        c.validate("data").unwrap();
        let c: DataConfig = toml::from_str(
            "seq_len = 64\npacking = \"pad\"\n[tokenizer]\nkind = \"bpe\"\nvocab_size = 1000",
        )
        .unwrap();
        assert_eq!(c.packing, Packing::Pad);
        assert_eq!(c.tokenizer.special_token_names()[4], "<mask>");
        assert!(toml::from_str::<DataConfig>("seqlen = 3").is_err());
    }

    #[test]
    fn validation_names_the_dotted_key() {
        let c = DataConfig {
            validation_share: 1.0,
            ..Default::default()
        };
        assert!(c
            .validate("data")
            .unwrap_err()
            .to_string()
            .contains("data.validation_share"));
        let mut c = DataConfig::default();
        c.tokenizer.vocab_size = 5;
        let e = c.validate("data").unwrap_err().to_string();
        assert!(
            e.contains("data.tokenizer.vocab_size") && e.contains('5'),
            "{e}"
        );
    }
}
