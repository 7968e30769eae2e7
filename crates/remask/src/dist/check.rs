//! The equivalence check of data parallelism: the real [`Trainer`] on `n` ranks against the same
//! trainer on one rank with the whole batch, on a small model ([`CheckModel`]: a bigram model with
//! exact gradients, or small real encoder / decoder Transformers) and a synthetic source with keyed
//! masking and adaptive feedback ([`SyntheticSource`]).
//!
//! Every rank first trains the 1-rank reference by itself (it is deterministic), then the group
//! trains together, twice: once straight through, once interrupted after a checkpoint and resumed.
//! Checked on every rank, then agreed on by all:
//! - the rows and masks each rank read equal its share of the reference's batches, bit for bit
//!   (including after adaptive feedback, which needs the gathered batch);
//! - the parameters equal the reference's up to summation order (relative max difference
//!   < [`PARAM_TOLERANCE`]), and so do the step losses;
//! - the parameters are bit-identical on every rank, and the resumed run equals the straight one
//!   bit for bit.
//!
//! `remask dist-check` runs it under `mpirun`; the tests below run it on in-process thread groups.

use std::path::{Path, PathBuf};

use super::{shard_range, slice_rows, DataParallel};
use crate::model::{new_model, TrainModel};
use crate::train::checkpoint;
use crate::train::testing::{BigramModel, SyntheticSource, TaskKind};
use crate::train::{ProgressMode, RunConfig, Trainer, TrainerOptions};
use crate::{Batch, BatchSource, Error, Result};

/// The largest accepted `max |p_n - p_1| / max |p_1|` over all parameters.
pub const PARAM_TOLERANCE: f64 = 1e-5;

/// The model the check trains.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CheckModel {
    /// [`BigramModel`]: exact gradients, MLM rows with adaptive masking.
    Bigram,
    /// A 2-layer BERT-style encoder (the real model code), MLM rows with adaptive masking.
    Encoder,
    /// A 2-layer GPT-2-style decoder (the real model code), next-token rows.
    Decoder,
}

impl CheckModel {
    /// AdamW's `lr` and `eps` for the check. The Transformers train with `eps = 1`, which makes the
    /// update nearly linear in the gradient: with the usual tiny `eps`, AdamW divides each gradient by
    /// its own magnitude, and a parameter whose gradient nearly cancels over the batch turns a
    /// summation-order difference of 1e-7 into one of 1e-3 after a few steps (on 1 rank too, when only
    /// the micro-batch size or thread count changes). The check is about the all-reduce, not that.
    fn lr_eps(self) -> (f32, f32) {
        match self {
            CheckModel::Bigram => (0.05, 1e-8),
            CheckModel::Encoder | CheckModel::Decoder => (0.5, 1.0),
        }
    }
}

/// What to train in the check.
#[derive(Clone, Debug)]
pub struct CheckOptions {
    pub model: CheckModel,
    /// Optimizer steps.
    pub steps: u64,
    /// Rows of the global batch.
    pub batch_size: usize,
    /// Rows of the global micro-batch (gradient accumulation when smaller than `batch_size`).
    pub micro_batch_size: usize,
    /// The interrupted run is checkpointed every this many steps and killed one step after the
    /// first checkpoint.
    pub checkpoint_every: u64,
    pub seed: u64,
}

impl Default for CheckOptions {
    fn default() -> Self {
        Self {
            model: CheckModel::Bigram,
            steps: 12,
            batch_size: 16,
            micro_batch_size: 8,
            checkpoint_every: 5,
            seed: 11,
        }
    }
}

/// One named comparison of the check.
#[derive(Clone, Debug, PartialEq)]
pub struct CheckItem {
    pub name: String,
    pub passed: bool,
    pub detail: String,
}

/// The outcome, identical on every rank.
#[derive(Clone, Debug, PartialEq)]
pub struct CheckReport {
    pub ranks: usize,
    pub items: Vec<CheckItem>,
    /// `max |p_n - p_1|` over all parameters after the last step.
    pub max_abs_diff: f64,
    /// `max_abs_diff / max |p_1|`.
    pub max_rel_diff: f64,
    /// Largest difference of a step's mean loss.
    pub max_loss_diff: f64,
    /// Batches (a rank's share of a micro-batch) compared with the reference, over all ranks.
    pub shares_compared: u64,
}

impl CheckReport {
    pub fn passed(&self) -> usize {
        self.items.iter().filter(|i| i.passed).count()
    }

    pub fn failed(&self) -> usize {
        self.items.len() - self.passed()
    }
}

