//! Runs the comparison: prepares the data once, builds the shared evaluation sets, trains every
//! planned (regime, seed, strategy) on the same model, budget and data order, evaluates each run
//! in-domain, out of domain and on minimal pairs, audits, and writes the report and plots.
//!
//! ```text
//! run_compare ─▶ open_workspace (marker, --force, --resume) ─▶ PreparedData::prepare (one dir per
//!                static config) ─▶ EvalSets::build ─▶ plan::regimes + plan::plan ─▶ train_all
//!                (train_one per run, audits; finished runs kept) ─▶ build_report ─▶ write_outputs
//!                (report.md/json, plots)
//! ```
//!
//! With `--resume` (see [`super::resume`]) a run that wrote `result.json` is kept as it is, a partial
//! one continues from its newest verified checkpoint (one is written at every evaluation) with its
//! evaluation log, and the report is rendered again.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use super::config::{CompareConfig, CompareTask, Strategy};
use super::eval_sets::{corpus, data_task, train_sample, EvalSets};
use super::plan::{plan, regimes, PlannedRun, Regime};
use super::plot::{
    plot_curves, plot_regime_map, smooth, RegimePanel, RegimeSeries, StrategyCurves,
};
use super::record::{run_name, CurvePoint, EvalPoint, RunRecord};
use super::report::{build_report, AuditLine, Report, Setup};
use super::subset::{sample_rows, subset_rows, SubsetSource};
use crate::attention::AttentionMaskSpec;
use crate::audit::{audit_batch, audit_masking, audit_model, AuditOptions};
use crate::data::{DataConfig, Loader, Meta, Split};
use crate::dist::DataParallel;
use crate::eval::evaluate;
use crate::eval::minimal_pairs::score_pairs;
use crate::masking::MaskingConfig;
use crate::model::{ModelConfig, NormPlacement, TrainModel};
use crate::train::config::{BudgetConfig, CheckpointConfig, EvalConfig, RunConfig, RunSection};
use crate::train::metrics::read_train_records;
use crate::train::{ProgressMode, Trainer, TrainerOptions};
use crate::{Batch, BatchSource, Error, Result};

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
        self.nanos
            .fetch_add(t.elapsed().as_nanos() as u64, Ordering::Relaxed);
        b
    }
    fn feedback(&mut self, batch: &Batch, label_losses: &[f32]) {
        let t = Instant::now();
        self.inner.feedback(batch, label_losses);
        self.nanos
            .fetch_add(t.elapsed().as_nanos() as u64, Ordering::Relaxed);
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

/// Runs the whole comparison described by `cfg` in this process.
pub fn run_compare(cfg: &CompareConfig, opts: &CompareOptions) -> Result<CompareOutcome> {
    run_compare_on(cfg, opts, &mut DataParallel::local())?
        .ok_or_else(|| Error::Other("a single process is its own rank 0; this is a bug".into()))
}

/// Runs the comparison `cfg` spread over the ranks of `ranks` (`mpirun -np N remask compare`, feature
/// `mpi`): rank 0 prepares the data and evaluation sets while the others wait; each rank then trains
/// its share of the independent runs (the k-th run to train goes to rank k mod N), each on its own
/// (no data parallelism inside a run), writing its result into the run's directory as always; after
/// a barrier, rank 0 reads every result back (as `--resume` does) and writes the report. The runs do
/// not depend on the rank that trains them, so the report equals a single process's except for
/// timings. All ranks must see the output directory (one machine, or a shared file system).
/// Returns the outcome on rank 0, `None` on the others.
pub fn run_compare_on(
    cfg: &CompareConfig,
    opts: &CompareOptions,
    ranks: &mut DataParallel,
) -> Result<Option<CompareOutcome>> {
    cfg.validate()?;
    let started = Instant::now();
    let root = ranks.is_root();
    // Only rank 0 sets the workspace up; the others wait for it and then read what it prepared.
    if !root {
        ranks.barrier()?;
    }
    let reader = CompareOptions {
        resume: true,
        force: false,
        ..opts.clone()
    };
    let opts = if root { opts } else { &reader };
    let out = if root {
        open_workspace(cfg, opts)?
    } else {
        cfg.compare.output_dir.clone()
    };
    let strategies: Vec<Strategy> = cfg
        .compare
        .strategies
        .iter()
        .map(|n| cfg.strategy(n))
        .collect::<Result<_>>()?;
    let data = PreparedData::prepare(cfg, &strategies, &out, opts)?;
    let model_cfg = base_model(cfg, &data);
    let sets = EvalSets::build(
        cfg,
        &data.dirs[0].dir,
        &data.dirs[0].meta,
        model_cfg.max_positions,
        &out,
        opts.resume,
    )?;
    if root && ranks.size() > 1 {
        ranks.barrier()?;
    }
    let batch_rows = cfg.optimizer.batch_size as u64;
    let train_rows = data.dirs[0].meta.train.rows;
    // Row visits of one run: the same for every run (with regimes the budget is steps or tokens).
    let budget_rows = cfg.budget.total_steps(
        train_rows,
        cfg.optimizer.batch_size,
        data.data.seq_len as usize,
    ) * batch_rows;
    let regimes = regimes(&cfg.compare.regimes, budget_rows, train_rows, batch_rows)?;
    let planned = plan(&strategies, &regimes, cfg.compare.seeds, budget_rows);
    let ctx = RunContext {
        cfg,
        opts,
        out: &out,
        data: &data,
        sets: &sets,
        model_cfg,
        strategies: &strategies,
        regimes: &regimes,
    };
    if ranks.size() > 1 {
        train_runs(&ctx, &planned, Some((ranks.rank(), ranks.size())))?;
        ranks.barrier()?;
        if !root {
            return Ok(None);
        }
    } else if cfg.compare.jobs > 1 {
        train_in_lanes(&ctx, &planned, cfg.compare.jobs)?;
    }
    // Every run (under several ranks: all finished by now, read back).
    let (mut runs, audit) = train_runs(&ctx, &planned, None)?;
    // The report lists runs in plan order: regime, seed, strategy as configured.
    let rank = |r: &RunRecord| {
        planned.iter().position(|p| {
            ctx.strategies[p.strategy].name == r.strategy
                && ctx.regimes[p.regime].epochs == r.regime
                && p.seed == r.seed
        })
    };
    runs.sort_by_key(|r| rank(r));

    let setup = Setup {
        task: match cfg.compare.task {
            CompareTask::Mlm => "mlm".into(),
            CompareTask::Clm => "clm".into(),
        },
        model: describe_model(&ctx.model_cfg, data.data.seq_len),
        data: format!(
            "{} ({} training rows of {} tokens)",
            data.note, data.dirs[0].meta.train.rows, data.data.seq_len
        ),
        token_budget: runs
            .iter()
            .filter_map(|r| r.train_curve.last().map(|p| p.tokens))
            .max()
            .unwrap_or(0),
        seeds: cfg.compare.seeds as usize,
        unigram_loss: Some(sets.unigram_loss),
        unigram_accuracy: Some(sets.unigram_accuracy),
        baseline: cfg.baseline(),
        regimes: regimes.clone(),
        ood: sets.ood_note.clone(),
        minimal_pairs: sets.pairs.as_ref().map(|p| p.note.clone()),
        wall_s: Some(started.elapsed().as_secs_f64()),
        dupe_factor: strategies
            .iter()
            .find_map(|s| s.masking.dupe_factor())
            .filter(|_| cfg.compare.task == CompareTask::Mlm),
    };
    let report = build_report(setup, runs, audit);
    let files = write_outputs(&report, &out)?;
    Ok(Some(CompareOutcome {
        report,
        output_dir: out,
        files,
    }))
}

/// Rebuilds the report (verdicts, comparisons, `report.md`, `report.json`, plots) of a finished
/// comparison in `dir` from the runs and audit its `report.json` holds: how a report is re-rendered
/// by a newer remask without training again.
pub fn rerender(dir: &Path) -> Result<CompareOutcome> {
    let path = dir.join("report.json");
    let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
    let old: Report = serde_json::from_str(&text).map_err(|e| {
        Error::data(
            &path,
            format!("not a comparison report this remask can read ({e})"),
        )
    })?;
    let report = build_report(old.setup, old.runs, old.audit);
    let files = write_outputs(&report, dir)?;
    Ok(CompareOutcome {
        report,
        output_dir: dir.to_path_buf(),
        files,
    })
}

/// Creates the output directory and its marker; with `force`, clears an earlier comparison's data
/// and runs first (an earlier comparison is never replaced without it); with `resume`, keeps them.
fn open_workspace(cfg: &CompareConfig, opts: &CompareOptions) -> Result<PathBuf> {
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
    // Whole or absent: `--resume` reads it back after a kill.
    crate::atomic_write::write_atomic(&out.join(MARKER), cfg_text.as_bytes())?;
    Ok(out)
}

/// One prepared directory: the shared one (dynamic masking, CLM), or one per distinct static masking.
struct PreparedDir {
    /// The static masking it stores copies of, `None` for the shared directory.
    stores: Option<MaskingConfig>,
    dir: PathBuf,
    meta: Meta,
}

/// The comparison's prepared data: the first directory holds the tokenizer every other one reuses.
struct PreparedData {
    data: DataConfig,
    note: String,
    dirs: Vec<PreparedDir>,
    /// Index into `dirs` for each strategy.
    dir_of: Vec<usize>,
}

impl PreparedData {
    fn prepare(
        cfg: &CompareConfig,
        strategies: &[Strategy],
        out: &Path,
        opts: &CompareOptions,
    ) -> Result<Self> {
        let (data, note) = corpus(cfg, out)?;
        let mut dirs: Vec<PreparedDir> = Vec::new();
        let mut dir_of = Vec::new();
        let prepare_one = |dirs: &mut Vec<PreparedDir>,
                           name: &str,
                           stores: Option<MaskingConfig>,
                           masking: &MaskingConfig|
         -> Result<usize> {
            let dir = out.join("data").join(name);
            let mut d = data.clone();
            // Every directory after the first reuses its tokenizer: the same ids everywhere.
            if let Some(first) = dirs.first() {
                d.tokenizer.path = Some(first.dir.join("tokenizer.json"));
            }
            let t = Instant::now();
            // On resume a complete directory of the same data is kept (prepare is deterministic).
            let meta = super::resume::prepared(&d, masking, &dir, opts.resume)?;
            log(
                opts,
                &format!(
                    "prepared {} ({} train rows, {} validation rows, vocab {}) in {:.1}s",
                    dir.display(),
                    meta.train.rows,
                    meta.validation.rows,
                    meta.vocab_size,
                    t.elapsed().as_secs_f64()
                ),
            );
            if let Some(first) = dirs.first() {
                if meta.vocab_size != first.meta.vocab_size
                    || meta.validation.rows != first.meta.validation.rows
                    || meta.train.rows != first.meta.train.rows
                {
                    return Err(Error::Other("prepared data differs between strategies (tokenizer or split); this is a bug".into()));
                }
            }
            dirs.push(PreparedDir { stores, dir, meta });
            Ok(dirs.len() - 1)
        };
        // The shared directory also holds PMI masking's n-gram vocabulary when a strategy needs it.
        let shared = match strategies
            .iter()
            .find(|s| cfg.compare.task == CompareTask::Mlm && s.masking.needs_ngrams())
        {
            Some(s) => MaskingConfig {
                strategy: s.masking.strategy,
                pmi: s.masking.pmi,
                ..MaskingConfig::default()
            },
            None => MaskingConfig::default(),
        };
        prepare_one(&mut dirs, "shared", None, &shared)?;
        for s in strategies {
            let idx = match (cfg.compare.task, s.masking.dupe_factor()) {
                (CompareTask::Mlm, Some(_)) => match dirs
                    .iter()
                    .position(|d| d.stores.as_ref() == Some(&s.masking))
                {
                    Some(i) => i,
                    None => prepare_one(&mut dirs, &s.name, Some(s.masking.clone()), &s.masking)?,
                },
                _ => 0,
            };
            dir_of.push(idx);
        }
        Ok(Self {
            data,
            note,
            dirs,
            dir_of,
        })
    }
}

/// The model every run starts from (its vocabulary from the trained tokenizer).
fn base_model(cfg: &CompareConfig, data: &PreparedData) -> ModelConfig {
    let meta = &data.dirs[0].meta;
    let mut m = cfg.model.clone();
    m.vocab_size = meta.vocab_size as usize;
    m.max_positions = m.max_positions.max(data.data.seq_len as usize);
    m.pad_token_id = meta.special_tokens.pad;
    m
}

fn describe_model(m: &ModelConfig, seq_len: u32) -> String {
    format!(
        "{}-LN {}, d_model {}, {} layers, {} heads, FFN {}, vocab {}, seq {}{}",
        if m.norm == NormPlacement::Pre {
            "pre"
        } else {
            "post"
        },
        match m.arch {
            crate::model::Arch::Decoder => "decoder",
            _ => "encoder",
        },
        m.d_model,
        m.n_layers,
        m.n_heads,
        m.d_ff,
        m.vocab_size,
        seq_len,
        // fp32 is the default and goes unsaid (reports of earlier versions read the same).
        if m.precision == crate::model::Precision::Bf16 {
            ", bf16 products (f32 accumulation)"
        } else {
            ""
        }
    )
}

/// Everything a run needs that does not change from run to run.
struct RunContext<'a> {
    cfg: &'a CompareConfig,
    opts: &'a CompareOptions,
    out: &'a Path,
    data: &'a PreparedData,
    sets: &'a EvalSets,
    model_cfg: ModelConfig,
    strategies: &'a [Strategy],
    regimes: &'a [Regime],
}

