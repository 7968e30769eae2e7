//! The training loop, generic over any [`TrainModel`] and any [`BatchSource`].
//!
//! One optimizer step reads the global batch as `accumulation_steps` micro-batches of consecutive
//! global sample indices starting at the data cursor, scales every micro-batch's gradient by
//! 1 / (labels in the whole global batch), clips the global norm, applies AdamW at the scheduled rate
//! and then feeds the per-label losses back to the source (adaptive masking). Dropout of micro-batch
//! `i` of step `s` is keyed by `key(seed, Dropout, s, i)`. The step counter, the data cursor, the
//! optimizer moments and the source's state are therefore the whole state of a run, and a run resumed
//! from a checkpoint produces the same losses as one that was never interrupted.
//!
//! Data parallelism ([`Trainer::with_data_parallel`], see [`crate::dist`]): each micro-batch is split
//! across the ranks by global sample index, the label count, gradients and statistics are all-reduced,
//! and every rank applies the same update; rank 0 alone writes checkpoints, metrics and progress. The
//! result equals a 1-rank run up to summation order (and bit for bit in masks and data order).
//!
//! A step whose loss or gradient norm is not finite changes nothing but the counters (the data it
//! read is consumed); after `run.max_nonfinite_steps` of them in a row the run stops with a checkpoint
//! of the last good state.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use remask_kernels::clip::{clip_grad_norm, grad_norm};
use remask_kernels::rng::{key, Purpose};

use super::checkpoint::{
    self, CheckpointData, LoadedCheckpoint, MetricsWindow as Window, TrainerState, FORMAT_VERSION,
};
use super::config::RunConfig;
use super::metrics::{MetricsWriter, TrainRecord};
use super::optimizer::Optimizer;
use super::progress::{Progress, ProgressMode};
use super::schedule::LrSchedule;
use crate::dist::DataParallel;
use crate::eval::{self, EvalResult};
use crate::fault::FaultPlan;
use crate::model::{StepStats, TrainModel};
use crate::{Batch, BatchSource, Error, Result};

/// Options that are not part of the run config (they do not change the result).
#[derive(Clone, Debug)]
pub struct TrainerOptions {
    pub progress: ProgressMode,
    /// Set to stop at the next step boundary with a checkpoint. The library never installs signal
    /// handlers: the CLI sets this flag on SIGINT / SIGTERM.
    pub stop: Arc<AtomicBool>,
    /// Write metrics.jsonl / TensorBoard files (tests may turn this off).
    pub write_metrics: bool,
    /// Mask token id and special-token ids for MLM pseudo-perplexity (when `eval.pseudo_perplexity`).
    pub mask_token_id: Option<u32>,
    pub special_token_ids: Vec<u32>,
    /// Faults injected into checkpoint writes (crash tests only; settable with the `testing` feature).
    pub faults: FaultPlan,
}

impl Default for TrainerOptions {
    fn default() -> Self {
        Self {
            progress: ProgressMode::Auto,
            stop: Arc::new(AtomicBool::new(false)),
            write_metrics: true,
            mask_token_id: None,
            special_token_ids: Vec::new(),
            faults: FaultPlan::default(),
        }
    }
}

/// What one call of [`Trainer::step`] did.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StepOutcome {
    /// Steps completed after this one.
    pub step: u64,
    /// Mean loss per label of the global batch (may be NaN for a skipped step).
    pub loss: f64,
    /// Global gradient norm before clipping.
    pub grad_norm: f64,
    /// Learning rate applied (0 for a skipped step).
    pub lr: f64,
    /// Whether the update was skipped because the loss or gradient was not finite.
    pub skipped: bool,
    pub stats: StepStats,
}

/// How a call of [`Trainer::run`] ended.
#[derive(Clone, Debug, PartialEq)]
pub struct RunSummary {
    pub steps: u64,
    pub tokens_seen: u64,
    pub skipped_steps: u64,
    /// Stopped early by the stop flag (Ctrl-C).
    pub interrupted: bool,
    /// The checkpoint written last.
    pub last_checkpoint: Option<PathBuf>,
    pub last_eval: Option<EvalResult>,
}

/// The trainer.
pub struct Trainer<M: TrainModel, S: BatchSource> {
    pub model: M,
    pub source: S,
    cfg: RunConfig,
    run_dir: PathBuf,
    eval_batches: Vec<Batch>,
    optimizer: Optimizer,
    schedule: LrSchedule,
    state: TrainerState,
    window: Window,
    opts: TrainerOptions,
    metrics: Option<MetricsWriter>,
    progress: Progress,
    window_start: Instant,
    /// When this session started, with the tokens seen and steps done at that moment (for tokens/s and ETA).
    run_start: (Instant, u64, u64),
    last_grad_norm: f64,
    last_lr: f64,
    last_checkpoint: Option<(u64, PathBuf)>,
    last_eval: Option<EvalResult>,
    /// The ranks this run is shared with ([`DataParallel::local`] unless set).
    dp: DataParallel,
}

