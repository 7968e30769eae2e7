//! `remask compare`: the masking-strategy experiment (the main job): static vs dynamic MLM masking
//! across data repetition, and (`--task clm`) what leaking across packed documents costs.

use std::path::PathBuf;

use anyhow::Context;
use remask::experiment::{run_compare_on, CompareConfig, CompareOptions, CompareTask, PRESETS};
use remask::train::{self, ProgressMode};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The leaderboard (`--preset leaderboard`): every built-in strategy against `dynamic`, equal
    /// budgets, paired seeds, one regime over the whole corpus; the report ranks them by the tokens
    /// they need to reach `dynamic`'s final validation loss (README, "The leaderboard").
    #[arg(long, conflicts_with_all = ["preset", "strategies", "regimes"])]
    pub leaderboard: bool,
    /// Comparison config (TOML: [compare], [data], [model], [optimizer], [schedule], [budget],
    /// [strategies.NAME]); without it a preset runs.
    #[arg(long, value_name = "FILE", conflicts_with = "preset")]
    pub config: Option<PathBuf>,
    /// A built-in experiment: `default` (the regime map, about 10 minutes on 2 cores), `thorough`
    /// (models that learn from context, more seeds; up to an hour), `clm` (plain causal vs
    /// document-causal decoders on packed rows).
    #[arg(long, value_name = "NAME")]
    pub preset: Option<String>,
    /// `mlm` (masking strategies) or `clm` (the leakage experiment; without --config or --preset it
    /// selects the `clm` preset).
    #[arg(long, value_name = "TASK")]
    pub task: Option<String>,
    /// Strategies to compare, comma-separated. MLM: static, dynamic, wwm, span, schedule, adaptive,
    /// pmi, adaptive-decay, adaptive-token-id, or a [strategies.NAME] of the config; CLM: causal,
    /// document.
    #[arg(long, value_delimiter = ',')]
    pub strategies: Option<Vec<String>>,
    /// The strategy every other one is compared against (default: dynamic for MLM, document for CLM).
    #[arg(long)]
    pub baseline: Option<String>,
    /// Seeds per strategy.
    #[arg(long)]
    pub seeds: Option<u64>,
    /// Data-repetition regimes, comma-separated epochs (e.g. 1,4,16,64); `0` for one regime over the
    /// whole corpus.
    #[arg(long, value_delimiter = ',')]
    pub regimes: Option<Vec<u32>>,
    /// Minimal pairs to score every model on (BLiMP JSONL file or directory, or builtin:blimp-sample);
    /// `none` to skip.
    #[arg(long, value_name = "FILE|DIR")]
    pub minimal_pairs: Option<PathBuf>,
    /// Output directory (data, runs, report). Default `runs/compare`, or the next free
    /// `runs/compare-N` when an earlier comparison is there.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Training steps per run (the equal budget), overriding [budget].
    #[arg(long)]
    pub steps: Option<u64>,
    /// Runs trained at once, each with threads / jobs worker threads, overriding [compare] jobs (a
    /// run's figures depend only on its own thread count).
    #[arg(long)]
    pub jobs: Option<usize>,
    /// Replace an earlier comparison in the output directory.
    #[arg(long, conflicts_with = "resume")]
    pub force: bool,
    /// Continue the interrupted comparison in OUT with the config stored there: finished (strategy,
    /// seed, regime) runs are kept, a partial one continues from its last checkpoint, the report is
    /// rendered again.
    #[arg(long, value_name = "OUT", conflicts_with_all = ["config", "preset", "task", "strategies", "baseline", "seeds", "regimes", "minimal_pairs", "out", "steps", "jobs"])]
    pub resume: Option<PathBuf>,
    /// Plain log lines instead of progress bars.
    #[arg(long)]
    pub log_lines: bool,
    /// Number format of the matrix products (fp32, or bf16 on a CPU with AVX-512 BF16), overriding
    /// [model] precision.
    #[arg(long, value_name = "fp32|bf16")]
    pub precision: Option<remask::model::Precision>,
    /// Rebuild the report (report.md, report.json, plots) of the finished comparison in DIR from its
    /// report.json, without training (e.g. after upgrading remask).
    #[arg(long, value_name = "DIR", conflicts_with_all = ["config", "preset", "task", "strategies", "baseline", "seeds", "regimes", "minimal_pairs", "out", "steps", "jobs", "force", "resume", "precision"])]
    pub rerender: Option<PathBuf>,
}

