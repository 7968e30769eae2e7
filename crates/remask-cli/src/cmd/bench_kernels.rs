//! `remask bench kernels`: times every fast kernel and its `_reference` twin at the sizes of the
//! DESIGN.md model (B·T = 2048 rows, d = 256, FFN = 1024, V = 8192) and prints one JSON line per
//! kernel: median milliseconds, GFLOP/s (matmuls) or GB/s (memory-bound kernels, counting each
//! buffer read or written once), the same for the twin, and the speed-up.

use anyhow::Context;
use remask_kernels as k;
use remask_kernels::rng::{KeyedRng, Purpose};
use std::time::Instant;

#[derive(clap::Args)]
pub struct Args {
    /// Worker threads for the fast kernels.
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
    /// Timed repetitions of each fast kernel (after one warm-up); the median is reported.
    #[arg(long, default_value_t = 10)]
    pub iters: usize,
    /// Timed repetitions of each reference twin (0 skips the twins; the matmul twins take seconds).
    #[arg(long, default_value_t = 1)]
    pub ref_iters: usize,
    /// Only kernels whose name contains this text (for example `matmul` or `cross_entropy`).
    #[arg(long)]
    pub only: Option<String>,
    /// N = B·T rows.
    #[arg(long, default_value_t = 2048)]
    pub rows: usize,
    /// C = model width.
    #[arg(long, default_value_t = 256)]
    pub channels: usize,
    /// FFN width.
    #[arg(long, default_value_t = 1024)]
    pub ffn: usize,
    /// V = vocabulary size.
    #[arg(long, default_value_t = 8192)]
    pub vocab: usize,
}

/// What one kernel call costs, for the throughput figure.
#[derive(Clone, Copy)]
enum Work {
    Flops(f64),
    Bytes(f64),
}

struct Bench<'a> {
    args: &'a Args,
    pool: rayon::ThreadPool,
}

fn rand(len: usize, seed: u64, scale: f32) -> Vec<f32> {
    let mut r = KeyedRng::new(seed, Purpose::Other, 0, 0);
    (0..len)
        .map(|_| (r.next_f32() * 2.0 - 1.0) * scale)
        .collect()
}

/// (median, minimum) milliseconds over `iters` calls. The minimum is the better estimate on a
/// machine shared with other work; the median is the headline figure.
fn time_ms(iters: usize, mut f: impl FnMut()) -> (f64, f64) {
    let mut times: Vec<f64> = (0..iters.max(1))
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    times.sort_by(f64::total_cmp);
    (times[times.len() / 2], times[0])
}

impl Bench<'_> {
    /// Times `fast` on the pool and `reference` on the calling thread, then prints one JSON line.
    fn run(
        &self,
        name: &str,
        shape: &str,
        work: Work,
        fast: impl FnMut() + Send,
        reference: impl FnMut(),
    ) {
        self.run_with(name, shape, work, &[], None, fast, reference);
    }

    /// [`Self::run`] with extra fields, and the share of `peak` (GFLOP/s) the fast kernel reaches.
    #[allow(clippy::too_many_arguments)]
    fn run_with(
        &self,
        name: &str,
        shape: &str,
        work: Work,
        extra: &[(&str, serde_json::Value)],
        peak: Option<f64>,
        mut fast: impl FnMut() + Send,
        mut reference: impl FnMut(),
    ) {
        if self.args.only.as_deref().is_some_and(|o| !name.contains(o)) {
            return;
        }
        let iters = self.args.iters.max(1);
        let (fast_ms, fast_min_ms) = self.pool.install(|| {
            fast();
            time_ms(iters, &mut fast)
        });
        let ref_ms =
            (self.args.ref_iters > 0).then(|| time_ms(self.args.ref_iters, &mut reference).0);
        let rate = |ms: f64| match work {
            Work::Flops(f) => f / (ms * 1e-3) / 1e9,
            Work::Bytes(b) => b / (ms * 1e-3) / 1e9,
        };
        let unit = match work {
            Work::Flops(_) => "gflops",
            Work::Bytes(_) => "gbps",
        };
        let mut line = serde_json::json!({
            "kernel": name,
            "shape": shape,
            "threads": self.args.threads,
            "median_ms": round(fast_ms),
            unit: round(rate(fast_ms)),
            "min_ms": round(fast_min_ms),
            format!("best_{unit}"): round(rate(fast_min_ms)),
        });
        if let Some(obj) = line.as_object_mut() {
            for (k, v) in extra {
                obj.insert((*k).into(), v.clone());
            }
            if let Some(peak) = peak {
                obj.insert("peak_gflops".into(), round(peak).into());
                obj.insert("peak_share".into(), round(rate(fast_ms) / peak).into());
                obj.insert(
                    "best_peak_share".into(),
                    round(rate(fast_min_ms) / peak).into(),
                );
            }
        }
        if let (Some(r), Some(obj)) = (ref_ms, line.as_object_mut()) {
            obj.insert("reference_median_ms".into(), round(r).into());
            obj.insert(format!("reference_{unit}"), round(rate(r)).into());
            obj.insert("speedup".into(), round(r / fast_ms).into());
        }
        println!("{line}");
    }
}

