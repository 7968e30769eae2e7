//! The leakage audit of an encoder-decoder's decoder: does the output at target position i of row b
//! depend on a target token after i, a padded target token, a padded source token, or any token of
//! another row?
//!
//! B = batch, T = source positions, Td = target positions, C = channels, V = vocabulary.
//!
//! The decoder output at (b, i) reads two input sequences, each a `Side` with its own report:
//! - **target** (`decoder-causal`): the closure of the decoder's causal self-attention over its real
//!   tokens across the decoder layers;
//! - **source** (`cross-padding`): target positions j that (b, i) may read, then the encoder outputs
//!   k that j's cross-attention may read (the source's real tokens), then the source positions that
//!   encoder output k may read (the encoder's own mask closed over the encoder layers).
//!
//! Both methods of [`super::engine`] run on the decoder stack output: gradients w.r.t. the target
//! and the source input embeddings, and perturbation of the forbidden target or source tokens with
//! the logits compared bit for bit.

use super::engine::{check, same_logits, AuditOptions, AuditReport, Outputs, Side};
use super::probe::DependencyProbe;
use super::reach::Reach;
use crate::attention::{AttentionMaskSpec, MaskFn};
use crate::batch::DecoderBatch;
use crate::model::{Arch, ModelConfig, Seq2SeqMasks, TrainModel};
use crate::{Batch, Error, Result};

/// The kind name of the decoder's self-attention audit.
pub const DECODER_CAUSAL: &str = "decoder-causal";
/// The kind name of the cross-attention audit.
pub const CROSS_PADDING: &str = "cross-padding";

/// The relations an encoder-decoder's attention is held to on one batch.
#[derive(Clone, Debug)]
pub struct Seq2SeqExpected {
    /// Encoder self-attention `[B, T, T]`.
    pub enc: MaskFn,
    /// Decoder self-attention `[B, Td, Td]`.
    pub dec: MaskFn,
    /// Cross-attention, decoder queries over encoder keys `[B, Td, T]`.
    pub cross: MaskFn,
}

impl Seq2SeqExpected {
    /// The encoder held to `spec`, the decoder to causal over the real target tokens, cross-attention
    /// to the real source tokens. Errors: a batch without a decoder side.
    pub fn new(spec: &AttentionMaskSpec, batch: &Batch) -> Result<Self> {
        let d = decoder_side(batch)?;
        let src: Vec<u32> = (0..batch.batch_size)
            .map(|b| {
                batch
                    .lengths
                    .get(b)
                    .copied()
                    .unwrap_or(batch.seq_len as u32)
            })
            .collect();
        Ok(Seq2SeqExpected {
            enc: spec.predicate(batch),
            dec: MaskFn::causal() & MaskFn::padding(&d.lengths),
            cross: MaskFn::padding(&src),
        })
    }
}

/// The decoder side of `batch`; an error for a batch without one.
fn decoder_side(batch: &Batch) -> Result<&DecoderBatch> {
    batch.decoder.as_ref().ok_or_else(|| {
        Error::config(
            "batch.decoder",
            "the encoder-decoder audit needs the decoder side of the batch",
        )
    })
}

/// The two sides of the decoder outputs of `batch`: target (decoder-causal), then source
/// (cross-padding).
fn sides<'a>(
    cfg: &ModelConfig,
    expected: &Seq2SeqExpected,
    batch: &'a Batch,
) -> Result<[Side<'a>; 2]> {
    let d = decoder_side(batch)?;
    let (b, t, td, h) = (batch.batch_size, batch.seq_len, d.seq_len, cfg.n_heads);
    let target = Reach::closure(&expected.dec, b, h, td, cfg.n_decoder_layers);
    let cross = Reach::attention(&expected.cross, b, h, td, t);
    let encoder = Reach::closure(&expected.enc, b, h, t, cfg.n_layers);
    let source = target.then(&cross).then(&encoder);
    Ok([
        Side {
            kind: DECODER_CAUSAL.into(),
            name: Some("target"),
            ids: &d.input_ids,
            reach: target,
            layers: cfg.n_decoder_layers,
        },
        Side {
            kind: CROSS_PADDING.into(),
            name: Some("source"),
            ids: &batch.input_ids,
            reach: source,
            layers: cfg.n_layers + cfg.n_decoder_layers,
        },
    ])
}

