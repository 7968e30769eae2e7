//! Runs the comparison: prepares the data once, trains every (strategy, seed) on the same model, data
//! and token budget, evaluates all of them on the same fixed validation masks, and writes the report.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use super::config::CompareConfig;
use super::plot::{plot_curves, smooth, StrategyCurves};
use super::record::{CurvePoint, EvalPoint, RunRecord};
use super::report::{build_report, AuditLine, Report, Setup};
use crate::audit::{audit_batch, audit_masking, audit_model, AuditOptions};
use crate::data::reader::BUILTIN_WEB;
use crate::data::{Loader, Meta, Split, Task};
use crate::eval::evaluate;
use crate::masking::MaskingConfig;
use crate::train::config::RunConfig;
use crate::train::metrics::read_train_records;
use crate::train::{ProgressMode, Trainer, TrainerOptions};
use crate::{Batch, BatchSource, Error, Result, IGNORE_INDEX};

/// How the comparison reports progress and can be stopped.
#[derive(Clone, Debug)]
pub struct CompareOptions {
    pub progress: ProgressMode,
    /// Set (Ctrl-C) to stop after the current run's next step.
    pub stop: Arc<AtomicBool>,
    /// Replace an earlier comparison in the output directory.
    pub force: bool,
    /// Continue the comparison in the output directory (see [`super::resume`]): finished runs are
    /// kept, a partial one continues from its checkpoint, the report is rendered again.
    pub resume: bool,
}

/// What a finished comparison produced.
#[derive(Debug)]
pub struct CompareOutcome {
    pub report: Report,
    pub output_dir: PathBuf,
    /// Report and plot files, relative to `output_dir`.
    pub files: Vec<String>,
}

/// A batch source that measures the time spent building batches (MLM masking included).
struct TimedSource<S> {
    inner: S,
    nanos: Arc<AtomicU64>,
}

impl<S: BatchSource> BatchSource for TimedSource<S> {
    fn num_samples(&self) -> u64 {
        self.inner.num_samples()
    }
    fn batch(&mut self, first_sample: u64, batch_size: usize, progress: f32) -> Result<Batch> {
        let t = Instant::now();
        let b = self.inner.batch(first_sample, batch_size, progress);
        self.nanos.fetch_add(t.elapsed().as_nanos() as u64, Ordering::Relaxed);
        b
    }
    fn feedback(&mut self, batch: &Batch, label_losses: &[f32]) {
        let t = Instant::now();
        self.inner.feedback(batch, label_losses);
        self.nanos.fetch_add(t.elapsed().as_nanos() as u64, Ordering::Relaxed);
    }
    fn state(&self) -> serde_json::Value {
        self.inner.state()
    }
    fn restore(&mut self, state: &serde_json::Value) -> Result<()> {
        self.inner.restore(state)
    }
}

/// Marker file that says a directory holds a comparison.
const MARKER: &str = "compare.json";

fn log(opts: &CompareOptions, msg: &str) {
    if opts.progress != ProgressMode::Quiet {
        eprintln!("{msg}");
    }
}