/// Trains the runs `jobs` at a time in this process (`compare.jobs`): lane i trains the runs a rank i
/// of `jobs` ranks would (see [`run_compare_on`]), inside its own pool of `threads / jobs` workers, so
/// each run equals, bit for bit, the same run of a comparison with `threads = threads / jobs`. A small
/// model's step does not scale to two threads, so lanes finish sooner. The caller then reads
/// every result back. The first error stops the other lanes (they checkpoint and leave as if
/// interrupted) and is returned.
fn train_in_lanes(ctx: &RunContext, planned: &[PlannedRun], jobs: usize) -> Result<()> {
    let per_run = run_threads(ctx.cfg);
    let mut errors: Vec<Error> = std::thread::scope(|scope| {
        let lanes: Vec<_> = (0..jobs)
            .map(|lane| {
                scope.spawn(move || -> Result<()> {
                    let pool = rayon::ThreadPoolBuilder::new()
                        .num_threads(per_run)
                        .thread_name(move |i| format!("remask-lane{lane}-{i}"))
                        .build()
                        .map_err(|e| {
                            Error::Other(format!(
                                "cannot start lane {lane} with {per_run} threads: {e}"
                            ))
                        })?;
                    let r =
                        pool.install(|| train_runs(ctx, planned, Some((lane, jobs))).map(|_| ()));
                    if r.is_err() {
                        // The other lanes stop after their current step, with a checkpoint.
                        ctx.opts.stop.store(true, Ordering::SeqCst);
                    }
                    r
                })
            })
            .collect();
        lanes
            .into_iter()
            .filter_map(|h| match h.join() {
                Ok(r) => r.err(),
                Err(_) => Some(Error::Other(
                    "a training lane panicked; this is a bug".into(),
                )),
            })
            .collect()
    });
    // An interruption caused by another lane's error is not the news: report the first real one.
    if errors.is_empty() {
        return Ok(());
    }
    let first_real = errors
        .iter()
        .position(|e| !e.to_string().starts_with("interrupted"))
        .unwrap_or(0);
    Err(errors.swap_remove(first_real))
}

