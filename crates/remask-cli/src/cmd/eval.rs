//! `remask eval`: evaluate a checkpoint on fixed validation batches.

use std::path::PathBuf;

use anyhow::Context;
use remask::eval::{evaluate, fixed_batches, pseudo_perplexity, EvalResult};
use remask::train::testing::{BigramModel, SyntheticSource, TaskKind};
use remask::train::{self, LoadedCheckpoint};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// A checkpoint directory (`RUN/checkpoints/step-000100`) or a run directory (its latest
    /// complete checkpoint is used).
    #[arg(long, value_name = "DIR")]
    pub checkpoint: PathBuf,
    /// Prepared data directory to take the validation split from (default: the run's data).
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
    if !args.toy {
        anyhow::bail!(
            "evaluating the real models is not wired into this build yet (needs the `models` constructors and \
             the `data` loader); `--toy` evaluates checkpoints of the built-in test model"
        );
    }
    let result = eval_toy(&ckpt, args.pseudo_perplexity)?;
    print(&result, &ckpt, args.json)
}

fn eval_toy(ckpt: &LoadedCheckpoint, pseudo: bool) -> anyhow::Result<EvalResult> {
    let cfg = &ckpt.run_config;
    let mut model = BigramModel::from_config(ckpt.model_config.clone(), cfg.run.seed);
    ckpt.restore_params(&mut model)?;
    let mut val = SyntheticSource::new(16, 16, cfg.model.vocab_size, cfg.run.seed ^ 1, TaskKind::Mlm { rate: 0.3 }, false);
    let batches = fixed_batches(&mut val, cfg.eval.batches.max(1), cfg.eval.batch_size.max(1))?;
    let mut r = evaluate(&mut model, &batches)?;
    if pseudo {
        r.pseudo_perplexity = Some(pseudo_perplexity(&mut model, &batches, val.mask_token_id(), &[], 64)?);
    }
    Ok(r)
}

fn print(r: &EvalResult, ckpt: &LoadedCheckpoint, json: bool) -> anyhow::Result<()> {
    if json {
        let mut v = serde_json::to_value(r)?;
        v["checkpoint"] = ckpt.dir.display().to_string().into();
        v["step"] = ckpt.state.step.into();
        println!("{}", serde_json::to_string_pretty(&v).context("serializing the result")?);
    } else {
        println!("checkpoint  {} (step {})", ckpt.dir.display(), ckpt.state.step);
        println!("loss        {:.4}", r.loss);
        println!("accuracy    {:.4}", r.accuracy);
        println!("perplexity  {:.3}", r.perplexity);
        if let Some(p) = r.pseudo_perplexity {
            println!("pseudo-ppl  {p:.3}");
        }
        println!("labels      {} in {} rows", r.labels, r.rows);
    }
    Ok(())
}