/// Runs the whole comparison described by `cfg`.
pub fn run_compare(cfg: &CompareConfig, opts: &CompareOptions) -> Result<CompareOutcome> {
    cfg.validate()?;
    let started = Instant::now();
    let out = cfg.compare.output_dir.clone();
    if out.join(MARKER).exists() && !opts.resume {
        if !opts.force {
            return Err(Error::config(
                "compare.output_dir",
                format!("{} already holds a comparison: pass --force to replace it or --out to choose another directory", out.display()),
            ));
        }
        for sub in ["runs", "data"] {
            let p = out.join(sub);
            if p.exists() {
                std::fs::remove_dir_all(&p).map_err(|e| Error::io(&p, e))?;
            }
        }
    }
    std::fs::create_dir_all(&out).map_err(|e| Error::io(&out, e))?;
    let cfg_text = serde_json::to_string_pretty(cfg).map_err(|e| Error::Other(e.to_string()))?;
    std::fs::write(out.join(MARKER), cfg_text).map_err(|e| Error::io(out.join(MARKER), e))?;

    // 1. Data, prepared once per distinct static masking (and once for all dynamic strategies).
    let mut data = cfg.data.clone();
    let mut corpus_note = if data.inputs.is_empty() { "the embedded World English Bible".to_string() } else {
        data.inputs.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
    };
    if data.inputs.is_empty() && cfg.compare.max_documents > 0 {
        let subset: Vec<&str> =
            BUILTIN_WEB.lines().filter(|l| !l.trim().is_empty()).take(cfg.compare.max_documents).collect();
        let path = out.join("corpus.txt");
        std::fs::write(&path, subset.join("\n") + "\n").map_err(|e| Error::io(&path, e))?;
        corpus_note = format!("the first {} verses of the embedded World English Bible", subset.len());
        data.inputs = vec![path];
    }
    let strategies: Vec<(String, MaskingConfig)> = cfg
        .compare
        .strategies
        .iter()
        .map(|n| cfg.masking_for(n).map(|m| (n.clone(), m)))
        .collect::<Result<_>>()?;
    let mut prepared: Vec<(Option<MaskingConfig>, PathBuf, Meta)> = Vec::new();
    let mut data_dirs = Vec::new();
    for (name, m) in &strategies {
        let key = m.dupe_factor().map(|_| m.clone());
        let found = prepared.iter().position(|(k, _, _)| *k == key || (key.is_none() && !prepared.is_empty()));
        let idx = match found {
            Some(i) => i,
            None => {
                let dir = out.join("data").join(if key.is_some() { name.as_str() } else { "shared" });
                let t = Instant::now();
                // The shared directory also holds PMI masking's n-gram vocabulary when a strategy needs it.
                let pmi = strategies.iter().map(|(_, s)| s).find(|s| s.dupe_factor().is_none() && s.needs_ngrams());
                let m = if key.is_none() { pmi.unwrap_or(m) } else { m };
                let meta = super::resume::prepared(&data, m, &dir, opts.resume)?;
                log(opts, &format!(
                    "prepared {} ({} train rows, {} validation rows, vocab {}) in {:.1}s",
                    dir.display(), meta.train.rows, meta.validation.rows, meta.vocab_size, t.elapsed().as_secs_f64()
                ));
                prepared.push((key, dir, meta));
                prepared.len() - 1
            }
        };
        data_dirs.push(idx);
    }
    let (_, dir0, meta0) = &prepared[0];
    for (_, _, meta) in &prepared[1..] {
        if meta.vocab_size != meta0.vocab_size || meta.validation.rows != meta0.validation.rows {
            return Err(Error::Other("prepared data differs between strategies (tokenizer or split); this is a bug".into()));
        }
    }

    // 2. The fixed evaluation masks (token-level, 15%, keyed by the data seed): the same for every run.
    let eval_masking = MaskingConfig::default();
    let take = |mut v: Vec<Batch>| {
        v.truncate(cfg.compare.eval_batches);
        v
    };
    let val_batches = take(Loader::open(dir0, Split::Validation, Task::Mlm, &eval_masking)?.eval_batches(cfg.compare.eval_batch_size)?);
    let train_batches = take(Loader::open(dir0, Split::Train, Task::Mlm, &eval_masking)?.eval_batches(cfg.compare.eval_batch_size)?);
    if val_batches.is_empty() {
        return Err(Error::config("data.validation_share", "the validation split is empty: raise it or use more documents"));
    }
    let unigram = unigram_loss(&val_batches);

    // 3. One run per (strategy, seed).
    let mut model_cfg = cfg.model.clone();
    model_cfg.vocab_size = meta0.vocab_size as usize;
    model_cfg.max_positions = model_cfg.max_positions.max(data.seq_len as usize);
    model_cfg.pad_token_id = meta0.special_tokens.pad;
    let total = strategies.len() as u64 * cfg.compare.seeds;
    let mut runs = Vec::new();
    let mut audit: Vec<AuditLine> = Vec::new();
    let mut n = 0;
    for ((name, masking), &di) in strategies.iter().zip(&data_dirs) {
        let (_, dir, meta) = &prepared[di];
        // The MLM targets must be hidden as configured: audit the batches this strategy trains on.
        let mut probe = Loader::open(dir, Split::Train, Task::Mlm, masking)?;
        let batches: Vec<Batch> = (0..4).map(|i| probe.batch(i * 32, 32, 0.0)).collect::<Result<_>>()?;
        let m = audit_masking(&batches, meta.special_tokens.mask, meta.vocab_size as usize, masking)?;
        let line = AuditLine::from(&m);
        audit.push(AuditLine { what: format!("{} ({name})", line.what), ..line });
        for seed in 1..=cfg.compare.seeds {
            n += 1;
            if opts.stop.load(Ordering::SeqCst) {
                return Err(Error::Other(format!("interrupted; continue with `remask compare --resume {}`", out.display())));
            }
            log(opts, &format!("[{n}/{total}] {name}, seed {seed}"));
            let (rec, attention_audit) =
                run_one(cfg, &model_cfg, name, masking, seed, dir, meta, &val_batches, &train_batches, &out, opts, seed == 1)?;
            if let Some(a) = attention_audit {
                log(opts, &format!("audit of the trained `{name}` model: {}", if a.passed { "pass" } else { "LEAK" }));
                audit.push(AuditLine { what: format!("{} ({name}, trained)", a.what), ..a });
            }
            log(opts, &format!(
                "[{n}/{total}] {name}, seed {seed}: validation loss {:.4}, accuracy {:.4}, {:.0} tokens/s, {:.1}s",
                rec.final_val_loss, rec.final_val_accuracy, rec.tokens_per_s, rec.wall_s
            ));
            runs.push(rec);
        }
    }

    // 4. Report and plots.
    let setup = Setup {
        model: format!(
            "{}-LN encoder, d_model {}, {} layers, {} heads, FFN {}, vocab {}, seq {}",
            if model_cfg.norm == crate::model::NormPlacement::Pre { "pre" } else { "post" },
            model_cfg.d_model, model_cfg.n_layers, model_cfg.n_heads, model_cfg.d_ff, model_cfg.vocab_size, data.seq_len
        ),
        data: format!("{corpus_note} ({} training rows of {} tokens)", meta0.train.rows, data.seq_len),
        token_budget: runs.first().map_or(0, |r| r.train_curve.last().map_or(0, |p| p.tokens)),
        seeds: cfg.compare.seeds as usize,
        unigram_loss: Some(unigram),
    };
    let report = build_report(setup, runs, audit);
    let mut files = Vec::new();
    let curves = |f: &dyn Fn(&RunRecord) -> Vec<(f64, f64)>| -> Vec<StrategyCurves> {
        strategies
            .iter()
            .map(|(name, _)| StrategyCurves {
                strategy: name.clone(),
                seeds: report.runs.iter().filter(|r| &r.strategy == name).map(f).collect(),
            })
            .collect()
    };
    files.extend(plot_curves(
        &out,
        "val_loss",
        "Validation MLM loss (fixed masks)",
        "loss (nats)",
        &curves(&|r| r.eval_curve.iter().map(|p| (p.tokens as f64, p.loss)).collect()),
    )?);
    files.extend(plot_curves(
        &out,
        "train_loss",
        "Training MLM loss (own masks, smoothed)",
        "loss (nats)",
        &curves(&|r| smooth(&r.train_curve.iter().map(|p| (p.tokens as f64, p.loss)).collect(), 5)),
    )?);
    let pngs: Vec<String> = files.iter().filter(|f| f.ends_with(".png")).cloned().collect();
    let md = report.to_markdown(&pngs)
        + &format!("\nTotal wall time of the comparison: {:.0} s.\n", started.elapsed().as_secs_f64());
    for (file, text) in [("report.md", md), ("report.json", report.to_json())] {
        let p = out.join(file);
        std::fs::write(&p, text).map_err(|e| Error::io(&p, e))?;
        files.push(file.into());
    }
    Ok(CompareOutcome { report, output_dir: out, files })
}

