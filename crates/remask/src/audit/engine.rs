//! The engine of the leakage audit: does an output depend on an input its attention mask forbids?
//!
//! B = batch, T = positions, N = B·T, C = channels, W = output width (V logits, or C hidden).
//!
//! Two independent methods, both on every checked query position (b, q):
//! - **gradients**: backpropagate a random projection of the output at (b, q) to the input
//!   embeddings ([`super::DependencyProbe::input_gradient`]); a forbidden input with a gradient that
//!   is not exactly 0 is a leak. Masked attention weights are exactly 0 (exp(−∞)), so a correct mask
//!   gives exact zeros, not small numbers: the threshold is `!= 0.0`.
//! - **perturbation**: change the token at every forbidden position (and every token of the other
//!   rows) and run the forward again; the outputs at (b, q) must be bit-identical (0 ulp: no
//!   tolerance, since a forbidden key contributes exact zeros to every sum the query's row computes).
//!
//! "Forbidden" is the complement of the transitive closure ([`Reach`]) of the expected mask over the
//! model's layers, plus every position of another row.
//!
//! The checks run over one or more input *sides* (`Side`): a self-attention model has one (its
//! tokens, [`super::leakage`]); an encoder-decoder's decoder outputs have two (target and source
//! tokens, [`super::seq2seq`]), each with its own allowed relation and its own report.

use remask_kernels::rng::{KeyedRng, Purpose};
use serde::Serialize;

use super::reach::Reach;
use crate::{Error, Result};

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
    /// Which input sequence the offending key belongs to when the outputs read two (encoder-decoder:
    /// `source` or `target`); absent for a self-attention stack.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_side: Option<String>,
}

impl Violation {
    /// ` source` / ` target` before "key" or "position" in a verdict line, or nothing.
    pub fn side(&self) -> String {
        self.key_side
            .as_ref()
            .map_or(String::new(), |s| format!(" {s}"))
    }
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
            None => format!(
                "PASS {}: {} query positions checked by gradients and perturbation",
                self.kind, self.checked_queries
            ),
            Some(v) if v.key_row == v.row => {
                format!(
                    "LEAK {}: query {} reads forbidden{} key {} (row {})",
                    self.kind,
                    v.query,
                    v.side(),
                    v.key,
                    v.row
                )
            }
            Some(v) => format!(
                "LEAK {}: query {} (row {}) reads{} position {} of another row {}",
                self.kind,
                v.query,
                v.row,
                v.side(),
                v.key,
                v.key_row
            ),
        }
    }
}

/// Errors unless the probe's logits equal the model's own bit for bit.
pub(super) fn same_logits(mine: &[f32], theirs: &[f32]) -> Result<()> {
    if mine.len() != theirs.len()
        || mine
            .iter()
            .zip(theirs)
            .any(|(a, b)| a.to_bits() != b.to_bits())
    {
        return Err(Error::Other(
            "audit: the dependency probe's logits differ from the model's own; the model's forward no longer matches model::build (update audit/probe.rs)".into(),
        ));
    }
    Ok(())
}

/// One input sequence the audited outputs read, and the report its violations go to.
pub(super) struct Side<'a> {
    /// The mask kind this side's violations are reported under.
    pub kind: String,
    /// `source` / `target` for the inputs of an encoder-decoder's decoder; None for a self-attention
    /// stack's own tokens.
    pub name: Option<&'static str>,
    /// Token ids `[B, Tk]`.
    pub ids: &'a [u32],
    /// Which inputs of this side each output may depend on, `[B, Tq, Tk]`.
    pub reach: Reach,
    /// Layers `reach` was closed over.
    pub layers: usize,
}