impl<M: TrainModel, S: BatchSource> Trainer<M, S> {
    /// Starts a fresh run in `run_dir`, which must not already hold checkpoints.
    pub fn new(
        model: M,
        mut source: S,
        eval_batches: Vec<Batch>,
        cfg: RunConfig,
        run_dir: &Path,
        opts: TrainerOptions,
    ) -> Result<Self> {
        cfg.validate()?;
        if let Some(diff) = checkpoint::config_difference(&cfg.model, model.config()) {
            return Err(Error::config(
                "model",
                format!("the model does not match the run config ({diff})"),
            ));
        }
        if !checkpoint::list_complete(run_dir)?.is_empty() {
            return Err(Error::Checkpoint {
                path: run_dir.into(),
                message: "already holds checkpoints of a run: resume it with `--resume` or choose another run.output_dir".into(),
            });
        }
        std::fs::create_dir_all(run_dir).map_err(|e| Error::io(run_dir, e))?;
        let toml_path = run_dir.join("run_config.toml");
        std::fs::write(&toml_path, cfg.to_toml_string()?).map_err(|e| Error::io(&toml_path, e))?;
        let num_samples = source.num_samples();
        if num_samples == 0 {
            return Err(Error::Other("the training data has no samples".into()));
        }
        let seq_len = if cfg.budget.tokens.is_some() {
            let b = source.batch(0, 1, 0.0)?;
            b.seq_len + b.decoder.as_ref().map_or(0, |d| d.seq_len)
        } else {
            1
        };
        let total_steps = cfg
            .budget
            .total_steps(num_samples, cfg.optimizer.batch_size, seq_len);
        let state = TrainerState {
            format_version: FORMAT_VERSION,
            total_steps,
            seed: cfg.run.seed,
            source_state: source.state(),
            ..Default::default()
        };
        let metrics = if opts.write_metrics {
            Some(MetricsWriter::open(run_dir, None, cfg.run.tensorboard)?)
        } else {
            None
        };
        let mut t = Self::assemble(
            model,
            source,
            eval_batches,
            cfg,
            run_dir,
            opts,
            state,
            metrics,
        );
        if let Some(m) = &mut t.metrics {
            m.event(0, "start", &format!("fresh run, {total_steps} steps"))?;
        }
        Ok(t)
    }

    /// Continues the run whose latest complete checkpoint is `ckpt` (see [`checkpoint::latest_complete`]).
    /// `model` and `source` must be built from `ckpt.model_config` / `ckpt.run_config`.
    pub fn resume(
        mut model: M,
        mut source: S,
        eval_batches: Vec<Batch>,
        ckpt: &LoadedCheckpoint,
        run_dir: &Path,
        opts: TrainerOptions,
    ) -> Result<Self> {
        let cfg = ckpt.run_config.clone();
        ckpt.restore_params(&mut model)?;
        source.restore(&ckpt.state.source_state)?;
        let mut state = ckpt.state.clone();
        state.stop_reason = None;
        let metrics = if opts.write_metrics {
            Some(MetricsWriter::open(
                run_dir,
                Some(state.step),
                cfg.run.tensorboard,
            )?)
        } else {
            None
        };
        let mut t = Self::assemble(
            model,
            source,
            eval_batches,
            cfg,
            run_dir,
            opts,
            state,
            metrics,
        );
        let tensors = t.model.tensors().to_vec();
        ckpt.restore_moments(&tensors, &mut t.optimizer.m, &mut t.optimizer.v)?;
        t.optimizer.t = t.state.optimizer_t;
        t.last_checkpoint = Some((t.state.step, ckpt.dir.clone()));
        let msg = format!(
            "resumed from {} at step {}",
            ckpt.dir.display(),
            t.state.step
        );
        t.progress.println(&msg);
        if let Some(m) = &mut t.metrics {
            m.event(t.state.step, "resume", &msg)?;
        }
        Ok(t)
    }

    /// The trainer over `state` (a fresh one, or a checkpoint's, whose metrics window it continues).
    #[allow(clippy::too_many_arguments)]
    fn assemble(
        model: M,
        source: S,
        eval_batches: Vec<Batch>,
        cfg: RunConfig,
        run_dir: &Path,
        opts: TrainerOptions,
        state: TrainerState,
        metrics: Option<MetricsWriter>,
    ) -> Self {
        let optimizer = Optimizer::new(&cfg.optimizer, model.params().len());
        let schedule = LrSchedule::new(cfg.optimizer.lr, &cfg.schedule, state.total_steps);
        let progress = Progress::new(opts.progress, state.total_steps, state.step);
        let now = Instant::now();
        Self {
            model,
            source,
            run_dir: run_dir.into(),
            eval_batches,
            optimizer,
            schedule,
            window: state.window,
            opts,
            metrics,
            progress,
            window_start: now,
            run_start: (now, state.tokens_seen, state.step),
            state,
            cfg,
            last_grad_norm: 0.0,
            last_lr: 0.0,
            last_checkpoint: None,
            last_eval: None,
            dp: DataParallel::local(),
        }
    }