/// Trains and evaluates one (strategy, seed).
#[allow(clippy::too_many_arguments)]
fn run_one(
    cfg: &CompareConfig,
    model_cfg: &crate::model::ModelConfig,
    name: &str,
    masking: &MaskingConfig,
    seed: u64,
    data_dir: &Path,
    meta: &Meta,
    val_batches: &[Batch],
    train_batches: &[Batch],
    out: &Path,
    opts: &CompareOptions,
    audit_attention: bool,
) -> Result<(RunRecord, Option<AuditLine>)> {
    let rel = format!("runs/{name}-seed{seed}");
    let run_dir = out.join(&rel);
    let run_cfg = run_config(cfg, model_cfg, seed, &run_dir)?;
    let nanos = Arc::new(AtomicU64::new(0));
    let source = TimedSource {
        inner: Loader::open(data_dir, Split::Train, Task::Mlm, masking)?.with_seed(seed),
        nanos: nanos.clone(),
    };
    if let Some(done) = super::resume::read_result::<(RunRecord, Option<AuditLine>)>(&run_dir) {
        log(opts, &format!("{rel}: finished earlier, kept"));
        return Ok(done);
    }
    let model = crate::model::new_model(model_cfg.clone(), seed)?;
    let topts = TrainerOptions { progress: opts.progress, stop: opts.stop.clone(), ..TrainerOptions::default() };
    let (mut trainer, resumed_at) =
        super::resume::start_trainer(model, source, val_batches.to_vec(), run_cfg, &run_dir, topts)?;
    // Evaluations so far (of a resumed run: up to its checkpoint), logged as they happen.
    let (mut eval_log, kept) = super::resume::EvalLog::open::<EvalPoint>(&run_dir, resumed_at)?;
    let mut eval_curve: Vec<EvalPoint> = kept.iter().map(|(_, p)| *p).collect();
    let mut train_s = eval_curve.last().map_or(0.0, |p| p.seconds);
    let mut last = eval_curve.last().map_or((f64::NAN, f64::NAN), |p| (p.loss, p.accuracy));

    let every = cfg.compare.eval_every_steps;
    let mut eval_at = |trainer: &mut Trainer<_, _>, train_s: f64| -> Result<(f64, f64)> {
        let r = trainer.evaluate()?;
        let point = EvalPoint { tokens: trainer.state().tokens_seen, seconds: train_s, loss: r.loss, accuracy: r.accuracy };
        eval_log.append(trainer.state().step, &point)?;
        eval_curve.push(point);
        Ok((r.loss, r.accuracy))
    };
    if kept.last().map(|(step, _)| *step) != Some(resumed_at.unwrap_or(0)) {
        // The evaluation at the starting step (a kill may have come between checkpoint and log).
        last = eval_at(&mut trainer, train_s)?;
    }
    while !trainer.is_done() {
        let next = (trainer.state().step / every + 1) * every;
        let t = Instant::now();
        let summary = trainer.run_until(next)?;
        train_s += t.elapsed().as_secs_f64();
        if summary.interrupted {
            return Err(Error::Other(format!(
                "interrupted during {name} seed {seed} (checkpoint in {}); continue with `remask compare --resume {}`",
                run_dir.display(),
                out.display()
            )));
        }
        last = eval_at(&mut trainer, train_s)?;
    }
    let steps = trainer.state().step.max(1);
    let tokens = trainer.state().tokens_seen;
    let train_eval = evaluate(&mut trainer.model, train_batches)?;
    // No output of the trained model may depend on an input its attention mask forbids.
    let attention_audit = if audit_attention {
        let batch = audit_batch(model_cfg, 2, model_cfg.max_positions.min(24), seed)?;
        Some(AuditLine::from(&audit_model(trainer.model.as_mut(), &model_cfg.attention, &batch, &AuditOptions::default())?))
    } else {
        None
    };
    let train_curve = read_train_records(&run_dir.join("metrics.jsonl"))?
        .into_iter()
        .filter(|r| r.loss.is_finite())
        .map(|r| CurvePoint { tokens: r.tokens, loss: r.loss })
        .collect();
    let record = RunRecord {
        strategy: name.to_string(),
        seed,
        train_curve,
        eval_curve,
        final_train_loss: train_eval.loss,
        final_val_loss: last.0,
        final_val_accuracy: last.1,
        tokens_per_s: tokens as f64 / train_s.max(1e-9),
        wall_s: train_s,
        masking_ms_per_step: nanos.load(Ordering::Relaxed) as f64 / 1e6 / steps as f64,
        mask_bytes: if masking.dupe_factor().is_some() { meta.static_masks.as_ref().map_or(0, |s| s.bytes) } else { 0 },
        run_dir: rel,
    };
    let result = (record, attention_audit);
    super::resume::write_result(&run_dir, &result)?;
    Ok(result)
}

