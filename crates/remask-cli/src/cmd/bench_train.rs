//! `remask bench train`: one training step (zero grads + forward/backward + AdamW on every tensor)
//! of the reference config R, timed; prints one JSON line comparable to
//! `shared/bench/torch_reference.py` (same synthetic batch recipe, same model-FLOP formula).

use std::time::Instant;

use anyhow::{bail, Context};
use clap::ValueEnum;
use remask::attention::AttentionMaskSpec;
use remask::model::{new_model, Arch, ModelConfig, Precision};
use remask::Batch;

use crate::common::Bf16KernelArg;
use remask_kernels::adamw::{adamw_update, AdamW};
use remask_kernels::rng::{key, KeyedRng, Purpose};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Task {
    /// Encoder (BERT-style) with the MLM head on the masked positions only.
    Mlm,
    /// Decoder (GPT-2-style) with next-token loss on every real position.
    Clm,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum MaskKind {
    /// Random lengths in [min-len, seq]; key padding mask (causal too for clm).
    Padding,
    /// Full rows, causal mask.
    Causal,
    /// Full rows of four packed documents, attention inside each document (causal too for clm).
    Document,
}

/// Benchmark of one training step.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[arg(long, value_enum, default_value = "mlm")]
    pub task: Task,
    #[arg(long, value_enum, default_value = "padding")]
    pub mask: MaskKind,
    #[arg(long, default_value_t = 8192)]
    pub vocab: usize,
    #[arg(long, default_value_t = 256)]
    pub d_model: usize,
    #[arg(long, default_value_t = 4)]
    pub heads: usize,
    #[arg(long, default_value_t = 4)]
    pub layers: usize,
    #[arg(long, default_value_t = 1024)]
    pub ffn: usize,
    #[arg(long, default_value_t = 128)]
    pub seq: usize,
    #[arg(long, default_value_t = 16)]
    pub batch: usize,
    /// Shortest row with `--mask padding` (default seq/2).
    #[arg(long)]
    pub min_len: Option<usize>,
    /// Fraction of real tokens that carry an MLM label.
    #[arg(long, default_value_t = 0.15)]
    pub mask_rate: f64,
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
    #[arg(long, default_value_t = 20)]
    pub steps: usize,
    #[arg(long, default_value_t = 5)]
    pub warmup: usize,
    /// Dropout probability (0 = off, as in the torch reference).
    #[arg(long, default_value_t = 0.0)]
    pub dropout: f32,
    /// Number format of the matrix products: fp32, or bf16 (bf16 operands, f32 accumulation; needs
    /// AVX-512 BF16).
    #[arg(long, default_value = "fp32")]
    pub precision: Precision,
    /// bf16 kernel: `auto` (AMX where the CPU has it) or `avx512` (what a CPU with AVX-512 BF16 but
    /// no AMX runs). Benchmarks only.
    #[arg(long, value_enum, default_value = "auto")]
    pub bf16_kernel: Bf16KernelArg,
    /// Take every step's batch from this prepared directory (training split, dynamic token masking,
    /// consecutive global sample indices) instead of the fixed synthetic batch: the step time then
    /// includes building the batch. Reports the time to open the split and to build a batch; the
    /// vocabulary and `--seq` come from the directory.
    #[arg(long)]
    pub data: Option<std::path::PathBuf>,
}

/// The synthetic batch, following torch_reference.py: tokens in [5, V), padding id 0, [MASK] = 4.
fn make_batch(a: &Args) -> anyhow::Result<Batch> {
    let (b, t, v) = (a.batch, a.seq, a.vocab as u64);
    if v <= 5 {
        bail!("--vocab must be larger than 5");
    }
    let min_len = a.min_len.unwrap_or(t / 2).clamp(1, t);
    let mut rng = KeyedRng::new(0, Purpose::Other, 0, 0);
    let mut bt = Batch::new(b, t);
    for r in 0..b {
        let len = if a.mask == MaskKind::Padding {
            min_len + rng.below((t - min_len + 1) as u64) as usize
        } else {
            t
        };
        bt.lengths[r] = len as u32;
        let tokens: Vec<u32> = (0..t).map(|_| 5 + rng.below(v - 5) as u32).collect();
        for p in 0..len {
            let i = r * t + p;
            let (doc, pos) = if a.mask == MaskKind::Document {
                (p * 4 / t, p - (p * 4 / t) * t / 4)
            } else {
                (0, p)
            };
            bt.doc_ids[i] = doc as u32;
            bt.positions[i] = pos as u32;
            bt.input_ids[i] = tokens[p];
            match a.task {
                Task::Mlm => {
                    if rng.next_f64() < a.mask_rate {
                        bt.labels[i] = tokens[p] as i32;
                        bt.input_ids[i] = 4;
                    }
                }
                Task::Clm => {
                    if p + 1 < len {
                        bt.labels[i] = tokens[p + 1] as i32;
                    }
                }
            }
        }
        for p in len..t {
            bt.positions[r * t + p] = p as u32;
        }
    }
    Ok(bt)
}