/// A source that keeps every batch it hands out, to compare what each rank read.
struct Recording<S> {
    inner: S,
    seen: Vec<Batch>,
}

impl<S: BatchSource> BatchSource for Recording<S> {
    fn num_samples(&self) -> u64 {
        self.inner.num_samples()
    }

    fn batch(&mut self, first_sample: u64, batch_size: usize, progress: f32) -> Result<Batch> {
        let b = self.inner.batch(first_sample, batch_size, progress)?;
        self.seen.push(b.clone());
        Ok(b)
    }

    fn feedback(&mut self, batch: &Batch, label_losses: &[f32]) {
        self.inner.feedback(batch, label_losses)
    }

    fn state(&self) -> serde_json::Value {
        self.inner.state()
    }

    fn restore(&mut self, state: &serde_json::Value) -> Result<()> {
        self.inner.restore(state)
    }
}

const VOCAB: usize = 24;
const SEQ: usize = 12;

fn config(o: &CheckOptions) -> Result<RunConfig> {
    let model = match o.model {
        CheckModel::Bigram => format!(
            r#"arch = "decoder"
            attention = {{ kind = "causal" }}
            vocab_size = {VOCAB}
            d_model = {VOCAB}
            n_heads = 1
            n_layers = 1
            d_ff = {VOCAB}"#
        ),
        CheckModel::Encoder | CheckModel::Decoder => format!(
            r#"arch = "{arch}"
            attention = {{ kind = "{attention}" }}
            vocab_size = {VOCAB}
            d_model = 16
            n_heads = 2
            n_layers = 2
            d_ff = 32
            max_positions = {SEQ}"#,
            arch = if o.model == CheckModel::Encoder {
                "encoder"
            } else {
                "decoder"
            },
            attention = if o.model == CheckModel::Encoder {
                "padding"
            } else {
                "causal"
            },
        ),
    };
    let text = format!(
        r#"
        [model]
        {model}
        dropout = 0.0
        [optimizer]
        lr = {lr}
        eps = {eps}
        batch_size = {b}
        micro_batch_size = {m}
        grad_clip = 1.0
        [schedule]
        warmup_steps = 2
        [budget]
        steps = {s}
        [eval]
        every_steps = 0
        [checkpoint]
        every_steps = {c}
        keep_last = 2
        [run]
        seed = {seed}
        log_every = 1
        "#,
        b = o.batch_size,
        m = o.micro_batch_size,
        s = o.steps,
        c = o.checkpoint_every,
        seed = o.seed,
        lr = o.model.lr_eps().0,
        eps = o.model.lr_eps().1,
    );
    RunConfig::from_toml_str(&text, &[])
}

fn parts(
    o: &CheckOptions,
    cfg: &RunConfig,
) -> Result<(Box<dyn TrainModel>, Recording<SyntheticSource>)> {
    let (model, task): (Box<dyn TrainModel>, _) = match o.model {
        CheckModel::Bigram => (
            Box::new(BigramModel::from_config(cfg.model.clone(), cfg.run.seed)),
            TaskKind::Mlm { rate: 0.3 },
        ),
        CheckModel::Encoder => (
            new_model(cfg.model.clone(), cfg.run.seed)?,
            TaskKind::Mlm { rate: 0.3 },
        ),
        CheckModel::Decoder => (new_model(cfg.model.clone(), cfg.run.seed)?, TaskKind::Clm),
    };
    let source = SyntheticSource::new(40, SEQ, VOCAB, cfg.run.seed, task, true);
    Ok((
        model,
        Recording {
            inner: source,
            seen: Vec::new(),
        },
    ))
}

fn options(root: bool) -> TrainerOptions {
    TrainerOptions {
        progress: ProgressMode::Quiet,
        write_metrics: root,
        ..Default::default()
    }
}

/// Runs the check on the group of `dp` (every rank must call it with the same options). Returns an
/// error only when something could not run; mismatches are failed items of the report.
pub fn run_check(dp: DataParallel, o: &CheckOptions) -> Result<CheckReport> {
    if o.checkpoint_every == 0 || o.checkpoint_every + 1 >= o.steps {
        return Err(Error::config(
            "checkpoint_every",
            "must be at least 1 and leave two steps after the first checkpoint",
        ));
    }
    let cfg = config(o)?;
    let (mut dp, base) = shared_temp_dir(dp)?;
    let result = check_in(&mut dp, o, &cfg, &base);
    dp.barrier()?;
    if dp.is_root() {
        let _ = std::fs::remove_dir_all(&base);
    }
    result
}