    /// Shares this run with the other ranks of `dp` (data parallelism, see [`crate::dist`]). Call it on
    /// every rank right after [`Trainer::new`] / [`Trainer::resume`]; ranks other than 0 should be
    /// built with `write_metrics: false` and quiet progress (they write nothing from here on). Fails
    /// when a micro-batch has fewer rows than there are ranks or when the ranks' parameters differ.
    pub fn with_data_parallel(mut self, dp: DataParallel) -> Result<Self> {
        self.dp = dp;
        self.dp.check_rows(
            self.cfg.optimizer.micro_batch(),
            "optimizer.micro_batch_size",
        )?;
        self.dp.check_in_sync(self.model.params())?;
        if !self.dp.is_root() {
            self.metrics = None;
            self.progress =
                Progress::new(ProgressMode::Quiet, self.state.total_steps, self.state.step);
        }
        Ok(self)
    }

    /// The ranks this run is shared with (its clock tells the time spent communicating).
    pub fn data_parallel(&mut self) -> &mut DataParallel {
        &mut self.dp
    }

    pub fn config(&self) -> &RunConfig {
        &self.cfg
    }

    pub fn state(&self) -> &TrainerState {
        &self.state
    }

    pub fn run_dir(&self) -> &Path {
        &self.run_dir
    }

    pub fn optimizer(&self) -> &Optimizer {
        &self.optimizer
    }

    /// Whether the budget is used up.
    pub fn is_done(&self) -> bool {
        self.state.step >= self.state.total_steps
    }

    /// One optimizer step over the next global batch.
    pub fn step(&mut self) -> Result<StepOutcome> {
        let o = &self.cfg.optimizer;
        let (micro, accum) = (o.micro_batch(), o.accumulation_steps());
        let progress =
            (self.state.step as f64 / self.state.total_steps.max(1) as f64).min(1.0) as f32;
        let mut batches = Vec::with_capacity(accum);
        for i in 0..accum {
            // This rank's rows of micro-batch i, addressed by global sample index.
            let (first, rows) = self.dp.share(self.state.cursor + (i * micro) as u64, micro);
            let b = self.source.batch(first, rows, progress)?;
            b.validate()?;
            batches.push(b);
        }
        let labels = self
            .dp
            .global_labels(batches.iter().map(Batch::num_labels).sum())?;
        let real_tokens: u64 = batches.iter().map(real_tokens).sum();
        let grad_scale = if labels == 0 {
            0.0
        } else {
            1.0 / labels as f32
        };

        crate::model::buffers::zero(self.model.grads_mut());
        let mut stats = StepStats::default();
        let mut feedback = Vec::with_capacity(accum);
        let (ranks, rank) = (self.dp.size(), self.dp.rank());
        let (seed, step) = (self.cfg.run.seed, self.state.step);
        let model = &mut self.model;
        on_pool(|| -> Result<()> {
            for (i, b) in batches.iter().enumerate() {
                let share = (i * ranks + rank) as u64;
                let dropout_key = key(seed, Purpose::Dropout, step, share);
                let s = model.forward_backward(b, grad_scale, dropout_key)?;
                stats.loss_sum += s.loss_sum;
                stats.n_labels += s.n_labels;
                stats.n_correct += s.n_correct;
                feedback.push(model.last_label_losses().to_vec());
            }
            Ok(())
        })?;
        self.dp.reduce_grads(self.model.grads_mut())?;
        let (stats, real_tokens) = self.dp.reduce_stats(stats, real_tokens)?;
        let loss = stats.mean_loss();
        let clip = self.cfg.optimizer.grad_clip;
        let norm = if clip > 0.0 {
            clip_grad_norm(self.model.grads_mut(), clip)
        } else {
            grad_norm(self.model.grads())
        } as f64;
        let finite = loss.is_finite() && norm.is_finite();

        let step = self.state.step;
        let mut lr = 0.0;
        if finite {
            lr = self.schedule.lr(step);
            let tensors = self.model.tensors().to_vec();
            let (params, grads) = self.model.params_and_grads();
            let optimizer = &mut self.optimizer;
            on_pool(|| optimizer.step(params, grads, &tensors, lr));
            for (b, losses) in batches.iter().zip(&feedback) {
                if self.dp.size() == 1 {
                    self.source.feedback(b, losses);
                } else {
                    // Adaptive masking must see the whole micro-batch on every rank.
                    let (whole, all_losses) =
                        (self.dp.gather_batch(b)?, self.dp.gather_f32(losses)?);
                    self.source.feedback(&whole, &all_losses);
                }
            }
            self.state.consecutive_nonfinite = 0;
            self.window.loss_sum += stats.loss_sum;
            self.window.labels += stats.n_labels as u64;
        } else {
            self.state.skipped_steps += 1;
            self.state.consecutive_nonfinite += 1;
        }
        self.state.step += 1;
        self.state.cursor += self.cfg.optimizer.batch_size as u64;
        self.state.tokens_seen += real_tokens;
        self.state.optimizer_t = self.optimizer.t;
        self.window.tokens += real_tokens;
        self.last_grad_norm = norm;
        self.last_lr = lr as f64;
        Ok(StepOutcome {
            step: self.state.step,
            loss,
            grad_norm: norm,
            lr: lr as f64,
            skipped: !finite,
            stats,
        })
    }

