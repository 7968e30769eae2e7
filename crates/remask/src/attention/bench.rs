//! The attention benchmark behind `remask bench attention`: fused block-sparse attention
//! (forward + backward) against an efficient dense masked implementation on the same inputs.

use std::time::Instant;

use remask_kernels::attention::dense::{
    attention_backward_dense, attention_backward_dense_bf16, attention_forward_dense,
    attention_forward_dense_bf16, mask_bias,
};
use remask_kernels::attention::{
    attention_backward, attention_backward_bf16, attention_forward, attention_forward_bf16,
    AttnShape,
};
use remask_kernels::block_mask::BlockMask;
use remask_kernels::rng::{KeyedRng, Purpose};
use serde::Serialize;

use super::AttentionMaskSpec;
use crate::batch::{Batch, PAD_DOC};
use crate::{Error, Result};

/// Which built-in mask to benchmark.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum BenchMask {
    Padding,
    Causal,
    Document,
    Sliding,
    Prefix,
}

impl std::str::FromStr for BenchMask {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Ok(match s {
            "padding" => BenchMask::Padding,
            "causal" => BenchMask::Causal,
            "document" => BenchMask::Document,
            "sliding" => BenchMask::Sliding,
            "prefix" => BenchMask::Prefix,
            _ => {
                return Err(Error::config(
                    "mask",
                    format!("unknown mask `{s}`; use padding, causal, document, sliding or prefix"),
                ))
            }
        })
    }
}

/// What to run.
#[derive(Clone, Debug, Serialize)]
pub struct AttentionBenchConfig {
    pub mask: BenchMask,
    pub seq: usize,
    pub batch: usize,
    pub heads: usize,
    pub head_dim: usize,
    /// Sliding-window width.
    pub window: usize,
    /// Documents per row for the document mask.
    pub docs: usize,
    /// Random document lengths (random cut points) instead of equal ones.
    pub random_docs: bool,
    /// Causal inside documents / one-sided sliding window.
    pub causal: bool,
    /// BlockMask tile edge.
    pub tile: usize,
    /// Timed repetitions (the fastest is reported, after one warm-up).
    pub iters: usize,
    pub seed: u64,
    /// Number format of the products, fused and dense alike (bf16: bf16 operands, f32 accumulation).
    pub precision: crate::precision::Precision,
}

/// Timings in milliseconds (fastest of `iters`) and the mask's statistics.
#[derive(Clone, Debug, Serialize)]
pub struct AttentionBenchReport {
    pub config: AttentionBenchConfig,
    pub threads: usize,
    pub fused_fwd_ms: f64,
    pub fused_bwd_ms: f64,
    /// Fused forward + backward.
    pub fused_ms: f64,
    pub dense_fwd_ms: f64,
    pub dense_bwd_ms: f64,
    /// Dense masked forward + backward.
    pub dense_ms: f64,
    /// fused_ms / dense_ms (wall clock).
    pub ratio: f64,
    /// CPU time of fused forward + backward (all threads).
    pub fused_cpu_ms: f64,
    /// CPU time of dense forward + backward (all threads).
    pub dense_cpu_ms: f64,
    /// fused_cpu_ms / dense_cpu_ms: steadier than `ratio` on a busy machine.
    pub ratio_cpu: f64,
    /// Fraction of the (q, k) plane in empty tiles.
    pub sparsity: f64,
    /// Fraction of (q, k) pairs allowed.
    pub density: f64,
    pub tiles_empty: usize,
    pub tiles_partial: usize,
    pub tiles_full: usize,
    /// Time to build the BlockMask from the batch (fastest of `iters`).
    pub mask_build_ms: f64,
    /// Largest |fused − dense| over outputs and gradients: both must compute the same thing (to
    /// f32 rounding, or in bf16 to bf16's rounding: about 1e-2 for unit-normal inputs).
    pub max_abs_diff: f32,
    /// The bf16 kernel the products ran on (bf16 precision only).
    pub bf16_kernel: Option<&'static str>,
}

