//! The leakage audit of a self-attention stack (an encoder, a decoder, or an encoder-decoder's
//! encoder) on the real model, and [`audit_all`], every audit of a model as it runs. The methods and
//! the report are the engine's ([`super::engine`]); the decoder of an encoder-decoder is audited in
//! [`super::seq2seq`].

use remask_kernels::block_mask::BlockMask;

use super::engine::{check, same_logits, AuditOptions, AuditReport, Outputs, Side};
use super::probe::DependencyProbe;
use super::reach::Reach;
use crate::attention::{AttentionMaskSpec, MaskFn};
use crate::model::{Arch, TrainModel, ATTENTION_TILE};
use crate::{Batch, Error, Result};

/// A short name of a mask kind, as the CLI spells it.
pub fn kind_name(spec: &AttentionMaskSpec) -> String {
    match *spec {
        AttentionMaskSpec::Padding => "padding".into(),
        AttentionMaskSpec::Causal => "causal".into(),
        AttentionMaskSpec::Document { causal: false } => "document".into(),
        AttentionMaskSpec::Document { causal: true } => "document(causal)".into(),
        AttentionMaskSpec::SlidingWindow {
            window,
            causal: false,
        } => format!("sliding({window})"),
        AttentionMaskSpec::SlidingWindow {
            window,
            causal: true,
        } => format!("sliding({window}, causal)"),
        AttentionMaskSpec::PrefixLm => "prefix".into(),
    }
}

/// Audits `model` as it runs (its own configured attention mask, its own `logits`) against the
/// relation `spec` allows on `batch`. The comparison report calls this with `spec` = the model's own
/// `config().attention`; a different `spec` asks whether the model stays within that mask instead.
/// For an encoder-decoder this audits the encoder's self-attention (its hidden states); see
/// [`super::seq2seq::audit_seq2seq`] for the decoder, and [`audit_all`] for both.
///
/// Errors: a batch the model rejects, or a probe that does not reproduce the model's logits bit for
/// bit (then the audit would not be about the real model).
pub fn audit_model(
    model: &mut dyn TrainModel,
    spec: &AttentionMaskSpec,
    batch: &Batch,
    opts: &AuditOptions,
) -> Result<AuditReport> {
    let run_mask = model.config().attention.block_mask(batch, ATTENTION_TILE);
    let mut probe = DependencyProbe::new(&*model)?;
    probe.forward(batch, &run_mask)?;
    let expected = spec.predicate(batch);
    if probe.has_head() {
        let mine = probe.logits()?.to_vec();
        same_logits(&mine, model.logits(batch)?)?;
        let mut outputs = |b: &Batch| -> Result<Vec<f32>> { Ok(model.logits(b)?.to_vec()) };
        run(
            &mut probe,
            &run_mask,
            &expected,
            &kind_name(spec),
            batch,
            opts,
            &mut outputs,
        )
    } else {
        audit_probe(probe, &run_mask, &expected, &kind_name(spec), batch, opts)
    }
}

/// Every audit of `model` as it runs: its self-attention against `spec` ([`audit_model`]) and, for an
/// encoder-decoder, the decoder's causal self-attention and its cross-attention
/// ([`super::seq2seq::audit_seq2seq`]); one report per kind, in that order.
pub fn audit_all(
    model: &mut dyn TrainModel,
    spec: &AttentionMaskSpec,
    batch: &Batch,
    opts: &AuditOptions,
) -> Result<Vec<AuditReport>> {
    let mut reports = vec![audit_model(model, spec, batch, opts)?];
    if model.config().arch == Arch::EncoderDecoder {
        reports.extend(super::seq2seq::audit_seq2seq(model, spec, batch, opts)?);
    }
    Ok(reports)
}

/// Audits `model`'s layers run with `run_mask` (instead of its configured mask) against the relation
/// `expected` allows — how a deliberately leaky mask is planted in tests. Both methods go through the
/// [`DependencyProbe`].
pub fn audit_with_mask(
    model: &dyn TrainModel,
    run_mask: &BlockMask,
    expected: &MaskFn,
    kind: &str,
    batch: &Batch,
    opts: &AuditOptions,
) -> Result<AuditReport> {
    let mut probe = DependencyProbe::new(model)?;
    probe.forward(batch, run_mask)?;
    audit_probe(probe, run_mask, expected, kind, batch, opts)
}

fn audit_probe(
    mut probe: DependencyProbe,
    run_mask: &BlockMask,
    expected: &MaskFn,
    kind: &str,
    batch: &Batch,
    opts: &AuditOptions,
) -> Result<AuditReport> {
    // A second probe for the perturbation forwards, so they do not overwrite the activations the
    // gradient pass reads.
    let mut twin = probe.duplicate()?;
    let mut outputs = |b: &Batch| -> Result<Vec<f32>> {
        twin.forward(b, run_mask)?;
        Ok(if twin.has_head() {
            twin.logits()?.to_vec()
        } else {
            twin.hidden().to_vec()
        })
    };
    run(
        &mut probe,
        run_mask,
        expected,
        kind,
        batch,
        opts,
        &mut outputs,
    )
}

/// The self-attention audit: one side (the stack's own tokens), `outputs` `[B·T, W]`: the logits
/// (W = V) when the probe has a head, else the hidden states (W = C).
fn run(
    probe: &mut DependencyProbe,
    run_mask: &BlockMask,
    expected: &MaskFn,
    kind: &str,
    batch: &Batch,
    opts: &AuditOptions,
    outputs: &mut dyn FnMut(&Batch) -> Result<Vec<f32>>,
) -> Result<AuditReport> {
    let cfg = probe.config().clone();
    let width = if probe.has_head() {
        cfg.vocab_size
    } else {
        cfg.d_model
    };
    let (bsz, t) = (batch.batch_size, batch.seq_len);
    let side = Side {
        kind: kind.to_string(),
        name: None,
        ids: &batch.input_ids,
        reach: Reach::closure(expected, bsz, cfg.n_heads, t, cfg.n_layers),
        layers: cfg.n_layers,
    };
    let mut gradient = |b: usize, q: usize, dir: &[f32]| -> Result<Vec<Vec<f32>>> {
        Ok(vec![probe
            .input_gradient(batch, run_mask, b, q, dir)?
            .to_vec()])
    };
    let mut perturbed = |ids: &[Vec<u32>]| -> Result<Vec<f32>> {
        let mut p = batch.clone();
        p.input_ids.clone_from(&ids[0]);
        outputs(&p)
    };
    let shape = Outputs {
        batch: bsz,
        positions: t,
        channels: cfg.d_model,
        width,
        vocab: cfg.vocab_size,
    };
    let mut reports = check(&[side], shape, opts, &mut gradient, &mut perturbed)?;
    reports
        .pop()
        .ok_or_else(|| Error::Other("audit: no report for the one input side".into()))
}
