//! The leakage audit: on the real model, does the output at each position depend on an input
//! position its attention mask forbids?
//!
//! B = batch, T = positions, N = B·T, C = channels, W = output width (V logits, or C hidden).
//!
//! Two independent methods, both on every checked query position (b, q):
//! - **gradients**: backpropagate a random projection of the output at (b, q) to the input
//!   embeddings ([`DependencyProbe::input_gradient`]); a forbidden input with a gradient that is not
//!   exactly 0 is a leak. Masked attention weights are exactly 0 (exp(−∞)), so a correct mask gives
//!   exact zeros, not small numbers: the threshold is `!= 0.0`.
//! - **perturbation**: change the token at every forbidden position (and every token of the other
//!   rows) and run the forward again; the outputs at (b, q) must be bit-identical (0 ulp: no
//!   tolerance, since a forbidden key contributes exact zeros to every sum the query's row computes).
//!
//! "Forbidden" is the complement of the transitive closure ([`Reach`]) of the expected mask over the
//! model's layers, plus every position of another row.

use remask_kernels::block_mask::BlockMask;
use remask_kernels::rng::{KeyedRng, Purpose};
use serde::Serialize;

use super::probe::DependencyProbe;
use super::reach::Reach;
use crate::attention::{AttentionMaskSpec, MaskFn};
use crate::model::{TrainModel, ATTENTION_TILE};
use crate::{Batch, Error, Result};

/// How much the audit checks. The default checks every query position with seed 0.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AuditOptions {
    /// Query positions checked per row, evenly spaced and always including the first and the last;
    /// 0 checks every position.
    pub max_queries_per_row: usize,
    /// Keys the random output projections.
    pub seed: u64,
}

/// The first forbidden dependency found.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Violation {
    /// Batch row of the query.
    pub row: usize,
    /// Query (output) position.
    pub query: usize,
    /// Batch row of the offending input (equal to `row` unless rows mix).
    pub key_row: usize,
    /// The smallest offending input position.
    pub key: usize,
    /// Every offending input position of `key_row` for this query, ascending.
    pub leaked_keys: Vec<usize>,
    /// Which method found it: `gradient` or `perturbation`.
    pub method: String,
}

/// The verdict of one audit.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AuditReport {
    /// The mask kind the outputs were held to (e.g. `causal`, `sliding-window(4, causal)`).
    pub kind: String,
    pub passed: bool,
    /// Query positions (over all rows) checked by both methods.
    pub checked_queries: usize,
    /// Forbidden (query, key) pairs within rows among the checked queries.
    pub forbidden_pairs: usize,
    /// Checked queries where each method found a forbidden dependency.
    pub gradient_violations: usize,
    pub perturbation_violations: usize,
    pub first_violation: Option<Violation>,
    /// How the outputs were checked.
    pub method: String,
    /// Layers the allowed relation was closed over.
    pub layers: usize,
}

impl AuditReport {
    /// The one-line verdict: `PASS <kind>: ...` or `LEAK <kind>: query q reads forbidden key k (row b)`.
    pub fn line(&self) -> String {
        match &self.first_violation {
            None => format!("PASS {}: {} query positions checked by gradients and perturbation", self.kind, self.checked_queries),
            Some(v) if v.key_row == v.row => {
                format!("LEAK {}: query {} reads forbidden key {} (row {})", self.kind, v.query, v.key, v.row)
            }
            Some(v) => format!(
                "LEAK {}: query {} (row {}) reads position {} of another row {}",
                self.kind, v.query, v.row, v.key, v.key_row
            ),
        }
    }
}

impl AuditReport {
    /// What the comparison report's leakage table shows: `attention <kind>`, the verdict, and the
    /// number of queries checked or the offending pair.
    pub fn to_audit_line(&self) -> crate::experiment::AuditLine {
        let detail = match &self.first_violation {
            None => format!("{} queries, {} forbidden pairs; gradients and perturbation", self.checked_queries, self.forbidden_pairs),
            Some(v) => format!("query {} reads forbidden key {} (row {}, found by {})", v.query, v.key, v.row, v.method),
        };
        crate::experiment::AuditLine { what: format!("attention {}", self.kind), passed: self.passed, detail }
    }
}