/// A synthetic batch whose data drives the dynamic masks: random padding lengths in [T/2, T] for
/// `padding`, `docs` documents filling each row for `document` (equal lengths, or random with `random_docs`), a random prefix
/// in [T/4, 3T/4] for `prefix`; full rows otherwise.
pub fn bench_batch(cfg: &AttentionBenchConfig) -> Batch {
    let (b, t) = (cfg.batch, cfg.seq);
    let mut batch = Batch::new(b, t)
        .with_doc_ids(vec![0; b * t])
        .with_lengths(vec![t as u32; b]);
    for row in 0..b {
        let mut rng = KeyedRng::new(cfg.seed, Purpose::Other, 0, row as u64);
        match cfg.mask {
            BenchMask::Padding => {
                batch.lengths[row] =
                    (t / 2 + rng.below((t - t / 2 + 1) as u64) as usize).min(t) as u32
            }
            BenchMask::Prefix => {
                batch.prefix_lengths[row] = (t / 4 + rng.below((t / 2 + 1) as u64) as usize) as u32
            }
            BenchMask::Document => {
                // docs−1 cut points: equal documents, or distinct random cuts in 1..T.
                let docs = cfg.docs.clamp(1, t.max(1));
                let mut cuts: Vec<usize> = Vec::new();
                if cfg.random_docs {
                    while cuts.len() + 1 < docs {
                        let c = 1 + rng.below((t - 1) as u64) as usize;
                        if !cuts.contains(&c) {
                            cuts.push(c);
                        }
                    }
                } else {
                    cuts.extend((1..docs).map(|i| i * t / docs));
                }
                cuts.sort_unstable();
                let mut doc = 0u32;
                for p in 0..t {
                    if cuts.contains(&p) {
                        doc += 1;
                    }
                    batch.doc_ids[row * t + p] = row as u32 * 1000 + doc;
                }
            }
            BenchMask::Causal | BenchMask::Sliding => {}
        }
        for p in batch.lengths[row] as usize..t {
            batch.doc_ids[row * t + p] = PAD_DOC;
        }
    }
    batch
}

/// The mask spec a benchmark runs.
pub fn bench_spec(cfg: &AttentionBenchConfig) -> AttentionMaskSpec {
    match cfg.mask {
        BenchMask::Padding => AttentionMaskSpec::Padding,
        BenchMask::Causal => AttentionMaskSpec::Causal,
        BenchMask::Document => AttentionMaskSpec::Document { causal: cfg.causal },
        BenchMask::Sliding => AttentionMaskSpec::SlidingWindow {
            window: cfg.window,
            causal: cfg.causal,
        },
        BenchMask::Prefix => AttentionMaskSpec::PrefixLm,
    }
}

/// CPU time used so far by all threads of this process, in ns (Linux: sum of
/// `/proc/self/task/*/schedstat`); `None` elsewhere.
fn process_cpu_ns() -> Option<u64> {
    let mut total = 0u64;
    for entry in std::fs::read_dir("/proc/self/task").ok()? {
        let path = entry.ok()?.path().join("schedstat");
        let text = std::fs::read_to_string(path).ok()?;
        total += text.split_whitespace().next()?.parse::<u64>().ok()?;
    }
    Some(total)
}

/// Wall and CPU milliseconds of one call of `f`: the fastest wall time and the smallest CPU time of
/// `iters` calls after a warm-up. CPU time is steadier than wall time on a shared machine; with more
/// than one thread it also counts the pool's idle spinning.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct Timing {
    pub wall_ms: f64,
    pub cpu_ms: f64,
}

/// One timed call: wall and process CPU time.
fn time_once(f: &mut impl FnMut()) -> Timing {
    let c0 = process_cpu_ns();
    let t0 = Instant::now();
    f();
    let wall_ms = t0.elapsed().as_secs_f64() * 1e3;
    let cpu_ms = match (c0, process_cpu_ns()) {
        (Some(a), Some(b)) => b.saturating_sub(a) as f64 / 1e6,
        _ => f64::NAN,
    };
    Timing { wall_ms, cpu_ms }
}

impl Timing {
    const WORST: Timing = Timing {
        wall_ms: f64::INFINITY,
        cpu_ms: f64::INFINITY,
    };
    fn keep_best(&mut self, t: Timing) {
        self.wall_ms = self.wall_ms.min(t.wall_ms);
        self.cpu_ms = self.cpu_ms.min(t.cpu_ms);
    }
}