/// Worker threads of one run: `compare.threads` (0 = every core) shared by the `compare.jobs` runs
/// trained at once.
fn run_threads(cfg: &CompareConfig) -> usize {
    let all = match cfg.compare.threads {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };
    (all / cfg.compare.jobs.max(1)).max(1)
}

/// Trains every planned run (a run identical to another is copied from it) and audits: the MLM
/// targets of each strategy, and the attention of each strategy's seed-1 model in the last regime.
/// With `share = Some((rank, size))` it only trains this rank's share of the runs to train (the k-th
/// goes to rank k mod size), skips everything else and returns nothing useful: the results are in
/// the run directories, for the pass without a share to read back.
fn train_runs(
    ctx: &RunContext,
    planned: &[PlannedRun],
    share: Option<(usize, usize)>,
) -> Result<(Vec<RunRecord>, Vec<AuditLine>)> {
    let mut audit = Vec::new();
    if ctx.cfg.compare.task == CompareTask::Mlm && share.is_none() {
        for (s, &di) in ctx.strategies.iter().zip(&ctx.data.dir_of) {
            let d = &ctx.data.dirs[di];
            let mut probe = Loader::open(&d.dir, Split::Train, crate::data::Task::Mlm, &s.masking)?;
            let batches: Vec<Batch> = (0..4)
                .map(|i| probe.batch(i * 32, 32, 0.0))
                .collect::<Result<_>>()?;
            let m = audit_masking(
                &batches,
                d.meta.special_tokens.mask,
                d.meta.vocab_size as usize,
                &s.masking,
            )?;
            let line = AuditLine::from(&m);
            audit.push(AuditLine {
                what: format!("{} ({})", line.what, s.name),
                ..line
            });
        }
    }
    let total = planned.iter().filter(|p| p.same_as.is_none()).count();
    let last_regime = ctx.regimes.len().saturating_sub(1);
    let mut runs: Vec<RunRecord> = Vec::new();
    let mut n = 0;
    let mut subset: Option<(usize, Vec<u32>, Vec<Batch>)> = None;
    // Runs that are trained come first in each (regime, seed) group; identical ones copy them after.
    let mut order: Vec<&PlannedRun> = planned.iter().collect();
    order.sort_by_key(|p| (p.regime, p.seed, p.same_as.is_some()));
    for p in order {
        let s = &ctx.strategies[p.strategy];
        let regime = &ctx.regimes[p.regime];
        if share.is_some() && p.same_as.is_some() {
            continue;
        }
        if let Some(other) = p.same_as {
            let src = runs
                .iter()
                .find(|r| {
                    r.strategy == ctx.strategies[other].name
                        && r.regime == regime.epochs
                        && r.seed == p.seed
                })
                .ok_or_else(|| {
                    Error::Other(
                        "a run planned as identical to another has no source run; this is a bug"
                            .into(),
                    )
                })?;
            let d = &ctx.data.dirs[ctx.data.dir_of[p.strategy]];
            let copy = RunRecord {
                strategy: s.name.clone(),
                same_as: Some(src.run_dir.clone()),
                mask_bytes: d.meta.static_masks.as_ref().map_or(0, |m| m.bytes),
                mask_bytes_per_token: d
                    .meta
                    .static_masks
                    .as_ref()
                    .map_or(0.0, |m| m.bytes_per_training_token),
                ..src.clone()
            };
            log(ctx.opts, &format!("{}: identical to {} by construction (static copy e is the dynamic mask of epoch e, and no epoch reaches copy K)", copy.name(), src.name()));
            runs.push(copy);
            continue;
        }
        if ctx.opts.stop.load(Ordering::SeqCst) {
            return Err(Error::Other(format!(
                "interrupted; continue with `remask compare --resume {}`",
                ctx.out.display()
            )));
        }
        n += 1;
        if share.is_some_and(|(rank, size)| (n - 1) % size != rank) {
            continue;
        }
        let name = run_name(&s.name, regime.epochs, p.seed);
        let run_dir = ctx.out.join("runs").join(&name);
        if let Some((rec, line)) =
            super::resume::read_result::<(RunRecord, Option<AuditLine>)>(&run_dir)
        {
            log(
                ctx.opts,
                &format!("[{n}/{total}] {name}: finished earlier, kept"),
            );
            audit.extend(line);
            runs.push(rec);
            continue;
        }
        if subset.as_ref().is_none_or(|(ri, _, _)| *ri != p.regime) {
            let d0 = &ctx.data.dirs[0];
            let rows = subset_rows(d0.meta.train.rows, regime.rows, d0.meta.data.seed)?;
            let c = &ctx.cfg.compare;
            let picked = sample_rows(&rows, c.eval_batches * c.eval_batch_size, d0.meta.data.seed);
            let sample = train_sample(
                &d0.dir,
                data_task(ctx.cfg),
                &picked,
                c.eval_batches,
                c.eval_batch_size,
            )?;
            subset = Some((p.regime, rows, sample));
        }
        let Some((_, rows, sample)) = &subset else {
            continue;
        };
        log(ctx.opts, &format!("[{n}/{total}] {name}"));
        let audit_this = p.seed == 1 && p.regime == last_regime;
        let (rec, model) = train_one(ctx, p, rows, sample, audit_this)?;
        let line = match model {
            Some(mut model) => Some(audit_trained(ctx, s, model.as_mut(), p.seed)?),
            None => None,
        };
        // The run's record and audit line, written last and whole: what `--resume` keeps.
        let result = (rec, line);
        super::resume::write_result(&run_dir, &result)?;
        let (rec, line) = result;
        audit.extend(line);
        log(ctx.opts, &format!(
            "[{n}/{total}] {name}: validation loss {:.4}, accuracy {:.4}{}{}, {:.0} tokens/s, {:.1}s{}",
            rec.final_val_loss,
            rec.final_val_accuracy,
            rec.final_ood_loss.map_or(String::new(), |l| format!(", out-of-domain loss {l:.4}")),
            rec.minimal_pairs.map_or(String::new(), |a| format!(", minimal pairs {a:.3}")),
            rec.tokens_per_s,
            rec.wall_s,
            rec.failed.as_ref().map_or(String::new(), |f| format!(" — FAILED: {f}"))
        ));
        runs.push(rec);
    }
    Ok((runs, audit))
}

