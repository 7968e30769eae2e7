//! Transformer models on the remask engine: encoder (MLM), decoder (CLM), encoder-decoder (translation).
//!
//! Parameters and gradients each live in one `Vec<f32>`; [`TensorInfo`] gives the named views
//! (Hugging Face-style names, so checkpoints import and export by name).
//!
//! Each layer has an explicit forward and backward (the llm.c approach) over preallocated
//! activation buffers that are resized only when a larger shape arrives. Read top to bottom:
//!
//! - `layout.rs`: [`layout::Layout`] builds the named tensors, offsets and keyed initialisation;
//!   layers hold [`layout::Param`] handles (offset, length) into the flat buffers.
//! - `params.rs`: [`params::Params`] (the flat values plus, in bf16 precision, every linear weight
//!   cast and packed once per optimizer step), [`params::Weights`] (what a forward reads) and
//!   [`params::Grads`] (what a backward reads and adds into).
//! - `linear.rs`, `norm.rs`: `nn.Linear` and `LayerNorm` over the flat buffers.
//! - `mha.rs`: multi-head attention: fused q/k/v projection (self) or q + fused k/v (cross), split
//!   into `[B,H,T,D]`, the block-sparse attention kernel with the compiled `BlockMask`, merge, output
//!   projection.
//! - `block.rs`: residual sublayers (pre-LN `x + f(LN(x))` or post-LN `LN(x + f(x))`) with dropout:
//!   self-attention, optional cross-attention, feed-forward.
//! - `embedding.rs`: token · scale + learned (with offset) or sinusoidal positions + token types,
//!   optional LayerNorm, dropout.
//! - `stack.rs`: embeddings → blocks → optional final LayerNorm; the residual-stream gradient flows
//!   back through one scratch buffer.
//! - `head.rs`: the vocabulary head (BERT's transform optional), run on the labelled rows only
//!   (gather → project → fused cross-entropy → scatter the gradient back) or on every row.
//! - `build.rs`: the layout and layers of each architecture with BERT / GPT-2 / BART names.
//! - `lm.rs`: [`LmModel`] (= [`EncoderModel`] / [`DecoderModel`]); training and evaluation steps
//!   drop padding rows (attention never reads padding keys, so that is exact).
//! - `seq2seq.rs`: [`EncoderDecoderModel`].
//! - `check.rs`: batch validation (no kernel sees an out-of-range id); `hf.rs`: HF import/export.
//!
//! Shapes: B = batch rows, T = positions, N = B·T rows (fewer when padding rows are dropped),
//! C = d_model, H = heads, D = C/H, F = d_ff, V = vocabulary.

pub mod block;
pub mod buffers;
pub mod build;
pub mod check;
pub mod config;
pub mod embedding;
pub mod head;
pub mod hf;
pub mod layout;
pub mod linear;
pub mod lm;
pub mod mha;
pub mod norm;
pub mod params;
pub mod seq2seq;
pub mod stack;

pub use crate::precision::Precision;
pub use config::{Arch, GeluForm, ModelConfig, NormPlacement, PositionKind};
pub use lm::{DecoderModel, EncoderModel, LmModel};
pub use seq2seq::{EncoderDecoderModel, Seq2SeqMasks};

/// Tile size of the attention masks the models compile (queries and keys).
pub const ATTENTION_TILE: usize = remask_kernels::block_mask::DEFAULT_TILE;

/// A freshly initialised model of `config.arch`, keyed by `seed`.
pub fn new_model(config: ModelConfig, seed: u64) -> Result<Box<dyn TrainModel>> {
    Ok(match config.arch {
        Arch::Encoder | Arch::Decoder => Box::new(LmModel::new(config, seed)?),
        Arch::EncoderDecoder => Box::new(EncoderDecoderModel::new(config, seed)?),
    })
}

/// A model of `config.arch` over the given flat parameters (e.g. from a checkpoint).
pub fn model_from_params(config: ModelConfig, params: Vec<f32>) -> Result<Box<dyn TrainModel>> {
    Ok(match config.arch {
        Arch::Encoder | Arch::Decoder => Box::new(LmModel::from_params(config, params)?),
        Arch::EncoderDecoder => Box::new(EncoderDecoderModel::from_params(config, params)?),
    })
}