/// The fastest of `iters` calls after one warm-up.
fn time_it(iters: usize, mut f: impl FnMut()) -> Timing {
    f(); // warm-up
    let mut best = Timing::WORST;
    for _ in 0..iters.max(1) {
        best.keep_best(time_once(&mut f));
    }
    best
}

/// The fastest of `rounds` calls of each of `run(0)`, …, `run(N − 1)`, called in turn within every
/// round (after one warm-up round), so that load from other processes on a shared machine falls on
/// all of them alike.
fn time_interleaved<const N: usize>(rounds: usize, mut run: impl FnMut(usize)) -> [Timing; N] {
    (0..N).for_each(&mut run);
    let mut best = [Timing::WORST; N];
    for _ in 0..rounds.max(1) {
        for (i, b) in best.iter_mut().enumerate() {
            b.keep_best(time_once(&mut || run(i)));
        }
    }
    best
}

fn best_ms(iters: usize, f: impl FnMut()) -> f64 {
    time_it(iters, f).wall_ms
}

type Fwd = fn(&mut [f32], &mut [f32], &[f32], &[f32], &[f32], &BlockMask, AttnShape, f32);
type Bwd = fn(
    &mut [f32],
    &mut [f32],
    &mut [f32],
    &[f32],
    &[f32],
    &[f32],
    &[f32],
    &[f32],
    &[f32],
    &BlockMask,
    AttnShape,
    f32,
);
type DenseFwd =
    fn(&mut [f32], &mut [f32], &mut [f32], &[f32], &[f32], &[f32], &[f32], usize, AttnShape, f32);
type DenseBwd = fn(
    &mut [f32],
    &mut [f32],
    &mut [f32],
    &mut [f32],
    &[f32],
    &[f32],
    &[f32],
    &[f32],
    &[f32],
    AttnShape,
    f32,
);

