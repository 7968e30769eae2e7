//! Small single-threaded GEMMs on tiles (through the `gemm` crate with `Parallelism::None`; the
//! callers already run inside rayon tasks).

/// `c[m×n] (row stride ldc) = beta·c + alpha·op(a)·op(b)` where op(a) is `m×k` (stored `k×m` with row
/// stride `lda` if `ta`, else `m×k`), op(b) is `k×n` (stored `n×k` with row stride `ldb` if `tb`).
/// `accumulate = false` ignores c's old contents (beta = 0).
#[allow(clippy::too_many_arguments)]
#[inline]
pub(crate) fn tile_gemm(
    c: &mut [f32],
    ldc: usize,
    a: &[f32],
    lda: usize,
    ta: bool,
    b: &[f32],
    ldb: usize,
    tb: bool,
    m: usize,
    k: usize,
    n: usize,
    accumulate: bool,
    alpha: f32,
) {
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            for i in 0..m {
                c[i * ldc..i * ldc + n].iter_mut().for_each(|x| *x = 0.0);
            }
        }
        return;
    }
    // Bounds of every element touched (the gemm call itself is unchecked).
    assert!(c.len() >= (m - 1) * ldc + n, "tile_gemm: c too small");
    let a_need = if ta { (k - 1) * lda + m } else { (m - 1) * lda + k };
    let b_need = if tb { (n - 1) * ldb + k } else { (k - 1) * ldb + n };
    assert!(a.len() >= a_need && b.len() >= b_need, "tile_gemm: a or b too small");
    let (a_rs, a_cs) = if ta { (1, lda as isize) } else { (lda as isize, 1) };
    let (b_rs, b_cs) = if tb { (1, ldb as isize) } else { (ldb as isize, 1) };
    // SAFETY: the asserts above keep every accessed element inside the slices; c does not alias a/b
    // (it is a distinct &mut).
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            1,
            ldc as isize,
            accumulate,
            a.as_ptr(),
            a_cs,
            a_rs,
            b.as_ptr(),
            b_cs,
            b_rs,
            1.0,
            alpha,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}
