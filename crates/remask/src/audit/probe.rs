//! A dependency probe: the model's own layers (rebuilt from its config, over its parameters) run with
//! attention masks chosen by the caller, and the gradient of one output position with respect to
//! the input embeddings.
//!
//! B = batch, T = (source) positions, Td = target positions of an encoder-decoder, N = B·T,
//! C = channels, V = vocabulary.
//!
//! The probe owns a copy of the stack, decoder and head structs that [`crate::model::build::build`]
//! makes for the model's config, so it computes exactly what the model computes (the audit checks
//! this bit for bit against [`TrainModel::logits`]); only the attention masks are injected from
//! outside, which is how a deliberately leaky mask is planted in tests.
//!
//! Self-attention models (and the encoder of an encoder-decoder on its own) go through
//! [`DependencyProbe::forward`] / [`DependencyProbe::input_gradient`]; the whole encoder-decoder
//! (encoder, decoder self-attention, cross-attention) through [`DependencyProbe::forward_seq2seq`] /
//! [`DependencyProbe::seq2seq_input_gradient`].

use remask_kernels::block_mask::BlockMask;

use crate::model::block::CrossInput;
use crate::model::build::build;
use crate::model::check::check_batch;
use crate::model::head::{HeadActs, LmHead};
use crate::model::params::{Grads, Params};
use crate::model::seq2seq::{dec_input, fill_decoder_batch};
use crate::model::stack::{Stack, StackActs, StackInput, StackScratch};
use crate::model::{Arch, ModelConfig, Seq2SeqMasks, TrainModel};
use crate::{Batch, Error, Result};

/// The model's self-attention stack (the encoder of an encoder-decoder), its decoder if it has one,
/// and its head, over a copy of the model's parameters.
pub struct DependencyProbe {
    config: ModelConfig,
    stack: Stack,
    head: LmHead,
    /// In the model's precision (its bf16 weights packed once, as the model packs them per step).
    params: Params,
    /// Sink for the parameter gradients the stack backward adds; never read.
    grads: Vec<f32>,
    acts: StackActs,
    scratch: StackScratch,
    head_acts: HeadActs,
    /// Shape of the batch of the last forward.
    shape: (usize, usize),
    /// The decoder of an encoder-decoder.
    dec: Option<DecoderSide>,
}

/// The decoder stack of an encoder-decoder, its activations and the decoder side of the last batch
/// as a batch of its own.
struct DecoderSide {
    stack: Stack,
    acts: StackActs,
    scratch: StackScratch,
    batch: Batch,
}

impl DecoderSide {
    fn new(stack: Option<Stack>) -> Option<Self> {
        stack.map(|stack| DecoderSide {
            stack,
            acts: StackActs::default(),
            scratch: StackScratch::default(),
            batch: Batch::default(),
        })
    }
}

/// The input of the self-attention stack (the encoder of an encoder-decoder) over `batch`.
fn stack_input<'a>(config: &ModelConfig, batch: &'a Batch, mask: &'a BlockMask) -> StackInput<'a> {
    StackInput {
        ids: &batch.input_ids,
        positions: &batch.positions,
        types: (config.type_vocab_size > 0).then_some(&batch.token_type_ids[..]),
        b: batch.batch_size,
        t: batch.seq_len,
        mask,
        rows: None,
    }
}

fn no_decoder() -> Error {
    Error::config(
        "model.arch",
        "only an encoder-decoder has a decoder to probe",
    )
}

/// Checks that `mask` is `[b, tq, tk]`.
fn check_mask(what: &str, mask: &BlockMask, b: usize, tq: usize, tk: usize) -> Result<()> {
    if mask.batch() != b || mask.tq() != tq || mask.tk() != tk {
        return Err(Error::shape(
            what,
            format!("[{b}, {tq}, {tk}]"),
            format!("[{}, {}, {}]", mask.batch(), mask.tq(), mask.tk()),
        ));
    }
    Ok(())
}

impl DependencyProbe {
    /// A probe over `model`'s architecture and current parameters.
    pub fn new(model: &dyn TrainModel) -> Result<Self> {
        let config = model.config().clone();
        config.validate()?;
        Self::over(config, model.params().to_vec())
    }

