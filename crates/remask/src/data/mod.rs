//! Data pipeline: readers, tokenizer, shards, packing, batching.
//!
//! `remask prepare` ([`prepare()`]) reads documents ([`reader`]), trains or loads a tokenizer
//! ([`tokenizer`]), splits documents into train / validation by a keyed hash, writes memory-mapped
//! shards ([`shard`]) and, for static masking, K masked copies of the training rows
//! ([`static_masks`]). A [`Loader`] opens a prepared directory for one split, packs documents into rows
//! ([`packer`]) and implements [`crate::BatchSource`].

pub mod config;
pub mod loader;
pub mod packer;
pub mod prepare;
pub mod reader;
pub mod shard;
pub mod static_masks;
pub mod tokenizer;
pub mod vocab_trainer;

pub use config::{DataConfig, DocumentSplit, InputFormat, Packing, TokenizerConfig, TokenizerKind};
pub use loader::{Loader, RowBuffers, Split, Task, EVAL_EPOCH};
pub use prepare::{describe, ensure_prepared, prepare, read_sections, Meta, SplitStats, StaticMeta};
pub use reader::Document;
pub use tokenizer::{EncodedDoc, SpecialTokens, TextTokenizer};