/// The attention audit of a trained model: MLM models against their own mask; CLM models against
/// the document-causal relation (plain causal attention over packed documents must show the
/// cross-document flow as a leak).
fn audit_trained(
    ctx: &RunContext,
    s: &Strategy,
    model: &mut dyn TrainModel,
    seed: u64,
) -> Result<AuditLine> {
    let mc = model.config().clone();
    let batch = audit_batch(&mc, 2, mc.max_positions.min(24), seed)?;
    let spec = match ctx.cfg.compare.task {
        CompareTask::Mlm => s.attention,
        CompareTask::Clm => AttentionMaskSpec::Document { causal: true },
    };
    let report = audit_model(model, &spec, &batch, &AuditOptions::default())?;
    log(ctx.opts, &report.line());
    let line = AuditLine::from(&report);
    Ok(AuditLine {
        what: format!("{} ({} model, trained)", line.what, s.name),
        ..line
    })
}

/// Trains and evaluates one run. Returns the trained model when `keep_model` (for the audit).
fn train_one(
    ctx: &RunContext,
    p: &PlannedRun,
    rows: &[u32],
    train_batches: &[Batch],
    keep_model: bool,
) -> Result<(RunRecord, Option<Box<dyn TrainModel>>)> {
    let s = &ctx.strategies[p.strategy];
    let regime = &ctx.regimes[p.regime];
    let d = &ctx.data.dirs[ctx.data.dir_of[p.strategy]];
    let rel = format!("runs/{}", run_name(&s.name, regime.epochs, p.seed));
    let run_dir = ctx.out.join(&rel);
    let mut model_cfg = ctx.model_cfg.clone();
    model_cfg.attention = s.attention;
    let run_cfg = run_config(ctx, &model_cfg, s, &d.dir, p.seed, &run_dir)?;
    let nanos = Arc::new(AtomicU64::new(0));
    let loader = Loader::open(&d.dir, Split::Train, data_task(ctx.cfg), &s.masking)?;
    let source = TimedSource {
        inner: SubsetSource::new(loader, rows.to_vec(), p.seed),
        nanos: nanos.clone(),
    };
    let model = crate::model::new_model(model_cfg.clone(), p.seed)?;
    let topts = TrainerOptions {
        // Runs trained side by side (`compare.jobs`) would interleave their step lines unnamed: the
        // runner's own per-run lines say what happens.
        progress: if ctx.cfg.compare.jobs > 1 {
            ProgressMode::Quiet
        } else {
            ctx.opts.progress
        },
        stop: ctx.opts.stop.clone(),
        ..TrainerOptions::default()
    };
    // A partial run (of an interrupted comparison) continues from its newest verified checkpoint.
    let (mut trainer, resumed_at) = super::resume::start_trainer(
        model,
        source,
        ctx.sets.validation.clone(),
        run_cfg,
        &run_dir,
        topts,
    )?;
    // Evaluations so far (of a resumed run: up to its checkpoint), logged as they happen.
    let (mut eval_log, kept) = super::resume::EvalLog::open::<EvalPoint>(&run_dir, resumed_at)?;
    let mut eval_curve: Vec<EvalPoint> = kept.iter().map(|(_, p)| *p).collect();
    let mut train_s = eval_curve.last().map_or(0.0, |p| p.seconds);

    let every = ctx.cfg.compare.eval_every_steps;
    let mut eval_at = |trainer: &mut Trainer<_, _>, train_s: f64| -> Result<()> {
        let r = trainer.evaluate()?;
        let point = EvalPoint {
            tokens: trainer.state().tokens_seen,
            seconds: train_s,
            loss: r.loss,
            accuracy: r.accuracy,
        };
        eval_log.append(trainer.state().step, &point)?;
        eval_curve.push(point);
        Ok(())
    };
    if kept.last().map(|(step, _)| *step) != Some(resumed_at.unwrap_or(0)) {
        // The evaluation at the starting step (a kill may have come between checkpoint and log).
        eval_at(&mut trainer, train_s)?;
    }
    let mut diverged = None;
    while !trainer.is_done() {
        let next = (trainer.state().step / every + 1) * every;
        let t = Instant::now();
        let summary = match trainer.run_until(next) {
            Ok(summary) => summary,
            Err(e) if trainer.state().stop_reason.as_deref() == Some("non-finite") => {
                diverged = Some(
                    format!("diverged: {e}")
                        .lines()
                        .next()
                        .unwrap_or_default()
                        .to_string(),
                );
                break;
            }
            Err(e) => return Err(e),
        };
        train_s += t.elapsed().as_secs_f64();
        if summary.interrupted {
            return Err(Error::Other(format!(
                "interrupted during {rel} (checkpoint in {}); continue with `remask compare --resume {}`",
                run_dir.display(),
                ctx.out.display()
            )));
        }
        eval_at(&mut trainer, train_s)?;
    }
    let steps = trainer.state().step.max(1);
    let tokens = trainer.state().tokens_seen;
    let train_curve = read_train_records(&run_dir.join("metrics.jsonl"))?
        .into_iter()
        .filter(|r| r.loss.is_finite())
        .map(|r| CurvePoint {
            tokens: r.tokens,
            loss: r.loss,
        })
        .collect();
    let last = eval_curve.last().copied().filter(|_| diverged.is_none());
    let mut rec = RunRecord {
        strategy: s.name.clone(),
        seed: p.seed,
        regime: regime.epochs,
        train_rows: rows.len() as u64,
        train_curve,
        eval_curve,
        final_train_loss: f64::NAN,
        final_val_loss: last.map_or(f64::NAN, |e| e.loss),
        final_val_accuracy: last.map_or(f64::NAN, |e| e.accuracy),
        tokens_per_s: tokens as f64 / train_s.max(1e-9),
        wall_s: train_s,
        masking_ms_per_step: nanos.load(Ordering::Relaxed) as f64 / 1e6 / steps as f64,
        mask_bytes: if s.masking.dupe_factor().is_some() {
            d.meta.static_masks.as_ref().map_or(0, |m| m.bytes)
        } else {
            0
        },
        mask_bytes_per_token: match (&d.meta.static_masks, s.masking.dupe_factor()) {
            (Some(m), Some(_)) => m.bytes_per_training_token,
            _ => 0.0,
        },
        run_dir: rel,
        final_ood_loss: None,
        final_ood_accuracy: None,
        minimal_pairs: None,
        final_val_loss_isolated: None,
        failed: diverged,
        same_as: None,
    };
    if rec.failed.is_some() {
        return Ok((rec, None));
    }
    evaluate_final(ctx, &mut rec, trainer.model.as_mut(), train_batches)?;
    Ok((rec, keep_model.then_some(trainer.model)))
}