/// Rounds to 4 significant digits, which is more than the timing noise justifies.
fn round(x: f64) -> f64 {
    if x == 0.0 || !x.is_finite() {
        return x;
    }
    let scale = 10f64.powi(3 - x.abs().log10().floor() as i32);
    (x * scale).round() / scale
}

pub fn run(args: Args) -> anyhow::Result<()> {
    anyhow::ensure!(args.threads > 0, "--threads must be at least 1");
    anyhow::ensure!(
        args.rows > 0 && args.channels > 0 && args.ffn > 0 && args.vocab > 0,
        "--rows, --channels, --ffn and --vocab must be positive"
    );
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(args.threads)
        .build()
        .context("starting the thread pool")?;
    let b = Bench { args: &args, pool };
    let (n, c, f, v) = (args.rows, args.channels, args.ffn, args.vocab);
    const F32: f64 = 4.0;

    // Matmuls: the FFN up and down projections and the vocabulary head.
    for (c_in, c_out) in [(c, f), (f, c), (c, v)] {
        let shape = format!("N={n} C={c_in} OC={c_out}");
        let inp = rand(n * c_in, 1, 1.0);
        let weight = rand(c_out * c_in, 2, 0.05);
        let bias = rand(c_out, 3, 0.1);
        let (mut out, mut out_r) = (vec![0.0; n * c_out], vec![0.0; n * c_out]);
        let flops = 2.0 * (n * c_in * c_out) as f64;
        b.run(
            "matmul_forward",
            &shape,
            Work::Flops(flops),
            || k::matmul::matmul_forward(&mut out, &inp, &weight, Some(&bias), n, c_in, c_out),
            || {
                k::matmul::matmul_forward_reference(
                    &mut out_r,
                    &inp,
                    &weight,
                    Some(&bias),
                    n,
                    c_in,
                    c_out,
                )
            },
        );
        let dout = rand(n * c_out, 4, 1.0);
        let (mut dinp, mut dweight, mut dbias) = (
            vec![0.0; n * c_in],
            vec![0.0; c_out * c_in],
            vec![0.0; c_out],
        );
        let (mut dinp_r, mut dweight_r, mut dbias_r) =
            (dinp.clone(), dweight.clone(), dbias.clone());
        b.run(
            "matmul_backward",
            &shape,
            Work::Flops(2.0 * flops),
            || {
                k::matmul::matmul_backward(
                    Some(&mut dinp),
                    &mut dweight,
                    Some(&mut dbias),
                    &dout,
                    &inp,
                    &weight,
                    n,
                    c_in,
                    c_out,
                )
            },
            || {
                k::matmul::matmul_backward_reference(
                    Some(&mut dinp_r),
                    &mut dweight_r,
                    Some(&mut dbias_r),
                    &dout,
                    &inp,
                    &weight,
                    n,
                    c_in,
                    c_out,
                )
            },
        );
    }
    {
        // The brief's headline GEMM: (2048×256)·(256×1024).
        let (m, kk, nn) = (n, c, f);
        let a = rand(m * kk, 5, 1.0);
        let bm = rand(kk * nn, 6, 1.0);
        let (mut cm, mut cm_r) = (vec![0.0; m * nn], vec![0.0; m * nn]);
        b.run(
            "gemm",
            &format!("M={m} K={kk} N={nn}"),
            Work::Flops(2.0 * (m * kk * nn) as f64),
            || k::matmul::gemm(&mut cm, &a, &bm, m, kk, nn, false, false, 1.0, 0.0),
            || k::matmul::gemm_reference(&mut cm_r, &a, &bm, m, kk, nn, false, false, 1.0, 0.0),
        );
    }
    bench_bf16(&b, n, c, f, v);
    {
        let shape = format!("N={n} C={c}");
        let inp = rand(n * c, 7, 2.0);
        let (w, bias) = (rand(c, 8, 1.0), rand(c, 9, 1.0));
        let (mut out, mut mean, mut rstd) = (vec![0.0; n * c], vec![0.0; n], vec![0.0; n]);
        let (mut out_r, mut mean_r, mut rstd_r) = (out.clone(), mean.clone(), rstd.clone());
        b.run(
            "layernorm_forward",
            &shape,
            Work::Bytes(2.0 * (n * c) as f64 * F32),
            || {
                k::layernorm::layernorm_forward(
                    &mut out, &mut mean, &mut rstd, &inp, &w, &bias, n, c, 1e-5,
                )
            },
            || {
                k::layernorm::layernorm_forward_reference(
                    &mut out_r,
                    &mut mean_r,
                    &mut rstd_r,
                    &inp,
                    &w,
                    &bias,
                    n,
                    c,
                    1e-5,
                )
            },
        );
        let dout = rand(n * c, 10, 1.0);
        let (mut dinp, mut dw, mut db) = (vec![0.0; n * c], vec![0.0; c], vec![0.0; c]);
        let (mut dinp_r, mut dw_r, mut db_r) = (dinp.clone(), dw.clone(), db.clone());
        b.run(
            "layernorm_backward",
            &shape,
            Work::Bytes(4.0 * (n * c) as f64 * F32),
            || {
                k::layernorm::layernorm_backward(
                    &mut dinp, &mut dw, &mut db, &dout, &inp, &w, &mean, &rstd, n, c,
                )
            },
            || {
                k::layernorm::layernorm_backward_reference(
                    &mut dinp_r,
                    &mut dw_r,
                    &mut db_r,
                    &dout,
                    &inp,
                    &w,
                    &mean,
                    &rstd,
                    n,
                    c,
                )
            },
        );
    }
    for (kind, name_f, name_b) in [
        (
            k::gelu::GeluKind::Erf,
            "gelu_forward_erf",
            "gelu_backward_erf",
        ),
        (
            k::gelu::GeluKind::Tanh,
            "gelu_forward_tanh",
            "gelu_backward_tanh",
        ),
    ] {
        let len = n * f;
        let shape = format!("len={len}");
        let inp = rand(len, 11, 4.0);
        let (mut out, mut out_r) = (vec![0.0; len], vec![0.0; len]);
        b.run(
            name_f,
            &shape,
            Work::Bytes(2.0 * len as f64 * F32),
            || k::gelu::gelu_forward(&mut out, &inp, kind),
            || k::gelu::gelu_forward_reference(&mut out_r, &inp, kind),
        );
        let dout = rand(len, 12, 1.0);
        let (mut d, mut d_r) = (vec![0.0; len], vec![0.0; len]);
        b.run(
            name_b,
            &shape,
            Work::Bytes(4.0 * len as f64 * F32),
            || k::gelu::gelu_backward(&mut d, &inp, &dout, kind),
            || k::gelu::gelu_backward_reference(&mut d_r, &inp, &dout, kind),
        );
    }
    {
        // Attention-score shaped softmax: B·H·T rows of T keys (H = 4, T = 128).
        let (rows, cols) = (n * 4, 128);
        let shape = format!("rows={rows} cols={cols}");
        let inp = rand(rows * cols, 13, 5.0);
        let (mut out, mut out_r) = (vec![0.0; rows * cols], vec![0.0; rows * cols]);
        b.run(
            "softmax_forward",
            &shape,
            Work::Bytes(2.0 * (rows * cols) as f64 * F32),
            || k::softmax::softmax_forward(&mut out, &inp, rows, cols),
            || k::softmax::softmax_forward_reference(&mut out_r, &inp, rows, cols),
        );
        let dout = rand(rows * cols, 14, 1.0);
        let (mut d, mut d_r) = (vec![0.0; rows * cols], vec![0.0; rows * cols]);
        b.run(
            "softmax_backward",
            &shape,
            Work::Bytes(4.0 * (rows * cols) as f64 * F32),
            || k::softmax::softmax_backward(&mut d, &out, &dout, rows, cols),
            || k::softmax::softmax_backward_reference(&mut d_r, &out, &dout, rows, cols),
        );
    }
    {
        let shape = format!("N={n} V={v}");
        let logits = rand(n * v, 15, 8.0);
        let targets: Vec<i32> = (0..n)
            .map(|i| {
                if i % 7 == 3 {
                    k::cross_entropy::IGNORE_INDEX
                } else {
                    ((i * 7919) % v) as i32
                }
            })
            .collect();
        let (mut losses, mut losses_r) = (vec![0.0; n], vec![0.0; n]);
        let nv = (n * v) as f64 * F32;
        b.run(
            "cross_entropy_forward",
            &shape,
            Work::Bytes(nv),
            || {
                k::cross_entropy::cross_entropy_forward(&mut losses, &logits, &targets, n, v);
            },
            || {
                k::cross_entropy::cross_entropy_forward_reference(
                    &mut losses_r,
                    &logits,
                    &targets,
                    n,
                    v,
                );
            },
        );
        let (mut d, mut d_r) = (vec![0.0; n * v], vec![0.0; n * v]);
        b.run(
            "cross_entropy_backward",
            &shape,
            Work::Bytes(2.0 * nv),
            || {
                k::cross_entropy::cross_entropy_backward(
                    &mut d,
                    &logits,
                    &targets,
                    1.0 / n as f32,
                    n,
                    v,
                )
            },
            || {
                k::cross_entropy::cross_entropy_backward_reference(
                    &mut d_r,
                    &logits,
                    &targets,
                    1.0 / n as f32,
                    n,
                    v,
                )
            },
        );
        // The fused kernel works in place, so each call gets fresh logits (the copy is not timed
        // separately; it is a plain memcpy of the same size, reported in the shape string).
        let (mut buf, mut buf_r) = (logits.clone(), logits.clone());
        b.run(
            "cross_entropy_fused",
            &format!("{shape} (incl. logits copy)"),
            Work::Bytes(2.0 * nv),
            || {
                buf.copy_from_slice(&logits);
                k::cross_entropy::cross_entropy_fused(
                    &mut buf,
                    &mut losses,
                    &targets,
                    1.0 / n as f32,
                    n,
                    v,
                );
            },
            || {
                buf_r.copy_from_slice(&logits);
                k::cross_entropy::cross_entropy_fused_reference(
                    &mut buf_r,
                    &mut losses_r,
                    &targets,
                    1.0 / n as f32,
                    n,
                    v,
                );
            },
        );
    }
    {
        let shape = format!("N={n} C={c} V={v}");
        let table = rand(v * c, 16, 1.0);
        let ids: Vec<u32> = (0..n).map(|i| ((i * 104_729) % v) as u32).collect();
        let (mut out, mut out_r) = (vec![0.0; n * c], vec![0.0; n * c]);
        let bytes = 2.0 * (n * c) as f64 * F32;
        b.run(
            "embedding_forward",
            &shape,
            Work::Bytes(bytes),
            || k::embedding::embedding_forward(&mut out, &ids, &table, c),
            || k::embedding::embedding_forward_reference(&mut out_r, &ids, &table, c),
        );
        let dout = rand(n * c, 17, 1.0);
        let (mut dt, mut dt_r) = (vec![0.0; v * c], vec![0.0; v * c]);
        b.run(
            "embedding_backward",
            &shape,
            Work::Bytes(3.0 * (n * c) as f64 * F32),
            || k::embedding::embedding_backward(&mut dt, &dout, &ids, c),
            || k::embedding::embedding_backward_reference(&mut dt_r, &dout, &ids, c),
        );
    }
    {
        let len = n * c;
        let shape = format!("len={len} p=0.1");
        let inp = rand(len, 18, 1.0);
        let (mut out, mut mask) = (vec![0.0; len], vec![0u8; len]);
        let (mut out_r, mut mask_r) = (out.clone(), mask.clone());
        b.run(
            "dropout_forward",
            &shape,
            Work::Bytes(len as f64 * (2.0 * F32 + 1.0)),
            || k::dropout::dropout_forward(&mut out, &mut mask, &inp, 0.1, 99),
            || k::dropout::dropout_forward_reference(&mut out_r, &mut mask_r, &inp, 0.1, 99),
        );
    }
    {
        // About the DESIGN.md model's parameter count.
        let len = 6 * 1024 * 1024;
        let shape = format!("params={len}");
        let grads = rand(len, 19, 0.01);
        let (mut p, mut m, mut vv) = (rand(len, 20, 1.0), vec![0.0; len], vec![0.0; len]);
        let (mut p_r, mut m_r, mut v_r) = (p.clone(), m.clone(), vv.clone());
        let hp = k::adamw::AdamW {
            lr: 1e-4,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.01,
        };
        let mut t = 0;
        let mut t_r = 0;
        b.run(
            "adamw_update",
            &shape,
            Work::Bytes(7.0 * len as f64 * F32),
            || {
                t += 1;
                k::adamw::adamw_update(&mut p, &grads, &mut m, &mut vv, &hp, t)
            },
            || {
                t_r += 1;
                k::adamw::adamw_update_reference(&mut p_r, &grads, &mut m_r, &mut v_r, &hp, t_r)
            },
        );
        b.run(
            "grad_norm",
            &shape,
            Work::Bytes(len as f64 * F32),
            || {
                std::hint::black_box(k::clip::grad_norm(&grads));
            },
            || {
                std::hint::black_box(k::clip::grad_norm_reference(&grads));
            },
        );
    }
    Ok(())
}

