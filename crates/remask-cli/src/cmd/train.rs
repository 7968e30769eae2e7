//! `remask train`: run a training job described by one TOML file, or resume one.

use std::path::PathBuf;

use anyhow::Context;
use remask::dir_lock::DirLock;
use remask::train::{self, ProgressMode, RunConfig, TrainerOptions};

use crate::common::{drive, Start};

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
    /// Start from the weights of this Hugging Face directory (BERT / GPT-2 / BART) or remask
    /// checkpoint instead of a random initialisation; its architecture must equal `[model]`'s.
    #[arg(long, value_name = "DIR", conflicts_with = "resume")]
    pub init_from: Option<PathBuf>,
    /// Test scaffolding (feature `testing` only): toy model, synthetic data, injected faults.
    #[cfg(feature = "testing")]
    #[command(flatten)]
    pub testing: crate::testing::TrainArgs,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let stop = crate::signals::install()?;
    #[allow(unused_mut)]
    let mut opts = TrainerOptions {
        progress: if args.log_lines {
            ProgressMode::Lines
        } else {
            ProgressMode::Auto
        },
        stop,
        ..Default::default()
    };
    // Under an MPI launcher (feature `mpi`) the run is shared by the ranks; only rank 0 writes, so
    // only rank 0 locks the run directory.
    let dp = remask::dist::DataParallel::from_env()?;
    let mut _lock = None;
    let start = match &args.resume {
        Some(run_dir) => {
            if dp.is_root() {
                if !run_dir.is_dir() {
                    anyhow::bail!("--resume {}: no such run directory", run_dir.display());
                }
                _lock = Some(DirLock::acquire(run_dir, "remask train --resume")?);
            }
            let (ckpt, skipped) = train::checkpoint::load_newest_verified(run_dir)?;
            super::warn_skipped(&skipped);
            if !skipped.is_empty() {
                eprintln!(
                    "warning: resuming from the earlier checkpoint {}",
                    ckpt.dir.display()
                );
            }
            Start::Resume {
                ckpt: Box::new(ckpt),
                run_dir: run_dir.clone(),
            }
        }
        None => {
            let path = args.config.as_deref().context("--config is required")?;
            let mut sets = args.sets.clone();
            if let Some(p) = args.precision {
                sets.push(format!("model.precision=\"{}\"", p.name()));
            }
            let cfg = RunConfig::load(path, &sets)?;
            if dp.is_root() {
                _lock = Some(DirLock::acquire(&cfg.run.output_dir, "remask train")?);
            }
            Start::Fresh {
                run_dir: cfg.run.output_dir.clone(),
                cfg: Box::new(cfg),
                init_from: args.init_from.clone(),
            }
        }
    };
    train::init_threads(start.config().run.threads)?;
    #[cfg(feature = "testing")]
    {
        opts.faults = args.testing.faults();
        if args.testing.toy || args.testing.synthetic {
            return crate::testing::train(&args.testing, start, opts, dp);
        }
    }
    let cfg = start.config().clone();
    let data = remask::train::run_data::open_run_data(&cfg, start.run_dir())?;
    let model = remask::model::new_model(cfg.model.clone(), cfg.run.seed)?;
    let opts = TrainerOptions {
        mask_token_id: Some(data.mask_token_id),
        special_token_ids: data.special_token_ids,
        ..opts
    };
    drive(model, data.train, data.eval, start, opts, dp)
}
