//! Tests of the bf16 fused kernel: against the f32 reference twins within bf16's rounding, on every
//! built-in mask at lengths that are not multiples of the tile, with both backward schedules, on
//! each bf16 path this CPU has (AMX and the AVX-512 kernel below it); fully masked rows stay 0.
//!
//! Tolerances: every tile product rounds its operands to bf16 (relative error at most u = 2⁻⁸ each)
//! and accumulates in f32, so a score moves by at most about 2u·scale·Σ_d|q_d·k_d| (≈ 2u·√D for
//! unit-normal inputs) and each weighted sum by about 2u·Σ|a·b|; with unit-normal inputs and D ≤ 32
//! that is a few hundredths of the (order-1) outputs at worst, and a few times less on average. The
//! tests allow 12u = 0.047 (absolute + relative) on outputs and log-sum-exps and 24u = 0.094 on
//! the gradients (two rounded products deep), and also require the mean error to be below u, so
//! a systematic error cannot hide under the per-element bound. Measured on this project's Xeon (AMX
//! and AVX-512 paths): largest error 0.018 (4.5u), largest mean 0.0009 (0.23u).

use super::tests_common::{builtin_masks, randn, run, Run};
use super::*;
use crate::block_mask::BlockMask;
use crate::cpu::{best_bf16_kernel, Bf16Kernel};

const U: f32 = 1.0 / 256.0;

fn kernels() -> Vec<Bf16Kernel> {
    match best_bf16_kernel() {
        Some(Bf16Kernel::Amx) => vec![Bf16Kernel::Avx512, Bf16Kernel::Amx],
        Some(Bf16Kernel::Avx512) => vec![Bf16Kernel::Avx512],
        None => Vec::new(),
    }
}

/// Asserts |got − want| ≤ tol·(1 + |want|) everywhere (−∞ exactly) and a mean error below u.
fn assert_bf16_close(name: &str, got: &[f32], want: &[f32], tol: f32) {
    assert_eq!(got.len(), want.len(), "{name}: length");
    let (mut sum, mut count) = (0.0f64, 0usize);
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        if w == f32::NEG_INFINITY {
            assert_eq!(g, w, "{name}[{i}]");
            continue;
        }
        assert!(g.is_finite(), "{name}[{i}] = {g} (want {w})");
        let err = (g - w).abs() / (1.0 + w.abs());
        assert!(err <= tol, "{name}[{i}]: bf16 {g} vs reference {w}");
        sum += err as f64;
        count += 1;
    }
    if count > 0 {
        assert!(
            sum / count as f64 <= U as f64,
            "{name}: mean error {} above u",
            sum / count as f64
        );
    }
}

/// bf16 fused (on `kernel`) vs the f32 reference on one mask.
fn check(kernel: Bf16Kernel, mask: &BlockMask, heads: usize, d: usize, seed: u64) -> Run {
    let shape = AttnShape {
        batch: mask.batch(),
        heads,
        tq: mask.tq(),
        tk: mask.tk(),
        head_dim: d,
    };
    let q = randn(shape.q_len(), seed, 1.0);
    let k = randn(shape.kv_len(), seed + 1, 1.0);
    let v = randn(shape.kv_len(), seed + 2, 1.0);
    let dout = randn(shape.q_len(), seed + 3, 1.0);
    let fwd = |out: &mut [f32],
               lse: &mut [f32],
               q: &[f32],
               k: &[f32],
               v: &[f32],
               m: &BlockMask,
               s: AttnShape,
               sc: f32| { fused_bf16::forward(kernel, out, lse, q, k, v, m, s, sc) };
    let bwd = |dq: &mut [f32],
               dk: &mut [f32],
               dv: &mut [f32],
               dout: &[f32],
               q: &[f32],
               k: &[f32],
               v: &[f32],
               out: &[f32],
               lse: &[f32],
               m: &BlockMask,
               s: AttnShape,
               sc: f32| {
        fused_bf16::backward(kernel, dq, dk, dv, dout, q, k, v, out, lse, m, s, sc)
    };
    let fast = run(&fwd, &bwd, &q, &k, &v, &dout, mask, shape);
    let reference = run(
        &attention_forward_reference,
        &attention_backward_reference,
        &q,
        &k,
        &v,
        &dout,
        mask,
        shape,
    );
    assert_bf16_close("out", &fast.out, &reference.out, 12.0 * U);
    assert_bf16_close("lse", &fast.lse, &reference.lse, 12.0 * U);
    assert_bf16_close("dq", &fast.dq, &reference.dq, 24.0 * U);
    assert_bf16_close("dk", &fast.dk, &reference.dk, 24.0 * U);
    assert_bf16_close("dv", &fast.dv, &reference.dv, 24.0 * U);
    fast
}

