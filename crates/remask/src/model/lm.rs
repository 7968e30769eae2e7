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
use super::params::{Grads, Params};
use super::stack::{Stack, StackActs, StackInput, StackScratch};
use super::{StepStats, TensorInfo, TrainModel, ATTENTION_TILE};
use crate::{Batch, Error, Result};

/// An encoder with an MLM head or a decoder with a next-token head.
pub struct LmModel {
    config: ModelConfig,
    tensors: Vec<TensorInfo>,
    params: Params,
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
    /// The real positions of the current batch (training and evaluation drop padding rows).
    compact: Compact,
}

/// The real (non-padding) positions of a batch, gathered row-major, reused between steps.
///
/// Every attention mask excludes padding keys, so real positions never read padding: dropping the
/// padding rows from every per-row computation (embeddings, LayerNorms, matmuls, GELU, head) gives
/// exactly the same losses and gradients for less work (the original BERT's random-length batches
/// waste about a quarter of the compute otherwise). Only attention sees the full `[B,H,T,D]` grid.
#[derive(Clone, Debug, Default)]
struct Compact {
    rows: Vec<u32>,
    ids: Vec<u32>,
    positions: Vec<u32>,
    types: Vec<u32>,
    labels: Vec<i32>,
}

impl Compact {
    /// Gathers the real positions; false when there is no padding or a label sits on padding (then
    /// the model runs on the full grid, so that label still counts).
    fn fill(&mut self, batch: &Batch) -> bool {
        let (b, t) = (batch.batch_size, batch.seq_len);
        let real: usize = batch.lengths.iter().map(|&l| l as usize).sum();
        if real == b * t {
            return false;
        }
        for r in 0..b {
            if batch.labels[r * t + batch.lengths[r] as usize..(r + 1) * t]
                .iter()
                .any(|&l| l != crate::IGNORE_INDEX)
            {
                return false;
            }
        }
        self.rows.clear();
        self.ids.clear();
        self.positions.clear();
        self.types.clear();
        self.labels.clear();
        for r in 0..b {
            let range = r * t..r * t + batch.lengths[r] as usize;
            self.rows.extend(range.clone().map(|i| i as u32));
            self.ids.extend_from_slice(&batch.input_ids[range.clone()]);
            self.positions
                .extend_from_slice(&batch.positions[range.clone()]);
            self.types
                .extend_from_slice(&batch.token_type_ids[range.clone()]);
            self.labels.extend_from_slice(&batch.labels[range]);
        }
        true
    }
}

