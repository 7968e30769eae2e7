//! A dependency probe: the model's own layers (rebuilt from its config, over its parameters) run with
//! an attention mask chosen by the caller, and the gradient of one output position with respect to
//! the input embeddings.
//!
//! B = batch, T = positions, N = B·T, C = channels, V = vocabulary.
//!
//! The probe owns a copy of the stack and head structs that [`crate::model::build::build`] makes for
//! the model's config, so it computes exactly what the model computes (the audit checks this bit for
//! bit against [`TrainModel::logits`]); only the attention mask is injected from outside, which is how
//! a deliberately leaky mask is planted in tests.

use remask_kernels::block_mask::BlockMask;

use crate::model::build::build;
use crate::model::check::check_batch;
use crate::model::head::{HeadActs, LmHead};
use crate::model::stack::{Stack, StackActs, StackInput, StackScratch};
use crate::model::{Arch, ModelConfig, TrainModel};
use crate::{Batch, Error, Result};

/// The model's self-attention stack (the encoder of an encoder-decoder) and its head, over a copy of
/// the model's parameters.
pub struct DependencyProbe {
    config: ModelConfig,
    stack: Stack,
    head: LmHead,
    params: Vec<f32>,
    /// Sink for the parameter gradients the stack backward adds; never read.
    grads: Vec<f32>,
    acts: StackActs,
    scratch: StackScratch,
    head_acts: HeadActs,
    /// Shape of the batch of the last forward.
    shape: (usize, usize),
}

impl DependencyProbe {
    /// A probe over `model`'s architecture and current parameters.
    pub fn new(model: &dyn TrainModel) -> Result<Self> {
        let config = model.config().clone();
        config.validate()?;
        let built = build(&config);
        if built.layout.total() != model.params().len() {
            return Err(Error::shape("audit probe parameters", built.layout.total(), model.params().len()));
        }
        Ok(Self {
            params: model.params().to_vec(),
            grads: vec![0.0; model.params().len()],
            stack: built.stack,
            head: built.head,
            config,
            acts: StackActs::default(),
            scratch: StackScratch::default(),
            head_acts: HeadActs::default(),
            shape: (0, 0),
        })
    }

    /// A second probe over the same architecture and parameters, with its own activations.
    pub fn duplicate(&self) -> Result<Self> {
        let built = build(&self.config);
        Ok(Self {
            config: self.config.clone(),
            stack: built.stack,
            head: built.head,
            params: self.params.clone(),
            grads: vec![0.0; self.params.len()],
            acts: StackActs::default(),
            scratch: StackScratch::default(),
            head_acts: HeadActs::default(),
            shape: (0, 0),
        })
    }

    /// The architecture the probe runs.
    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    /// Whether the probed stack is the whole model up to the head (encoder and decoder models), so
    /// that [`Self::logits`] equals [`TrainModel::logits`]. False for the encoder of an
    /// encoder-decoder, whose head sits on the decoder.
    pub fn has_head(&self) -> bool {
        self.config.arch != Arch::EncoderDecoder
    }

    fn input<'a>(&self, batch: &'a Batch, mask: &'a BlockMask) -> StackInput<'a> {
        StackInput {
            ids: &batch.input_ids,
            positions: &batch.positions,
            types: (self.config.type_vocab_size > 0).then_some(&batch.token_type_ids[..]),
            b: batch.batch_size,
            t: batch.seq_len,
            mask,
            rows: None,
        }
    }

    /// h[N,C] = stack(batch) with self-attention `mask` (`[B, 1 or H, T, T]`), no dropout; read it
    /// with [`Self::hidden`].
    pub fn forward(&mut self, batch: &Batch, mask: &BlockMask) -> Result<()> {
        check_batch(&self.config, batch)?;
        let (b, t) = (batch.batch_size, batch.seq_len);
        if mask.batch() != b || mask.tq() != t || mask.tk() != t {
            return Err(Error::shape("audit attention mask [B, T, T]", format!("[{b}, {t}, {t}]"), format!("[{}, {}, {}]", mask.batch(), mask.tq(), mask.tk())));
        }
        let inp = self.input(batch, mask);
        self.stack.forward(&mut self.acts, inp, None, None, &self.params);
        self.shape = (b, t);
        Ok(())
    }

    /// The stack output `[N,C]` of the last forward.
    pub fn hidden(&self) -> &[f32] {
        self.stack.output(&self.acts)
    }

    /// Logits `[N,V]` on every position of the last forward (encoder and decoder models only; see
    /// [`Self::has_head`]).
    pub fn logits(&mut self) -> Result<&[f32]> {
        if !self.has_head() {
            return Err(Error::config("model.arch", "the probed encoder of an encoder-decoder has no head of its own; read hidden()"));
        }
        let n = self.shape.0 * self.shape.1;
        LmHead::select_all(&mut self.head_acts, &vec![crate::IGNORE_INDEX; n]);
        self.head.forward(&mut self.head_acts, self.stack.output(&self.acts), &self.params);
        Ok(&self.head_acts.logits)
    }

    /// d(direction · h[row, q]) / d(embedding output) `[N,C]`: the gradient of one output position,
    /// projected on `direction[C]`, with respect to every input embedding (after the embedding
    /// LayerNorm, which acts per position). Uses the activations of the last [`Self::forward`], which
    /// must have run on the same `batch` and `mask`.
    pub fn input_gradient(&mut self, batch: &Batch, mask: &BlockMask, row: usize, q: usize, direction: &[f32]) -> Result<&[f32]> {
        let (b, t) = self.shape;
        let c = self.config.d_model;
        if (batch.batch_size, batch.seq_len) != (b, t) || row >= b || q >= t || direction.len() != c {
            return Err(Error::shape("audit input_gradient (row, q, direction)", format!("row < {b}, q < {t}, {c} directions"), format!("row {row}, q {q}, {} directions", direction.len())));
        }
        let n = b * t;
        let dh = self.stack.begin_backward(&mut self.scratch, n);
        let at = (row * t + q) * c;
        dh[at..at + c].copy_from_slice(direction);
        let inp = self.input(batch, mask);
        self.stack.backward(&self.acts, &mut self.scratch, inp, None, &self.params, &mut self.grads);
        // After the blocks, the stack's residual gradient holds d(embedding output); the embedding
        // backward only reads it.
        Ok(&self.scratch.dres[..n * c])
    }
}