/// The audited outputs: `[batch · positions, width]`, gradients taken of `channels`-wide states.
#[derive(Clone, Copy)]
pub(super) struct Outputs {
    pub batch: usize,
    pub positions: usize,
    pub channels: usize,
    pub width: usize,
    pub vocab: usize,
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

/// d(direction · state at (b, q)) / d(input embeddings) of each side, called with (b, q, direction).
pub(super) type GradientFn<'a> = dyn FnMut(usize, usize, &[f32]) -> Result<Vec<Vec<f32>>> + 'a;
/// The outputs with each side's token ids replaced.
pub(super) type OutputsFn<'a> = dyn FnMut(&[Vec<u32>]) -> Result<Vec<f32>> + 'a;

/// Both methods over every side, one report per side.
///
/// - `gradient(b, q, direction)`: d(direction · state at (b, q)) / d(input embeddings), one
///   `[B·Tk, C]` buffer per side, in the order of `sides`.
/// - `outputs(ids)`: the outputs `[B·Tq, W]` with the token ids of each side replaced by `ids[s]`.
pub(super) fn check(
    sides: &[Side<'_>],
    out: Outputs,
    opts: &AuditOptions,
    gradient: &mut GradientFn<'_>,
    outputs: &mut OutputsFn<'_>,
) -> Result<Vec<AuditReport>> {
    let Outputs {
        batch: bsz,
        positions: tq,
        channels: c,
        width,
        vocab: v,
    } = out;
    if v < 2 {
        return Err(Error::config(
            "model.vocab_size",
            "the perturbation audit needs at least 2 tokens",
        ));
    }
    let qs = queries(tq, opts.max_queries_per_row);
    let mut reports: Vec<AuditReport> = sides
        .iter()
        .map(|s| AuditReport {
            kind: s.kind.clone(),
            passed: true,
            checked_queries: 0,
            forbidden_pairs: 0,
            gradient_violations: 0,
            perturbation_violations: 0,
            first_violation: None,
            method: "gradients of a random projection of each output w.r.t. the input embeddings (forbidden: != 0); \
                     perturbation of every forbidden token (outputs bit-identical)"
                .into(),
            layers: s.layers,
        })
        .collect();
    let mut grad_first: Vec<Option<Violation>> = vec![None; sides.len()];
    let mut pert_first: Vec<Option<Violation>> = vec![None; sides.len()];
    let violation =
        |s: &Side, b: usize, q: usize, key_row: usize, leaked_keys: Vec<usize>, method: &str| {
            Violation {
                row: b,
                query: q,
                key_row,
                key: leaked_keys.first().copied().unwrap_or(0),
                leaked_keys,
                method: method.into(),
                key_side: s.name.map(String::from),
            }
        };

    // Method 1: gradients.
    let mut dir = vec![0.0f32; c];
    for b in 0..bsz {
        for &q in &qs {
            let mut rng = KeyedRng::new(opts.seed, Purpose::Other, b as u64, q as u64);
            dir.iter_mut().for_each(|x| *x = rng.normal());
            let grads = gradient(b, q, &dir)?;
            for (si, (s, g)) in sides.iter().zip(&grads).enumerate() {
                let tk = s.reach.seq_len();
                let depends = |b2: usize, k: usize| {
                    g[(b2 * tk + k) * c..(b2 * tk + k + 1) * c]
                        .iter()
                        .any(|&x| x != 0.0)
                };
                let r = &mut reports[si];
                r.checked_queries += 1;
                r.forbidden_pairs += s.reach.forbidden(b, q).len();
                let mut hit: Option<(usize, Vec<usize>)> = None;
                for b2 in (0..bsz).map(|i| (b + i) % bsz) {
                    let leaked: Vec<usize> = (0..tk)
                        .filter(|&k| (b2 != b || !s.reach.get(b, q, k)) && depends(b2, k))
                        .collect();
                    if !leaked.is_empty() {
                        hit = Some((b2, leaked));
                        break;
                    }
                }
                if let Some((key_row, leaked_keys)) = hit {
                    r.gradient_violations += 1;
                    if grad_first[si].is_none() {
                        grad_first[si] = Some(violation(s, b, q, key_row, leaked_keys, "gradient"));
                    }
                }
            }
        }
    }

    // Method 2: perturbation, one side at a time (the other sides keep their tokens).
    let original: Vec<Vec<u32>> = sides.iter().map(|s| s.ids.to_vec()).collect();
    let base = outputs(&original)?;
    let out_at = |o: &[f32], b: usize, q: usize| -> Vec<u32> {
        o[(b * tq + q) * width..(b * tq + q + 1) * width]
            .iter()
            .map(|x| x.to_bits())
            .collect()
    };
    for (si, s) in sides.iter().enumerate() {
        let tk = s.reach.seq_len();
        let perturbed = |cands: &[(usize, usize)]| {
            let mut ids = original.clone();
            for &(b2, k) in cands {
                let i = b2 * tk + k;
                ids[si][i] = other_token(ids[si][i], v, i);
            }
            ids
        };
        for b in 0..bsz {
            for &q in &qs {
                let mut cands: Vec<(usize, usize)> = s
                    .reach
                    .forbidden(b, q)
                    .into_iter()
                    .map(|k| (b, k))
                    .collect();
                cands.extend(
                    (0..bsz)
                        .filter(|&b2| b2 != b)
                        .flat_map(|b2| (0..tk).map(move |k| (b2, k))),
                );
                if cands.is_empty() {
                    continue;
                }
                let want = out_at(&base, b, q);
                if out_at(&outputs(&perturbed(&cands))?, b, q) == want {
                    continue;
                }
                reports[si].perturbation_violations += 1;
                if pert_first[si].is_some() {
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
                let mut found = violation(
                    s,
                    b,
                    q,
                    key_row,
                    hits.iter().map(|&(_, k)| k).collect(),
                    "perturbation",
                );
                found.key = key;
                pert_first[si] = Some(found);
            }
        }
    }

    for ((r, g), p) in reports.iter_mut().zip(grad_first).zip(pert_first) {
        r.first_violation = match (g, p) {
            (Some(g), Some(p)) => Some(if (p.row, p.query) < (g.row, g.query) {
                p
            } else {
                g
            }),
            (g, p) => g.or(p),
        };
        r.passed = r.first_violation.is_none();
    }
    Ok(reports)
}
