//! Helpers shared by several commands. Command modules never import each other: what two of them
//! need lives here (e.g. the training driver of `train` and of the `testing` scaffolding).

use std::path::PathBuf;

use anyhow::Context;
use remask::dist::DataParallel;
use remask::model::TrainModel;
use remask::train::{LoadedCheckpoint, ProgressMode, RunConfig, Trainer, TrainerOptions};
use remask::{Batch, BatchSource};

/// Parses a kebab-case enum value the way the TOML config spells it.
pub fn parse<T: serde::de::DeserializeOwned>(s: &str) -> Result<T, String> {
    serde_json::from_value(serde_json::Value::String(s.to_string()))
        .map_err(|e| format!("{s}: {e}"))
}

/// `--bf16-kernel` of `bench train` and `bench attention`: `auto` (AMX where the CPU has it) or
/// `avx512` (what a CPU with AVX-512 BF16 but no AMX runs). Benchmarks only.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Bf16KernelArg {
    Auto,
    Avx512,
}

/// How the run begins.
pub enum Start {
    /// A new run; `init_from` (`--init-from`) names weights to start from instead of a random
    /// initialisation.
    Fresh {
        cfg: Box<RunConfig>,
        run_dir: PathBuf,
        init_from: Option<PathBuf>,
    },
    Resume {
        ckpt: Box<LoadedCheckpoint>,
        run_dir: PathBuf,
    },
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
    dp: DataParallel,
) -> anyhow::Result<()> {
    let root = dp.is_root();
    if !root {
        opts.write_metrics = false;
        opts.progress = ProgressMode::Quiet;
    }
    let mut model = model;
    if let Start::Fresh {
        init_from: Some(dir),
        ..
    } = &start
    {
        let kept = remask::infer::init_from(dir, &mut model)
            .with_context(|| format!("--init-from {}", dir.display()))?;
        eprintln!(
            "initialised from {}{}",
            dir.display(),
            if kept.is_empty() {
                String::new()
            } else {
                format!(" (fresh: {})", kept.join(", "))
            }
        );
    }
    let mut trainer = match start {
        Start::Fresh { cfg, run_dir, .. } => {
            Trainer::new(model, source, eval, *cfg, &run_dir, opts)?
        }
        Start::Resume { ckpt, run_dir } => {
            Trainer::resume(model, source, eval, &ckpt, &run_dir, opts)?
        }
    }
    .with_data_parallel(dp)?;
    let summary = trainer.run()?;
    if !root {
        return Ok(());
    }
    let run_dir = trainer.run_dir().display().to_string();
    let ck = summary
        .last_checkpoint
        .as_ref()
        .map_or("none".into(), |p| p.display().to_string());
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
