//! Dense matrix products: the linear layer's forward and backward, and a general GEMM.
//!
//! Shapes: N = rows (B*T), C = input channels, OC = output channels. Weights are stored
//! `[OC, C]` (PyTorch's `nn.Linear` layout), so the forward is `out = inp · weightᵀ + bias`.
//!
//! The fast paths call the `gemm` crate through [`strided_gemm`](crate::strided_gemm) (AVX-512
//! micro-kernels with its `x86-v4` feature, runtime dispatch elsewhere) with strides that express
//! every transpose, so nothing is ever copied. Large products run on rayon's pool; small ones stay on the calling thread, where threading costs more
//! than it saves (and where callers such as attention may already be running in parallel).

#![allow(clippy::too_many_arguments)] // Kernel signatures follow llm.c: buffers first, sizes last.

use rayon::prelude::*;

use crate::strided_gemm::{strided_gemm, MatRef, Threads};

/// Columns reduced together by one task of the bias-gradient reduction.
const DBIAS_BLOCK: usize = 64;

/// out[N,OC] = inp[N,C] · weight[OC,C]ᵀ + bias[OC]. Overwrites out.
pub fn matmul_forward(
    out: &mut [f32],
    inp: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
    n: usize,
    c: usize,
    oc: usize,
) {
    assert!(out.len() >= n * oc && inp.len() >= n * c && weight.len() >= oc * c);
    if n == 0 || oc == 0 {
        return;
    }
    let out = &mut out[..n * oc];
    match bias {
        Some(bias) => {
            // Pass 1: every row of out starts as the bias; pass 2 lets gemm accumulate onto it, which
            // costs one streaming write of out instead of a second read-modify-write pass.
            fill_rows(out, bias, oc);
            strided_gemm(
                out,
                oc,
                1,
                MatRef::rows(inp, c),
                MatRef::transposed(weight, c),
                n,
                c,
                oc,
                1.0,
                1.0,
                Threads::Pool,
            );
        }
        None => strided_gemm(
            out,
            oc,
            1,
            MatRef::rows(inp, c),
            MatRef::transposed(weight, c),
            n,
            c,
            oc,
            1.0,
            0.0,
            Threads::Pool,
        ),
    }
}

/// Every row of `out[rows, OC]` ← `bias[OC]`.
fn fill_rows(out: &mut [f32], bias: &[f32], oc: usize) {
    let bias = &bias[..oc];
    let rows_per_task = (1 << 14) / oc + 1;
    out.par_chunks_mut(rows_per_task * oc).for_each(|chunk| {
        for row in chunk.chunks_exact_mut(oc) {
            row.copy_from_slice(bias);
        }
    });
}

/// Reference twin of [`matmul_forward`]: plain loops.
pub fn matmul_forward_reference(
    out: &mut [f32],
    inp: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
    n: usize,
    c: usize,
    oc: usize,
) {
    assert!(out.len() >= n * oc && inp.len() >= n * c && weight.len() >= oc * c);
    for i in 0..n {
        let x = &inp[i * c..(i + 1) * c];
        for o in 0..oc {
            let w = &weight[o * c..(o + 1) * c];
            let mut acc = bias.map_or(0.0, |b| b[o]);
            for k in 0..c {
                acc += x[k] * w[k];
            }
            out[i * oc + o] = acc;
        }
    }
}

/// dinp[N,C] += dout[N,OC]·weight[OC,C]; dweight[OC,C] += doutᵀ·inp; dbias[OC] += Σ_rows dout.
pub fn matmul_backward(
    dinp: Option<&mut [f32]>,
    dweight: &mut [f32],
    dbias: Option<&mut [f32]>,
    dout: &[f32],
    inp: &[f32],
    weight: &[f32],
    n: usize,
    c: usize,
    oc: usize,
) {
    assert!(
        dout.len() >= n * oc
            && inp.len() >= n * c
            && weight.len() >= oc * c
            && dweight.len() >= oc * c
    );
    // Forward: out = inp · weightᵀ + bias.
    // dinp[N,C] += dout[N,OC] · weight[OC,C].
    if let Some(dinp) = dinp {
        assert!(dinp.len() >= n * c);
        strided_gemm(
            dinp,
            c,
            1,
            MatRef::rows(dout, oc),
            MatRef::rows(weight, c),
            n,
            oc,
            c,
            1.0,
            1.0,
            Threads::Pool,
        );
    }
    // dweight[OC,C] += doutᵀ[OC,N] · inp[N,C]; doutᵀ is dout read with swapped strides.
    strided_gemm(
        dweight,
        c,
        1,
        MatRef::transposed(dout, oc),
        MatRef::rows(inp, c),
        oc,
        n,
        c,
        1.0,
        1.0,
        Threads::Pool,
    );
    if let Some(dbias) = dbias {
        bias_backward(dbias, dout, n, oc);
    }
}