    /// Trains until the budget is used up or the stop flag is set, with metrics, evaluation and
    /// checkpoints at their cadence. Returns an error (after writing a checkpoint of the last good
    /// state) when too many consecutive steps were non-finite.
    pub fn run(&mut self) -> Result<RunSummary> {
        self.run_until(u64::MAX)
    }

    /// [`Trainer::run`], but returns (without a final checkpoint) once `max_step` steps are done
    /// (tests use it to simulate a crash at a given step).
    pub fn run_until(&mut self, max_step: u64) -> Result<RunSummary> {
        let mut interrupted = false;
        while !self.is_done() && self.state.step < max_step {
            if self.dp.any(self.opts.stop.load(Ordering::SeqCst))? {
                interrupted = true;
                break;
            }
            let out = self.step()?;
            if out.skipped {
                let msg = format!(
                    "step {}: non-finite loss ({}) or gradient norm ({}); update skipped ({} in a row)",
                    out.step, out.loss, out.grad_norm, self.state.consecutive_nonfinite
                );
                self.progress.println(&msg);
                if let Some(m) = &mut self.metrics {
                    m.event(out.step, "skipped", &msg)?;
                }
                if self.state.consecutive_nonfinite >= self.cfg.run.max_nonfinite_steps {
                    self.state.stop_reason = Some("non-finite".into());
                    let ck = self.save_checkpoint()?;
                    self.progress.finish();
                    return Err(Error::Other(format!(
                        "stopped: {} consecutive steps had a non-finite loss or gradient (step {}); the last good \
                         state is saved in {}. Lower optimizer.lr, raise schedule.warmup_steps or set optimizer.grad_clip",
                        self.state.consecutive_nonfinite,
                        self.state.step,
                        ck.display()
                    )));
                }
            }
            let step = self.state.step;
            if step % self.cfg.run.log_every == 0 || self.is_done() {
                self.log_record()?;
            }
            let every = self.cfg.eval.every_steps;
            if self.dp.is_root()
                && every > 0
                && !self.eval_batches.is_empty()
                && (step % every == 0 || self.is_done())
            {
                self.evaluate_and_log()?;
            }
            let every = self.cfg.checkpoint.every_steps;
            if (every > 0 && step % every == 0) || self.is_done() {
                self.save_checkpoint()?;
            }
        }
        if interrupted {
            self.state.stop_reason = Some("interrupted".into());
            let ck = self.save_checkpoint()?;
            self.progress.println(&format!(
                "interrupted at step {}; checkpoint written to {}",
                self.state.step,
                ck.display()
            ));
        }
        self.progress.finish();
        Ok(RunSummary {
            steps: self.state.step,
            tokens_seen: self.state.tokens_seen,
            skipped_steps: self.state.skipped_steps,
            interrupted,
            last_checkpoint: self.last_checkpoint.as_ref().map(|(_, p)| p.clone()),
            last_eval: self.last_eval.clone(),
        })
    }

    fn log_record(&mut self) -> Result<()> {
        let elapsed = self.window_start.elapsed().as_secs_f64().max(1e-9);
        let w = self.window;
        let record = TrainRecord {
            step: self.state.step,
            tokens: self.state.tokens_seen,
            loss: if w.labels == 0 {
                f64::NAN
            } else {
                w.loss_sum / w.labels as f64
            },
            lr: self.last_lr,
            grad_norm: self.last_grad_norm,
            tokens_per_s: w.tokens as f64 / elapsed,
            mask_rate: if w.tokens == 0 {
                0.0
            } else {
                w.labels as f64 / w.tokens as f64
            },
            skipped_steps: self.state.skipped_steps,
        };
        if let Some(m) = &mut self.metrics {
            m.train(&record)?;
        }
        let (start, start_tokens, start_step) = self.run_start;
        let secs = start.elapsed().as_secs_f64().max(1e-9);
        let rate = (self.state.tokens_seen - start_tokens) as f64 / secs;
        let per_step = secs / (self.state.step - start_step).max(1) as f64;
        let eta = per_step * self.state.total_steps.saturating_sub(self.state.step) as f64;
        self.progress
            .update(self.state.step, record.loss, rate, eta);
        self.window = Window::default();
        self.window_start = Instant::now();
        Ok(())
    }

