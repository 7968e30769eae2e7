//! What every run of a comparison is evaluated on, built once and shared by all runs: fixed-mask
//! validation batches (in-domain), fixed-mask batches of another domain's text (out-of-domain),
//! minimal pairs encoded with the run's tokenizer, and per regime a fixed-mask sample of the training
//! rows (for the train−validation gap).

use std::path::{Path, PathBuf};

use super::config::{CompareConfig, CompareTask};
use crate::data::{DataConfig, Loader, Meta, Split, Task};
use crate::eval::minimal_pairs::{
    encode_pairs, first_per_uid, read_pairs, EncodedPair, MinimalPair, Scoring,
};
use crate::infer::minimal_pairs::encode_sentence;
use crate::infer::InferTokenizer;
use crate::masking::{MaskingConfig, EVAL_EPOCH};
use crate::{Batch, Error, Result, IGNORE_INDEX};

/// The data task of a comparison's runs.
pub fn data_task(cfg: &CompareConfig) -> Task {
    match cfg.compare.task {
        CompareTask::Mlm => Task::Mlm,
        CompareTask::Clm => Task::Clm,
    }
}

/// Minimal pairs ready to score with every run's model.
pub struct PairSet {
    pub pairs: Vec<MinimalPair>,
    pub encoded: Vec<EncodedPair>,
    pub scoring: Scoring,
    /// What they are, for the report.
    pub note: String,
}

/// The shared evaluation sets.
pub struct EvalSets {
    /// In-domain validation, fixed masks (token-level 15%, keyed by the data seed), on rows drawn
    /// spread over the whole validation split.
    pub validation: Vec<Batch>,
    /// Out-of-domain text, fixed masks, the run's tokenizer, rows spread over it; empty when not
    /// measured.
    pub ood: Vec<Batch>,
    pub ood_note: Option<String>,
    pub pairs: Option<PairSet>,
    /// The loss of a model without context: the training tokens' unigram frequencies (add-one
    /// smoothed) scored on the validation labels.
    pub unigram_loss: f64,
    /// The accuracy of a model without context: always the most frequent training token, scored on
    /// the validation labels.
    pub unigram_accuracy: f64,
}

impl EvalSets {
    /// Builds the sets from the prepared directory `dir` (its tokenizer and validation split);
    /// prepares the out-of-domain text into `out/data/ood` (with `reuse`, a complete one of the same
    /// text is kept: `compare --resume`).
    pub fn build(
        cfg: &CompareConfig,
        dir: &Path,
        meta: &Meta,
        max_positions: usize,
        out: &Path,
        reuse: bool,
    ) -> Result<Self> {
        let c = &cfg.compare;
        let task = data_task(cfg);
        let eval_masking = MaskingConfig::default();
        let seed = meta.data.seed;
        let rows = c.eval_batches * c.eval_batch_size;
        let validation = spread_batches(
            dir,
            Split::Validation,
            task,
            meta.validation.rows,
            rows,
            c.eval_batch_size,
            seed,
        )?;
        if validation.is_empty() {
            return Err(Error::config(
                "data.validation_share",
                "the validation split is empty: raise it or use more documents",
            ));
        }
        let counts = label_counts(dir, task)?;
        let unigram_loss = unigram_loss(&validation, &counts);
        let unigram_accuracy = unigram_accuracy(&validation, &counts);

        let (ood, ood_note) = if c.ood_inputs.is_empty() {
            (Vec::new(), None)
        } else {
            let ood_dir = out.join("data").join("ood");
            let data = DataConfig {
                dir: None,
                inputs: c.ood_inputs.clone(),
                validation_share: 0.0,
                tokenizer: crate::data::TokenizerConfig {
                    path: Some(dir.join("tokenizer.json")),
                    ..cfg.data.tokenizer.clone()
                },
                ..cfg.data.clone()
            };
            let m = super::resume::prepared(&data, &eval_masking, &ood_dir, reuse)
                .map_err(|e| Error::config("compare.ood_inputs", e.to_string()))?;
            let b = spread_batches(
                &ood_dir,
                Split::Train,
                task,
                m.train.rows,
                rows,
                c.eval_batch_size,
                seed,
            )?;
            let rows: usize = b.iter().map(|x| x.batch_size).sum();
            let names = c
                .ood_inputs
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ");
            (
                b,
                Some(format!(
                    "{names} ({} documents; {rows} rows of {} tokens evaluated)",
                    m.train.documents, meta.data.seq_len
                )),
            )
        };

        let pairs = if c.minimal_pairs.as_os_str().is_empty() {
            None
        } else {
            let all = read_pairs(&c.minimal_pairs)
                .map_err(|e| Error::config("compare.minimal_pairs", e.to_string()))?;
            let pairs = first_per_uid(all, c.minimal_pairs_per_uid);
            let tok = InferTokenizer::load(&dir.join("tokenizer.json"))?;
            let sp = &meta.special_tokens;
            let scoring = match c.task {
                CompareTask::Mlm => Scoring::PseudoLogLikelihood { mask: sp.mask },
                CompareTask::Clm => Scoring::Causal,
            };
            let encoded = encode_pairs(&pairs, max_positions, scoring, |t| {
                encode_sentence(&tok, scoring, Some(sp.cls), t)
            })?;
            let uids = pairs
                .iter()
                .map(|p| p.uid.as_str())
                .collect::<std::collections::BTreeSet<_>>()
                .len();
            let note = format!(
                "{} pairs of {} ({uids} phenomena{}), {}; chance is 0.5",
                pairs.len(),
                c.minimal_pairs.display(),
                if c.minimal_pairs_per_uid > 0 {
                    format!(", at most {} each", c.minimal_pairs_per_uid)
                } else {
                    String::new()
                },
                scoring.name()
            );
            Some(PairSet {
                pairs,
                encoded,
                scoring,
                note,
            })
        };
        Ok(Self {
            validation,
            ood,
            ood_note,
            pairs,
            unigram_loss,
            unigram_accuracy,
        })
    }
}