/// The trainer's config for one run: the shared sections, this seed, evaluation left to the runner.
fn run_config(cfg: &CompareConfig, model: &crate::model::ModelConfig, seed: u64, run_dir: &Path) -> Result<RunConfig> {
    let mut t = toml::Table::new();
    t.insert("model".into(), toml_value(model)?);
    t.insert("optimizer".into(), toml_value(&cfg.optimizer)?);
    t.insert("schedule".into(), toml_value(&cfg.schedule)?);
    t.insert("budget".into(), toml_value(&cfg.budget)?);
    let eval: toml::Table = toml::from_str(&format!(
        "every_steps = 0\nbatches = {}\nbatch_size = {}",
        cfg.compare.eval_batches, cfg.compare.eval_batch_size
    ))
    .map_err(|e| Error::Other(e.to_string()))?;
    t.insert("eval".into(), toml::Value::Table(eval));
    // A checkpoint at every evaluation, so `compare --resume` continues a partial run from there.
    let ck: toml::Table = toml::from_str(&format!("every_steps = {}\nkeep_last = 1", cfg.compare.eval_every_steps))
        .map_err(|e| Error::Other(e.to_string()))?;
    t.insert("checkpoint".into(), toml::Value::Table(ck));
    let mut run = toml::Table::new();
    run.insert("seed".into(), toml::Value::Integer(seed as i64));
    run.insert("threads".into(), toml::Value::Integer(cfg.compare.threads as i64));
    run.insert("output_dir".into(), toml::Value::String(run_dir.display().to_string()));
    run.insert("log_every".into(), toml::Value::Integer((cfg.compare.eval_every_steps / 5).max(1) as i64));
    t.insert("run".into(), toml::Value::Table(run));
    RunConfig::from_value(toml::Value::Table(t))
}