    /// Evaluates on the fixed validation batches (and pseudo-perplexity when configured).
    pub fn evaluate(&mut self) -> Result<EvalResult> {
        let mut r = eval::evaluate(&mut self.model, &self.eval_batches)?;
        if self.cfg.eval.pseudo_perplexity {
            if let Some(mask) = self.opts.mask_token_id {
                let rows = self.cfg.eval.batch_size;
                r.pseudo_perplexity = Some(eval::pseudo_perplexity(
                    &mut self.model,
                    &self.eval_batches,
                    mask,
                    &self.opts.special_token_ids,
                    rows,
                )?);
            }
        }
        Ok(r)
    }

    fn evaluate_and_log(&mut self) -> Result<()> {
        let r = self.evaluate()?;
        if let Some(m) = &mut self.metrics {
            m.eval(self.state.step, &r)?;
        }
        self.progress.println(&format!(
            "eval at step {}: loss {:.4}  accuracy {:.4}  perplexity {:.2}",
            self.state.step, r.loss, r.accuracy, r.perplexity
        ));
        self.last_eval = Some(r);
        Ok(())
    }

    /// Writes a checkpoint of the current state (skipped when one exists for this step already).
    pub fn save_checkpoint(&mut self) -> Result<PathBuf> {
        self.dp.check_in_sync(self.model.params())?;
        if !self.dp.is_root() {
            return Ok(checkpoint::checkpoints_dir(&self.run_dir)
                .join(checkpoint::dir_name(self.state.step)));
        }
        if let Some((step, dir)) = &self.last_checkpoint {
            if *step == self.state.step
                && checkpoint::is_complete(dir)
                && self.state.stop_reason.is_none()
            {
                return Ok(dir.clone());
            }
        }
        self.state.source_state = self.source.state();
        self.state.optimizer_t = self.optimizer.t;
        self.state.window = self.window;
        let data = CheckpointData {
            model_config: self.model.config(),
            run_config: &self.cfg,
            tensors: self.model.tensors(),
            params: self.model.params(),
            m: &self.optimizer.m,
            v: &self.optimizer.v,
            state: &self.state,
        };
        let dir = checkpoint::save(
            &self.run_dir,
            &data,
            self.cfg.checkpoint.keep_last,
            &self.opts.faults,
        )?;
        self.last_checkpoint = Some((self.state.step, dir.clone()));
        if let Some(m) = &mut self.metrics {
            m.event(self.state.step, "checkpoint", &dir.display().to_string())?;
        }
        Ok(dir)
    }
}

/// Real (non-padding) tokens of a batch, encoder and decoder side.
fn real_tokens(b: &Batch) -> u64 {
    let enc: u64 = b.lengths.iter().map(|&l| l as u64).sum();
    let dec: u64 = b
        .decoder
        .as_ref()
        .map_or(0, |d| d.lengths.iter().map(|&l| l as u64).sum());
    enc + dec
}

/// Runs `f` on a worker of the current rayon pool (on this thread when it already is one). A
/// training step calls a few hundred parallel kernels; started from a thread outside the pool, each
/// would wake a worker and put the caller to sleep, and the serial code between kernels would run
/// while both workers wait. Results do not depend on which thread runs what.
pub fn on_pool<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    rayon::scope(|_| f())
}

