//! Model architecture configuration (stored inside every checkpoint as `config.json`).

use serde::{Deserialize, Serialize};

use crate::attention::AttentionMaskSpec;

/// Which model family.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Arch {
    /// Bidirectional encoder with an MLM head (BERT).
    Encoder,
    /// Causal decoder with a next-token head (GPT-2).
    Decoder,
    /// Encoder-decoder with cross-attention (BART / Transformer-base).
    EncoderDecoder,
}

/// Where layer normalisation sits in each block.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NormPlacement {
    /// `x + f(LN(x))` (GPT-2).
    Pre,
    /// `LN(x + f(x))` (BERT, BART).
    Post,
}

/// How positions are encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PositionKind {
    Learned,
    Sinusoidal,
}

/// GELU form.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum GeluForm {
    /// Exact: x * Φ(x) (BERT, BART).
    Erf,
    /// Tanh approximation (GPT-2's `gelu_new`).
    Tanh,
}

/// The architecture of a model. Defaults are the reference config R of the benchmarks.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelConfig {
    pub arch: Arch,
    pub vocab_size: usize,
    /// C: model width.
    pub d_model: usize,
    pub n_heads: usize,
    /// Encoder layers (or decoder layers for `decoder`).
    pub n_layers: usize,
    /// Decoder layers of an encoder-decoder.
    pub n_decoder_layers: usize,
    /// Hidden width of the feed-forward block.
    pub d_ff: usize,
    /// Largest position the position table covers.
    pub max_positions: usize,
    /// Token-type (segment) vocabulary; 0 = no token-type embeddings.
    pub type_vocab_size: usize,
    pub norm: NormPlacement,
    pub positions: PositionKind,
    pub gelu: GeluForm,
    pub layer_norm_eps: f32,
    /// Output projection shares the token embedding matrix.
    pub tie_embeddings: bool,
    /// Dropout on embeddings, attention output and FFN output (0 disables).
    pub dropout: f32,
    /// Which positions may attend to which (self-attention of the encoder or decoder).
    pub attention: AttentionMaskSpec,
    /// Token id of padding.
    pub pad_token_id: u32,
}

impl Default for ModelConfig {
    fn default() -> Self {
        Self {
            arch: Arch::Encoder,
            vocab_size: 8192,
            d_model: 256,
            n_heads: 4,
            n_layers: 4,
            n_decoder_layers: 0,
            d_ff: 1024,
            max_positions: 512,
            type_vocab_size: 0,
            norm: NormPlacement::Post,
            positions: PositionKind::Learned,
            gelu: GeluForm::Erf,
            layer_norm_eps: 1e-12,
            tie_embeddings: true,
            dropout: 0.0,
            attention: AttentionMaskSpec::Padding,
            pad_token_id: 0,
        }
    }
}