/// dbias[OC] += Σ_rows dout[N,OC]: each task owns a block of columns and sweeps all rows, so the
/// reduction needs no scratch memory and its inner loop is a contiguous vector add.
pub(crate) fn bias_backward(dbias: &mut [f32], dout: &[f32], n: usize, oc: usize) {
    let dbias = &mut dbias[..oc];
    let dout = &dout[..n * oc];
    dbias
        .par_chunks_mut(DBIAS_BLOCK)
        .enumerate()
        .for_each(|(blk, db)| {
            let j0 = blk * DBIAS_BLOCK;
            let w = db.len();
            let mut acc = [0.0f32; DBIAS_BLOCK];
            let acc = &mut acc[..w];
            for row in dout.chunks_exact(oc) {
                for (a, &g) in acc.iter_mut().zip(&row[j0..j0 + w]) {
                    *a += g;
                }
            }
            for (d, &a) in db.iter_mut().zip(acc.iter()) {
                *d += a;
            }
        });
}

/// Reference twin of [`matmul_backward`]: plain loops.
pub fn matmul_backward_reference(
    mut dinp: Option<&mut [f32]>,
    dweight: &mut [f32],
    mut dbias: Option<&mut [f32]>,
    dout: &[f32],
    inp: &[f32],
    weight: &[f32],
    n: usize,
    c: usize,
    oc: usize,
) {
    assert!(
        dout.len() >= n * oc
            && inp.len() >= n * c
            && weight.len() >= oc * c
            && dweight.len() >= oc * c
    );
    // Forward: out[i,o] = Σ_k inp[i,k]·weight[o,k] + bias[o]. The loops run i, o, k so every
    // inner loop walks contiguous rows (a plain axpy), which keeps the twin usable at real sizes.
    for i in 0..n {
        for o in 0..oc {
            let d = dout[i * oc + o];
            if let Some(dinp) = dinp.as_deref_mut() {
                for k in 0..c {
                    dinp[i * c + k] += d * weight[o * c + k];
                }
            }
            for k in 0..c {
                dweight[o * c + k] += d * inp[i * c + k];
            }
            if let Some(dbias) = dbias.as_deref_mut() {
                dbias[o] += d;
            }
        }
    }
}

/// General GEMM: c[M,N] = alpha·op(a)·op(b) + beta·c, op(a) is [M,K] (a stored [K,M] if trans_a),
/// op(b) is [K,N] (b stored [N,K] if trans_b). beta = 0 ignores c's old contents (even NaN).
pub fn gemm(
    c: &mut [f32],
    a: &[f32],
    b: &[f32],
    m: usize,
    k: usize,
    n: usize,
    trans_a: bool,
    trans_b: bool,
    alpha: f32,
    beta: f32,
) {
    assert!(c.len() >= m * n && a.len() >= m * k && b.len() >= k * n);
    let a = MatRef::maybe_transposed(a, if trans_a { m } else { k }, trans_a);
    let b = MatRef::maybe_transposed(b, if trans_b { k } else { n }, trans_b);
    strided_gemm(c, n, 1, a, b, m, k, n, alpha, beta, Threads::Pool);
}