/// Serializes a config section into a TOML value.
fn toml_value<T: serde::Serialize>(section: &T) -> Result<toml::Value> {
    toml::Value::try_from(section).map_err(|e| Error::Other(format!("config section: {e}")))
}

/// Cross-entropy of the label distribution of `batches` under its own unigram frequencies: the loss
/// of the best model that ignores context.
pub fn unigram_loss(batches: &[Batch]) -> f64 {
    // Ordered, so the sum (and the report) is the same in every process.
    let mut counts = std::collections::BTreeMap::<i32, u64>::new();
    let mut n = 0u64;
    for b in batches {
        for &l in &b.labels {
            if l != IGNORE_INDEX {
                *counts.entry(l).or_default() += 1;
                n += 1;
            }
        }
    }
    if n == 0 {
        return f64::NAN;
    }
    counts.values().map(|&c| {
        let p = c as f64 / n as f64;
        -p * p.ln()
    }).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unigram_loss_is_the_label_entropy() {
        let b = Batch::new(1, 10).with_labels(vec![1, 1, 2, 2, IGNORE_INDEX, 3, 3, 3, 3, IGNORE_INDEX]);
        let want = -(0.25f64 * 0.25f64.ln() * 2.0 + 0.5 * 0.5f64.ln());
        assert!((unigram_loss(&[b]) - want).abs() < 1e-12);
        assert!(unigram_loss(&[]).is_nan());
    }
}
