//! `remask dist-check` (hidden): the data-parallel equivalence check. Run it under an MPI launcher,
//! e.g. `mpirun -np 2 remask dist-check`: the group trains a small model and compares with a 1-rank
//! run of the whole batch (rows, masks, parameters, losses, resume). Rank 0 prints the result; every
//! mismatch makes rank 0, and so the job, exit non-zero.

use remask::dist::check::{run_check, CheckModel, CheckOptions};
use remask::dist::DataParallel;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The model to train: a bigram model with exact gradients, or small real Transformers.
    #[arg(long, value_enum, default_value = "bigram")]
    pub model: Model,
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

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Model {
    Bigram,
    Encoder,
    Decoder,
}

pub fn run(a: Args) -> anyhow::Result<()> {
    let dp = DataParallel::from_env()?.with_bucket_elems(a.bucket_elems);
    let (root, who) = (dp.is_root(), dp.describe());
    let o = CheckOptions {
        model: match a.model {
            Model::Bigram => CheckModel::Bigram,
            Model::Encoder => CheckModel::Encoder,
            Model::Decoder => CheckModel::Decoder,
        },
        steps: a.steps,
        batch_size: a.batch_size,
        micro_batch_size: a.micro_batch_size,
        checkpoint_every: a.checkpoint_every,
        seed: a.seed,
    };
    let report = run_check(dp, &o)?;
    if root {
        println!("dist-check ({:?} model) on {who}", a.model);
        for i in &report.items {
            println!(
                "{} {}: {}",
                if i.passed { "ok  " } else { "FAIL" },
                i.name,
                i.detail
            );
        }
        println!(
            "dist-check: {} passed, {} failed ({} ranks)",
            report.passed(),
            report.failed(),
            report.ranks
        );
    }
    // The report is the same on every rank; only rank 0 fails the job, so that mpirun does not abort
    // it before rank 0's lines are out.
    anyhow::ensure!(
        !root || report.failed() == 0,
        "{} of {} data-parallel checks failed",
        report.failed(),
        report.items.len()
    );
    Ok(())
}
