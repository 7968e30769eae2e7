//! `remask compare`: the static-vs-dynamic masking experiment (the main job).

use std::path::PathBuf;

use anyhow::Context;
use remask::experiment::{run_compare, CompareConfig, CompareOptions};
use remask::train::{self, ProgressMode};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Comparison config (TOML: [compare], [data], [model], [optimizer], [schedule], [budget],
    /// [strategies.NAME]); without it the embedded default experiment runs.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Strategies to compare, comma-separated: static, dynamic, wwm, span, schedule, adaptive, or a
    /// [strategies.NAME] of the config. The first is the baseline.
    #[arg(long, value_delimiter = ',')]
    pub strategies: Option<Vec<String>>,
    /// Seeds per strategy.
    #[arg(long)]
    pub seeds: Option<u64>,
    /// Output directory (data, runs, report). Default `runs/compare`, or the next free
    /// `runs/compare-N` when an earlier comparison is there.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Training steps per run (the equal budget), overriding [budget].
    #[arg(long)]
    pub steps: Option<u64>,
    /// Replace an earlier comparison in the output directory.
    #[arg(long, conflicts_with = "resume")]
    pub force: bool,
    /// Continue the interrupted comparison in OUT with the config stored there: finished (strategy,
    /// seed) runs are kept, a partial one continues from its last checkpoint, the report is rendered
    /// again.
    #[arg(long, value_name = "OUT", conflicts_with_all = ["config", "strategies", "seeds", "out", "steps"])]
    pub resume: Option<PathBuf>,
    /// Plain log lines instead of progress bars.
    #[arg(long)]
    pub log_lines: bool,
    /// The leaderboard: every built-in strategy against `dynamic` (listed first), equal budgets,
    /// paired seeds; the report ranks them by the tokens they need to reach `dynamic`'s final
    /// validation loss. Output `runs/leaderboard` unless --out is given.
    #[arg(long, conflicts_with_all = ["strategies", "resume"])]
    pub leaderboard: bool,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    if let Some(out) = &args.resume {
        let marker = out.join("compare.json");
        let text = std::fs::read_to_string(&marker)
            .with_context(|| format!("--resume {}: no comparison there (reading {})", out.display(), marker.display()))?;
        let mut cfg: CompareConfig =
            serde_json::from_str(&text).with_context(|| format!("{}: not a comparison config this remask can read", marker.display()))?;
        cfg.compare.output_dir = out.clone();
        return execute(cfg, args.log_lines, false, true);
    }
    let mut cfg = match &args.config {
        Some(p) => {
            let text = std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
            CompareConfig::from_toml_str(&text).with_context(|| format!("in {}", p.display()))?
        }
        None => CompareConfig::default(),
    };
    if let Some(s) = args.strategies {
        cfg.compare.strategies = s;
    }
    if args.leaderboard {
        let mut all = vec!["dynamic".to_string()];
        all.extend(remask::experiment::BUILTIN_STRATEGIES.iter().filter(|s| **s != "dynamic").map(|s| s.to_string()));
        cfg.compare.strategies = all;
    }
    if let Some(n) = args.seeds {
        cfg.compare.seeds = n;
    }
    let explicit_out = args.out.is_some() || cfg.compare.output_dir != CompareConfig::default().compare.output_dir;
    if args.leaderboard && !explicit_out {
        cfg.compare.output_dir = PathBuf::from("runs/leaderboard");
    }
    if let Some(o) = args.out {
        cfg.compare.output_dir = o;
    }
    if !explicit_out && !args.force {
        // The default directory already holds an earlier comparison: keep it and use the next free
        // `runs/compare-N`, so the README's main command can be run again without losing results.
        let base = cfg.compare.output_dir.clone();
        let mut n = 1;
        while cfg.compare.output_dir.join("compare.json").exists() {
            n += 1;
            cfg.compare.output_dir = PathBuf::from(format!("{}-{n}", base.display()));
        }
        if n > 1 {
            eprintln!("{} holds an earlier comparison; writing to {}", base.display(), cfg.compare.output_dir.display());
        }
    }
    if let Some(s) = args.steps {
        cfg.budget = remask::train::config::BudgetConfig { steps: Some(s), ..Default::default() };
    }
    execute(cfg, args.log_lines, args.force, false)
}

/// Runs (or, with `resume`, continues) the comparison `cfg` and prints where its outputs are.
fn execute(cfg: CompareConfig, log_lines: bool, force: bool, resume: bool) -> anyhow::Result<()> {
    cfg.validate()?;
    train::init_threads(cfg.compare.threads)?;
    // One process per output directory: a second is refused at once, naming the first.
    let _lock = remask::dir_lock::DirLock::acquire(&cfg.compare.output_dir, "remask compare")?;
    let stop = super::signals::install()?;
    let opts = CompareOptions {
        progress: if log_lines { ProgressMode::Lines } else { ProgressMode::Auto },
        stop,
        force,
        resume,
    };
    let outcome = run_compare(&cfg, &opts)?;
    println!();
    for v in &outcome.report.verdicts {
        println!("{}: {}", v.claim, v.finding);
    }
    println!();
    for f in &outcome.files {
        println!("wrote {}", outcome.output_dir.join(f).display());
    }
    Ok(())
}
