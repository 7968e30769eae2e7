//! Data pipeline: readers, tokenizer, shards, packing, batching.
//!
//! `remask prepare` ([`prepare()`]) reads documents ([`reader`]), trains or loads a tokenizer
//! ([`tokenizer`]), splits documents into train / validation by a keyed hash, writes memory-mapped
//! shards ([`shard`]) and, for static masking, K masked copies of the training rows
//! ([`static_masks`]). A [`Loader`] opens a prepared directory for one split, packs documents into rows
//! ([`packer`]) and implements [`crate::BatchSource`].

pub mod config;
pub mod packer;
pub mod reader;
pub mod shard;
pub mod tokenizer;
pub mod vocab_trainer;

pub use config::{DataConfig, DocumentSplit, InputFormat, Packing, TokenizerConfig, TokenizerKind};
pub use reader::Document;
pub use tokenizer::{EncodedDoc, SpecialTokens, TextTokenizer};
