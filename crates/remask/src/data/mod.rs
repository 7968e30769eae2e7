//! Data pipeline: readers, tokenizer, shards, packing, batching.
//!
//! `remask prepare` ([`prepare()`]) reads documents ([`reader`]), trains or loads a tokenizer
//! ([`tokenizer`]), splits documents into train / validation by a keyed hash, writes memory-mapped
//! shards ([`shard`]), the training split's token counts ([`token_counts`]), PMI masking's n-gram
//! vocabulary ([`ngram_pass`]) and `meta.json` ([`meta`]),
//! and, for static masking, has the masking plan write its K copies. A [`Loader`] opens a prepared
//! directory for one split, packs documents into rows ([`packer`]), takes their MLM masks from a
//! [`crate::masking::MaskPlan`] and implements [`crate::BatchSource`].

pub mod ascii_words;
pub mod config;
pub mod loader;
pub mod merge;
pub mod meta;
pub mod ngram_pass;
pub mod packer;
pub mod parquet_input;
pub mod prepare;
pub mod reader;
pub mod shard;
pub mod token_counts;
pub mod tokenizer;
pub mod vocab_sample;
pub mod vocab_trainer;

pub use crate::masking::StaticMeta;
pub use config::{DataConfig, DocumentSplit, InputFormat, Packing, TokenizerConfig, TokenizerKind};
pub use loader::{Loader, RowBuffers, Task};
pub use merge::merge_prepared;
pub use meta::{describe, Meta, Split, SplitStats};
pub use prepare::{ensure_prepared, prepare, read_sections};
pub use reader::Document;
pub use tokenizer::{EncodedDoc, SpecialTokens, TextTokenizer};
pub use vocab_sample::VocabSource;
