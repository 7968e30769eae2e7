//! Tile products for the fused kernel: `C[m×n] (+)= alpha · A[m×k] · B[k×n]` with B row-major
//! (columns contiguous) and A read one element at a time through any strides, so Aᵀ costs nothing.
//!
//! On AVX-512 a register-blocked kernel (6 rows × up to 64 columns of C in 24 zmm accumulators, one
//! broadcast of A and one row of B per step) runs it; measured faster than calling the `gemm` crate
//! on 64×64 tiles, whose per-call dispatch and packing dominate at that size. Elsewhere the `gemm`
//! crate does the work (through [`strided_gemm`](crate::strided_gemm)).

use crate::strided_gemm::{strided_gemm, MatRef, Threads};

/// `c[m×n]` (row stride `ldc`) `= alpha·A·B (+ c if accumulate)`, where `A[i,p] = a[i*a_rs + p*a_cs]`
/// (one of the strides must be 1) and `B[p,j] = b[p*ldb + j]`.
#[allow(clippy::too_many_arguments)]
#[inline]
pub(crate) fn tile_mm(
    c: &mut [f32],
    ldc: usize,
    a: &[f32],
    a_rs: usize,
    a_cs: usize,
    b: &[f32],
    ldb: usize,
    m: usize,
    k: usize,
    n: usize,
    accumulate: bool,
    alpha: f32,
) {
    if m == 0 || n == 0 {
        return;
    }
    assert!(a_rs == 1 || a_cs == 1, "tile_mm: A needs one unit stride");
    if k > 0 {
        assert!(c.len() >= (m - 1) * ldc + n, "tile_mm: c too small");
        assert!(
            a.len() > (m - 1) * a_rs + (k - 1) * a_cs,
            "tile_mm: a too small"
        );
        assert!(b.len() >= (k - 1) * ldb + n, "tile_mm: b too small");
        #[cfg(target_arch = "x86_64")]
        {
            if std::is_x86_feature_detected!("avx512f") {
                // SAFETY: AVX-512F is available (checked) and the asserts above bound every access.
                unsafe {
                    avx512::tile_mm(c, ldc, a, a_rs, a_cs, b, ldb, m, k, n, accumulate, alpha)
                };
                return;
            }
        }
    }
    tile_mm_portable(c, ldc, a, a_rs, a_cs, b, ldb, m, k, n, accumulate, alpha);
}

