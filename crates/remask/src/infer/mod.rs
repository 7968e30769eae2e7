//! Inference and Hugging Face interop: load a model directory (a remask checkpoint or a Hugging Face
//! `config.json` + `model.safetensors` [+ `tokenizer.json`]), run a full forward pass with
//! `transformers`' output names, fill masks, generate text with a KV cache, translate (greedy and
//! beam search).
//!
//! B = batch, T = positions, C = channels, V = vocabulary, R = rows decoded together (beams).
//!
//! Code map:
//! - `model_dir.rs`: [`model_dir::open`], the one resolver of checkpoint / run directory / Hugging
//!   Face directory (also used by `eval` and `audit`).
//! - `load.rs`: [`load`] resolves the directory and gives a [`Loaded`] model (concrete
//!   [`InferModel`]), its [`InferTokenizer`] and its [`SpecialIds`].
//! - `tokenize.rs`: `tokenizer.json` with padding and truncation turned off.
//! - `forward.rs`: [`forward`]: `input_ids` (+ masks, decoder ids) → logits / hidden states.
//! - `kv_cache.rs`: [`KvCache`] and [`Incremental`], the one-position-per-step decoder path
//!   (GPT-2's decoder and BART's decoder with cross-attention).
//! - `sampling.rs`: greedy / temperature / top-k / top-p / repetition penalty, keyed by seed.
//! - `generate.rs`, `translate.rs`, `fill_mask.rs`: the three tasks.
//! - `minimal_pairs.rs`: [`score_minimal_pairs`]: BLiMP-style pairs scored by a loaded model with its
//!   own tokenizer (PLL for encoders, summed log-probability for decoders; see `eval::minimal_pairs`).
//! - `init.rs`: weights of an imported model copied into a freshly built one (`train --init-from`).

pub mod fill_mask;
pub mod forward;
pub mod generate;
pub mod init;
pub mod kv_cache;
pub mod load;
pub mod minimal_pairs;
pub mod model_dir;
pub mod sampling;
pub mod tokenize;
pub mod translate;

pub use fill_mask::{fill_mask, MaskPrediction};
pub use forward::{forward, ForwardInputs, ForwardOutputs, OutTensor};
pub use generate::generate;
pub use init::init_from;
pub use kv_cache::{Incremental, KvCache};
pub use load::{load, InferModel, Loaded, Source, SpecialIds};
pub use minimal_pairs::{score_minimal_pairs, scoring_for};
pub use model_dir::ModelDir;
pub use sampling::SamplingOptions;
pub use tokenize::InferTokenizer;
pub use translate::{translate, TranslateOptions};

#[cfg(test)]
mod tests;