/// CPU time (user + system, all threads) of this process in ms, from /proc/self/stat (10 ms ticks).
/// Less sensitive than wall time to other processes competing for the cores.
fn cpu_ms() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/self/stat").ok()?;
    let after = &s[s.rfind(')')? + 2..];
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    Some(ticks * 10.0)
}

fn peak_rss_mb() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024)
}

pub fn run(a: Args) -> anyhow::Result<()> {
    if a.steps == 0 {
        bail!("--steps must be at least 1");
    }
    rayon::ThreadPoolBuilder::new()
        .num_threads(a.threads)
        .build_global()
        .context("setting up the thread pool")?;
    if a.bf16_kernel == Bf16KernelArg::Avx512 {
        remask_kernels::cpu::limit_bf16_kernel(remask_kernels::cpu::Bf16Kernel::Avx512);
    }
    let causal = a.task == Task::Clm;
    let attention = match a.mask {
        MaskKind::Padding if !causal => AttentionMaskSpec::Padding,
        MaskKind::Padding | MaskKind::Causal => AttentionMaskSpec::Causal,
        MaskKind::Document => AttentionMaskSpec::Document { causal },
    };
    let base = if causal {
        ModelConfig::gpt2_like()
    } else {
        ModelConfig::bert_like()
    };
    // A prepared directory: its training split, opened (and timed) before the model is built.
    let opened = Instant::now();
    let mut loader = match &a.data {
        Some(dir) => {
            let task = if causal {
                remask::data::Task::Clm
            } else {
                remask::data::Task::Mlm
            };
            let masking = remask::masking::MaskingConfig::default();
            Some(remask::data::Loader::open(
                dir,
                remask::data::Split::Train,
                task,
                &masking,
            )?)
        }
        None => None,
    };
    let open_s = opened.elapsed().as_secs_f64();
    let a = match &loader {
        Some(l) => Args {
            vocab: l.vocab_size() as usize,
            seq: l.seq_len(),
            data: a.data.clone(),
            ..a
        },
        None => a,
    };
    let config = ModelConfig {
        vocab_size: a.vocab,
        d_model: a.d_model,
        n_heads: a.heads,
        n_layers: a.layers,
        d_ff: a.ffn,
        max_positions: a.seq,
        dropout: a.dropout,
        attention,
        precision: a.precision,
        ..base
    };
    let batch = make_batch(&a)?;
    let mut model = new_model(config, 0).context("--precision")?;
    // Under `mpirun -np N` (feature `mpi`) each rank takes its share of the batch and the gradients
    // are all-reduced every step; the figures are for the whole (global) batch.
    let mut dp = remask::dist::DataParallel::from_env()?;
    dp.check_rows(a.batch, "--batch")?;
    let batch = remask::dist::slice_rows(
        &batch,
        remask::dist::shard_range(a.batch, dp.rank(), dp.size()),
    );
    // The label count of the first batch scales every step's loss (a prepared directory's batches
    // vary a little around it).
    let n_labels = dp.global_labels(batch.num_labels())?;
    let scale = 1.0 / n_labels.max(1) as f32;
    let tensors = model.tensors().to_vec();
    let n_params = model.params().len();
    let (mut m, mut v) = (vec![0.0f32; n_params], vec![0.0f32; n_params]);
    let hp = AdamW {
        lr: 1e-4,
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        weight_decay: 0.01,
    };
    let hp0 = AdamW {
        weight_decay: 0.0,
        ..hp
    };
    let mut times = Vec::with_capacity(a.steps);
    let mut comm_times = Vec::with_capacity(a.steps);
    let mut wait_times = Vec::with_capacity(a.steps);
    let mut last_loss = 0.0;
    let mut cpu_start = None;
    let mut batch_times = Vec::with_capacity(a.steps);
    for step in 0..a.warmup + a.steps {
        if step == a.warmup {
            cpu_start = cpu_ms();
        }
        let t0 = Instant::now();
        let loaded;
        let batch = match &mut loader {
            Some(l) => {
                use remask::BatchSource;
                let full = l.batch((step * a.batch) as u64, a.batch, 0.0)?;
                loaded = remask::dist::slice_rows(
                    &full,
                    remask::dist::shard_range(a.batch, dp.rank(), dp.size()),
                );
                if step >= a.warmup {
                    batch_times.push(t0.elapsed().as_secs_f64() * 1e3);
                }
                &loaded
            }
            None => &batch,
        };
        remask::model::buffers::zero(model.grads_mut());
        let stats = remask::train::on_pool(|| {
            model.forward_backward(&batch, scale, key(0, Purpose::Dropout, 0, step as u64))
        })?;
        // The barrier separates waiting for the slowest rank from the all-reduce's own cost.
        dp.take_comm_time();
        dp.barrier()?;
        let wait = dp.take_comm_time().as_secs_f64() * 1e3;
        dp.reduce_grads(model.grads_mut())?;
        let comm = dp.take_comm_time().as_secs_f64() * 1e3;
        let (stats, _) = dp.reduce_stats(stats, 0)?;
        let (params, grads) = model.params_and_grads();
        remask::train::on_pool(|| {
            for t in &tensors {
                let r = t.offset..t.offset + t.numel();
                let hp = if t.weight_decay { &hp } else { &hp0 };
                adamw_update(
                    &mut params[r.clone()],
                    &grads[r.clone()],
                    &mut m[r.clone()],
                    &mut v[r],
                    hp,
                    step as u64 + 1,
                );
            }
        });
        last_loss = stats.mean_loss();
        if step >= a.warmup {
            times.push(t0.elapsed().as_secs_f64() * 1e3);
            comm_times.push(comm);
            wait_times.push(wait);
        }
    }
    let cpu_per_step = match (cpu_start, cpu_ms()) {
        (Some(a0), Some(a1)) => Some(((a1 - a0) / a.steps as f64 * 10.0).round() / 10.0),
        _ => None,
    };
    times.sort_by(f64::total_cmp);
    let med = times[times.len() / 2];
    comm_times.sort_by(f64::total_cmp);
    let comm_med = comm_times[comm_times.len() / 2];
    wait_times.sort_by(f64::total_cmp);
    let wait_med = wait_times[wait_times.len() / 2];
    if !dp.is_root() {
        return Ok(());
    }
    let (bsz, t, c, l, ff, vocab) = (
        a.batch as f64,
        a.seq as f64,
        a.d_model as f64,
        a.layers as f64,
        a.ffn as f64,
        a.vocab as f64,
    );
    let body = 6.0 * l * (4.0 * c * c + 2.0 * c * ff) * bsz * t;
    let head = 6.0 * c * vocab * n_labels as f64;
    let attn = 3.0 * 4.0 * bsz * t * t * c * l;
    let flops = body + head + attn;
    let round2 = |x: f64| (x * 100.0).round() / 100.0;
    let out = serde_json::json!({
        "impl": "remask",
        "task": format!("{:?}", a.task).to_lowercase(),
        "head": "gathered",
        "mask": format!("{:?}", a.mask).to_lowercase(),
        "threads": a.threads,
        "ranks": dp.size(),
        "allreduce_median_ms": round2(comm_med),
        "allreduce_share": (comm_med / med * 1000.0).round() / 1000.0,
        "rank_wait_median_ms": round2(wait_med),
        "params": n_params,
        "tokens_per_step": a.batch * a.seq,
        "labeled_positions": n_labels,
        "median_ms": round2(med),
        "min_ms": round2(times[0]),
        "max_ms": round2(times[times.len() - 1]),
        "tokens_per_s": ((a.batch * a.seq) as f64 / (med / 1e3)).round(),
        "model_gflop_per_step": round2(flops / 1e9),
        "achieved_gflops": (flops / 1e9 / (med / 1e3) * 10.0).round() / 10.0,
        "cpu_ms_per_step": cpu_per_step,
        "peak_rss_mb": peak_rss_mb(),
        "data": a.data.as_ref().map(|d| d.display().to_string()),
        "data_open_s": a.data.as_ref().map(|_| (open_s * 1000.0).round() / 1000.0),
        "batch_median_ms": a.data.as_ref().map(|_| {
            batch_times.sort_by(f64::total_cmp);
            round2(batch_times[batch_times.len() / 2])
        }),
        "final_loss": round2(last_loss),
        "arch": format!("{:?}", if causal { Arch::Decoder } else { Arch::Encoder }).to_lowercase(),
        "precision": a.precision.name(),
        "bf16_kernel": (a.precision == Precision::Bf16).then(|| remask_kernels::cpu::bf16_kernel().map(|k| k.name())).flatten(),
    });
    println!("{out}");
    Ok(())
}