/// The same product through the `gemm` crate (any CPU).
#[allow(clippy::too_many_arguments)]
fn tile_mm_portable(
    c: &mut [f32],
    ldc: usize,
    a: &[f32],
    a_rs: usize,
    a_cs: usize,
    b: &[f32],
    ldb: usize,
    m: usize,
    k: usize,
    n: usize,
    accumulate: bool,
    alpha: f32,
) {
    let beta = if accumulate { 1.0 } else { 0.0 };
    strided_gemm(
        c,
        ldc,
        1,
        MatRef {
            data: a,
            rs: a_rs,
            cs: a_cs,
        },
        MatRef::rows(b, ldb),
        m,
        k,
        n,
        alpha,
        beta,
        Threads::Caller,
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::{KeyedRng, Purpose};

    /// The AVX-512 kernel (where the CPU has it) and the portable path agree with a naive product
    /// on every block shape, strided and transposed A, and accumulation.
    #[test]
    fn tile_mm_matches_naive_product() {
        let mut r = KeyedRng::new(1, Purpose::Other, 0, 0);
        for &(m, k, n) in &[
            (1, 1, 1),
            (3, 5, 7),
            (4, 64, 64),
            (9, 17, 70),
            (64, 3, 33),
            (5, 0, 6),
        ] {
            for trans in [false, true] {
                let (a_rs, a_cs) = if trans { (1, m + 2) } else { (k + 1, 1) };
                let a: Vec<f32> = (0..(m + 2) * (k + 1) + 1).map(|_| r.normal()).collect();
                let ldb = n + 3;
                let b: Vec<f32> = (0..k.max(1) * ldb).map(|_| r.normal()).collect();
                let ldc = n + 1;
                let c0: Vec<f32> = (0..m * ldc).map(|_| r.normal()).collect();
                for acc in [false, true] {
                    let mut want = c0.clone();
                    for i in 0..m {
                        for j in 0..n {
                            let s: f32 = (0..k)
                                .map(|p| a[i * a_rs + p * a_cs] * b[p * ldb + j])
                                .sum();
                            want[i * ldc + j] = 0.5 * s + if acc { c0[i * ldc + j] } else { 0.0 };
                        }
                    }
                    let (mut fast, mut portable) = (c0.clone(), c0.clone());
                    tile_mm(&mut fast, ldc, &a, a_rs, a_cs, &b, ldb, m, k, n, acc, 0.5);
                    tile_mm_portable(
                        &mut portable,
                        ldc,
                        &a,
                        a_rs,
                        a_cs,
                        &b,
                        ldb,
                        m,
                        k,
                        n,
                        acc,
                        0.5,
                    );
                    for i in 0..m {
                        for j in 0..n {
                            let w = want[i * ldc + j];
                            assert!(
                                (fast[i * ldc + j] - w).abs() < 1e-4,
                                "fast m{m} k{k} n{n} t{trans} a{acc}"
                            );
                            assert!(
                                (portable[i * ldc + j] - w).abs() < 1e-4,
                                "portable m{m} k{k} n{n} t{trans} a{acc}"
                            );
                        }
                    }
                }
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    /// Rows of C per register block: 6 rows × 4 vectors = 24 accumulators + 4 B vectors + 1 broadcast.
    const ROWS: usize = 6;

    #[allow(clippy::too_many_arguments)]
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn tile_mm(
        c: &mut [f32],
        ldc: usize,
        a: &[f32],
        a_rs: usize,
        a_cs: usize,
        b: &[f32],
        ldb: usize,
        m: usize,
        k: usize,
        n: usize,
        accumulate: bool,
        alpha: f32,
    ) {
        let (cp, ap, bp) = (c.as_mut_ptr(), a.as_ptr(), b.as_ptr());
        let mut j0 = 0;
        while j0 < n {
            let cols = (n - j0).min(64);
            let nv = cols.div_ceil(16);
            let rem = cols - (nv - 1) * 16;
            let last: __mmask16 = if rem == 16 { 0xFFFF } else { (1u16 << rem) - 1 };
            let mut i0 = 0;
            while i0 < m {
                let rows = (m - i0).min(ROWS);
                let args = Blk {
                    cp: cp.add(i0 * ldc + j0),
                    ldc,
                    ap: ap.add(i0 * a_rs),
                    a_rs,
                    a_cs,
                    bp: bp.add(j0),
                    ldb,
                    k,
                    last,
                    accumulate,
                    alpha,
                };
                match (rows, nv) {
                    (6, 4) => block::<6, 4>(&args),
                    (6, 3) => block::<6, 3>(&args),
                    (6, 2) => block::<6, 2>(&args),
                    (6, 1) => block::<6, 1>(&args),
                    (5, 4) => block::<5, 4>(&args),
                    (5, 3) => block::<5, 3>(&args),
                    (5, 2) => block::<5, 2>(&args),
                    (5, 1) => block::<5, 1>(&args),
                    (4, 4) => block::<4, 4>(&args),
                    (4, 3) => block::<4, 3>(&args),
                    (4, 2) => block::<4, 2>(&args),
                    (4, 1) => block::<4, 1>(&args),
                    (3, 4) => block::<3, 4>(&args),
                    (3, 3) => block::<3, 3>(&args),
                    (3, 2) => block::<3, 2>(&args),
                    (3, 1) => block::<3, 1>(&args),
                    (2, 4) => block::<2, 4>(&args),
                    (2, 3) => block::<2, 3>(&args),
                    (2, 2) => block::<2, 2>(&args),
                    (2, 1) => block::<2, 1>(&args),
                    (1, 4) => block::<1, 4>(&args),
                    (1, 3) => block::<1, 3>(&args),
                    (1, 2) => block::<1, 2>(&args),
                    _ => block::<1, 1>(&args),
                }
                i0 += rows;
            }
            j0 += cols;
        }
    }

    struct Blk {
        cp: *mut f32,
        ldc: usize,
        ap: *const f32,
        a_rs: usize,
        a_cs: usize,
        bp: *const f32,
        ldb: usize,
        k: usize,
        /// Lane mask of the last 16-column vector.
        last: __mmask16,
        accumulate: bool,
        alpha: f32,
    }

    /// One R×(16·V) block of C over the whole inner dimension.
    #[inline(always)]
    #[allow(clippy::needless_range_loop)]
    unsafe fn block<const R: usize, const V: usize>(x: &Blk) {
        let mut acc = [[_mm512_setzero_ps(); V]; R];
        let mask = |v: usize| if v + 1 == V { x.last } else { 0xFFFF };
        for p in 0..x.k {
            let brow = x.bp.add(p * x.ldb);
            let mut bv = [_mm512_setzero_ps(); V];
            for v in 0..V {
                bv[v] = _mm512_maskz_loadu_ps(mask(v), brow.add(16 * v));
            }
            let acol = x.ap.add(p * x.a_cs);
            for r in 0..R {
                let av = _mm512_set1_ps(*acol.add(r * x.a_rs));
                for v in 0..V {
                    acc[r][v] = _mm512_fmadd_ps(av, bv[v], acc[r][v]);
                }
            }
        }
        let alpha = _mm512_set1_ps(x.alpha);
        for r in 0..R {
            let crow = x.cp.add(r * x.ldc);
            for v in 0..V {
                let mut out = _mm512_mul_ps(acc[r][v], alpha);
                if x.accumulate {
                    out = _mm512_add_ps(out, _mm512_maskz_loadu_ps(mask(v), crow.add(16 * v)));
                }
                _mm512_mask_storeu_ps(crow.add(16 * v), mask(v), out);
            }
        }
    }
}