/// The end-of-run evaluations (training sample, out of domain, documents alone for CLM, minimal
/// pairs) and the failure check against the unigram loss.
fn evaluate_final(
    ctx: &RunContext,
    rec: &mut RunRecord,
    model: &mut dyn TrainModel,
    train_batches: &[Batch],
) -> Result<()> {
    let sets = ctx.sets;
    rec.final_train_loss = evaluate(model, train_batches)?.loss;
    if !sets.ood.is_empty() {
        let r = evaluate(model, &sets.ood)?;
        rec.final_ood_loss = Some(r.loss);
        rec.final_ood_accuracy = Some(r.accuracy);
    }
    if ctx.cfg.compare.task == CompareTask::Clm {
        let alone = AttentionMaskSpec::Document { causal: true };
        rec.final_val_loss_isolated = Some(if model.config().attention == alone {
            rec.final_val_loss
        } else {
            let cfg = ModelConfig {
                attention: alone,
                ..model.config().clone()
            };
            let mut m = crate::model::model_from_params(cfg, model.params().to_vec())?;
            evaluate(m.as_mut(), &sets.validation)?.loss
        });
    }
    if let Some(ps) = &sets.pairs {
        rec.minimal_pairs =
            Some(score_pairs(model, &ps.pairs, &ps.encoded, ps.scoring, 512)?.accuracy);
    }
    let u = sets.unigram_loss;
    if !rec.final_val_loss.is_finite() {
        rec.failed = Some(format!(
            "non-finite final validation loss ({})",
            rec.final_val_loss
        ));
    } else if rec.final_val_loss > u {
        let best = rec
            .eval_curve
            .iter()
            .min_by(|a, b| a.loss.total_cmp(&b.loss));
        let overfit = match best {
            Some(b) if b.loss < rec.final_val_loss => format!(
                "; its lowest validation loss was {:.4}, at {} tokens",
                b.loss, b.tokens
            ),
            _ => String::new(),
        };
        rec.failed = Some(format!(
            "ends above the unigram loss ({:.4} > {:.4}){overfit}",
            rec.final_val_loss, u
        ));
    }
    Ok(())
}

