use super::*;
use crate::cpu::{best_bf16_kernel, Bf16Kernel};
use crate::testing::rand_vec;

/// The kernels this CPU can run (AMX where present, and always the AVX-512 path below it).
fn kernels() -> Vec<Bf16Kernel> {
    match best_bf16_kernel() {
        Some(Bf16Kernel::Amx) => vec![Bf16Kernel::Avx512, Bf16Kernel::Amx],
        Some(Bf16Kernel::Avx512) => vec![Bf16Kernel::Avx512],
        None => Vec::new(),
    }
}

struct Case {
    m: usize,
    k: usize,
    n: usize,
    ta: bool,
    tb: bool,
}

/// Runs one case on `kernel` and on the twin; returns (fast, reference, |A|·|B| row-column bound).
fn run(
    kernel: Bf16Kernel,
    cs: &Case,
    alpha: f32,
    start: u8,
    seed: u64,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let Case { m, k, n, ta, tb } = *cs;
    let (lda, ldb, ldc) = (
        if ta { m + 1 } else { k + 2 },
        if tb { k + 3 } else { n + 1 },
        n + 5,
    );
    let a = rand_vec((if ta { k } else { m }).max(1) * lda, seed, 1.0);
    let b = rand_vec((if tb { n } else { k }).max(1) * ldb, seed + 1, 1.0);
    let c0 = rand_vec(m.max(1) * ldc, seed + 2, 1.0);
    let bias = rand_vec(n, seed + 3, 1.0);
    let start = match start {
        0 => Start::Zero,
        1 => Start::C,
        _ => Start::Bias(&bias),
    };
    let (mut pa, mut pb) = (PackedLhs::new(), PackedRhs::new());
    pa.pack(&a, lda, ta, m, k);
    pb.pack(&b, ldb, tb, k, n);
    let mut fast = c0.clone();
    gemm_bf16_with(kernel, &mut fast, ldc, &pa, &pb, alpha, start);
    let mut want = c0.clone();
    let (a_rs, a_cs) = if ta { (1, lda) } else { (lda, 1) };
    let (b_rs, b_cs) = if tb { (1, ldb) } else { (ldb, 1) };
    gemm_bf16_reference(
        &mut want, ldc, &a, a_rs, a_cs, &b, b_rs, b_cs, m, k, n, alpha, start,
    );
    // Σ_p |A[i,p]|·|B[p,j]| (+|C|): the scale of the rounding error of any summation order.
    let mut bound = vec![0.0f32; m.max(1) * ldc];
    for i in 0..m {
        for j in 0..n {
            let s: f32 = (0..k)
                .map(|p| (a[i * a_rs + p * a_cs] * b[p * b_rs + j * b_cs]).abs())
                .sum();
            bound[i * ldc + j] = alpha.abs() * s
                + match start {
                    Start::Zero => 0.0,
                    Start::C => c0[i * ldc + j].abs(),
                    Start::Bias(b) => b[j].abs(),
                };
        }
    }
    (fast, want, bound)
}

const CASES: &[Case] = &[
    Case {
        m: 1,
        k: 1,
        n: 1,
        ta: false,
        tb: false,
    },
    Case {
        m: 7,
        k: 5,
        n: 3,
        ta: false,
        tb: true,
    },
    Case {
        m: 32,
        k: 32,
        n: 32,
        ta: false,
        tb: false,
    },
    Case {
        m: 33,
        k: 70,
        n: 65,
        ta: true,
        tb: false,
    },
    Case {
        m: 64,
        k: 256,
        n: 96,
        ta: false,
        tb: true,
    },
    Case {
        m: 50,
        k: 600,
        n: 40,
        ta: true,
        tb: true,
    },
    Case {
        m: 6,
        k: 0,
        n: 17,
        ta: false,
        tb: false,
    },
];