fn check_in(
    dp: &mut DataParallel,
    o: &CheckOptions,
    cfg: &RunConfig,
    base: &Path,
) -> Result<CheckReport> {
    let (rank, n, root) = (dp.rank(), dp.size(), dp.is_root());
    let micro = cfg.optimizer.micro_batch();

    // 1. The reference: this process alone, the whole batch.
    let (m, s) = parts(o, cfg)?;
    let mut reference = Trainer::new(
        m,
        s,
        Vec::new(),
        cfg.clone(),
        &base.join(format!("reference-{rank}")),
        options(false),
    )?;
    let mut ref_losses = Vec::new();
    while !reference.is_done() {
        ref_losses.push(reference.step()?.loss);
    }

    // 2. The group, straight through.
    let (m, s) = parts(o, cfg)?;
    let straight_dir = base.join("straight");
    let mut straight = Trainer::new(m, s, Vec::new(), cfg.clone(), &straight_dir, options(root))?
        .with_data_parallel(std::mem::replace(dp, DataParallel::local()))?;
    let mut losses = Vec::new();
    while !straight.is_done() {
        losses.push(straight.step()?.loss);
    }
    *dp = std::mem::replace(straight.data_parallel(), DataParallel::local());

    // 3. The group, killed one step after its first checkpoint and resumed from it.
    let (m, s) = parts(o, cfg)?;
    let resumed_dir = base.join("resumed");
    let mut first = Trainer::new(m, s, Vec::new(), cfg.clone(), &resumed_dir, options(root))?
        .with_data_parallel(std::mem::replace(dp, DataParallel::local()))?;
    first.run_until(cfg.checkpoint.every_steps + 1)?;
    *dp = std::mem::replace(first.data_parallel(), DataParallel::local());
    drop(first);
    dp.barrier()?; // rank 0 has written the checkpoint
    let ckpt = checkpoint::load(&checkpoint::latest_complete(&resumed_dir)?)?;
    let (m, s) = parts(o, &ckpt.run_config)?;
    let mut resumed = Trainer::resume(m, s, Vec::new(), &ckpt, &resumed_dir, options(root))?
        .with_data_parallel(std::mem::replace(dp, DataParallel::local()))?;
    let resumed_from = resumed.state().step;
    resumed.run()?;
    *dp = std::mem::replace(resumed.data_parallel(), DataParallel::local());

    // Comparisons on this rank.
    let mut bad_shares = 0u64;
    let mut compared = 0u64;
    let ref_seen = &reference.source.seen;
    let mine = &straight.source.seen;
    if ref_seen.len() != mine.len() {
        bad_shares += 1;
    }
    for (whole, share) in ref_seen.iter().zip(mine) {
        compared += 1;
        if slice_rows(whole, shard_range(micro, rank, n)) != *share {
            bad_shares += 1;
        }
    }
    // The resumed run read the batches of the steps after its checkpoint again.
    let per_step = cfg.optimizer.accumulation_steps();
    let redo_from = resumed_from as usize * per_step;
    for (k, share) in resumed.source.seen.iter().enumerate() {
        compared += 1;
        match ref_seen.get(redo_from + k) {
            Some(whole) if slice_rows(whole, shard_range(micro, rank, n)) == *share => {}
            _ => bad_shares += 1,
        }
    }
    let (p1, pn) = (reference.model.params(), straight.model.params());
    let max_abs = p1
        .iter()
        .zip(pn)
        .map(|(a, b)| (a - b).abs() as f64)
        .fold(0.0, f64::max);
    let scale = p1
        .iter()
        .map(|a| a.abs() as f64)
        .fold(0.0, f64::max)
        .max(f64::MIN_POSITIVE);
    let max_loss = ref_losses
        .iter()
        .zip(&losses)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max);
    let resume_exact =
        resumed.model.params() == pn && resumed.state().step == straight.state().step;
    let moved = p1
        .iter()
        .zip(parts(o, cfg)?.0.params())
        .any(|(a, b)| a != b);

    // Agree on every rank: sums of failure counts and maxima sent as sums of one-hot slots.
    let mut counts = [
        bad_shares,
        compared,
        u64::from(!resume_exact),
        u64::from(!moved),
    ];
    dp.collective().all_reduce_sum_u64(&mut counts)?;
    let mut maxima = vec![0.0f64; 2 * n];
    maxima[rank] = max_abs;
    maxima[n + rank] = max_loss;
    dp.collective().all_reduce_sum_f64(&mut maxima)?;
    let max_abs = maxima[..n].iter().copied().fold(0.0, f64::max);
    let max_loss = maxima[n..].iter().copied().fold(0.0, f64::max);
    let in_sync = dp.check_in_sync(straight.model.params()).is_ok();

    let rel = max_abs / scale;
    let item = |name: &str, passed: bool, detail: String| CheckItem {
        name: name.into(),
        passed,
        detail,
    };
    let items = vec![
        item(
            "rows and masks",
            counts[0] == 0,
            format!("{} of {} shares differ from the 1-rank batches' rows {micro}/{n} per rank", counts[0], counts[1]),
        ),
        item("parameters", rel < PARAM_TOLERANCE, format!("max abs diff {max_abs:.3e}, relative {rel:.3e} (< {PARAM_TOLERANCE:e})")),
        item("losses", max_loss < 1e-5, format!("max step-loss diff {max_loss:.3e} over {} steps", losses.len())),
        item("ranks in sync", in_sync, "parameters bit-identical on every rank".into()),
        item(
            "resume",
            counts[2] == 0,
            format!("killed after step {}, resumed from step {resumed_from}: bit-identical to the straight run", cfg.checkpoint.every_steps + 1),
        ),
        item("training moved", counts[3] == 0, "the reference's parameters changed from their initial values".into()),
    ];
    Ok(CheckReport {
        ranks: n,
        items,
        max_abs_diff: max_abs,
        max_rel_diff: rel,
        max_loss_diff: max_loss,
        shares_compared: counts[1],
    })
}