/// Sets the size of the global rayon pool (0 = all cores). Call once, before training.
pub fn init_threads(threads: usize) -> Result<()> {
    if threads == 0 {
        return Ok(());
    }
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build_global()
        .map_err(|e| Error::Other(format!("cannot set run.threads = {threads}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::metrics::read_train_records;
    use crate::train::testing::{BigramModel, SyntheticSource, TaskKind};

    const VOCAB: usize = 12;

    fn config(extra: &[&str]) -> RunConfig {
        let text = r#"
            [model]
            arch = "decoder"
attention = { kind = "causal" }
            vocab_size = 12
            d_model = 12
            n_heads = 1
            n_layers = 1
            d_ff = 12
            dropout = 0.2
            [optimizer]
            lr = 0.05
            batch_size = 8
            micro_batch_size = 4
            grad_clip = 0.5
            [schedule]
            warmup_steps = 3
            decay = "cosine"
            min_lr_ratio = 0.1
            [budget]
            steps = 12
            [eval]
            every_steps = 4
            batches = 2
            batch_size = 6
            [checkpoint]
            every_steps = 3
            keep_last = 2
            [run]
            seed = 5
            log_every = 1
        "#;
        let sets: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        RunConfig::from_toml_str(text, &sets).unwrap()
    }

    fn parts(cfg: &RunConfig) -> (BigramModel, SyntheticSource, Vec<Batch>) {
        parts_with(cfg, true)
    }

    fn parts_with(cfg: &RunConfig, adaptive: bool) -> (BigramModel, SyntheticSource, Vec<Batch>) {
        let model = BigramModel::from_config(cfg.model.clone(), cfg.run.seed);
        let source = SyntheticSource::new(
            20,
            10,
            VOCAB,
            cfg.run.seed,
            TaskKind::Mlm { rate: 0.4 },
            adaptive,
        );
        let mut val = SyntheticSource::new(
            12,
            10,
            VOCAB,
            cfg.run.seed + 1,
            TaskKind::Mlm { rate: 0.4 },
            false,
        );
        let eval = eval::fixed_batches(&mut val, cfg.eval.batches, cfg.eval.batch_size).unwrap();
        (model, source, eval)
    }

    fn quiet() -> TrainerOptions {
        TrainerOptions {
            progress: ProgressMode::Quiet,
            ..Default::default()
        }
    }

    fn fresh(cfg: &RunConfig, dir: &Path) -> Trainer<BigramModel, SyntheticSource> {
        let (m, s, e) = parts(cfg);
        Trainer::new(m, s, e, cfg.clone(), dir, quiet()).unwrap()
    }

    fn resumed(dir: &Path) -> Trainer<BigramModel, SyntheticSource> {
        let ck = checkpoint::load(&checkpoint::latest_complete(dir).unwrap()).unwrap();
        let (m, s, e) = parts(&ck.run_config);
        Trainer::resume(m, s, e, &ck, dir, quiet()).unwrap()
    }

    fn losses(dir: &Path) -> Vec<(u64, u64)> {
        read_train_records(&dir.join("metrics.jsonl"))
            .unwrap()
            .iter()
            .map(|r| (r.step, r.loss.to_bits()))
            .collect()
    }

    /// Guards exact resume: a run killed after step 7 (last checkpoint at step 6) and resumed produces
    /// bit-identical losses, evaluation results, weights, moments and adaptive-masking state.
    #[test]
    fn resume_after_a_crash_is_exact() {
        let cfg = config(&[]);
        let a_dir = tempfile::tempdir().unwrap();
        let mut a = fresh(&cfg, a_dir.path());
        let sa = a.run().unwrap();
        assert_eq!(sa.steps, 12);

        let b_dir = tempfile::tempdir().unwrap();
        let mut b = fresh(&cfg, b_dir.path());
        b.run_until(7).unwrap();
        drop(b); // the crash: step 7 is lost, the checkpoint at step 6 is the latest complete one
        let steps: Vec<u64> = checkpoint::list_complete(b_dir.path())
            .unwrap()
            .iter()
            .map(|(s, _)| *s)
            .collect();
        assert_eq!(steps, vec![3, 6]);
        let mut b = resumed(b_dir.path());
        assert_eq!(b.state().step, 6);
        let sb = b.run().unwrap();

        assert_eq!(losses(a_dir.path()), losses(b_dir.path()));
        assert_eq!(losses(a_dir.path()).len(), 12);
        assert_eq!(sa.last_eval, sb.last_eval);
        assert_eq!(a.model.params(), b.model.params());
        assert_eq!(a.optimizer().m, b.optimizer().m);
        assert_eq!(a.source.state(), b.source.state());
        assert_ne!(
            a.source.state(),
            SyntheticSource::new(1, 1, 2, 0, TaskKind::Clm, true).state(),
            "adaptive state moved"
        );
        assert_eq!(a.state().cursor, b.state().cursor);
    }

    /// The stop flag (Ctrl-C) checkpoints at the next step boundary; resuming from it is exact too.
    #[test]
    fn stop_flag_checkpoints_and_resume_matches() {
        let cfg = config(&["checkpoint.every_steps=0", "eval.every_steps=0"]);
        let a_dir = tempfile::tempdir().unwrap();
        let mut a = fresh(&cfg, a_dir.path());
        a.run().unwrap();

        let b_dir = tempfile::tempdir().unwrap();
        let mut b = fresh(&cfg, b_dir.path());
        b.run_until(5).unwrap();
        b.opts.stop.store(true, Ordering::SeqCst);
        let s = b.run().unwrap();
        assert!(s.interrupted);
        assert_eq!(s.steps, 5);
        let ck = checkpoint::load(&checkpoint::latest_complete(b_dir.path()).unwrap()).unwrap();
        assert_eq!(ck.state.step, 5);
        assert_eq!(ck.state.stop_reason.as_deref(), Some("interrupted"));
        let mut b = resumed(b_dir.path());
        b.run().unwrap();
        assert_eq!(losses(a_dir.path()), losses(b_dir.path()));
        assert_eq!(a.model.params(), b.model.params());
    }

    /// Gradient accumulation over micro-batches equals one pass over the whole batch (no dropout,
    /// so only summation order differs).
    #[test]
    fn accumulation_matches_a_single_pass() {
        let one = config(&[
            "model.dropout=0.0",
            "optimizer.micro_batch_size=0",
            "eval.every_steps=0",
        ]);
        let four = config(&[
            "model.dropout=0.0",
            "optimizer.micro_batch_size=2",
            "eval.every_steps=0",
        ]);
        // A non-adaptive source: adaptive feedback arrives once per micro-batch, which is allowed to
        // differ between the two layouts.
        let (d1, d4) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let build = |cfg: &RunConfig, dir: &Path| {
            let (m, s, e) = parts_with(cfg, false);
            Trainer::new(m, s, e, cfg.clone(), dir, quiet()).unwrap()
        };
        let (mut t1, mut t4) = (build(&one, d1.path()), build(&four, d4.path()));
        for _ in 0..6 {
            let (a, b) = (t1.step().unwrap(), t4.step().unwrap());
            assert!((a.loss - b.loss).abs() < 1e-5, "{} vs {}", a.loss, b.loss);
            assert!((a.grad_norm - b.grad_norm).abs() < 1e-4 * a.grad_norm.max(1.0));
            assert_eq!(a.stats.n_labels, b.stats.n_labels);
        }
        let max_diff = t1
            .model
            .params()
            .iter()
            .zip(t4.model.params())
            .map(|(x, y)| (x - y).abs())
            .fold(0.0f32, f32::max);
        assert!(max_diff < 1e-4, "{max_diff}");
    }

    #[test]
    fn training_reduces_the_loss() {
        let cfg = config(&[
            "budget.steps=80",
            "model.dropout=0.0",
            "optimizer.lr=0.1",
            "eval.every_steps=80",
            "checkpoint.every_steps=0",
        ]);
        let dir = tempfile::tempdir().unwrap();
        let mut t = fresh(&cfg, dir.path());
        let before = t.evaluate().unwrap();
        let s = t.run().unwrap();
        let after = s.last_eval.unwrap();
        assert!(
            after.loss < before.loss - 0.5,
            "eval loss {} -> {}",
            before.loss,
            after.loss
        );
        let recs = read_train_records(&dir.path().join("metrics.jsonl")).unwrap();
        assert!(recs.last().unwrap().loss < recs[0].loss - 0.5);
        // Realised masking rate is near the source's (adaptive) rate, and lr follows the schedule.
        assert!(recs
            .iter()
            .all(|r| r.mask_rate > 0.05 && r.mask_rate < 0.95));
        assert!(
            (recs[2].lr - 0.1).abs() < 1e-6,
            "end of warmup is the peak: {}",
            recs[2].lr
        );
    }

    /// Non-finite steps are skipped and counted; too many in a row stop the run with a checkpoint of
    /// the last good state.
    #[test]
    fn non_finite_steps_are_skipped_then_stop_the_run() {
        let cfg = config(&[
            "run.max_nonfinite_steps=3",
            "eval.every_steps=0",
            "checkpoint.every_steps=0",
        ]);
        let dir = tempfile::tempdir().unwrap();
        let mut t = fresh(&cfg, dir.path());
        // Step 2 (samples 16..24) is poisoned once: skipped, then training goes on.
        t.model.poison_samples = vec![17];
        for _ in 0..2 {
            assert!(!t.step().unwrap().skipped);
        }
        let before = t.model.params().to_vec();
        let out = t.step().unwrap();
        assert!(out.skipped && out.loss.is_nan());
        assert_eq!(
            t.model.params(),
            &before[..],
            "a skipped step leaves the weights alone"
        );
        assert!(!t.step().unwrap().skipped);
        assert_eq!(t.state().skipped_steps, 1);
        assert_eq!(t.state().consecutive_nonfinite, 0);
        // Now every sample is poisoned: three in a row stop the run.
        t.model.poison_samples = (0..1000).collect();
        let good = t.model.params().to_vec();
        let err = t.run().unwrap_err().to_string();
        assert!(
            err.contains("3 consecutive steps") && err.contains("last good state"),
            "{err}"
        );
        let ck = checkpoint::load(&checkpoint::latest_complete(dir.path()).unwrap()).unwrap();
        assert_eq!(ck.state.stop_reason.as_deref(), Some("non-finite"));
        assert_eq!(ck.state.step, 7);
        assert_eq!(
            ck.weights["bigram.weight"].1[..],
            good[..ck.weights["bigram.weight"].1.len()]
        );
    }

    #[test]
    fn a_fresh_run_refuses_a_directory_with_checkpoints() {
        let cfg = config(&["budget.steps=3", "eval.every_steps=0"]);
        let dir = tempfile::tempdir().unwrap();
        fresh(&cfg, dir.path()).run().unwrap();
        let (m, s, e) = parts(&cfg);
        let err = Trainer::new(m, s, e, cfg, dir.path(), quiet())
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("--resume"), "{err}");
    }
}

/// The trainer on the real models (`model::new_model`), with synthetic data.
#[cfg(test)]
mod real_model_tests {
    use super::*;
    use crate::model::new_model;
    use crate::train::metrics::read_train_records;
    use crate::train::testing::{SyntheticSource, TaskKind};

    fn config(arch: &str, attention: &str) -> RunConfig {
        config_in(arch, attention, "fp32").unwrap()
    }

    fn config_in(arch: &str, attention: &str, precision: &str) -> Result<RunConfig> {
        let text = format!(
            r#"
            [model]
            precision = "{precision}"
            arch = "{arch}"
            vocab_size = 24
            d_model = 16
            n_heads = 2
            n_layers = 1
            d_ff = 32
            max_positions = 16
            dropout = 0.1
            attention = {{ kind = "{attention}" }}
            [optimizer]
            lr = 0.01
            batch_size = 6
            micro_batch_size = 3
            [schedule]
            warmup_steps = 2
            [budget]
            steps = 8
            [eval]
            every_steps = 4
            batches = 1
            batch_size = 4
            [checkpoint]
            every_steps = 3
            [run]
            seed = 3
            log_every = 1
            tensorboard = false
        "#
        );
        RunConfig::from_toml_str(&text, &[])
    }

    type Real = Trainer<Box<dyn TrainModel>, SyntheticSource>;

    fn build(cfg: &RunConfig, dir: &Path, ckpt: Option<&LoadedCheckpoint>) -> Real {
        let task = if cfg.model.arch == crate::model::Arch::Encoder {
            TaskKind::Mlm { rate: 0.3 }
        } else {
            TaskKind::Clm
        };
        let model = new_model(cfg.model.clone(), cfg.run.seed).unwrap();
        let source = SyntheticSource::new(30, 12, cfg.model.vocab_size, cfg.run.seed, task, true);
        let mut val = SyntheticSource::new(8, 12, cfg.model.vocab_size, 99, task, false);
        let eval = eval::fixed_batches(&mut val, 1, 4).unwrap();
        let opts = TrainerOptions {
            progress: ProgressMode::Quiet,
            ..Default::default()
        };
        match ckpt {
            None => Trainer::new(model, source, eval, cfg.clone(), dir, opts).unwrap(),
            Some(c) => Trainer::resume(model, source, eval, c, dir, opts).unwrap(),
        }
    }

    /// Guards exact resume on the real encoder (MLM) and decoder (CLM), with dropout and rayon threads,
    /// in f32 and in bf16 (whose weight copy a resumed run packs again from the restored weights).
    #[test]
    fn real_models_resume_exactly() {
        let bf16 = remask_kernels::cpu::bf16_kernel().is_some();
        for (arch, attention, precision) in [
            ("encoder", "padding", "fp32"),
            ("decoder", "causal", "fp32"),
            ("encoder", "padding", "bf16"),
            ("decoder", "causal", "bf16"),
        ] {
            let cfg = match config_in(arch, attention, precision) {
                Ok(cfg) => cfg,
                Err(e) => {
                    // A CPU without bf16 refuses the setting, naming it.
                    assert!(
                        precision == "bf16" && !bf16 && e.to_string().contains("model.precision"),
                        "{e}"
                    );
                    continue;
                }
            };
            let a_dir = tempfile::tempdir().unwrap();
            let mut a = build(&cfg, a_dir.path(), None);
            a.run().unwrap();
            let b_dir = tempfile::tempdir().unwrap();
            let mut b = build(&cfg, b_dir.path(), None);
            b.run_until(7).unwrap();
            drop(b);
            let ck = checkpoint::load(&checkpoint::latest_complete(b_dir.path()).unwrap()).unwrap();
            assert_eq!(ck.state.step, 6);
            let mut b = build(&ck.run_config, b_dir.path(), Some(&ck));
            b.run().unwrap();
            let la: Vec<u64> = read_train_records(&a_dir.path().join("metrics.jsonl"))
                .unwrap()
                .iter()
                .map(|r| r.loss.to_bits())
                .collect();
            let lb: Vec<u64> = read_train_records(&b_dir.path().join("metrics.jsonl"))
                .unwrap()
                .iter()
                .map(|r| r.loss.to_bits())
                .collect();
            assert_eq!(la.len(), 8);
            assert_eq!(la, lb, "{arch} {precision}: losses after resume differ");
            assert_eq!(
                a.model.params(),
                b.model.params(),
                "{arch} {precision}: weights differ"
            );
            let first = f64::from_bits(la[0]);
            assert!(first.is_finite() && first > 0.0);
        }
    }

    /// A checkpoint of one architecture does not load into another.
    #[test]
    fn checkpoint_of_another_architecture_is_rejected() {
        let cfg = config("encoder", "padding");
        let dir = tempfile::tempdir().unwrap();
        let mut t = build(&cfg, dir.path(), None);
        t.step().unwrap();
        let path = t.save_checkpoint().unwrap();
        let ck = checkpoint::load(&path).unwrap();
        let mut other_cfg = cfg.model.clone();
        other_cfg.vocab_size = 30;
        let mut other = new_model(other_cfg, 1).unwrap();
        let e = ck.restore_params(&mut other).unwrap_err().to_string();
        assert!(
            e.contains("different architecture or vocabulary") && e.contains("vocab_size"),
            "{e}"
        );
    }
}