/// The trainer's config for one run: the comparison's sections, this seed and budget; evaluation
/// (every step 0) is left to the runner, and a checkpoint is written at every evaluation, so
/// `compare --resume` continues a partial run from there.
fn run_config(
    ctx: &RunContext,
    model: &ModelConfig,
    s: &Strategy,
    data_dir: &Path,
    seed: u64,
    run_dir: &Path,
) -> Result<RunConfig> {
    let c = &ctx.cfg.compare;
    let budget = match ctx.cfg.budget_steps() {
        Some(steps) if !c.regimes.is_empty() => BudgetConfig {
            steps: Some(steps),
            ..BudgetConfig::default()
        },
        _ => ctx.cfg.budget.clone(),
    };
    let cfg = RunConfig {
        model: model.clone(),
        data: DataConfig {
            dir: Some(data_dir.to_path_buf()),
            ..ctx.data.data.clone()
        },
        masking: s.masking.clone(),
        optimizer: ctx.cfg.optimizer.clone(),
        schedule: ctx.cfg.schedule.clone(),
        budget,
        eval: EvalConfig {
            every_steps: 0,
            batches: c.eval_batches,
            batch_size: c.eval_batch_size,
            pseudo_perplexity: false,
        },
        checkpoint: CheckpointConfig {
            every_steps: c.eval_every_steps,
            keep_last: 1,
        },
        run: RunSection {
            seed,
            threads: if c.jobs > 1 {
                run_threads(ctx.cfg)
            } else {
                c.threads
            },
            output_dir: run_dir.to_path_buf(),
            log_every: (c.eval_every_steps / 5).max(1),
            ..RunSection::default()
        },
    };
    cfg.validate()?;
    Ok(cfg)
}