/// A short name of a mask kind, as the CLI spells it.
pub fn kind_name(spec: &AttentionMaskSpec) -> String {
    match *spec {
        AttentionMaskSpec::Padding => "padding".into(),
        AttentionMaskSpec::Causal => "causal".into(),
        AttentionMaskSpec::Document { causal: false } => "document".into(),
        AttentionMaskSpec::Document { causal: true } => "document(causal)".into(),
        AttentionMaskSpec::SlidingWindow { window, causal: false } => format!("sliding({window})"),
        AttentionMaskSpec::SlidingWindow { window, causal: true } => format!("sliding({window}, causal)"),
        AttentionMaskSpec::PrefixLm => "prefix".into(),
    }
}

/// Audits `model` as it runs (its own configured attention mask, its own `logits`) against the
/// relation `spec` allows on `batch`. The comparison report calls this with `spec` = the model's own
/// `config().attention`; a different `spec` asks whether the model stays within that mask instead.
///
/// Errors: a batch the model rejects, or a probe that does not reproduce the model's logits bit for
/// bit (then the audit would not be about the real model).
pub fn audit_model(model: &mut dyn TrainModel, spec: &AttentionMaskSpec, batch: &Batch, opts: &AuditOptions) -> Result<AuditReport> {
    let run_mask = model.config().attention.block_mask(batch, ATTENTION_TILE);
    let mut probe = DependencyProbe::new(&*model)?;
    probe.forward(batch, &run_mask)?;
    let expected = spec.predicate(batch);
    if probe.has_head() {
        let mine = probe.logits()?.to_vec();
        let theirs = model.logits(batch)?;
        if mine.len() != theirs.len() || mine.iter().zip(theirs).any(|(a, b)| a.to_bits() != b.to_bits()) {
            return Err(Error::Other(
                "audit: the dependency probe's logits differ from the model's own; the model's forward no longer matches model::build (update audit/probe.rs)".into(),
            ));
        }
        let v = model.config().vocab_size;
        let mut outputs = |b: &Batch| -> Result<Vec<f32>> { Ok(model.logits(b)?.to_vec()) };
        run(&mut probe, &run_mask, &expected, &kind_name(spec), batch, opts, &mut outputs, v)
    } else {
        audit_probe(probe, &run_mask, &expected, &kind_name(spec), batch, opts)
    }
}

/// Audits `model`'s layers run with `run_mask` (instead of its configured mask) against the relation
/// `expected` allows — how a deliberately leaky mask is planted in tests. Both methods go through the
/// [`DependencyProbe`].
pub fn audit_with_mask(model: &dyn TrainModel, run_mask: &BlockMask, expected: &MaskFn, kind: &str, batch: &Batch, opts: &AuditOptions) -> Result<AuditReport> {
    let mut probe = DependencyProbe::new(model)?;
    probe.forward(batch, run_mask)?;
    audit_probe(probe, run_mask, expected, kind, batch, opts)
}

fn audit_probe(mut probe: DependencyProbe, run_mask: &BlockMask, expected: &MaskFn, kind: &str, batch: &Batch, opts: &AuditOptions) -> Result<AuditReport> {
    // A second probe for the perturbation forwards, so they do not overwrite the activations the
    // gradient pass reads.
    let mut twin = probe.duplicate()?;
    let width = if probe.has_head() { probe.config().vocab_size } else { probe.config().d_model };
    let mut outputs = |b: &Batch| -> Result<Vec<f32>> {
        twin.forward(b, run_mask)?;
        Ok(if twin.has_head() { twin.logits()?.to_vec() } else { twin.hidden().to_vec() })
    };
    run(&mut probe, run_mask, expected, kind, batch, opts, &mut outputs, width)
}

/// Query positions checked in a row of `t`.
fn queries(t: usize, max: usize) -> Vec<usize> {
    if max == 0 || max >= t {
        return (0..t).collect();
    }
    if max == 1 {
        return vec![0];
    }
    let mut q: Vec<usize> = (0..max).map(|i| i * (t - 1) / (max - 1)).collect();
    q.dedup();
    q
}

/// A token different from `id` (vocabulary of `v` ≥ 2), varied by position.
fn other_token(id: u32, v: usize, salt: usize) -> u32 {
    let step = 1 + (salt * 7919) % (v - 1);
    ((id as usize + step) % v) as u32
}