/// The config the arguments describe: a file or a preset, then the flags on top.
fn config_of(args: &Args) -> anyhow::Result<CompareConfig> {
    let task = match args.task.as_deref() {
        None => None,
        Some("mlm") => Some(CompareTask::Mlm),
        Some("clm") => Some(CompareTask::Clm),
        Some(other) => anyhow::bail!("--task {other}: use mlm or clm"),
    };
    let preset = if args.leaderboard && args.config.is_none() {
        Some("leaderboard".to_string())
    } else {
        args.preset.clone()
    };
    let mut cfg = match (&args.config, &preset) {
        (Some(p), _) => {
            let text =
                std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
            CompareConfig::from_toml_str(&text).with_context(|| format!("in {}", p.display()))?
        }
        (None, Some(name)) => CompareConfig::preset(name)
            .with_context(|| format!("--preset: presets are {}", PRESETS.join(", ")))?,
        (None, None) if task == Some(CompareTask::Clm) => CompareConfig::preset("clm")?,
        (None, None) => CompareConfig::default(),
    };
    if let Some(t) = task {
        if t != cfg.compare.task {
            anyhow::bail!("--task {} does not match the config's compare.task ({:?}); use --preset clm or a config with task = \"clm\"", args.task.as_deref().unwrap_or_default(), cfg.compare.task);
        }
    }
    if let Some(s) = &args.strategies {
        cfg.compare.strategies = s.clone();
    }
    if args.leaderboard {
        // With a config: its model, data and budget, the leaderboard's strategies and one regime.
        let board = CompareConfig::preset("leaderboard")?;
        cfg.compare.strategies = board.compare.strategies;
        cfg.compare.regimes = Vec::new();
    }
    if let Some(b) = &args.baseline {
        cfg.compare.baseline = Some(b.clone());
    }
    if let Some(n) = args.seeds {
        cfg.compare.seeds = n;
    }
    if let Some(j) = args.jobs {
        cfg.compare.jobs = j;
    }
    if let Some(r) = &args.regimes {
        cfg.compare.regimes = if r == &[0] { Vec::new() } else { r.clone() };
    }
    if let Some(p) = &args.minimal_pairs {
        cfg.compare.minimal_pairs = if p.as_os_str() == "none" {
            PathBuf::new()
        } else {
            p.clone()
        };
    }
    if let Some(s) = args.steps {
        cfg.budget = remask::train::config::BudgetConfig {
            steps: Some(s),
            ..Default::default()
        };
    }
    if let Some(p) = args.precision {
        cfg.model.precision = p;
    }
    cfg.model.precision.check_supported()?;
    Ok(cfg)
}

pub fn run(args: Args) -> anyhow::Result<()> {
    if let Some(dir) = &args.rerender {
        if !dir.join("report.json").is_file() {
            anyhow::bail!(
                "--rerender {}: no finished comparison there (no report.json)",
                dir.display()
            );
        }
        // The report files are rewritten: not while a comparison runs in that directory.
        let _lock = remask::dir_lock::DirLock::acquire(dir, "remask compare --rerender")?;
        let outcome = remask::experiment::rerender(dir)?;
        return print_outcome(&outcome);
    }
    if let Some(out) = &args.resume {
        let marker = out.join("compare.json");
        let text = std::fs::read_to_string(&marker).with_context(|| {
            format!(
                "--resume {}: no comparison there (reading {})",
                out.display(),
                marker.display()
            )
        })?;
        let mut cfg: CompareConfig = serde_json::from_str(&text).with_context(|| {
            format!(
                "{}: not a comparison config this remask can read",
                marker.display()
            )
        })?;
        cfg.compare.output_dir = out.clone();
        return execute(cfg, args.log_lines, false, true);
    }
    let mut cfg = config_of(&args)?;
    let preset_dir = cfg.compare.output_dir.clone();
    let explicit_out = args.out.is_some()
        || (args.config.is_some() && preset_dir != CompareConfig::default().compare.output_dir);
    if let Some(o) = &args.out {
        cfg.compare.output_dir = o.clone();
    }
    if !explicit_out && !args.force {
        // The default directory already holds an earlier comparison: keep it and use the next free
        // `runs/compare-N`, so the README's commands can be run again without losing results.
        let base = cfg.compare.output_dir.clone();
        let mut n = 1;
        while cfg.compare.output_dir.join("compare.json").exists() {
            n += 1;
            cfg.compare.output_dir = PathBuf::from(format!("{}-{n}", base.display()));
        }
        if n > 1 {
            eprintln!(
                "{} holds an earlier comparison; writing to {}",
                base.display(),
                cfg.compare.output_dir.display()
            );
        }
    }
    execute(cfg, args.log_lines, args.force, false)
}

/// Runs (or, with `resume`, continues) the comparison `cfg` and prints where its outputs are.
fn execute(cfg: CompareConfig, log_lines: bool, force: bool, resume: bool) -> anyhow::Result<()> {
    cfg.validate()?;
    train::init_threads(cfg.compare.threads)?;
    // Under `mpirun -np N` (feature `mpi`) the ranks share the runs; rank 0 writes the report.
    let mut ranks = remask::dist::DataParallel::from_env()?;
    // One comparison per output directory: a second is refused at once, naming the first (under
    // mpirun rank 0 holds the lock for all ranks).
    let _lock = match ranks.is_root() {
        true => Some(remask::dir_lock::DirLock::acquire(
            &cfg.compare.output_dir,
            "remask compare",
        )?),
        false => None,
    };
    let stop = crate::signals::install()?;
    let opts = CompareOptions {
        progress: if log_lines {
            ProgressMode::Lines
        } else {
            ProgressMode::Auto
        },
        stop,
        force,
        resume,
    };
    match run_compare_on(&cfg, &opts, &mut ranks)? {
        Some(outcome) => print_outcome(&outcome),
        None => Ok(()),
    }
}

fn print_outcome(outcome: &remask::experiment::CompareOutcome) -> anyhow::Result<()> {
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
