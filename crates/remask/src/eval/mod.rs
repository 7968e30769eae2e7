//! Evaluation on fixed validation batches: loss, accuracy and perplexity (exp of the mean loss per
//! label; for CLM that is the usual perplexity, for MLM it is the perplexity of the masked positions),
//! and MLM pseudo-perplexity (each real token masked in turn; slow, optional). Zero-shot minimal
//! pairs (BLiMP) are scored in [`minimal_pairs`].
//!
//! The validation batches are built once from the validation split's [`BatchSource`]: because every
//! masking decision is keyed by (seed, epoch, global sample index), rows `0..n` of epoch 0 carry the
//! same masks in every run with the same seed, so the numbers are comparable across runs and resumes.

pub mod minimal_pairs;

use serde::{Deserialize, Serialize};

use crate::model::{StepStats, TrainModel};
use crate::{Batch, BatchSource, Result, IGNORE_INDEX};

/// Aggregated evaluation numbers.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct EvalResult {
    /// Mean loss per label (nats).
    pub loss: f64,
    /// Fraction of labels predicted exactly (arg-max).
    pub accuracy: f64,
    /// exp(loss).
    pub perplexity: f64,
    /// Labels evaluated.
    pub labels: usize,
    /// Rows evaluated.
    pub rows: usize,
    /// MLM pseudo-perplexity, when requested.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pseudo_perplexity: Option<f64>,
}

impl EvalResult {
    fn from_stats(s: StepStats, rows: usize) -> Self {
        let loss = s.mean_loss();
        let accuracy = if s.n_labels == 0 {
            0.0
        } else {
            s.n_correct as f64 / s.n_labels as f64
        };
        Self {
            loss,
            accuracy,
            perplexity: loss.exp(),
            labels: s.n_labels,
            rows,
            pseudo_perplexity: None,
        }
    }
}

/// The first `n_batches` batches of `batch_size` rows of epoch 0 of a validation source.
pub fn fixed_batches<S: BatchSource + ?Sized>(
    source: &mut S,
    n_batches: usize,
    batch_size: usize,
) -> Result<Vec<Batch>> {
    let n = source.num_samples();
    let mut out = Vec::new();
    let mut first = 0u64;
    for _ in 0..n_batches {
        if first >= n {
            break;
        }
        let rows = batch_size.min((n - first) as usize);
        let b = source.batch(first, rows, 0.0)?;
        b.validate()?;
        out.push(b);
        first += rows as u64;
    }
    Ok(out)
}

/// Loss, accuracy and perplexity of `model` over `batches` (forward only, no dropout).
pub fn evaluate<M: TrainModel + ?Sized>(model: &mut M, batches: &[Batch]) -> Result<EvalResult> {
    let mut total = StepStats::default();
    let mut rows = 0;
    for b in batches {
        let s = model.forward_eval(b)?;
        total.loss_sum += s.loss_sum;
        total.n_labels += s.n_labels;
        total.n_correct += s.n_correct;
        rows += b.batch_size;
    }
    Ok(EvalResult::from_stats(total, rows))
}

/// MLM pseudo-perplexity (Salazar et al., 2020): every real token of every row whose id is not in
/// `skip_ids` (special tokens) is masked on its own and predicted; the result is exp of the mean loss.
/// The original tokens are recovered from each batch (labels where set, inputs elsewhere). Rows of
/// single-mask copies are evaluated `rows_per_pass` at a time.
pub fn pseudo_perplexity<M: TrainModel + ?Sized>(
    model: &mut M,
    batches: &[Batch],
    mask_token_id: u32,
    skip_ids: &[u32],
    rows_per_pass: usize,
) -> Result<f64> {
    let rows_per_pass = rows_per_pass.max(1);
    // Each batch with its original tokens restored as inputs.
    let restored: Vec<Batch> = batches
        .iter()
        .map(|b| b.clone().with_input_ids(original_tokens(b)))
        .collect();
    let mut total = StepStats::default();
    let mut pending: Vec<(usize, usize, usize)> = Vec::with_capacity(rows_per_pass); // (batch, row, position)
    for (bi, b) in restored.iter().enumerate() {
        for row in 0..b.batch_size {
            for p in 0..b.lengths[row] as usize {
                if skip_ids.contains(&b.input_ids[row * b.seq_len + p]) {
                    continue;
                }
                pending.push((bi, row, p));
                if pending.len() == rows_per_pass {
                    flush(model, &restored, &mut pending, &mut total, mask_token_id)?;
                }
            }
        }
        // Passes never mix batches (their sequence lengths may differ).
        flush(model, &restored, &mut pending, &mut total, mask_token_id)?;
    }
    Ok(total.mean_loss().exp())
}

