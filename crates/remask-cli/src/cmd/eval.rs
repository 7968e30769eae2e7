//! `remask eval`: evaluate a checkpoint on fixed validation batches.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use remask::eval::{evaluate, pseudo_perplexity, EvalResult};
use remask::train::LoadedCheckpoint;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// A checkpoint directory (`RUN/checkpoints/step-000100`) or a run directory (its newest
    /// checkpoint that verifies is used).
    #[arg(long = "model", visible_alias = "checkpoint", value_name = "DIR")]
    pub model: PathBuf,
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
    /// Test scaffolding (feature `testing` only): checkpoints of `train --toy / --synthetic`.
    #[cfg(feature = "testing")]
    #[command(flatten)]
    pub testing: super::testing::EvalArgs,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let resolved = remask::infer::model_dir::open(&args.model)?;
    super::warn_skipped(resolved.skipped());
    let (ckpt, run_dir) = resolved.into_checkpoint("`remask eval`")?;
    #[cfg(feature = "testing")]
    if let Some(r) = super::testing::eval(&args.testing, &ckpt, args.pseudo_perplexity)? {
        return print(&r, &ckpt, args.json);
    }
    let result = {
        let cfg = &ckpt.run_config;
        let data_dir = match (&args.data, &cfg.data.dir) {
            (Some(d), _) => d.clone(),
            (None, Some(d)) => d.clone(),
            (None, None) => remask::train::run_data::default_data_dir(&run_dir),
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