/// The AVX-512 kernel adds the products in the twin's order: equal bit for bit.
#[test]
fn avx512_kernel_equals_reference_bit_for_bit() {
    if !kernels().contains(&Bf16Kernel::Avx512) {
        assert!(
            !crate::cpu::has_avx512_bf16(),
            "AVX-512 BF16 present but its kernel not offered"
        );
        return;
    }
    for (s, cs) in CASES.iter().enumerate() {
        for (alpha, acc) in [(1.0, 0), (1.0, 1), (1.0, 2), (0.125, 0), (-0.5, 1)] {
            let (fast, want, _) = run(Bf16Kernel::Avx512, cs, alpha, acc, 10 * s as u64);
            let what = format!(
                "m{} k{} n{} ta{} tb{} alpha{alpha} acc{acc}",
                cs.m, cs.k, cs.n, cs.ta, cs.tb
            );
            for (i, (f, w)) in fast.iter().zip(&want).enumerate() {
                assert_eq!(f.to_bits(), w.to_bits(), "{what}: element {i}: {f} vs {w}");
            }
        }
    }
}

/// AMX sums each tile's products its own way: equal to the twin within f32 rounding of the
/// products' magnitudes (a few ulps of Σ|a·b|), and exactly equal outside C's m × n.
#[test]
fn amx_kernel_matches_reference() {
    if !kernels().contains(&Bf16Kernel::Amx) {
        return;
    }
    for (s, cs) in CASES.iter().enumerate() {
        for (alpha, acc) in [(1.0, 0), (1.0, 1), (1.0, 2), (0.125, 0), (-0.5, 1)] {
            let (fast, want, bound) = run(Bf16Kernel::Amx, cs, alpha, acc, 10 * s as u64);
            let what = format!(
                "m{} k{} n{} ta{} tb{} alpha{alpha} acc{acc}",
                cs.m, cs.k, cs.n, cs.ta, cs.tb
            );
            for (i, ((f, w), b)) in fast.iter().zip(&want).zip(&bound).enumerate() {
                // k products summed in f32: |error| ≤ k·2⁻²⁴·Σ|a·b| for any order; 1e-6 covers
                // k ≤ 16 with room, and the ragged-edge columns (outside n) must be untouched.
                let tol = 1e-6 * (cs.k as f32).max(1.0) * b;
                assert!(
                    (f - w).abs() <= tol,
                    "{what}: element {i}: {f} vs {w} (tol {tol})"
                );
            }
        }
    }
}

/// The twin equals an f64 product of the bf16-rounded inputs (checks the twin itself).
#[test]
fn reference_is_the_rounded_product() {
    let (m, k, n) = (5, 33, 7);
    let a = rand_vec(m * k, 1, 3.0);
    let b = rand_vec(k * n, 2, 3.0);
    let mut c = vec![0.0f32; m * n];
    gemm_bf16_reference(&mut c, n, &a, k, 1, &b, n, 1, m, k, n, 1.0, Start::Zero);
    let r = crate::bf16::round_bf16;
    for i in 0..m {
        for j in 0..n {
            let exact: f64 = (0..k)
                .map(|p| r(a[i * k + p]) as f64 * r(b[p * n + j]) as f64)
                .sum();
            assert!(
                (c[i * n + j] as f64 - exact).abs() <= 1e-5 * (1.0 + exact.abs()),
                "({i},{j})"
            );
            // ... and differs from the f32 product by about bf16's rounding, not more.
            let f32_exact: f64 = (0..k)
                .map(|p| a[i * k + p] as f64 * b[p * n + j] as f64)
                .sum();
            let scale: f64 = (0..k)
                .map(|p| (a[i * k + p] as f64 * b[p * n + j] as f64).abs())
                .sum();
            assert!(
                (exact - f32_exact).abs() <= scale * 2.0 * 2f64.powi(-8),
                "({i},{j})"
            );
        }
    }
}

/// A large product is split over threads by blocks of C only: the same bits for 1 and 2 threads.
#[test]
fn result_does_not_depend_on_the_thread_count() {
    for kernel in kernels() {
        let (m, k, n) = (200, 300, 260);
        let a = rand_vec(m * k, 5, 1.0);
        let b = rand_vec(n * k, 6, 1.0);
        let (mut pa, mut pb) = (PackedLhs::new(), PackedRhs::new());
        pa.pack(&a, k, false, m, k);
        pb.pack(&b, k, true, k, n);
        let run_on = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            let mut c = vec![0.5f32; m * n];
            pool.install(|| gemm_bf16_with(kernel, &mut c, n, &pa, &pb, 1.0, Start::C));
            c
        };
        assert_eq!(run_on(1), run_on(3), "{kernel:?}");
    }
}