/// Writes the plots, `report.md` and `report.json`; returns their names.
fn write_outputs(report: &Report, out: &Path) -> Result<Vec<String>> {
    let mut files = Vec::new();
    let series: Vec<(String, Option<u32>)> = {
        let mut v: Vec<(String, Option<u32>)> = Vec::new();
        for r in &report.runs {
            let k = (r.strategy.clone(), r.regime);
            if !v.contains(&k) {
                v.push(k);
            }
        }
        v
    };
    // One series per (strategy, regime). Runs identical to another one by construction are not
    // drawn twice: the other series says "= strategy". Failed runs that have final figures stay in
    // the band (as in the report) and are also drawn on their own and named.
    let curves = |f: &dyn Fn(&RunRecord) -> Vec<(f64, f64)>| -> Vec<StrategyCurves> {
        series
            .iter()
            .filter_map(|(name, regime)| {
                let runs: Vec<&RunRecord> = report
                    .runs
                    .iter()
                    .filter(|r| &r.strategy == name && r.regime == *regime)
                    .collect();
                if runs.iter().all(|r| r.same_as.is_some()) {
                    return None;
                }
                let twins: Vec<&str> = report
                    .runs
                    .iter()
                    .filter(|c| {
                        c.regime == *regime
                            && c.same_as
                                .as_ref()
                                .is_some_and(|d| runs.iter().any(|r| &r.run_dir == d))
                    })
                    .map(|c| c.strategy.as_str())
                    .collect::<std::collections::BTreeSet<_>>()
                    .into_iter()
                    .collect();
                let mut label = match regime {
                    Some(e) => format!("{name} E={e}"),
                    None => name.clone(),
                };
                if !twins.is_empty() {
                    label += &format!(" = {}", twins.join(", "));
                }
                Some(StrategyCurves {
                    strategy: label,
                    seeds: runs
                        .iter()
                        .filter(|r| r.final_val_loss.is_finite())
                        .map(|r| f(r))
                        .collect(),
                    failed: runs
                        .iter()
                        .filter(|r| r.failed.is_some())
                        .map(|r| (r.name(), f(r)))
                        .collect(),
                })
            })
            .collect()
    };
    files.extend(plot_curves(
        out,
        "val_loss",
        if report.setup.task == "clm" {
            "Validation loss (fixed packed rows, each model's own mask)"
        } else {
            "Validation loss (fixed masks)"
        },
        "loss (nats)",
        &curves(&|r| {
            r.eval_curve
                .iter()
                .map(|p| (p.tokens as f64, p.loss))
                .collect()
        }),
    )?);
    files.extend(plot_curves(
        out,
        "train_loss",
        if report.setup.task == "clm" {
            "Training loss (smoothed)"
        } else {
            "Training loss (own masks, smoothed)"
        },
        "loss (nats)",
        &curves(&|r| {
            smooth(
                &r.train_curve
                    .iter()
                    .map(|p| (p.tokens as f64, p.loss))
                    .collect(),
                5,
            )
        }),
    )?);
    let regime_plot = if report
        .setup
        .regimes
        .iter()
        .filter(|r| r.epochs.is_some())
        .count()
        >= 2
    {
        let panels = regime_panels(report);
        let f = plot_regime_map(
            out,
            "regime_map",
            &format!(
                "Paired difference to `{}` vs data repetition",
                report.setup.baseline
            ),
            &panels,
        )?;
        let png = f.iter().find(|x| x.ends_with(".png")).cloned();
        files.extend(f);
        png
    } else {
        None
    };
    let pngs: Vec<String> = files
        .iter()
        .filter(|f| f.ends_with(".png") && Some(*f) != regime_plot.as_ref())
        .cloned()
        .collect();
    let md = report.to_markdown(&pngs, regime_plot.as_deref());
    for (file, text) in [("report.md", md), ("report.json", report.to_json())] {
        let p = out.join(file);
        std::fs::write(&p, text).map_err(|e| Error::io(&p, e))?;
        files.push(file.into());
    }
    Ok(files)
}

