//! The encoder-decoder (BART style) for translation: the encoder reads `Batch.input_ids`, the decoder
//! reads `Batch.decoder.input_ids` with causal self-attention and cross-attention over the encoder
//! output (source padding masked), and the tied head adds `final_logits_bias`.
//!
//! B = batch, T = source positions, Td = target positions, C = channels, V = vocabulary.

use remask_kernels::block_mask::BlockMask;

use super::block::CrossInput;
use super::build::build;
use super::check::check_batch;
use super::config::{Arch, ModelConfig};
use super::head::{HeadActs, HeadScratch, LmHead};
use super::params::{Grads, Params};
use super::stack::{Stack, StackActs, StackInput, StackScratch};
use super::{StepStats, TensorInfo, TrainModel, ATTENTION_TILE};
use crate::attention::{cross_attention_mask, decoder_self_attention_mask};
use crate::{Batch, Error, Result, IGNORE_INDEX, PAD_DOC};

/// Encoder-decoder with cross-attention.
pub struct EncoderDecoderModel {
    config: ModelConfig,
    tensors: Vec<TensorInfo>,
    params: Params,
    grads: Vec<f32>,
    enc: Stack,
    dec: Stack,
    head: LmHead,
    enc_acts: StackActs,
    dec_acts: StackActs,
    enc_scratch: StackScratch,
    dec_scratch: StackScratch,
    head_acts: HeadActs,
    head_scratch: HeadScratch,
    all_acts: HeadActs,
    /// The decoder side as a batch of its own (ids, positions, labels), reused.
    dec_batch: Batch,
}

/// The three attention masks of one batch: encoder self-attention `[B, 1, T, T]`, decoder
/// self-attention `[B, 1, Td, Td]`, cross-attention `[B, 1, Td, T]`.
pub struct Seq2SeqMasks {
    pub enc: BlockMask,
    pub dec: BlockMask,
    pub cross: BlockMask,
}

impl Seq2SeqMasks {
    /// The masks the model runs `batch` with (the leakage audit injects these, or planted ones, into
    /// its copy of the layers). Errors: a batch without a decoder side.
    pub fn of(config: &ModelConfig, batch: &Batch) -> Result<Self> {
        let d = batch
            .decoder
            .as_ref()
            .ok_or_else(|| Error::config("batch.decoder", "missing"))?;
        Ok(Seq2SeqMasks {
            enc: config.attention.block_mask(batch, ATTENTION_TILE),
            dec: decoder_self_attention_mask(&d.lengths, d.seq_len, ATTENTION_TILE),
            cross: cross_attention_mask(&batch.lengths, d.seq_len, batch.seq_len, ATTENTION_TILE),
        })
    }
}

impl EncoderDecoderModel {
    /// A freshly initialised model keyed by seed.
    pub fn new(config: ModelConfig, seed: u64) -> Result<Self> {
        Self::build(config, |layout| layout.init(seed))
    }

    /// A model over given parameters (in this model's layout).
    pub fn from_params(config: ModelConfig, params: Vec<f32>) -> Result<Self> {
        let mut params = Some(params);
        Self::build(config, |_| params.take().unwrap_or_default())
    }

