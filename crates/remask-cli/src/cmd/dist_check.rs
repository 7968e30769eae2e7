//! `remask dist-check` (hidden): the data-parallel equivalence check. Run it under an MPI launcher,
//! e.g. `mpirun -np 2 remask dist-check`: the group trains a small model and compares with a 1-rank
//! run of the whole batch (rows, masks, parameters, losses, resume). Rank 0 prints the result; every
//! rank exits non-zero on a mismatch.

use remask::dist::check::{run_check, CheckOptions};
use remask::dist::DataParallel;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Optimizer steps.
    #[arg(long, default_value_t = 12)]
    pub steps: u64,
    /// Rows of the global batch.
    #[arg(long, default_value_t = 16)]
    pub batch_size: usize,
    /// Rows of the global micro-batch (accumulation when smaller than --batch-size).
    #[arg(long, default_value_t = 8)]
    pub micro_batch_size: usize,
    /// Checkpoint cadence of the interrupted-and-resumed run.
    #[arg(long, default_value_t = 5)]
    pub checkpoint_every: u64,
    #[arg(long, default_value_t = 11)]
    pub seed: u64,
    /// Gradient elements per all-reduce call.
    #[arg(long, default_value_t = remask::dist::DEFAULT_BUCKET_ELEMS)]
    pub bucket_elems: usize,
}

pub fn run(a: Args) -> anyhow::Result<()> {
    let dp = DataParallel::from_env()?.with_bucket_elems(a.bucket_elems);
    let (root, who) = (dp.is_root(), dp.describe());
    let o = CheckOptions {
        steps: a.steps,
        batch_size: a.batch_size,
        micro_batch_size: a.micro_batch_size,
        checkpoint_every: a.checkpoint_every,
        seed: a.seed,
    };
    let report = run_check(dp, &o)?;
    if root {
        println!("dist-check on {who}");
        for i in &report.items {
            println!("{} {}: {}", if i.passed { "ok  " } else { "FAIL" }, i.name, i.detail);
        }
        println!("dist-check: {} passed, {} failed ({} ranks)", report.passed(), report.failed(), report.ranks);
    }
    anyhow::ensure!(report.failed() == 0, "{} of {} data-parallel checks failed", report.failed(), report.items.len());
    Ok(())
}