/// The register-only bf16 peak of `kernel` on every thread of the pool at once, GFLOP/s (best of 5).
fn bf16_peak(pool: &rayon::ThreadPool, kernel: k::cpu::Bf16Kernel) -> f64 {
    // About 10–20 ms per round at a few GHz.
    let iters = match kernel {
        k::cpu::Bf16Kernel::Avx512 => 2_000_000,
        k::cpu::Bf16Kernel::Amx => 200_000,
    };
    measure_peak(pool, iters, |n| k::gemm_bf16::bf16_peak_loop(kernel, n))
}

/// `run(iters)` (returning the FLOPs done) on every thread of the pool at once: total GFLOP/s over
/// the slowest thread's time, best of 5 rounds.
fn measure_peak(pool: &rayon::ThreadPool, iters: u64, run: impl Fn(u64) -> f64 + Sync) -> f64 {
    (0..5)
        .map(|_| {
            let runs = pool.broadcast(|_| {
                let t = Instant::now();
                let flops = run(iters);
                (flops, t.elapsed().as_secs_f64())
            });
            let flops: f64 = runs.iter().map(|r| r.0).sum();
            let secs = runs.iter().map(|r| r.1).fold(0.0, f64::max);
            flops / secs / 1e9
        })
        .fold(0.0, f64::max)
}