/// A fresh directory made by rank 0 and announced to all (ranks of one machine, or a shared
/// filesystem, see the distributed docs).
fn shared_temp_dir(mut dp: DataParallel) -> Result<(DataParallel, PathBuf)> {
    let mut bytes = Vec::new();
    if dp.is_root() {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let dir =
            std::env::temp_dir().join(format!("remask-dist-check-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        bytes = dir.to_string_lossy().into_owned().into_bytes();
    }
    dp.collective().broadcast_bytes(0, &mut bytes)?;
    let dir = PathBuf::from(String::from_utf8_lossy(&bytes).into_owned());
    Ok((dp, dir))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dist::{Collective, Threads};

    fn on_threads(n: usize, o: CheckOptions) -> Vec<CheckReport> {
        let hs: Vec<_> = Threads::group(n)
            .into_iter()
            .map(|t| {
                let o = o.clone();
                std::thread::spawn(move || {
                    run_check(DataParallel::new(Box::new(t)).with_bucket_elems(100), &o).unwrap()
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    }

    /// Guards the data-parallel rules end to end through the real trainer: 2 and 3 ranks (uneven
    /// shares) with gradient accumulation and adaptive masking equal one rank, and resume is exact.
    #[test]
    fn n_ranks_equal_one_rank() {
        for n in [2, 3] {
            let reports = on_threads(
                n,
                CheckOptions {
                    batch_size: 14,
                    micro_batch_size: 7,
                    ..Default::default()
                },
            );
            for r in &reports {
                assert_eq!(r, &reports[0], "every rank reports the same");
            }
            let r = &reports[0];
            assert_eq!(r.failed(), 0, "{n} ranks: {:#?}", r.items);
            assert!(
                r.max_abs_diff > 0.0 || n == 1,
                "summation order should show somewhere"
            );
            assert_eq!(
                r.shares_compared as usize,
                n * (12 + 7) * 2,
                "12 steps, then 7 resumed from step 5, 2 micro-batches each, per rank"
            );
        }
    }

    /// The same through the real encoder code (attention, layer norms, MLM head).
    #[test]
    fn real_encoder_on_two_ranks_equals_one_rank() {
        let reports = on_threads(
            2,
            CheckOptions {
                model: CheckModel::Encoder,
                steps: 8,
                checkpoint_every: 3,
                ..Default::default()
            },
        );
        assert_eq!(reports[0], reports[1]);
        assert_eq!(reports[0].failed(), 0, "{:#?}", reports[0].items);
    }

    /// The check itself can fail: one rank with a different seed reads other rows and drifts.
    #[test]
    fn the_check_notices_a_rank_that_reads_other_data() {
        let hs: Vec<_> = Threads::group(2)
            .into_iter()
            .map(|t| {
                std::thread::spawn(move || {
                    let seed = if t.rank() == 1 { 12 } else { 11 };
                    let o = CheckOptions {
                        seed,
                        ..Default::default()
                    };
                    run_check(DataParallel::new(Box::new(t)), &o)
                })
            })
            .collect();
        for h in hs {
            // Either the sync check refuses to start, or the comparisons fail.
            match h.join().unwrap() {
                Err(e) => assert!(e.to_string().contains("differ"), "{e}"),
                Ok(r) => assert!(r.failed() > 0, "{:#?}", r.items),
            }
        }
    }
}