#[test]
fn bf16_matches_reference_for_builtin_masks_at_odd_lengths() {
    for kernel in kernels() {
        for &(t, tile, d) in &[(37, 8, 16), (45, 16, 8), (70, 64, 32), (130, 64, 64)] {
            for (name, mask) in builtin_masks(3, t, tile) {
                eprintln!("{kernel:?}: mask {name} T={t} tile={tile}");
                check(kernel, &mask, 2, d, t as u64);
            }
        }
    }
}

#[test]
fn bf16_backward_matches_reference_per_head_and_per_key_chunk() {
    for kernel in kernels() {
        for threads in [1, 16] {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .expect("thread pool");
            pool.install(|| {
                for (name, mask) in builtin_masks(1, 83, 8) {
                    eprintln!("{kernel:?}: mask {name}, {threads} threads");
                    check(kernel, &mask, 2, 16, 31);
                }
            });
        }
    }
}

#[test]
fn bf16_cross_attention_shape_and_fully_masked_rows() {
    for kernel in kernels() {
        // Tq != Tk, a mask per head, tiles that are not square.
        let mask = BlockMask::from_fn(2, 3, 19, 41, 8, 16, |b, h, q, k| {
            (k + q * (h + 1) + b) % 5 != 0 && k < 30 + b * 5
        });
        check(kernel, &mask, 3, 24, 11);
        // Rows 0..3 of every batch row and all of batch row 1 see nothing: zeros, lse −∞, no NaN.
        let mask = BlockMask::from_fn(2, 1, 21, 21, 8, 8, |b, _, q, k| b == 0 && q >= 3 && k <= q);
        let r = check(kernel, &mask, 2, 8, 5);
        for bh in 0..4 {
            for i in 0..21 {
                if bh >= 2 || i < 3 {
                    assert_eq!(r.lse[bh * 21 + i], f32::NEG_INFINITY);
                    assert!(r.out[(bh * 21 + i) * 8..(bh * 21 + i + 1) * 8]
                        .iter()
                        .all(|&x| x == 0.0));
                    assert!(r.dq[(bh * 21 + i) * 8..(bh * 21 + i + 1) * 8]
                        .iter()
                        .all(|&x| x == 0.0));
                }
            }
        }
    }
}

/// Where the CPU has no bf16, the public entry points refuse rather than compute something else.
#[test]
fn bf16_without_cpu_support_panics_with_the_message() {
    if best_bf16_kernel().is_some() {
        return;
    }
    let mask = BlockMask::full(1, 1, 4, 4, 4, 4);
    let shape = AttnShape {
        batch: 1,
        heads: 1,
        tq: 4,
        tk: 4,
        head_dim: 2,
    };
    let r = std::panic::catch_unwind(|| {
        let (mut out, mut lse) = (vec![0.0; 8], vec![0.0; 4]);
        attention_forward_bf16(
            &mut out, &mut lse, &[0.0; 8], &[0.0; 8], &[0.0; 8], &mask, shape, 1.0,
        );
    });
    assert!(r.is_err());
}
