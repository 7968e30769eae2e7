//! `remask train`: run a training job described by one TOML file, or resume one.

use std::path::PathBuf;

use anyhow::Context;
use remask::eval::fixed_batches;
use remask::model::TrainModel;
use remask::train::testing::{BigramModel, SyntheticSource, TaskKind};
use remask::train::{self, LoadedCheckpoint, ProgressMode, RunConfig, Trainer, TrainerOptions};
use remask::{Batch, BatchSource};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The run config (TOML): model, data, masking, optimizer, schedule, budget, eval, checkpoint, run.
    #[arg(long, value_name = "FILE", required_unless_present = "resume")]
    pub config: Option<PathBuf>,
    /// Override a config value before validation, e.g. `--set optimizer.lr=3e-4` (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub sets: Vec<String>,
    /// Number format of the matrix products: fp32, or bf16 (bf16 operands, f32 accumulation; needs
    /// AVX-512 BF16). Shorthand for `--set model.precision=…`.
    #[arg(long, value_name = "fp32|bf16", conflicts_with = "resume")]
    pub precision: Option<remask::model::Precision>,
    /// Continue the run in RUN_DIR from its last complete checkpoint (with the config stored in it).
    #[arg(long, value_name = "RUN_DIR", conflicts_with_all = ["config", "sets"])]
    pub resume: Option<PathBuf>,
    /// Print plain log lines instead of a progress bar, even on a terminal.
    #[arg(long)]
    pub log_lines: bool,
    /// Train the built-in bigram test model on synthetic data (fault-injection tests and demos).
    #[arg(long, hide = true)]
    pub toy: bool,
    /// Train the configured real model on synthetic data instead of the `[data]` section (smoke
    /// tests without a prepared corpus; encoder and decoder only).
    #[arg(long, hide = true, conflicts_with = "toy")]
    pub synthetic: bool,
    /// Start from the weights of this Hugging Face directory (BERT / GPT-2 / BART) or remask
    /// checkpoint instead of a random initialisation; its architecture must equal `[model]`'s.
    #[arg(long, value_name = "DIR", conflicts_with_all = ["resume", "toy"])]
    pub init_from: Option<PathBuf>,
}

/// `--init-from`, read by [`drive`] when a fresh run builds its model.
static INIT_FROM: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();

pub fn run(args: Args) -> anyhow::Result<()> {
    let stop = train::install_ctrlc_handler()?;
    let opts = TrainerOptions {
        progress: if args.log_lines { ProgressMode::Lines } else { ProgressMode::Auto },
        stop,
        ..Default::default()
    };
    if let Some(dir) = &args.init_from {
        let _ = INIT_FROM.set(dir.clone());
    }
    let start = match &args.resume {
        Some(run_dir) => {
            let dir = train::latest_complete(run_dir)?;
            let ckpt = train::load_checkpoint(&dir)?;
            Start::Resume { ckpt: Box::new(ckpt), run_dir: run_dir.clone() }
        }
        None => {
            let path = args.config.as_deref().context("--config is required")?;
            let mut sets = args.sets.clone();
            if let Some(p) = args.precision {
                sets.push(format!("model.precision=\"{}\"", p.name()));
            }
            let cfg = RunConfig::load(path, &sets)?;
            Start::Fresh { run_dir: cfg.run.output_dir.clone(), cfg: Box::new(cfg) }
        }
    };
    train::init_threads(start.config().run.threads)?;
    if args.toy {
        let cfg = start.config();
        let mut model = BigramModel::from_config(cfg.model.clone(), cfg.run.seed);
        let delay = std::env::var("REMASK_TOY_STEP_DELAY_MS").ok().and_then(|v| v.parse().ok()).unwrap_or(0);
        model.step_delay = std::time::Duration::from_millis(delay);
        let (source, eval) = synthetic_data(cfg, true)?;
        return drive(model, source, eval, start, opts);
    }
    if args.synthetic {
        let cfg = start.config();
        let model = remask::model::new_model(cfg.model.clone(), cfg.run.seed)?;
        let (source, eval) = synthetic_data(cfg, false)?;
        return drive(model, source, eval, start, opts);
    }
    let cfg = start.config().clone();
    let data = remask::train::run_data::open_run_data(&cfg, start.run_dir())?;
    let model = remask::model::new_model(cfg.model.clone(), cfg.run.seed)?;
    let opts = TrainerOptions { mask_token_id: Some(data.mask_token_id), special_token_ids: data.special_token_ids, ..opts };
    drive(model, data.train, data.eval, start, opts)
}