/// Evaluates the pending single-mask rows as one batch and empties the list.
fn flush<M: TrainModel + ?Sized>(
    model: &mut M,
    restored: &[Batch],
    pending: &mut Vec<(usize, usize, usize)>,
    total: &mut StepStats,
    mask_token_id: u32,
) -> Result<()> {
    if pending.is_empty() {
        return Ok(());
    }
    let s = model.forward_eval(&single_mask_batch(restored, pending, mask_token_id))?;
    total.loss_sum += s.loss_sum;
    total.n_labels += s.n_labels;
    pending.clear();
    Ok(())
}

/// The unmasked tokens of an MLM batch: the label where one is set, the input elsewhere.
fn original_tokens(b: &Batch) -> Vec<u32> {
    b.input_ids
        .iter()
        .zip(&b.labels)
        .map(|(&i, &l)| if l == IGNORE_INDEX { i } else { l as u32 })
        .collect()
}

/// A batch with one row per (batch, row, position): the row's original tokens with only that position
/// masked and labelled.
fn single_mask_batch(
    restored: &[Batch],
    items: &[(usize, usize, usize)],
    mask_token_id: u32,
) -> Batch {
    let t = restored[items[0].0].seq_len;
    let mut out = Batch::new(items.len(), t);
    for (k, &(bi, row, p)) in items.iter().enumerate() {
        let b = &restored[bi];
        let r = row * t..(row + 1) * t;
        out.lengths[k] = b.lengths[row];
        out.prefix_lengths[k] = b.prefix_lengths[row];
        out.sample_ids[k] = b.sample_ids[row];
        let o = out.row_mut(k);
        o.input_ids.copy_from_slice(&b.input_ids[r.clone()]);
        o.input_ids[p] = mask_token_id;
        o.labels[p] = b.input_ids[row * t + p] as i32;
        o.positions.copy_from_slice(&b.positions[r.clone()]);
        o.doc_ids.copy_from_slice(&b.doc_ids[r.clone()]);
        o.token_type_ids.copy_from_slice(&b.token_type_ids[r]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::testing::{BigramModel, SyntheticSource, TaskKind};

    #[test]
    fn evaluate_aggregates_over_batches_like_one_big_batch() {
        let mut model = BigramModel::new(16, 0.0, 3);
        let mut src = SyntheticSource::new(40, 12, 16, 5, TaskKind::Mlm { rate: 0.3 }, false);
        let batches = fixed_batches(&mut src, 4, 10).unwrap();
        assert_eq!(batches.len(), 4);
        let split = evaluate(&mut model, &batches).unwrap();
        let whole = fixed_batches(&mut src, 1, 40).unwrap();
        let one = evaluate(&mut model, &whole).unwrap();
        assert_eq!(split.labels, one.labels);
        assert!((split.loss - one.loss).abs() < 1e-9);
        assert_eq!(split.accuracy, one.accuracy);
        assert!((split.perplexity - split.loss.exp()).abs() < 1e-9);
        assert!(split.labels > 0 && split.rows == 40);
    }

    #[test]
    fn pseudo_perplexity_masks_each_real_token_once() {
        // The bigram model reads only the previous input token, so masking position p changes the
        // prediction of nothing but p+1; the pseudo-perplexity must equal a hand computation.
        let mut model = BigramModel::new(8, 0.0, 1);
        let mut src = SyntheticSource::new(3, 6, 8, 2, TaskKind::Mlm { rate: 0.5 }, false);
        let batches = fixed_batches(&mut src, 1, 3).unwrap();
        let mask_id = 7;
        let ppl = pseudo_perplexity(&mut model, &batches, mask_id, &[], 4).unwrap();
        let b = &batches[0];
        let orig = original_tokens(b);
        let (mut sum, mut n) = (0.0f64, 0usize);
        for row in 0..b.batch_size {
            for p in 0..b.lengths[row] as usize {
                let prev = if p == 0 {
                    None
                } else {
                    Some(orig[row * b.seq_len + p - 1])
                };
                sum += model.label_loss(prev, orig[row * b.seq_len + p]) as f64;
                n += 1;
            }
        }
        assert!(
            (ppl - (sum / n as f64).exp()).abs() < 1e-5 * ppl,
            "{ppl} vs {}",
            (sum / n as f64).exp()
        );
    }
}