/// bf16 lines, for each bf16 kernel this CPU has (AMX and the AVX-512 path below it): the
/// register-only peak, the GEMM on packed operands (the headline shape and the model's linear
/// layers, with the share of the peak), and the linear layer with its per-call packing.
fn bench_bf16(b: &Bench<'_>, n: usize, c: usize, f: usize, v: usize) {
    use k::cpu::Bf16Kernel;
    let Some(best) = k::cpu::best_bf16_kernel() else {
        if b.args
            .only
            .as_deref()
            .is_none_or(|o| "bf16".contains(o) || o.contains("bf16"))
        {
            println!(
                "{}",
                serde_json::json!({ "kernel": "bf16", "skipped": k::cpu::BF16_UNSUPPORTED })
            );
        }
        return;
    };
    let kernels: Vec<Bf16Kernel> = [Bf16Kernel::Avx512, Bf16Kernel::Amx]
        .into_iter()
        .filter(|&kk| kk <= best)
        .collect();
    if b.args
        .only
        .as_deref()
        .is_none_or(|o| "bf16_peak".contains(o))
    {
        // The f32 FMA peak, for scale (every CPU with AVX-512 BF16 has AVX-512F).
        let peak = measure_peak(&b.pool, 2_000_000, k::gemm_bf16::fp32_peak_loop);
        println!(
            "{}",
            serde_json::json!({ "kernel": "fp32_peak", "impl": "avx512f-fma", "threads": b.args.threads,
                                           "gflops": round(peak), "note": "register-only loop, no memory traffic" })
        );
    }
    for kernel in kernels {
        let imp = serde_json::Value::from(kernel.name());
        k::cpu::limit_bf16_kernel(kernel);
        let peak = bf16_peak(&b.pool, kernel);
        if b.args
            .only
            .as_deref()
            .is_none_or(|o| "bf16_peak".contains(o))
        {
            println!(
                "{}",
                serde_json::json!({ "kernel": "bf16_peak", "impl": kernel.name(), "threads": b.args.threads,
                                               "gflops": round(peak), "note": "register-only loop, no memory traffic" })
            );
        }
        let shapes = [(n, c, f), (n, f, c), (n, c, 3 * c), (n, c, v)];
        for (i, &(m, kk, nn)) in shapes.iter().enumerate() {
            // The GEMM alone on packed operands: A = activations [M×K], B = Wᵀ [K×N].
            let a = rand(m * kk, 30 + i as u64, 1.0);
            let w = rand(nn * kk, 40 + i as u64, 0.05);
            let (mut pa, mut pb) = (
                k::gemm_bf16::PackedLhs::new(),
                k::gemm_bf16::PackedRhs::new(),
            );
            pa.pack(&a, kk, false, m, kk);
            pb.pack(&w, kk, true, kk, nn);
            let (mut cm, mut cm_r) = (vec![0.0; m * nn], vec![0.0; m * nn]);
            let flops = 2.0 * (m * kk * nn) as f64;
            let shape = format!("M={m} K={kk} N={nn}");
            b.run_with(
                "gemm_bf16",
                &shape,
                Work::Flops(flops),
                &[("impl", imp.clone())],
                Some(peak),
                || {
                    k::gemm_bf16::gemm_bf16_with(
                        kernel,
                        &mut cm,
                        nn,
                        &pa,
                        &pb,
                        1.0,
                        k::gemm_bf16::Start::Zero,
                    )
                },
                || {
                    k::gemm_bf16::gemm_bf16_reference(
                        &mut cm_r,
                        nn,
                        &a,
                        kk,
                        1,
                        &w,
                        1,
                        kk,
                        m,
                        kk,
                        nn,
                        1.0,
                        k::gemm_bf16::Start::Zero,
                    )
                },
            );
            if i == 3 {
                continue; // the head's layer-level figures add nothing the smaller shapes do not show
            }
            // The per-call packs of the linear layer: activations as A (forward, input gradient),
            // transposed as A (weight gradient), and as B (weight gradient).
            let bytes = (m * kk) as f64 * (4.0 + 2.0);
            let shape = format!("rows={m} cols={kk}");
            b.run_with(
                "pack_lhs_bf16",
                &shape,
                Work::Bytes(bytes),
                &[("impl", imp.clone())],
                None,
                || pa.pack(&a, kk, false, m, kk),
                || {},
            );
            b.run_with(
                "pack_lhs_transposed_bf16",
                &shape,
                Work::Bytes(bytes),
                &[("impl", imp.clone())],
                None,
                || pa.pack(&a, kk, true, kk, m),
                || {},
            );
            b.run_with(
                "pack_rhs_bf16",
                &shape,
                Work::Bytes(bytes),
                &[("impl", imp.clone())],
                None,
                || pb.pack(&a, kk, false, m, kk),
                || {},
            );
            // The linear layer: packing of the activations included, the weight packed once.
            let bias = rand(nn, 50, 0.1);
            let mut pw = k::matmul_bf16::PackedWeight::new();
            pw.pack(&w, kk, nn);
            let shape = format!("N={m} C={kk} OC={nn}");
            let (mut out, mut out_r) = (vec![0.0; m * nn], vec![0.0; m * nn]);
            b.run_with(
                "matmul_forward_bf16",
                &shape,
                Work::Flops(flops),
                &[("impl", imp.clone())],
                Some(peak),
                || k::matmul_bf16::matmul_forward_bf16(&mut out, &a, &pw, Some(&bias), m, kk, nn),
                || {
                    k::matmul_bf16::matmul_forward_bf16_reference(
                        &mut out_r,
                        &a,
                        &w,
                        Some(&bias),
                        m,
                        kk,
                        nn,
                    )
                },
            );
            let dout = rand(m * nn, 60, 1.0);
            let (mut dinp, mut dw, mut db) = (vec![0.0; m * kk], vec![0.0; nn * kk], vec![0.0; nn]);
            let (mut dinp_r, mut dw_r, mut db_r) = (dinp.clone(), dw.clone(), db.clone());
            b.run_with(
                "matmul_backward_bf16",
                &shape,
                Work::Flops(2.0 * flops),
                &[("impl", imp.clone())],
                Some(peak),
                || {
                    k::matmul_bf16::matmul_backward_bf16(
                        Some(&mut dinp),
                        k::gemm_bf16::Start::C,
                        &mut dw,
                        Some(&mut db),
                        &dout,
                        &a,
                        &pw,
                        m,
                        kk,
                        nn,
                    )
                },
                || {
                    k::matmul_bf16::matmul_backward_bf16_reference(
                        Some(&mut dinp_r),
                        &mut dw_r,
                        Some(&mut db_r),
                        &dout,
                        &a,
                        &w,
                        m,
                        kk,
                        nn,
                    )
                },
            );
            let shape = format!("OC={nn} C={kk}");
            b.run_with(
                "pack_weight_bf16",
                &shape,
                Work::Bytes((nn * kk) as f64 * (4.0 + 2.0 * 2.0)),
                &[("impl", imp.clone())],
                None,
                || pw.pack(&w, kk, nn),
                || {},
            );
        }
    }
    k::cpu::limit_bf16_kernel(best);
}