/// The parameter layout (`tensors()`) a model of `config` has, without allocating it.
pub fn layout_of(config: &ModelConfig) -> Result<Vec<TensorInfo>> {
    config.validate()?;
    Ok(build::build(config).layout.into_tensors())
}

use crate::{Batch, Result};

/// A named view into the flat parameter (and gradient) buffer.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorInfo {
    /// Hugging Face-style name, e.g. `bert.encoder.layer.0.attention.self.query.weight`.
    pub name: String,
    /// Offset of the first element in the flat buffer.
    pub offset: usize,
    /// Shape, row-major.
    pub shape: Vec<usize>,
    /// Whether AdamW applies weight decay (false for biases, norms and, by convention, nothing else).
    pub weight_decay: bool,
}

impl TensorInfo {
    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
}

/// Loss bookkeeping of one forward pass over a batch.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct StepStats {
    /// Sum of the per-label cross-entropy losses (nats).
    pub loss_sum: f64,
    /// Number of labelled positions.
    pub n_labels: usize,
    /// Labelled positions whose arg-max prediction equals the label.
    pub n_correct: usize,
}

impl StepStats {
    /// Mean loss per label (0 when there are no labels).
    pub fn mean_loss(&self) -> f64 {
        if self.n_labels == 0 {
            0.0
        } else {
            self.loss_sum / self.n_labels as f64
        }
    }
}

/// The buffer accessors of [`TrainModel`] (`config`, `params`, `params_mut`, `grads`, `grads_mut`,
/// `params_and_grads`, `tensors`) for a model that keeps them in fields named `config`, `params`,
/// `grads` and `tensors`, as every model here does (`params` a `Vec<f32>` or a [`params::Params`],
/// whose bf16 copy any mutable access marks stale). Invoke it inside `impl TrainModel for …`.
macro_rules! train_model_buffers {
    () => {
        fn config(&self) -> &$crate::model::ModelConfig {
            &self.config
        }
        fn params(&self) -> &[f32] {
            &*self.params
        }
        fn params_mut(&mut self) -> &mut [f32] {
            &mut *self.params
        }
        fn grads(&self) -> &[f32] {
            &self.grads
        }
        fn grads_mut(&mut self) -> &mut [f32] {
            &mut self.grads
        }
        fn params_and_grads(&mut self) -> (&mut [f32], &[f32]) {
            (&mut *self.params, &self.grads)
        }
        fn tensors(&self) -> &[$crate::model::TensorInfo] {
            &self.tensors
        }
    };
}
pub(crate) use train_model_buffers;

/// What the trainer needs from a model. Implemented by all three model families.
pub trait TrainModel: Send {
    /// The architecture, as stored in checkpoints.
    fn config(&self) -> &ModelConfig;
    /// All parameters, one flat buffer.
    fn params(&self) -> &[f32];
    fn params_mut(&mut self) -> &mut [f32];
    /// Gradients, same layout as `params`.
    fn grads(&self) -> &[f32];
    fn grads_mut(&mut self) -> &mut [f32];
    /// Parameters (writable) and gradients together, for the optimizer step.
    fn params_and_grads(&mut self) -> (&mut [f32], &[f32]);
    /// Named views into `params`/`grads`, in buffer order.
    fn tensors(&self) -> &[TensorInfo];
    /// Forward and backward on one batch. Adds `grad_scale * d(sum of label losses)/dθ` into the
    /// gradient buffer (the trainer passes `1 / labels in the global batch`). `dropout_key` keys the
    /// dropout masks of this step.
    fn forward_backward(
        &mut self,
        batch: &Batch,
        grad_scale: f32,
        dropout_key: u64,
    ) -> Result<StepStats>;
    /// Forward only, no dropout, for evaluation. Computes in f32 from the master weights whatever the
    /// training precision, so every run is measured with the same instrument (and as `remask eval`
    /// measures its checkpoint).
    fn forward_eval(&mut self, batch: &Batch) -> Result<StepStats>;
    /// Per-label losses of the last forward, in row-major order of the labelled positions (feedback for
    /// adaptive masking).
    fn last_label_losses(&self) -> &[f32];
    /// Logits on every (decoder) position of `batch`, `[B·T, V]` row-major, without dropout (for
    /// fixtures, evaluation by generation and inference). Does not change `last_label_losses`.
    fn logits(&mut self, batch: &Batch) -> Result<&[f32]>;
}

#[cfg(test)]
mod tests;