/// Fixed-mask batches of `n` rows of a split of `total` rows, drawn spread over the whole split by a
/// permutation keyed by `seed` (in increasing row order): a validation set that covers the corpus,
/// not only its beginning.
fn spread_batches(
    dir: &Path,
    split: Split,
    task: Task,
    total: u64,
    n: usize,
    batch_size: usize,
    seed: u64,
) -> Result<Vec<Batch>> {
    let all: Vec<u32> = (0..total as u32).collect();
    let mut rows = super::subset::sample_rows(&all, n, seed);
    rows.sort_unstable();
    fixed_batches(dir, split, task, &rows, usize::MAX, batch_size)
}

/// Fixed-mask batches of the training rows `rows` (at most `n_batches` batches, in the given
/// order): the same masks as evaluation uses, so losses on them and on validation compare.
pub fn train_sample(
    dir: &Path,
    task: Task,
    rows: &[u32],
    n_batches: usize,
    batch_size: usize,
) -> Result<Vec<Batch>> {
    fixed_batches(dir, Split::Train, task, rows, n_batches, batch_size)
}

/// Fixed-mask batches (the evaluation key, the final rate) of `rows` of `split`, in the given order.
fn fixed_batches(
    dir: &Path,
    split: Split,
    task: Task,
    rows: &[u32],
    n_batches: usize,
    batch_size: usize,
) -> Result<Vec<Batch>> {
    let mut loader = Loader::open(dir, split, task, &MaskingConfig::default())?;
    let mut out = Vec::new();
    for chunk in rows.chunks(batch_size.max(1)).take(n_batches) {
        let r: Vec<(u64, u64, u64)> = chunk
            .iter()
            .map(|&r| (r as u64, EVAL_EPOCH, r as u64))
            .collect();
        out.push(loader.batch_of_rows(&r, 1.0)?);
    }
    Ok(out)
}

/// Where the comparison's text comes from: the configured inputs, or for the embedded default with
/// `max_documents` a file of its first documents written into `out`.
pub fn corpus(cfg: &CompareConfig, out: &Path) -> Result<(DataConfig, String)> {
    let mut data = cfg.data.clone();
    let n = cfg.compare.max_documents;
    if !data.inputs.is_empty() {
        let note = data
            .inputs
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ");
        return Ok((data, note));
    }
    if n == 0 {
        return Ok((data, "the embedded World English Bible (all of it)".into()));
    }
    let subset: Vec<&str> = crate::data::reader::BUILTIN_WEB
        .lines()
        .filter(|l| !l.trim().is_empty())
        .take(n)
        .collect();
    let path: PathBuf = out.join("corpus.txt");
    // Written only when it changes: under `mpirun` the ranks after rank 0 find it written already.
    let text = subset.join("\n") + "\n";
    if std::fs::read(&path).ok().as_deref() != Some(text.as_bytes()) {
        std::fs::write(&path, text).map_err(|e| Error::io(&path, e))?;
    }
    data.inputs = vec![path];
    Ok((
        data,
        format!(
            "the first {} verses of the embedded World English Bible",
            subset.len()
        ),
    ))
}

