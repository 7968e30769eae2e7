//! Single-stack language models: the encoder with an MLM head (BERT) and the decoder with a
//! next-token head (GPT-2). They differ only in their config (names, norm placement, head transform,
//! attention mask), so one type serves both.
//!
//! B = batch, T = positions, N = B·T, C = channels, V = vocabulary, M = labelled positions.

use remask_kernels::block_mask::BlockMask;

use super::build::build;
use super::check::check_batch;
use super::config::{Arch, ModelConfig};
use super::head::{HeadActs, HeadScratch, LmHead};
use super::stack::{Stack, StackActs, StackInput, StackScratch};
use super::{StepStats, TensorInfo, TrainModel, ATTENTION_TILE};
use crate::{Batch, Error, Result};

/// An encoder with an MLM head or a decoder with a next-token head.
pub struct LmModel {
    config: ModelConfig,
    tensors: Vec<TensorInfo>,
    params: Vec<f32>,
    grads: Vec<f32>,
    stack: Stack,
    head: LmHead,
    acts: StackActs,
    scratch: StackScratch,
    /// The head on the labelled rows (training and evaluation).
    head_acts: HeadActs,
    head_scratch: HeadScratch,
    /// The head on every row ([`LmModel::logits`]).
    all_acts: HeadActs,
}

/// The encoder with an MLM head (BERT).
pub type EncoderModel = LmModel;
/// The decoder with a next-token head (GPT-2).
pub type DecoderModel = LmModel;

impl LmModel {
    /// A freshly initialised model (normal(0, init_std) matrices, zero biases, unit norms) keyed by seed.
    pub fn new(config: ModelConfig, seed: u64) -> Result<Self> {
        Self::build(config, |layout| layout.init(seed))
    }

    /// A model over given parameters (in this model's layout, see [`TrainModel::tensors`]).
    pub fn from_params(config: ModelConfig, params: Vec<f32>) -> Result<Self> {
        let mut params = Some(params);
        Self::build(config, |_| params.take().unwrap_or_default())
    }

    fn build(config: ModelConfig, make: impl FnOnce(&super::layout::Layout) -> Vec<f32>) -> Result<Self> {
        config.validate()?;
        if config.arch == Arch::EncoderDecoder {
            return Err(Error::config("model.arch", "LmModel is the encoder or the decoder; use EncoderDecoderModel"));
        }
        let built = build(&config);
        let params = make(&built.layout);
        if params.len() != built.layout.total() {
            return Err(Error::shape("model parameters", built.layout.total(), params.len()));
        }
        let grads = vec![0.0; params.len()];
        Ok(Self {
            tensors: built.layout.into_tensors(),
            config,
            params,
            grads,
            stack: built.stack,
            head: built.head,
            acts: StackActs::default(),
            scratch: StackScratch::default(),
            head_acts: HeadActs::default(),
            head_scratch: HeadScratch::default(),
            all_acts: HeadActs::default(),
        })
    }

    fn mask(&self, batch: &Batch) -> BlockMask {
        self.config.attention.block_mask(batch, ATTENTION_TILE)
    }

    fn input<'a>(&self, batch: &'a Batch, mask: &'a BlockMask) -> StackInput<'a> {
        StackInput {
            ids: &batch.input_ids,
            positions: &batch.positions,
            types: (self.config.type_vocab_size > 0).then_some(&batch.token_type_ids[..]),
            b: batch.batch_size,
            t: batch.seq_len,
            mask,
        }
    }

    /// Logits on every position, `[B·T, V]` row-major (what HF's `*ForMaskedLM` / `*LMHeadModel`
    /// return). No dropout.
    pub fn logits(&mut self, batch: &Batch) -> Result<&[f32]> {
        check_batch(&self.config, batch)?;
        let mask = self.mask(batch);
        let inp = self.input(batch, &mask);
        self.stack.forward(&mut self.acts, inp, None, None, &self.params);
        LmHead::select_all(&mut self.all_acts, &batch.labels);
        self.head.forward(&mut self.all_acts, self.stack.output(&self.acts), &self.params);
        Ok(&self.all_acts.logits)
    }

    /// The final hidden state `[B·T, C]` of the last forward (after the final LayerNorm of pre-LN models).
    pub fn hidden_states(&self) -> &[f32] {
        self.stack.output(&self.acts)
    }
}

impl TrainModel for LmModel {
    fn config(&self) -> &ModelConfig {
        &self.config
    }
    fn params(&self) -> &[f32] {
        &self.params
    }
    fn params_mut(&mut self) -> &mut [f32] {
        &mut self.params
    }
    fn grads(&self) -> &[f32] {
        &self.grads
    }
    fn grads_mut(&mut self) -> &mut [f32] {
        &mut self.grads
    }
    fn tensors(&self) -> &[TensorInfo] {
        &self.tensors
    }

    fn forward_backward(&mut self, batch: &Batch, grad_scale: f32, dropout_key: u64) -> Result<StepStats> {
        check_batch(&self.config, batch)?;
        let mask = self.mask(batch);
        let inp = self.input(batch, &mask);
        let n = inp.b * inp.t;
        self.stack.forward(&mut self.acts, inp, None, Some(dropout_key), &self.params);
        LmHead::select_labelled(&mut self.head_acts, &batch.labels);
        self.head.forward(&mut self.head_acts, self.stack.output(&self.acts), &self.params);
        let dh = self.stack.begin_backward(&mut self.scratch, n);
        let ce = self.head.loss_backward(&mut self.head_acts, &mut self.head_scratch, dh, grad_scale, &self.params, &mut self.grads);
        self.stack.backward(&self.acts, &mut self.scratch, inp, None, &self.params, &mut self.grads);
        Ok(StepStats { loss_sum: ce.loss_sum, n_labels: ce.count, n_correct: ce.correct })
    }

    fn forward_eval(&mut self, batch: &Batch) -> Result<StepStats> {
        check_batch(&self.config, batch)?;
        let mask = self.mask(batch);
        let inp = self.input(batch, &mask);
        self.stack.forward(&mut self.acts, inp, None, None, &self.params);
        LmHead::select_labelled(&mut self.head_acts, &batch.labels);
        self.head.forward(&mut self.head_acts, self.stack.output(&self.acts), &self.params);
        let ce = self.head.loss(&mut self.head_acts);
        Ok(StepStats { loss_sum: ce.loss_sum, n_labels: ce.count, n_correct: ce.correct })
    }

    fn last_label_losses(&self) -> &[f32] {
        &self.head_acts.losses
    }

    fn logits(&mut self, batch: &Batch) -> Result<&[f32]> {
        LmModel::logits(self, batch)
    }
}