/// `batch` with its target tokens `ids[0]` and source tokens `ids[1]`.
fn with_ids(batch: &Batch, ids: &[Vec<u32>]) -> Batch {
    let mut p = batch.clone();
    if let Some(d) = p.decoder.as_mut() {
        d.input_ids.clone_from(&ids[0]);
    }
    p.input_ids.clone_from(&ids[1]);
    p
}

/// Runs both methods with `probe` (after its `forward_seq2seq` on `batch` and `masks`) for the
/// gradients and `outputs` for the perturbation forwards.
fn run(
    probe: &mut DependencyProbe,
    masks: &Seq2SeqMasks,
    expected: &Seq2SeqExpected,
    batch: &Batch,
    opts: &AuditOptions,
    outputs: &mut dyn FnMut(&Batch) -> Result<Vec<f32>>,
) -> Result<Vec<AuditReport>> {
    let cfg = probe.config().clone();
    let sides = sides(&cfg, expected, batch)?;
    let td = sides[0].reach.seq_len();
    let mut gradient = |b: usize, i: usize, dir: &[f32]| -> Result<Vec<Vec<f32>>> {
        let (target, source) = probe.seq2seq_input_gradient(batch, masks, b, i, dir)?;
        Ok(vec![target.to_vec(), source.to_vec()])
    };
    let mut perturbed = |ids: &[Vec<u32>]| outputs(&with_ids(batch, ids));
    let shape = Outputs {
        batch: batch.batch_size,
        positions: td,
        channels: cfg.d_model,
        width: cfg.vocab_size,
        vocab: cfg.vocab_size,
    };
    check(&sides, shape, opts, &mut gradient, &mut perturbed)
}

/// Audits the decoder of encoder-decoder `model` as it runs (its own masks, its own `logits`): the
/// encoder held to `spec` (normally the model's own `config().attention`), the decoder to causal
/// self-attention and cross-attention over the real source tokens. Returns the `decoder-causal`
/// and `cross-padding` reports.
///
/// Errors: a model that is not an encoder-decoder, a batch it rejects, or a probe whose logits are not
/// the model's own bit for bit.
pub fn audit_seq2seq(
    model: &mut dyn TrainModel,
    spec: &AttentionMaskSpec,
    batch: &Batch,
    opts: &AuditOptions,
) -> Result<Vec<AuditReport>> {
    if model.config().arch != Arch::EncoderDecoder {
        return Err(Error::config(
            "model.arch",
            "the decoder and cross-attention audit needs an encoder-decoder",
        ));
    }
    let masks = Seq2SeqMasks::of(model.config(), batch)?;
    let mut probe = DependencyProbe::new(&*model)?;
    probe.forward_seq2seq(batch, &masks)?;
    let mine = probe.decoder_logits()?.to_vec();
    same_logits(&mine, model.logits(batch)?)?;
    let expected = Seq2SeqExpected::new(spec, batch)?;
    let mut outputs = |b: &Batch| -> Result<Vec<f32>> { Ok(model.logits(b)?.to_vec()) };
    run(&mut probe, &masks, &expected, batch, opts, &mut outputs)
}

/// Audits encoder-decoder `model`'s layers run with the masks `run` (instead of its own) against the
/// relations `expected` — how a deliberately leaky decoder or cross-attention mask is planted in
/// tests. Returns the `decoder-causal` and `cross-padding` reports.
pub fn audit_seq2seq_with_masks(
    model: &dyn TrainModel,
    run_masks: &Seq2SeqMasks,
    expected: &Seq2SeqExpected,
    batch: &Batch,
    opts: &AuditOptions,
) -> Result<Vec<AuditReport>> {
    let mut probe = DependencyProbe::new(model)?;
    probe.forward_seq2seq(batch, run_masks)?;
    // A second probe for the perturbation forwards, so they keep the gradient pass's activations.
    let mut twin = probe.duplicate()?;
    let mut outputs = |b: &Batch| -> Result<Vec<f32>> {
        twin.forward_seq2seq(b, run_masks)?;
        Ok(twin.decoder_logits()?.to_vec())
    };
    run(&mut probe, run_masks, expected, batch, opts, &mut outputs)
}
