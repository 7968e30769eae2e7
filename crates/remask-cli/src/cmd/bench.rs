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
    /// Fused block-sparse attention (forward + backward) against dense masked attention.
    Attention(super::bench_attention::Args),
    /// MLM masking strategies: tokens/s of building the masks of a batch.
    Masking(super::bench_masking::Args),
    /// One training step (forward + backward + AdamW) of the reference model.
    Train(super::bench_train::Args),
    /// The f32 kernels (matmul, layernorm, gelu, softmax, cross-entropy, ...) against their reference twins.
    Kernels(super::bench_kernels::Args),
}

pub fn run(args: Args) -> anyhow::Result<()> {
    match args.what {
        What::Attention(a) => super::bench_attention::run(a),
        What::Masking(a) => super::bench_masking::run(a),
        What::Train(a) => super::bench_train::run(a),
        What::Kernels(a) => super::bench_kernels::run(a),
    }
}
