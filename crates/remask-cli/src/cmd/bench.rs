//! `remask bench <what>`: dispatcher for the benchmarks.

use clap::Subcommand;

/// Benchmarks; each prints one JSON object.
#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub what: What,
}

#[derive(Subcommand)]
pub enum What {
    /// The f32 kernels (matmul, layernorm, gelu, softmax, cross-entropy, ...) against their reference twins.
    Kernels(super::bench_kernels::Args),
}

pub fn run(args: Args) -> anyhow::Result<()> {
    match args.what {
        What::Kernels(a) => super::bench_kernels::run(a),
    }
}