/// Reference twin of [`gemm`]: plain loops.
pub fn gemm_reference(
    c: &mut [f32],
    a: &[f32],
    b: &[f32],
    m: usize,
    k: usize,
    n: usize,
    trans_a: bool,
    trans_b: bool,
    alpha: f32,
    beta: f32,
) {
    assert!(c.len() >= m * n && a.len() >= m * k && b.len() >= k * n);
    for i in 0..m {
        for j in 0..n {
            let mut acc = 0.0f32;
            for p in 0..k {
                let av = if trans_a { a[p * m + i] } else { a[i * k + p] };
                let bv = if trans_b { b[j * k + p] } else { b[p * n + j] };
                acc += av * bv;
            }
            let old = if beta == 0.0 {
                0.0
            } else {
                beta * c[i * n + j]
            };
            c[i * n + j] = alpha * acc + old;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{assert_close, check_grad, rand_vec, weighted_sum};

    #[test]
    fn reference_gradients_match_finite_differences() {
        let (n, c, oc) = (3, 5, 4);
        let inp = rand_vec(n * c, 1, 1.0);
        let weight = rand_vec(oc * c, 2, 1.0);
        let bias = rand_vec(oc, 3, 1.0);
        let w = rand_vec(n * oc, 4, 1.0);
        let mut dinp = rand_vec(n * c, 5, 1.0);
        let mut dweight = rand_vec(oc * c, 6, 1.0);
        let mut dbias = rand_vec(oc, 7, 1.0);
        let (dinp0, dweight0, dbias0) = (dinp.clone(), dweight.clone(), dbias.clone());
        matmul_backward_reference(
            Some(&mut dinp),
            &mut dweight,
            Some(&mut dbias),
            &w,
            &inp,
            &weight,
            n,
            c,
            oc,
        );
        // The gradients accumulate: subtract what was there before.
        let sub = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| x - y).collect::<Vec<f32>>();
        let obj = |i: &[f32], wt: &[f32], b: &[f32]| {
            let mut out = vec![0.0; n * oc];
            matmul_forward_reference(&mut out, i, wt, Some(b), n, c, oc);
            weighted_sum(&w, &out)
        };
        let (h, atol, rtol) = (1e-2, 1e-3, 1e-3);
        check_grad(
            "matmul dinp",
            &inp,
            &sub(&dinp, &dinp0),
            h,
            atol,
            rtol,
            |x| obj(x, &weight, &bias),
        );
        check_grad(
            "matmul dweight",
            &weight,
            &sub(&dweight, &dweight0),
            h,
            atol,
            rtol,
            |x| obj(&inp, x, &bias),
        );
        check_grad(
            "matmul dbias",
            &bias,
            &sub(&dbias, &dbias0),
            h,
            atol,
            rtol,
            |x| obj(&inp, &weight, x),
        );
    }

    fn forward_backward_matches_reference(
        n: usize,
        c: usize,
        oc: usize,
        with_bias: bool,
        with_dinp: bool,
    ) {
        let inp = rand_vec(n * c, 11, 1.0);
        let weight = rand_vec(oc * c, 12, 0.5);
        let bias = rand_vec(oc, 13, 1.0);
        let bias = with_bias.then_some(&bias[..]);
        let mut out = vec![f32::NAN; n * oc];
        let mut out_ref = vec![0.0; n * oc];
        matmul_forward(&mut out, &inp, &weight, bias, n, c, oc);
        matmul_forward_reference(&mut out_ref, &inp, &weight, bias, n, c, oc);
        let tol = 1e-5 * (c as f32).sqrt();
        assert_close(
            &out,
            &out_ref,
            tol,
            1e-4,
            &format!("matmul_forward {n}x{c}x{oc}"),
        );

        let dout = rand_vec(n * oc, 14, 1.0);
        let dinp0 = rand_vec(n * c, 15, 1.0);
        let dweight0 = rand_vec(oc * c, 16, 1.0);
        let dbias0 = rand_vec(oc, 17, 1.0);
        let (mut dinp, mut dweight, mut dbias) = (dinp0.clone(), dweight0.clone(), dbias0.clone());
        let (mut dinp_r, mut dweight_r, mut dbias_r) =
            (dinp0.clone(), dweight0.clone(), dbias0.clone());
        matmul_backward(
            with_dinp.then_some(&mut dinp[..]),
            &mut dweight,
            with_bias.then_some(&mut dbias[..]),
            &dout,
            &inp,
            &weight,
            n,
            c,
            oc,
        );
        matmul_backward_reference(
            with_dinp.then_some(&mut dinp_r[..]),
            &mut dweight_r,
            with_bias.then_some(&mut dbias_r[..]),
            &dout,
            &inp,
            &weight,
            n,
            c,
            oc,
        );
        let tol_n = 1e-5 * (n as f32).sqrt();
        assert_close(
            &dinp,
            &dinp_r,
            1e-5 * (oc as f32).sqrt(),
            1e-4,
            "matmul dinp",
        );
        assert_close(&dweight, &dweight_r, tol_n, 1e-4, "matmul dweight");
        assert_close(&dbias, &dbias_r, tol_n, 1e-4, "matmul dbias");
        if !with_dinp {
            assert_eq!(dinp, dinp0, "dinp = None must leave the buffer alone");
        }
        if !with_bias {
            assert_eq!(dbias, dbias0);
        }
    }

    #[test]
    fn fast_matmul_matches_reference_on_odd_sizes() {
        forward_backward_matches_reference(37, 19, 23, true, true);
        forward_backward_matches_reference(37, 19, 23, false, false);
        forward_backward_matches_reference(1, 1, 1, true, true);
        forward_backward_matches_reference(5, 130, 67, true, false);
    }

    #[test]
    fn fast_matmul_matches_reference_on_realistic_sizes() {
        // One 64-token slice of a d=256, FFN=1024 layer: large enough to take the threaded path.
        forward_backward_matches_reference(64, 256, 1024, true, true);
        forward_backward_matches_reference(64, 1024, 256, true, true);
    }

    #[test]
    fn gemm_all_transposes_and_betas() {
        let (m, k, n) = (13, 29, 17);
        for (trans_a, trans_b) in [(false, false), (true, false), (false, true), (true, true)] {
            let a = rand_vec(m * k, 21, 1.0);
            let b = rand_vec(k * n, 22, 1.0);
            // Check the reference itself against an explicit transpose-free product.
            let at = |i: usize, p: usize| if trans_a { a[p * m + i] } else { a[i * k + p] };
            let bt = |p: usize, j: usize| if trans_b { b[j * k + p] } else { b[p * n + j] };
            let c0 = rand_vec(m * n, 23, 1.0);
            for (alpha, beta) in [(1.0f32, 0.0f32), (1.0, 1.0), (0.5, 1.0), (-2.0, 0.0)] {
                let mut expect = vec![0.0f32; m * n];
                for i in 0..m {
                    for j in 0..n {
                        let dot: f64 = (0..k).map(|p| at(i, p) as f64 * bt(p, j) as f64).sum();
                        expect[i * n + j] =
                            (alpha as f64 * dot + beta as f64 * c0[i * n + j] as f64) as f32;
                    }
                }
                let what = format!("gemm ta={trans_a} tb={trans_b} alpha={alpha} beta={beta}");
                let mut c_ref = c0.clone();
                let mut c_fast = c0.clone();
                if beta == 0.0 {
                    // beta = 0 must not read c: NaN there must not leak into the result.
                    c_ref.fill(f32::NAN);
                    c_fast.fill(f32::NAN);
                }
                gemm_reference(&mut c_ref, &a, &b, m, k, n, trans_a, trans_b, alpha, beta);
                gemm(&mut c_fast, &a, &b, m, k, n, trans_a, trans_b, alpha, beta);
                assert_close(&c_ref, &expect, 1e-5, 1e-5, &format!("{what} (reference)"));
                assert_close(&c_fast, &expect, 1e-4, 1e-4, &format!("{what} (fast)"));
            }
        }
    }

    #[test]
    fn gemm_large_threaded_and_k_zero() {
        let (m, k, n) = (96, 200, 130);
        let a = rand_vec(k * m, 31, 1.0);
        let b = rand_vec(n * k, 32, 1.0);
        let mut c_ref = vec![f32::NAN; m * n];
        let mut c_fast = vec![f32::NAN; m * n];
        gemm_reference(&mut c_ref, &a, &b, m, k, n, true, true, 1.0, 0.0);
        gemm(&mut c_fast, &a, &b, m, k, n, true, true, 1.0, 0.0);
        assert_close(&c_fast, &c_ref, 1e-4, 1e-4, "gemm 96x200x130 transposed");
        // k = 0: the product is empty, so c = beta·c.
        let mut c = vec![2.0f32; 6];
        gemm(&mut c, &[], &[], 2, 0, 3, false, false, 1.0, 0.5);
        assert_eq!(c, vec![1.0; 6]);
        let mut c = vec![f32::NAN; 6];
        gemm(&mut c, &[], &[], 2, 0, 3, false, false, 1.0, 0.0);
        assert_eq!(c, vec![0.0; 6]);
    }
}