    /// A second probe over the same architecture and parameters, with its own activations.
    pub fn duplicate(&self) -> Result<Self> {
        Self::over(self.config.clone(), self.params.to_vec())
    }

    /// The stacks and head `config` builds, over `params`, with fresh activations.
    fn over(config: ModelConfig, params: Vec<f32>) -> Result<Self> {
        let built = build(&config);
        if built.layout.total() != params.len() {
            return Err(Error::shape(
                "audit probe parameters",
                built.layout.total(),
                params.len(),
            ));
        }
        let mut params = built.params(params, config.precision);
        params.refresh();
        Ok(Self {
            grads: vec![0.0; params.len()],
            params,
            stack: built.stack,
            head: built.head,
            config,
            acts: StackActs::default(),
            scratch: StackScratch::default(),
            head_acts: HeadActs::default(),
            shape: (0, 0),
            dec: DecoderSide::new(built.decoder),
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

    /// h[N,C] = stack(batch) with self-attention `mask` (`[B, 1 or H, T, T]`), no dropout; read it
    /// with [`Self::hidden`].
    pub fn forward(&mut self, batch: &Batch, mask: &BlockMask) -> Result<()> {
        check_batch(&self.config, batch)?;
        let (b, t) = (batch.batch_size, batch.seq_len);
        check_mask("audit attention mask [B, T, T]", mask, b, t, t)?;
        let inp = stack_input(&self.config, batch, mask);
        self.stack
            .forward(&mut self.acts, inp, None, None, self.params.weights());
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
            return Err(Error::config(
                "model.arch",
                "the probed encoder of an encoder-decoder has no head of its own; read hidden()",
            ));
        }
        let n = self.shape.0 * self.shape.1;
        LmHead::select_all(&mut self.head_acts, &vec![crate::IGNORE_INDEX; n]);
        self.head.forward(
            &mut self.head_acts,
            self.stack.output(&self.acts),
            self.params.weights(),
        );
        Ok(&self.head_acts.logits)
    }

    /// Encoder-decoder: enc[B·T,C] = encoder(batch) with `masks.enc`, then
    /// h[B·Td,C] = decoder(batch.decoder, enc) with `masks.dec` and `masks.cross`, no dropout; read
    /// them with [`Self::hidden`] and [`Self::decoder_hidden`].
    pub fn forward_seq2seq(&mut self, batch: &Batch, masks: &Seq2SeqMasks) -> Result<()> {
        if self.dec.is_none() {
            return Err(no_decoder());
        }
        self.forward(batch, &masks.enc)?;
        let (b, t) = (batch.batch_size, batch.seq_len);
        let dec = self.dec.as_mut().ok_or_else(no_decoder)?;
        fill_decoder_batch(&mut dec.batch, batch)?;
        let td = dec.batch.seq_len;
        check_mask(
            "audit decoder self-attention mask [B, Td, Td]",
            &masks.dec,
            b,
            td,
            td,
        )?;
        check_mask(
            "audit cross-attention mask [B, Td, T]",
            &masks.cross,
            b,
            td,
            t,
        )?;
        let cross = CrossInput {
            enc: self.stack.output(&self.acts),
            tk: t,
            mask: &masks.cross,
            rows: None,
        };
        dec.stack.forward(
            &mut dec.acts,
            dec_input(&dec.batch, &masks.dec),
            Some(cross),
            None,
            self.params.weights(),
        );
        Ok(())
    }

    /// The decoder output `[B·Td, C]` of the last [`Self::forward_seq2seq`] (empty without a decoder).
    pub fn decoder_hidden(&self) -> &[f32] {
        self.dec
            .as_ref()
            .map_or(&[][..], |d| d.stack.output(&d.acts))
    }

    /// Logits `[B·Td, V]` on every decoder position of the last [`Self::forward_seq2seq`].
    pub fn decoder_logits(&mut self) -> Result<&[f32]> {
        let dec = self.dec.as_ref().ok_or_else(no_decoder)?;
        let n = dec.batch.batch_size * dec.batch.seq_len;
        LmHead::select_all(&mut self.head_acts, &vec![crate::IGNORE_INDEX; n]);
        self.head.forward(
            &mut self.head_acts,
            dec.stack.output(&dec.acts),
            self.params.weights(),
        );
        Ok(&self.head_acts.logits)
    }

    /// Encoder-decoder: d(direction · h[row, i]) / d(embedding outputs) of one decoder output
    /// position (decoder stack output, projected on `direction[C]`), with respect to every target
    /// input embedding `[B·Td, C]` and every source input embedding `[B·T, C]`, returned in that
    /// order. Uses the activations of the last [`Self::forward_seq2seq`], which must have run on the
    /// same `batch` and `masks`.
    pub fn seq2seq_input_gradient(
        &mut self,
        batch: &Batch,
        masks: &Seq2SeqMasks,
        row: usize,
        i: usize,
        direction: &[f32],
    ) -> Result<(&[f32], &[f32])> {
        let (b, t) = self.shape;
        let c = self.config.d_model;
        let dec = self.dec.as_mut().ok_or_else(no_decoder)?;
        let td = dec.batch.seq_len;
        if (batch.batch_size, batch.seq_len) != (b, t)
            || dec.batch.batch_size != b
            || row >= b
            || i >= td
            || direction.len() != c
        {
            return Err(Error::shape(
                "audit seq2seq_input_gradient (row, i, direction)",
                format!("row < {b}, i < {td}, {c} directions"),
                format!("row {row}, i {i}, {} directions", direction.len()),
            ));
        }
        let dh = dec.stack.begin_backward(&mut dec.scratch, b * td);
        let at = (row * td + i) * c;
        dh[at..at + c].copy_from_slice(direction);
        // The decoder's cross-attention adds d(encoder output) into the encoder's residual gradient,
        // as in the model's own backward.
        let denc = self.stack.begin_backward(&mut self.scratch, b * t);
        let cross = CrossInput {
            enc: self.stack.output(&self.acts),
            tk: t,
            mask: &masks.cross,
            rows: None,
        };
        let mut g = Grads {
            w: self.params.weights(),
            buf: &mut self.grads,
        };
        dec.stack.backward(
            &dec.acts,
            &mut dec.scratch,
            dec_input(&dec.batch, &masks.dec),
            Some((cross, denc)),
            &mut g,
        );
        let inp = stack_input(&self.config, batch, &masks.enc);
        self.stack
            .backward(&self.acts, &mut self.scratch, inp, None, &mut g);
        Ok((
            &dec.scratch.dres[..b * td * c],
            &self.scratch.dres[..b * t * c],
        ))
    }

    /// d(direction · h[row, q]) / d(embedding output) `[N,C]`: the gradient of one output position,
    /// projected on `direction[C]`, with respect to every input embedding (after the embedding
    /// LayerNorm, which acts per position). Uses the activations of the last [`Self::forward`], which
    /// must have run on the same `batch` and `mask`.
    pub fn input_gradient(
        &mut self,
        batch: &Batch,
        mask: &BlockMask,
        row: usize,
        q: usize,
        direction: &[f32],
    ) -> Result<&[f32]> {
        let (b, t) = self.shape;
        let c = self.config.d_model;
        if (batch.batch_size, batch.seq_len) != (b, t) || row >= b || q >= t || direction.len() != c
        {
            return Err(Error::shape(
                "audit input_gradient (row, q, direction)",
                format!("row < {b}, q < {t}, {c} directions"),
                format!("row {row}, q {q}, {} directions", direction.len()),
            ));
        }
        let n = b * t;
        let dh = self.stack.begin_backward(&mut self.scratch, n);
        let at = (row * t + q) * c;
        dh[at..at + c].copy_from_slice(direction);
        let inp = stack_input(&self.config, batch, mask);
        let mut g = Grads {
            w: self.params.weights(),
            buf: &mut self.grads,
        };
        self.stack
            .backward(&self.acts, &mut self.scratch, inp, None, &mut g);
        // After the blocks, the stack's residual gradient holds d(embedding output); the embedding
        // backward only reads it.
        Ok(&self.scratch.dres[..n * c])
    }
}
