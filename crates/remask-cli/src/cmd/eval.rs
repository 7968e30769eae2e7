//! `remask eval`: evaluate a checkpoint on fixed validation batches.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use remask::eval::{evaluate, pseudo_perplexity, EvalResult};
use remask::model::TrainModel;
use remask::train::testing::BigramModel;
use remask::train::{self, LoadedCheckpoint};

use crate::common::synthetic_data;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// A checkpoint directory (`RUN/checkpoints/step-000100`) or a run directory (its latest
    /// complete checkpoint is used).
    #[arg(long, value_name = "DIR")]
    pub checkpoint: PathBuf,
    /// Prepared data directory to take the validation split from (default: the run's `data.dir`, or
    /// the `data/` directory the run prepared).
    #[arg(long, value_name = "DIR")]
    pub data: Option<PathBuf>,
    /// Also compute MLM pseudo-perplexity (one forward per real token; slow).
    #[arg(long)]
    pub pseudo_perplexity: bool,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
    /// Evaluate a checkpoint of the built-in bigram test model (`remask train --toy`).
    #[arg(long, hide = true)]
    pub toy: bool,
    /// Evaluate a real-model checkpoint of `remask train --synthetic` on its synthetic validation rows.
    #[arg(long, hide = true, conflicts_with = "toy")]
    pub synthetic: bool,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let dir = if args.checkpoint.join(train::checkpoint::DONE).exists() {
        args.checkpoint.clone()
    } else if args.checkpoint.join("checkpoints").is_dir() {
        train::latest_complete(&args.checkpoint)?
    } else {
        // load() explains what is wrong (missing, incomplete).
        args.checkpoint.clone()
    };
    let ckpt = train::load_checkpoint(&dir)?;
    let result = if args.toy {
        let mut model = BigramModel::from_config(ckpt.model_config.clone(), ckpt.run_config.run.seed);
        evaluate_checkpoint(&mut model, &ckpt, true, args.pseudo_perplexity)?
    } else if args.synthetic {
        let mut model = remask::model::new_model(ckpt.model_config.clone(), ckpt.run_config.run.seed)?;
        evaluate_checkpoint(&mut model, &ckpt, false, args.pseudo_perplexity)?
    } else {
        let cfg = &ckpt.run_config;
        // The run directory is two levels above `checkpoints/step-N`.
        let run_dir = dir.parent().and_then(|p| p.parent()).unwrap_or(&dir);
        let data_dir = match (&args.data, &cfg.data.dir) {
            (Some(d), _) => d.clone(),
            (None, Some(d)) => d.clone(),
            (None, None) => remask::train::run_data::default_data_dir(run_dir),
        };
        let (batches, val) = remask::train::run_data::open_validation(cfg, &data_dir)
            .with_context(|| format!("validation data from {}", data_dir.display()))?;
        let mut model = remask::model::new_model(ckpt.model_config.clone(), cfg.run.seed)?;
        ckpt.restore_params(&mut model)?;
        let mut r = evaluate(&mut model, &batches)?;
        if args.pseudo_perplexity {
            if cfg.model.arch != remask::model::Arch::Encoder {
                anyhow::bail!("pseudo-perplexity is defined for MLM encoders; this checkpoint is a {:?}", cfg.model.arch);
            }
            let s = val.specials();
            r.pseudo_perplexity = Some(pseudo_perplexity(&mut model, &batches, s.mask, &s.all, 64)?);
        }
        r
    };
    print(&result, &ckpt, args.json)
}

/// Loads the checkpoint's weights into `model` (checking the architecture) and evaluates it on the
/// synthetic validation batches the run used.
fn evaluate_checkpoint<M: TrainModel>(model: &mut M, ckpt: &LoadedCheckpoint, toy: bool, pseudo: bool) -> anyhow::Result<EvalResult> {
    ckpt.restore_params(model)?;
    let (source, batches) = synthetic_data(&ckpt.run_config, toy)?;
    let mut r = evaluate(model, &batches)?;
    if pseudo {
        r.pseudo_perplexity = Some(pseudo_perplexity(model, &batches, source.mask_token_id(), &[], 64)?);
    }
    Ok(r)
}

fn print(r: &EvalResult, ckpt: &LoadedCheckpoint, json: bool) -> anyhow::Result<()> {
    let text = if json {
        let mut v = serde_json::to_value(r)?;
        v["checkpoint"] = ckpt.dir.display().to_string().into();
        v["step"] = ckpt.state.step.into();
        serde_json::to_string_pretty(&v).context("serializing the result")?
    } else {
        let mut t = format!("checkpoint  {} (step {})\n", ckpt.dir.display(), ckpt.state.step);
        t += &format!("loss        {:.4}\naccuracy    {:.4}\nperplexity  {:.3}\n", r.loss, r.accuracy, r.perplexity);
        if let Some(p) = r.pseudo_perplexity {
            t += &format!("pseudo-ppl  {p:.3}\n");
        }
        t + &format!("labels      {} in {} rows", r.labels, r.rows)
    };
    // A closed pipe (`| head`) is not an error worth a panic.
    match writeln!(std::io::stdout().lock(), "{text}") {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other.context("writing to stdout"),
    }
}