/// The stack input and labels of `batch`, on its real positions when `compact` holds them.
fn stack_input<'a>(
    cfg: &ModelConfig,
    batch: &'a Batch,
    compact: Option<&'a Compact>,
    mask: &'a BlockMask,
) -> (StackInput<'a>, &'a [i32]) {
    let types = cfg.type_vocab_size > 0;
    match compact {
        Some(c) => (
            StackInput {
                ids: &c.ids,
                positions: &c.positions,
                types: types.then_some(&c.types[..]),
                b: batch.batch_size,
                t: batch.seq_len,
                mask,
                rows: Some(&c.rows),
            },
            &c.labels,
        ),
        None => (
            StackInput {
                ids: &batch.input_ids,
                positions: &batch.positions,
                types: types.then_some(&batch.token_type_ids[..]),
                b: batch.batch_size,
                t: batch.seq_len,
                mask,
                rows: None,
            },
            &batch.labels,
        ),
    }
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

    fn build(
        config: ModelConfig,
        make: impl FnOnce(&super::layout::Layout) -> Vec<f32>,
    ) -> Result<Self> {
        config.validate()?;
        if config.arch == Arch::EncoderDecoder {
            return Err(Error::config(
                "model.arch",
                "LmModel is the encoder or the decoder; use EncoderDecoderModel",
            ));
        }
        let built = build(&config);
        let params = make(&built.layout);
        if params.len() != built.layout.total() {
            return Err(Error::shape(
                "model parameters",
                built.layout.total(),
                params.len(),
            ));
        }
        let grads = vec![0.0; params.len()];
        let params = built.params(params, config.precision);
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
            compact: Compact::default(),
        })
    }

    fn mask(&self, batch: &Batch) -> BlockMask {
        self.config.attention.block_mask(batch, ATTENTION_TILE)
    }

    /// Logits on every position, `[B·T, V]` row-major (what HF's `*ForMaskedLM` / `*LMHeadModel`
    /// return). No dropout.
    pub fn logits(&mut self, batch: &Batch) -> Result<&[f32]> {
        check_batch(&self.config, batch)?;
        let mask = self.mask(batch);
        let (inp, _) = stack_input(&self.config, batch, None, &mask);
        self.params.refresh();
        let w = self.params.weights();
        self.stack.forward(&mut self.acts, inp, None, None, w);
        LmHead::select_all(&mut self.all_acts, &batch.labels);
        self.head
            .forward(&mut self.all_acts, self.stack.output(&self.acts), w);
        Ok(&self.all_acts.logits)
    }

    /// The final hidden state of the last forward (after the final LayerNorm of pre-LN models):
    /// `[B·T, C]` after [`Self::logits`]; after a training or evaluation step only the real positions,
    /// row-major, when the batch had padding.
    pub fn hidden_states(&self) -> &[f32] {
        self.stack.output(&self.acts)
    }
}

impl TrainModel for LmModel {
    super::train_model_buffers!();

    fn forward_backward(
        &mut self,
        batch: &Batch,
        grad_scale: f32,
        dropout_key: u64,
    ) -> Result<StepStats> {
        check_batch(&self.config, batch)?;
        let mask = self.mask(batch);
        let compact = self.compact.fill(batch).then_some(&self.compact);
        let (inp, labels) = stack_input(&self.config, batch, compact, &mask);
        let n = inp.n();
        self.params.refresh();
        let w = self.params.weights();
        self.stack
            .forward(&mut self.acts, inp, None, Some(dropout_key), w);
        LmHead::select_labelled(&mut self.head_acts, labels);
        self.head
            .forward(&mut self.head_acts, self.stack.output(&self.acts), w);
        let dh = self.stack.begin_backward(&mut self.scratch, n);
        let mut g = Grads {
            w,
            buf: &mut self.grads,
        };
        let ce = self.head.loss_backward(
            &mut self.head_acts,
            &mut self.head_scratch,
            dh,
            grad_scale,
            &mut g,
        );
        self.stack
            .backward(&self.acts, &mut self.scratch, inp, None, &mut g);
        Ok(StepStats {
            loss_sum: ce.loss_sum,
            n_labels: ce.count,
            n_correct: ce.correct,
        })
    }

    fn forward_eval(&mut self, batch: &Batch) -> Result<StepStats> {
        check_batch(&self.config, batch)?;
        let mask = self.mask(batch);
        let compact = self.compact.fill(batch).then_some(&self.compact);
        let (inp, labels) = stack_input(&self.config, batch, compact, &mask);
        // Always f32, from the master weights (see `Params::fp32`).
        let w = self.params.fp32();
        self.stack.forward(&mut self.acts, inp, None, None, w);
        LmHead::select_labelled(&mut self.head_acts, labels);
        self.head
            .forward(&mut self.head_acts, self.stack.output(&self.acts), w);
        let ce = self.head.loss(&mut self.head_acts);
        Ok(StepStats {
            loss_sum: ce.loss_sum,
            n_labels: ce.count,
            n_correct: ce.correct,
        })
    }

    fn last_label_losses(&self) -> &[f32] {
        &self.head_acts.losses
    }

    fn logits(&mut self, batch: &Batch) -> Result<&[f32]> {
        LmModel::logits(self, batch)
    }
}