#[allow(clippy::too_many_arguments)]
fn run(
    probe: &mut DependencyProbe,
    run_mask: &BlockMask,
    expected: &MaskFn,
    kind: &str,
    batch: &Batch,
    opts: &AuditOptions,
    outputs: &mut dyn FnMut(&Batch) -> Result<Vec<f32>>,
    width: usize,
) -> Result<AuditReport> {
    let cfg = probe.config().clone();
    let (bsz, t, c, v) = (batch.batch_size, batch.seq_len, cfg.d_model, cfg.vocab_size);
    if v < 2 {
        return Err(Error::config("model.vocab_size", "the perturbation audit needs at least 2 tokens"));
    }
    let layers = cfg.n_layers;
    let reach = Reach::closure(expected, bsz, cfg.n_heads, t, layers);
    let qs = queries(t, opts.max_queries_per_row);
    let mut report = AuditReport {
        kind: kind.to_string(),
        passed: true,
        checked_queries: 0,
        forbidden_pairs: 0,
        gradient_violations: 0,
        perturbation_violations: 0,
        first_violation: None,
        method: "gradients of a random projection of each output w.r.t. the input embeddings (forbidden: != 0); \
                 perturbation of every forbidden token (outputs bit-identical)"
            .into(),
        layers,
    };
    let mut grad_first: Option<Violation> = None;
    let mut pert_first: Option<Violation> = None;

    // Method 1: gradients.
    let mut dir = vec![0.0f32; c];
    for b in 0..bsz {
        for &q in &qs {
            let mut rng = KeyedRng::new(opts.seed, Purpose::Other, b as u64, q as u64);
            dir.iter_mut().for_each(|x| *x = rng.normal());
            let g = probe.input_gradient(batch, run_mask, b, q, &dir)?;
            let depends = |b2: usize, k: usize| g[(b2 * t + k) * c..(b2 * t + k + 1) * c].iter().any(|&x| x != 0.0);
            report.checked_queries += 1;
            report.forbidden_pairs += reach.forbidden(b, q).len();
            let mut hit: Option<(usize, Vec<usize>)> = None;
            for b2 in (0..bsz).map(|i| (b + i) % bsz) {
                let leaked: Vec<usize> = (0..t).filter(|&k| (b2 != b || !reach.get(b, q, k)) && depends(b2, k)).collect();
                if !leaked.is_empty() {
                    hit = Some((b2, leaked));
                    break;
                }
            }
            if let Some((key_row, leaked_keys)) = hit {
                report.gradient_violations += 1;
                if grad_first.is_none() {
                    grad_first = Some(Violation { row: b, query: q, key_row, key: leaked_keys[0], leaked_keys, method: "gradient".into() });
                }
            }
        }
    }

    // Method 2: perturbation.
    let base = outputs(batch)?;
    let out_at = |o: &[f32], b: usize, q: usize| -> Vec<u32> { o[(b * t + q) * width..(b * t + q + 1) * width].iter().map(|x| x.to_bits()).collect() };
    let perturbed = |cands: &[(usize, usize)]| {
        let mut p = batch.clone();
        for &(b2, k) in cands {
            let i = b2 * t + k;
            p.input_ids[i] = other_token(p.input_ids[i], v, i);
        }
        p
    };
    for b in 0..bsz {
        for &q in &qs {
            let mut cands: Vec<(usize, usize)> = reach.forbidden(b, q).into_iter().map(|k| (b, k)).collect();
            cands.extend((0..bsz).filter(|&b2| b2 != b).flat_map(|b2| (0..t).map(move |k| (b2, k))));
            if cands.is_empty() {
                continue;
            }
            let want = out_at(&base, b, q);
            if out_at(&outputs(&perturbed(&cands))?, b, q) == want {
                continue;
            }
            report.perturbation_violations += 1;
            if pert_first.is_some() {
                continue;
            }
            // Name the offending inputs: perturb them one at a time.
            let mut hits = Vec::new();
            for &cand in &cands {
                if hits.first().is_some_and(|&(r, _)| r != cand.0) {
                    break;
                }
                if out_at(&outputs(&perturbed(&[cand]))?, b, q) != want {
                    hits.push(cand);
                }
            }
            let (key_row, key) = hits.first().copied().unwrap_or(cands[0]);
            let leaked_keys = hits.iter().map(|&(_, k)| k).collect();
            pert_first = Some(Violation { row: b, query: q, key_row, key, leaked_keys, method: "perturbation".into() });
        }
    }

    report.first_violation = match (grad_first, pert_first) {
        (Some(g), Some(p)) => Some(if (p.row, p.query) < (g.row, g.query) { p } else { g }),
        (g, p) => g.or(p),
    };
    report.passed = report.first_violation.is_none();
    Ok(report)
}
