//! `remask eval`: evaluate a checkpoint on fixed validation batches, or score minimal pairs.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use remask::eval::{evaluate, pseudo_perplexity, EvalResult};
use remask::train::LoadedCheckpoint;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// A checkpoint directory (`RUN/checkpoints/step-000100`) or a run directory (its newest
    /// checkpoint that verifies is used); with --minimal-pairs also a Hugging Face model directory.
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
    /// Score BLiMP-style minimal pairs instead (JSONL with sentence_good, sentence_bad, optional UID; a
    /// directory means its *.jsonl files; `builtin:blimp-sample` is the embedded sample): accuracy
    /// overall and per UID. Encoders use pseudo-log-likelihood, decoders the summed log-probability;
    /// works on remask checkpoints and Hugging Face model directories.
    #[arg(long, value_name = "FILE|DIR")]
    pub minimal_pairs: Option<PathBuf>,
    /// With --minimal-pairs: write every pair's two scores as JSON lines to FILE.
    #[arg(long, value_name = "FILE", requires = "minimal_pairs")]
    pub scores: Option<PathBuf>,
    /// With --minimal-pairs: the tokenizer.json to use instead of the one found next to the model.
    #[arg(long, value_name = "FILE", requires = "minimal_pairs")]
    pub tokenizer: Option<PathBuf>,
    /// With --minimal-pairs: scoring rows per forward pass (single-mask copies for PLL).
    #[arg(long, default_value_t = 256, requires = "minimal_pairs")]
    pub rows_per_pass: usize,
    /// Test scaffolding (feature `testing` only): checkpoints of `train --toy / --synthetic`.
    #[cfg(feature = "testing")]
    #[command(flatten)]
    pub testing: crate::testing::EvalArgs,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    if let Some(pairs) = &args.minimal_pairs {
        return run_minimal_pairs(&args, pairs);
    }
    let resolved = remask::infer::model_dir::open(&args.model)?;
    super::warn_skipped(resolved.skipped());
    let (ckpt, run_dir) = resolved.into_checkpoint("`remask eval`")?;
    #[cfg(feature = "testing")]
    if let Some(r) = crate::testing::eval(&args.testing, &ckpt, args.pseudo_perplexity)? {
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
                anyhow::bail!(
                    "pseudo-perplexity is defined for MLM encoders; this checkpoint is a {:?}",
                    cfg.model.arch
                );
            }
            let s = val.specials();
            r.pseudo_perplexity =
                Some(pseudo_perplexity(&mut model, &batches, s.mask, &s.all, 64)?);
        }
        r
    };
    print(&result, &ckpt, args.json)
}

/// `remask eval --minimal-pairs`: loads the model (remask checkpoint, run directory or Hugging Face
/// directory) with its tokenizer and scores every pair.
fn run_minimal_pairs(args: &Args, pairs_path: &std::path::Path) -> anyhow::Result<()> {
    use remask::eval::minimal_pairs::read_pairs;
    use remask::infer::{load, score_minimal_pairs, scoring_for};
    if args.pseudo_perplexity || args.data.is_some() {
        anyhow::bail!(
            "--minimal-pairs scores sentence pairs; it does not take --pseudo-perplexity or --data"
        );
    }
    let pairs = read_pairs(pairs_path)?;
    let mut loaded = load(&args.model, args.tokenizer.as_deref())?;
    super::warn_skipped(&loaded.skipped);
    let scoring = scoring_for(
        loaded.model.config(),
        &loaded.specials,
        &loaded.missing_head,
    )
    .with_context(|| format!("scoring minimal pairs with {}", loaded.dir.display()))?;
    let tok = loaded.tokenizer()?.clone();
    let r = score_minimal_pairs(
        loaded.model.as_train_mut(),
        &tok,
        &loaded.specials,
        scoring,
        &pairs,
        args.rows_per_pass,
    )?;
    if let Some(path) = &args.scores {
        let mut text = String::new();
        for p in &r.scores {
            text += &serde_json::to_string(p)?;
            text.push('\n');
        }
        std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    let text = if args.json {
        let mut v = serde_json::to_value(&r)?;
        v["scoring"] = scoring.name().into();
        v["model"] = loaded.dir.display().to_string().into();
        v["input"] = pairs_path.display().to_string().into();
        serde_json::to_string_pretty(&v)?
    } else {
        let mut t = format!(
            "model     {}\nscoring   {}\naccuracy  {:.4} ({} of {} pairs; chance 0.5, a tie counts as wrong)\n",
            loaded.dir.display(),
            scoring.name(),
            r.accuracy,
            r.scores.iter().filter(|p| p.correct).count(),
            r.pairs
        );
        if r.by_uid.len() > 1 {
            let w = r.by_uid.keys().map(String::len).max().unwrap_or(0);
            for (uid, u) in &r.by_uid {
                t += &format!("  {uid:<w$}  {:.4}  ({} pairs)\n", u.accuracy, u.pairs);
            }
        }
        t.trim_end().to_string()
    };
    match writeln!(std::io::stdout().lock(), "{text}") {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other.context("writing to stdout"),
    }
}

fn print(r: &EvalResult, ckpt: &LoadedCheckpoint, json: bool) -> anyhow::Result<()> {
    let text = if json {
        let mut v = serde_json::to_value(r)?;
        v["checkpoint"] = ckpt.dir.display().to_string().into();
        v["step"] = ckpt.state.step.into();
        serde_json::to_string_pretty(&v).context("serializing the result")?
    } else {
        let mut t = format!(
            "checkpoint  {} (step {})\n",
            ckpt.dir.display(),
            ckpt.state.step
        );
        t += &format!(
            "loss        {:.4}\naccuracy    {:.4}\nperplexity  {:.3}\n",
            r.loss, r.accuracy, r.perplexity
        );
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