/// Runs the benchmark on the current rayon pool.
pub fn run_attention_bench(cfg: &AttentionBenchConfig) -> Result<AttentionBenchReport> {
    for (name, v) in [
        ("seq", cfg.seq),
        ("batch", cfg.batch),
        ("heads", cfg.heads),
        ("head-dim", cfg.head_dim),
        ("tile", cfg.tile),
    ] {
        if v == 0 {
            return Err(Error::config(name, "must be at least 1"));
        }
    }
    if cfg.mask == BenchMask::Sliding && cfg.window == 0 {
        return Err(Error::config(
            "window",
            "must be at least 1 for the sliding mask",
        ));
    }
    cfg.precision.check_supported()?;
    let bf16 = cfg.precision == crate::precision::Precision::Bf16;
    let dense_bytes = 4 * 3 * cfg.batch * cfg.heads * cfg.seq * cfg.seq;
    if dense_bytes > 8 << 30 {
        return Err(Error::config(
            "seq",
            format!(
                "the dense baseline would need {} GiB; lower --seq or --batch",
                dense_bytes >> 30
            ),
        ));
    }
    let batch = bench_batch(cfg);
    let spec = bench_spec(cfg);
    let mut mask: BlockMask = spec.block_mask(&batch, cfg.tile);
    let mask_build_ms = best_ms(cfg.iters, || mask = spec.block_mask(&batch, cfg.tile));

    let shape = AttnShape {
        batch: cfg.batch,
        heads: cfg.heads,
        tq: cfg.seq,
        tk: cfg.seq,
        head_dim: cfg.head_dim,
    };
    let scale = 1.0 / (cfg.head_dim as f32).sqrt();
    let randn = |n: usize, i: u64| {
        let mut r = KeyedRng::new(cfg.seed, Purpose::Other, 1, i);
        (0..n).map(|_| r.normal()).collect::<Vec<f32>>()
    };
    let (q, k, v, dout) = (
        randn(shape.q_len(), 0),
        randn(shape.kv_len(), 1),
        randn(shape.kv_len(), 2),
        randn(shape.q_len(), 3),
    );

    let (mut out, mut lse) = (vec![0.0; shape.q_len()], vec![0.0; shape.lse_len()]);
    let (mut dq, mut dk, mut dv) = (
        vec![0.0; shape.q_len()],
        vec![0.0; shape.kv_len()],
        vec![0.0; shape.kv_len()],
    );
    // Dense (buffers allocated outside the timing, which favours the baseline).
    let plane = cfg.batch * cfg.heads * cfg.seq * cfg.seq;
    let mut bias = vec![0.0; cfg.batch * mask.heads() * cfg.seq * cfg.seq];
    mask_bias(&mut bias, &mask);
    let (mut probs, mut dprobs) = (vec![0.0; plane], vec![0.0; plane]);
    let (mut out2, mut lse2) = (vec![0.0; shape.q_len()], vec![0.0; shape.lse_len()]);
    let (mut dq2, mut dk2, mut dv2) = (
        vec![0.0; shape.q_len()],
        vec![0.0; shape.kv_len()],
        vec![0.0; shape.kv_len()],
    );
    // Fused and dense calls alternate, round after round; each is reported at its fastest.
    let (fused_fwd, fused_bwd) = if bf16 {
        (
            attention_forward_bf16 as Fwd,
            attention_backward_bf16 as Bwd,
        )
    } else {
        (attention_forward as Fwd, attention_backward as Bwd)
    };
    let (dense_fwd, dense_bwd) = if bf16 {
        (
            attention_forward_dense_bf16 as DenseFwd,
            attention_backward_dense_bf16 as DenseBwd,
        )
    } else {
        (
            attention_forward_dense as DenseFwd,
            attention_backward_dense as DenseBwd,
        )
    };
    let [fused_fwd, fused_bwd, dense_fwd, dense_bwd] = time_interleaved(cfg.iters, |i| match i {
        0 => fused_fwd(&mut out, &mut lse, &q, &k, &v, &mask, shape, scale),
        1 => fused_bwd(
            &mut dq, &mut dk, &mut dv, &dout, &q, &k, &v, &out, &lse, &mask, shape, scale,
        ),
        2 => dense_fwd(
            &mut out2,
            &mut lse2,
            &mut probs,
            &q,
            &k,
            &v,
            &bias,
            mask.heads(),
            shape,
            scale,
        ),
        _ => dense_bwd(
            &mut dq2,
            &mut dk2,
            &mut dv2,
            &mut dprobs,
            &dout,
            &q,
            &k,
            &v,
            &probs,
            shape,
            scale,
        ),
    });

    let max_abs_diff = [(&out, &out2), (&dq, &dq2), (&dk, &dk2), (&dv, &dv2)]
        .iter()
        .flat_map(|(a, b)| a.iter().zip(b.iter()).map(|(x, y)| (x - y).abs()))
        // A NaN on either side counts as an infinite difference (`f32::max` would skip it).
        .fold(
            0f32,
            |m, d| if d.is_nan() { f32::INFINITY } else { m.max(d) },
        );
    let (tiles_empty, tiles_partial, tiles_full) = mask.tile_counts();
    let (fused_fwd_ms, fused_bwd_ms, dense_fwd_ms, dense_bwd_ms) = (
        fused_fwd.wall_ms,
        fused_bwd.wall_ms,
        dense_fwd.wall_ms,
        dense_bwd.wall_ms,
    );
    let fused_ms = fused_fwd_ms + fused_bwd_ms;
    let dense_ms = dense_fwd_ms + dense_bwd_ms;
    let fused_cpu_ms = fused_fwd.cpu_ms + fused_bwd.cpu_ms;
    let dense_cpu_ms = dense_fwd.cpu_ms + dense_bwd.cpu_ms;
    Ok(AttentionBenchReport {
        config: cfg.clone(),
        threads: rayon::current_num_threads(),
        fused_fwd_ms,
        fused_bwd_ms,
        fused_ms,
        dense_fwd_ms,
        dense_bwd_ms,
        dense_ms,
        ratio: fused_ms / dense_ms,
        fused_cpu_ms,
        dense_cpu_ms,
        ratio_cpu: fused_cpu_ms / dense_cpu_ms,
        sparsity: mask.sparsity(),
        density: mask.density(),
        tiles_empty,
        tiles_partial,
        tiles_full,
        mask_build_ms,
        max_abs_diff,
        bf16_kernel: if bf16 {
            remask_kernels::cpu::bf16_kernel().map(|k| k.name())
        } else {
            None
        },
    })
}
