//! Model architecture configuration (stored inside every checkpoint as `config.json`).

pub use crate::precision::Precision;
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
    /// Added to every position before the learned position table is read (BART: 2). The table has
    /// `max_positions + position_offset` rows.
    pub position_offset: usize,
    /// Token embeddings are multiplied by this (BART's `scale_embedding` uses sqrt(d_model)).
    pub embed_scale: f32,
    /// LayerNorm right after the embedding sum (BERT's `embeddings.LayerNorm`, BART's
    /// `layernorm_embedding`); GPT-2 has none.
    pub embedding_layer_norm: bool,
    /// Standard deviation of the normal initialisation of matrices and embeddings.
    pub init_std: f32,
    /// Number format of the matrix products. Left out of `config.json` when f32, so f32 checkpoints
    /// are written exactly as before the setting existed.
    #[serde(skip_serializing_if = "Precision::is_fp32")]
    pub precision: Precision,
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
            position_offset: 0,
            embed_scale: 1.0,
            embedding_layer_norm: true,
            init_std: 0.02,
            precision: Precision::Fp32,
        }
    }
}

impl GeluForm {
    /// The kernel's name for this form.
    pub fn kernel(self) -> remask_kernels::gelu::GeluKind {
        match self {
            GeluForm::Erf => remask_kernels::gelu::GeluKind::Erf,
            GeluForm::Tanh => remask_kernels::gelu::GeluKind::Tanh,
        }
    }
}

impl ModelConfig {
    /// BERT-style encoder with an MLM head (post-LN, learned positions, embedding LayerNorm).
    pub fn bert_like() -> Self {
        Self::default()
    }

    /// GPT-2-style decoder (pre-LN, final LayerNorm, tanh GELU, causal attention, no embedding LN).
    pub fn gpt2_like() -> Self {
        Self {
            arch: Arch::Decoder,
            norm: NormPlacement::Pre,
            gelu: GeluForm::Tanh,
            layer_norm_eps: 1e-5,
            embedding_layer_norm: false,
            attention: AttentionMaskSpec::Causal,
            ..Self::default()
        }
    }

    /// BART-style encoder-decoder (post-LN, positions offset by 2, `layernorm_embedding`).
    pub fn bart_like() -> Self {
        Self {
            arch: Arch::EncoderDecoder,
            n_decoder_layers: 4,
            layer_norm_eps: 1e-5,
            position_offset: 2,
            ..Self::default()
        }
    }

    /// Head dimension D = d_model / n_heads.
    pub fn head_dim(&self) -> usize {
        self.d_model / self.n_heads.max(1)
    }

    /// Checks the values a model can be built from; errors name the field (`model.<field>`).
    #[allow(clippy::manual_is_multiple_of)] // `is_multiple_of` is newer than the crate's rust-version.
    pub fn validate(&self) -> crate::Result<()> {
        let pos = |name: &str, v: usize| {
            if v == 0 {
                Err(crate::Error::config(
                    format!("model.{name}"),
                    "must be at least 1",
                ))
            } else {
                Ok(())
            }
        };
        pos("vocab_size", self.vocab_size)?;
        pos("d_model", self.d_model)?;
        pos("n_heads", self.n_heads)?;
        pos("d_ff", self.d_ff)?;
        pos("max_positions", self.max_positions)?;
        if self.d_model % self.n_heads != 0 {
            return Err(crate::Error::config(
                "model.n_heads",
                format!(
                    "d_model {} is not a multiple of n_heads {}",
                    self.d_model, self.n_heads
                ),
            ));
        }
        if self.positions == PositionKind::Sinusoidal && self.d_model % 2 != 0 {
            return Err(crate::Error::config(
                "model.d_model",
                "sinusoidal positions need an even d_model",
            ));
        }
        if self.arch == Arch::EncoderDecoder && self.n_decoder_layers == 0 {
            return Err(crate::Error::config(
                "model.n_decoder_layers",
                "an encoder-decoder needs at least 1",
            ));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(crate::Error::config(
                "model.dropout",
                format!("must be in [0, 1), got {}", self.dropout),
            ));
        }
        if self.layer_norm_eps.is_nan() || self.layer_norm_eps <= 0.0 {
            return Err(crate::Error::config(
                "model.layer_norm_eps",
                "must be positive",
            ));
        }
        self.check_size()?;
        self.precision.check_supported()?;
        if self.arch == Arch::Decoder {
            let causal = match self.attention {
                AttentionMaskSpec::Causal | AttentionMaskSpec::PrefixLm => true,
                AttentionMaskSpec::Document { causal }
                | AttentionMaskSpec::SlidingWindow { causal, .. } => causal,
                AttentionMaskSpec::Padding => false,
            };
            if !causal {
                return Err(crate::Error::config(
                    "model.attention",
                    "a next-token decoder needs a causal kind (causal, prefix-lm, document/sliding-window with causal = true)",
                ));
            }
        }
        Ok(())
    }

    /// About how many parameters the model has (in u128, so absurd sizes cannot overflow).
    pub fn approx_params(&self) -> u128 {
        let (v, d, ff) = (
            self.vocab_size as u128,
            self.d_model as u128,
            self.d_ff as u128,
        );
        let positions = self.max_positions as u128 + self.position_offset as u128;
        let emb = (v + positions + self.type_vocab_size as u128) * d;
        let layer = 4 * d * d + 2 * d * ff + 4 * d + ff + 4 * d;
        let decoder = self.n_decoder_layers as u128 * (layer + 4 * d * d + 6 * d);
        emb + self.n_layers as u128 * layer + decoder + d * d + v * (d + 1) + 4 * d
    }

    /// Refuses a model whose weights, gradients and AdamW moments (16 bytes per parameter) would
    /// not fit this machine's memory, instead of letting the allocation abort the process.
    fn check_size(&self) -> crate::Result<()> {
        let params = self.approx_params();
        let need = params.saturating_mul(16);
        let have = physical_memory_bytes();
        if need > have as u128 {
            let gib = |b: u128| b as f64 / (1u128 << 30) as f64;
            return Err(crate::Error::config(
                "model",
                format!(
                    "about {params} parameters (vocab_size {}, d_model {}, d_ff {}, {} layers) need {:.1} GiB for weights, \
                     gradients and AdamW state; this machine has {:.1} GiB: make the model smaller",
                    self.vocab_size,
                    self.d_model,
                    self.d_ff,
                    self.n_layers.saturating_add(self.n_decoder_layers),
                    gib(need),
                    gib(have as u128)
                ),
            ));
        }
        Ok(())
    }
}

/// Physical memory in bytes (`/proc/meminfo`; 1 TiB where it cannot be read).
pub fn physical_memory_bytes() -> u64 {
    let kib = std::fs::read_to_string("/proc/meminfo").ok().and_then(|t| {
        t.lines()
            .find(|l| l.starts_with("MemTotal:"))?
            .split_whitespace()
            .nth(1)?
            .parse::<u64>()
            .ok()
    });
    kib.map_or(1 << 40, |k| k.saturating_mul(1024))
}