/// The regime map's panels: one per measure taken, a series per compared strategy.
fn regime_panels(report: &Report) -> Vec<RegimePanel> {
    let keys: &[(&str, &str)] = &[
        ("val_loss", "in-domain validation loss"),
        ("ood_loss", "out-of-domain loss"),
        ("minimal_pairs", "minimal-pair accuracy"),
    ];
    let mut strategies: Vec<&str> = Vec::new();
    for c in &report.comparisons {
        if !strategies.contains(&c.a.as_str()) {
            strategies.push(&c.a);
        }
    }
    let failed: Vec<(f64, usize)> = report
        .setup
        .regimes
        .iter()
        .filter_map(|r| {
            let e = r.epochs?;
            let n = report
                .runs
                .iter()
                .filter(|x| x.regime == Some(e) && x.failed.is_some())
                .count();
            (n > 0).then_some((e as f64, n))
        })
        .collect();
    keys.iter()
        .filter_map(|(key, title)| {
            let series: Vec<RegimeSeries> = strategies
                .iter()
                .filter_map(|a| {
                    let points: Vec<(f64, f64, f64, f64)> = report
                        .comparisons
                        .iter()
                        .filter(|c| c.measure == *key && c.a == *a)
                        .filter_map(|c| {
                            let e = c.regime? as f64;
                            let [lo, hi] = c.ci95.unwrap_or([c.mean_diff, c.mean_diff]);
                            c.mean_diff.is_finite().then_some((e, c.mean_diff, lo, hi))
                        })
                        .collect();
                    (!points.is_empty()).then(|| RegimeSeries {
                        label: format!("{a} − {}", report.setup.baseline),
                        points,
                    })
                })
                .collect();
            (!series.is_empty()).then(|| RegimePanel {
                title: title.to_string(),
                series,
                failed: failed.clone(),
                dupe_factor: report.setup.dupe_factor.map(f64::from),
            })
        })
        .collect()
}