/// How often each token id occurs in the training split where it could be a label: every real
/// token but the special ones for MLM; for CLM (labels are next tokens) also the `[SEP]` that ends a
/// document.
pub fn label_counts(dir: &Path, task: Task) -> Result<Vec<u64>> {
    let loader = Loader::open(dir, Split::Train, task, &MaskingConfig::default())?;
    let sp = loader.specials().clone();
    let mut counts = vec![0u64; loader.vocab_size() as usize];
    let mut row = loader.row_buffers();
    for r in 0..loader.num_rows() {
        loader.fill_row(&mut row, r);
        for &id in &row.ids[..row.length] {
            let label = !sp.all.contains(&id) || (task == Task::Clm && id == sp.sep);
            if let (true, Some(c)) = (label, counts.get_mut(id as usize)) {
                *c += 1;
            }
        }
    }
    Ok(counts)
}

/// Cross-entropy of the labels of `batches` under the unigram distribution of `counts` (add-one
/// smoothed over the vocabulary): the loss of a model that ignores context. Estimated on other data
/// than it is scored on, so it is not biased low (the entropy of the labels' own frequencies is, by
/// about (V − 1) / 2N nats for N labels).
pub fn unigram_loss(batches: &[Batch], counts: &[u64]) -> f64 {
    let total: u64 = counts.iter().sum::<u64>() + counts.len() as u64;
    mean_over_labels(batches, |l| {
        let c = counts.get(l as usize).copied().unwrap_or(0);
        -((c + 1) as f64 / total as f64).ln()
    })
}

/// The share of the labels of `batches` that equal the most frequent id of `counts` (the lowest
/// such id on a tie): the accuracy of a model that ignores context.
pub fn unigram_accuracy(batches: &[Batch], counts: &[u64]) -> f64 {
    let top = counts
        .iter()
        .enumerate()
        .max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(&a.0)))
        .map_or(-1, |(i, _)| i as i64);
    mean_over_labels(batches, |l| f64::from(u8::from(l as i64 == top)))
}

/// The mean of `score` over the labels of `batches` (IGNORE_INDEX skipped), summed in batch order so
/// every process gets the same bits; NaN without labels.
fn mean_over_labels(batches: &[Batch], score: impl Fn(i32) -> f64) -> f64 {
    let (mut sum, mut n) = (0.0f64, 0u64);
    for &l in batches.iter().flat_map(|b| &b.labels) {
        if l != IGNORE_INDEX {
            sum += score(l);
            n += 1;
        }
    }
    if n == 0 {
        f64::NAN
    } else {
        sum / n as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unigram_accuracy_is_the_share_of_the_most_frequent_training_token() {
        let b = Batch {
            labels: vec![1, 1, 2, IGNORE_INDEX, 3],
            ..Batch::default()
        };
        // The most frequent training id is 2 (one of four labels), not 1 (the most frequent label).
        assert_eq!(
            unigram_accuracy(std::slice::from_ref(&b), &[0, 3, 5, 0]),
            0.25
        );
        // A tie goes to the lowest id.
        assert_eq!(
            unigram_accuracy(std::slice::from_ref(&b), &[0, 5, 5, 0]),
            0.5
        );
        assert!(unigram_accuracy(&[], &[1]).is_nan());
    }

    #[test]
    fn unigram_loss_is_the_smoothed_cross_entropy_of_the_labels() {
        let b = Batch {
            labels: vec![1, 1, 2, IGNORE_INDEX, 3],
            ..Batch::default()
        };
        // counts 0:0, 1:5, 2:3, 3:0 → add-one over 4 ids: 6/12, 4/12, 1/12.
        let counts = [0, 5, 3, 0];
        let want =
            -(2.0 * (6.0f64 / 12.0).ln() + (4.0f64 / 12.0).ln() + (1.0f64 / 12.0).ln()) / 4.0;
        assert!((unigram_loss(&[b], &counts) - want).abs() < 1e-12);
        assert!(unigram_loss(&[], &counts).is_nan());
    }
}