/// How the run begins.
pub enum Start {
    Fresh { cfg: Box<RunConfig>, run_dir: PathBuf },
    Resume { ckpt: Box<LoadedCheckpoint>, run_dir: PathBuf },
}

impl Start {
    pub fn run_dir(&self) -> &std::path::Path {
        match self {
            Start::Fresh { run_dir, .. } | Start::Resume { run_dir, .. } => run_dir,
        }
    }

    pub fn config(&self) -> &RunConfig {
        match self {
            Start::Fresh { cfg, .. } => cfg,
            Start::Resume { ckpt, .. } => &ckpt.run_config,
        }
    }
}

/// Builds the trainer for any model and data source and runs it to the end (or to Ctrl-C).
pub fn drive<M: TrainModel, S: BatchSource>(
    model: M,
    source: S,
    eval: Vec<Batch>,
    start: Start,
    mut opts: TrainerOptions,
) -> anyhow::Result<()> {
    // Under an MPI launcher (feature `mpi`) the run is shared by the ranks; only rank 0 writes.
    let dp = remask::dist::DataParallel::from_env()?;
    let root = dp.is_root();
    if !root {
        opts.write_metrics = false;
        opts.progress = ProgressMode::Quiet;
    }
    let mut model = model;
    if let (Start::Fresh { .. }, Some(dir)) = (&start, INIT_FROM.get()) {
        let kept = remask::infer::init_from(dir, &mut model).with_context(|| format!("--init-from {}", dir.display()))?;
        eprintln!("initialised from {}{}", dir.display(), if kept.is_empty() { String::new() } else { format!(" (fresh: {})", kept.join(", ")) });
    }
    let mut trainer = match start {
        Start::Fresh { cfg, run_dir } => Trainer::new(model, source, eval, *cfg, &run_dir, opts)?,
        Start::Resume { ckpt, run_dir } => Trainer::resume(model, source, eval, &ckpt, &run_dir, opts)?,
    }
    .with_data_parallel(dp)?;
    let summary = trainer.run()?;
    if !root {
        return Ok(());
    }
    let run_dir = trainer.run_dir().display().to_string();
    let ck = summary.last_checkpoint.as_ref().map_or("none".into(), |p| p.display().to_string());
    if summary.interrupted {
        eprintln!("interrupted at step {}; checkpoint {ck}; continue with `remask train --resume {run_dir}`", summary.steps);
    } else {
        eprintln!(
            "done: {} steps, {} tokens, {} skipped; checkpoint {ck}",
            summary.steps, summary.tokens_seen, summary.skipped_steps
        );
    }
    Ok(())
}

/// Synthetic training and validation data (MLM rows for encoders and the toy model, next-token rows
/// for decoders; always MLM for the toy model), 16 tokens per row.
pub fn synthetic_data(cfg: &RunConfig, toy: bool) -> anyhow::Result<(SyntheticSource, Vec<Batch>)> {
    let vocab = cfg.model.vocab_size;
    anyhow::ensure!(vocab >= 3, "synthetic data needs model.vocab_size >= 3");
    let task = match cfg.model.arch {
        _ if toy => TaskKind::Mlm { rate: 0.3 },
        remask::model::Arch::Decoder => TaskKind::Clm,
        remask::model::Arch::Encoder => TaskKind::Mlm { rate: 0.3 },
        remask::model::Arch::EncoderDecoder => anyhow::bail!("synthetic data has no target side: use an encoder or decoder"),
    };
    let source = SyntheticSource::new(64, 16, vocab, cfg.run.seed, task, true);
    let mut val = SyntheticSource::new(16, 16, vocab, cfg.run.seed ^ 1, task, false);
    let eval = fixed_batches(&mut val, cfg.eval.batches.max(1), cfg.eval.batch_size.max(1))?;
    Ok((source, eval))
}
