//! `remask bench attention`: fused vs dense masked attention, printed as JSON.

use anyhow::Context;
use remask::attention::bench::{run_attention_bench, AttentionBenchConfig, BenchMask};

#[derive(clap::Args)]
pub struct Args {
    /// padding | causal | document | sliding | prefix
    #[arg(long, default_value = "causal")]
    pub mask: String,
    /// T: sequence length.
    #[arg(long, default_value_t = 1024)]
    pub seq: usize,
    /// B: batch rows.
    #[arg(long, default_value_t = 4)]
    pub batch: usize,
    /// H: heads.
    #[arg(long, default_value_t = 4)]
    pub heads: usize,
    /// D: head dimension.
    #[arg(long, default_value_t = 64)]
    pub head_dim: usize,
    /// Sliding-window width (keys).
    #[arg(long, default_value_t = 128)]
    pub window: usize,
    /// Documents per row (document mask).
    #[arg(long, default_value_t = 4)]
    pub docs: usize,
    /// Random document lengths (random cut points) instead of equal ones.
    #[arg(long)]
    pub random_docs: bool,
    /// Causal inside documents / one-sided sliding window.
    #[arg(long)]
    pub causal: bool,
    /// Worker threads (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// BlockMask tile edge.
    #[arg(long, default_value_t = remask::attention::DEFAULT_TILE)]
    pub tile: usize,
    /// Timed rounds after one warm-up round; each round calls fused and dense forward and backward in
    /// turn, and the fastest call of each is reported.
    #[arg(long, default_value_t = 5)]
    pub iters: usize,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Number format of the products, fused and dense alike: fp32, or bf16 (needs AVX-512 BF16).
    #[arg(long, default_value = "fp32")]
    pub precision: remask::model::Precision,
    /// bf16 kernel: `auto` (AMX where the CPU has it) or `avx512`. Benchmarks only.
    #[arg(long, value_enum, default_value = "auto")]
    pub bf16_kernel: crate::common::Bf16KernelArg,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let mask: BenchMask = args.mask.parse()?;
    let cfg = AttentionBenchConfig {
        mask,
        seq: args.seq,
        batch: args.batch,
        heads: args.heads,
        head_dim: args.head_dim,
        window: args.window,
        docs: args.docs,
        random_docs: args.random_docs,
        causal: args.causal,
        tile: args.tile,
        iters: args.iters,
        seed: args.seed,
        precision: args.precision,
    };
    if args.bf16_kernel == crate::common::Bf16KernelArg::Avx512 {
        remask_kernels::cpu::limit_bf16_kernel(remask_kernels::cpu::Bf16Kernel::Avx512);
    }
    let mut pool = rayon::ThreadPoolBuilder::new();
    if let Some(t) = args.threads {
        anyhow::ensure!(t > 0, "--threads must be at least 1");
        pool = pool.num_threads(t);
    }
    let pool = pool.build().context("starting the thread pool")?;
    let report = pool.install(|| run_attention_bench(&cfg))?;
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}