    fn build(
        config: ModelConfig,
        make: impl FnOnce(&super::layout::Layout) -> Vec<f32>,
    ) -> Result<Self> {
        config.validate()?;
        if config.arch != Arch::EncoderDecoder {
            return Err(Error::config(
                "model.arch",
                "EncoderDecoderModel needs arch = \"encoder-decoder\"",
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
        let params = built.params(params, config.precision);
        let dec = built
            .decoder
            .ok_or_else(|| Error::Other("encoder-decoder layout without a decoder".into()))?;
        Ok(Self {
            tensors: built.layout.into_tensors(),
            grads: vec![0.0; params.len()],
            config,
            params,
            enc: built.stack,
            dec,
            head: built.head,
            enc_acts: StackActs::default(),
            dec_acts: StackActs::default(),
            enc_scratch: StackScratch::default(),
            dec_scratch: StackScratch::default(),
            head_acts: HeadActs::default(),
            head_scratch: HeadScratch::default(),
            all_acts: HeadActs::default(),
            dec_batch: Batch::default(),
        })
    }

    /// Fills `dec_batch` from the decoder side of `batch` (validated) and builds the masks.
    /// Also packs the bf16 weights when they are stale.
    fn prepare(&mut self, batch: &Batch) -> Result<Seq2SeqMasks> {
        check_batch(&self.config, batch)?;
        fill_decoder_batch(&mut self.dec_batch, batch)?;
        self.params.refresh();
        Seq2SeqMasks::of(&self.config, batch)
    }

    /// Encoder and decoder forward (after [`Params::refresh`]), in the model's precision or, with
    /// `fp32`, in f32 from the master weights (evaluation; see [`Params::fp32`]).
    fn forward(
        &mut self,
        batch: &Batch,
        masks: &Seq2SeqMasks,
        dropout_key: Option<u64>,
        fp32: bool,
    ) {
        let w = if fp32 {
            self.params.fp32()
        } else {
            self.params.weights()
        };
        let enc_in = StackInput {
            ids: &batch.input_ids,
            positions: &batch.positions,
            types: (self.config.type_vocab_size > 0).then_some(&batch.token_type_ids[..]),
            b: batch.batch_size,
            t: batch.seq_len,
            mask: &masks.enc,
            rows: None,
        };
        self.enc
            .forward(&mut self.enc_acts, enc_in, None, dropout_key, w);
        let dec_in = dec_input(&self.dec_batch, &masks.dec);
        let cross = CrossInput {
            enc: self.enc.output(&self.enc_acts),
            tk: batch.seq_len,
            mask: &masks.cross,
            rows: None,
        };
        self.dec
            .forward(&mut self.dec_acts, dec_in, Some(cross), dropout_key, w);
    }

    /// Logits on every decoder position, `[B·Td, V]` (HF's `BartForConditionalGeneration` logits).
    pub fn logits(&mut self, batch: &Batch) -> Result<&[f32]> {
        let masks = self.prepare(batch)?;
        self.forward(batch, &masks, None, false);
        LmHead::select_all(&mut self.all_acts, &self.dec_batch.labels);
        self.head.forward(
            &mut self.all_acts,
            self.dec.output(&self.dec_acts),
            self.params.weights(),
        );
        Ok(&self.all_acts.logits)
    }

    /// The encoder output `[B·T, C]` of the last forward.
    pub fn encoder_hidden_states(&self) -> &[f32] {
        self.enc.output(&self.enc_acts)
    }

    /// The decoder output `[B·Td, C]` of the last forward.
    pub fn decoder_hidden_states(&self) -> &[f32] {
        self.dec.output(&self.dec_acts)
    }
}

/// The decoder side of `batch` (validated by `check_batch`) as a batch of its own in `db` (ids,
/// positions `0..Td`, ignored labels, lengths), reusing its buffers. Errors: a batch without a
/// decoder side.
pub fn fill_decoder_batch(db: &mut Batch, batch: &Batch) -> Result<()> {
    let d = batch
        .decoder
        .as_ref()
        .ok_or_else(|| Error::config("batch.decoder", "missing"))?;
    let (b, td) = (batch.batch_size, d.seq_len);
    db.batch_size = b;
    db.seq_len = td;
    db.input_ids.clear();
    db.input_ids.extend_from_slice(&d.input_ids);
    db.labels.clear();
    db.labels.resize(b * td, IGNORE_INDEX);
    db.positions.clear();
    db.doc_ids.clear();
    for row in 0..b {
        let len = d.lengths.get(row).map_or(td, |&l| l as usize);
        db.positions.extend((0..td).map(|p| p as u32));
        db.doc_ids
            .extend((0..td).map(|p| if p < len { 0 } else { PAD_DOC }));
    }
    db.token_type_ids.clear();
    db.token_type_ids.resize(b * td, 0);
    db.lengths.clear();
    db.lengths.extend_from_slice(&d.lengths);
    db.prefix_lengths.clear();
    db.prefix_lengths.resize(b, 0);
    db.sample_ids.clear();
    db.sample_ids.extend_from_slice(&batch.sample_ids);
    Ok(())
}

/// The decoder stack's input over the decoder batch made by [`fill_decoder_batch`].
pub fn dec_input<'a>(db: &'a Batch, mask: &'a BlockMask) -> StackInput<'a> {
    StackInput {
        ids: &db.input_ids,
        positions: &db.positions,
        types: None,
        b: db.batch_size,
        t: db.seq_len,
        mask,
        rows: None,
    }
}

fn decoder_labels(batch: &Batch) -> &[i32] {
    batch.decoder.as_ref().map_or(&[][..], |d| &d.labels[..])
}

impl TrainModel for EncoderDecoderModel {
    super::train_model_buffers!();

    /// Loss on the decoder labels only (encoder labels of a translation batch are all ignored).
    fn forward_backward(
        &mut self,
        batch: &Batch,
        grad_scale: f32,
        dropout_key: u64,
    ) -> Result<StepStats> {
        let masks = self.prepare(batch)?;
        self.forward(batch, &masks, Some(dropout_key), false);
        LmHead::select_labelled(&mut self.head_acts, decoder_labels(batch));
        let w = self.params.weights();
        self.head
            .forward(&mut self.head_acts, self.dec.output(&self.dec_acts), w);
        let (b, t, td) = (batch.batch_size, batch.seq_len, self.dec_batch.seq_len);
        let dh = self.dec.begin_backward(&mut self.dec_scratch, b * td);
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
        // The decoder's cross-attention adds d(encoder output) straight into the encoder's residual
        // gradient.
        let denc = self.enc.begin_backward(&mut self.enc_scratch, b * t);
        let cross = CrossInput {
            enc: self.enc.output(&self.enc_acts),
            tk: t,
            mask: &masks.cross,
            rows: None,
        };
        let dec_in = dec_input(&self.dec_batch, &masks.dec);
        self.dec.backward(
            &self.dec_acts,
            &mut self.dec_scratch,
            dec_in,
            Some((cross, denc)),
            &mut g,
        );
        let enc_in = StackInput {
            ids: &batch.input_ids,
            positions: &batch.positions,
            types: (self.config.type_vocab_size > 0).then_some(&batch.token_type_ids[..]),
            b,
            t,
            mask: &masks.enc,
            rows: None,
        };
        self.enc
            .backward(&self.enc_acts, &mut self.enc_scratch, enc_in, None, &mut g);
        Ok(StepStats {
            loss_sum: ce.loss_sum,
            n_labels: ce.count,
            n_correct: ce.correct,
        })
    }

    fn forward_eval(&mut self, batch: &Batch) -> Result<StepStats> {
        let masks = self.prepare(batch)?;
        // Always f32, from the master weights (see `Params::fp32`).
        self.forward(batch, &masks, None, true);
        LmHead::select_labelled(&mut self.head_acts, decoder_labels(batch));
        self.head.forward(
            &mut self.head_acts,
            self.dec.output(&self.dec_acts),
            self.params.fp32(),
        );
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
        EncoderDecoderModel::logits(self, batch)
    }
}
