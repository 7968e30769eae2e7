//! Row-wise softmax over the last dimension, numerically stable (max subtracted).
//!
//! Shapes: rows × cols, row-major. A row that is entirely −∞ (fully masked) yields zeros, never NaN.

use crate::simd::{self, rows_per_task, simd_dispatch};
use rayon::prelude::*;

/// out[rows,cols] = softmax(inp) per row. Overwrites out.
pub fn softmax_forward(out: &mut [f32], inp: &[f32], rows: usize, cols: usize) {
    assert!(out.len() >= rows * cols && inp.len() >= rows * cols);
    if rows == 0 || cols == 0 {
        return;
    }
    let task = rows_per_task(cols) * cols;
    out[..rows * cols]
        .par_chunks_mut(task)
        .zip(inp[..rows * cols].par_chunks(task))
        .for_each(|(o, x)| softmax_forward_rows(o, x, cols));
}

/// dinp[rows,cols] += out·(dout − Σ_j out_j·dout_j) per row.
pub fn softmax_backward(dinp: &mut [f32], out: &[f32], dout: &[f32], rows: usize, cols: usize) {
    assert!(dinp.len() >= rows * cols && out.len() >= rows * cols && dout.len() >= rows * cols);
    if rows == 0 || cols == 0 {
        return;
    }
    let task = rows_per_task(cols) * cols;
    dinp[..rows * cols]
        .par_chunks_mut(task)
        .zip(out[..rows * cols].par_chunks(task))
        .zip(dout[..rows * cols].par_chunks(task))
        .for_each(|((d, y), g)| softmax_backward_rows(d, y, g, cols));
}

#[inline(always)]
fn softmax_forward_body(out: &mut [f32], inp: &[f32], cols: usize) {
    for (o, x) in out.chunks_exact_mut(cols).zip(inp.chunks_exact(cols)) {
        // Pass 1: the row maximum, subtracted for stability.
        let m = simd::max(x);
        if m == f32::NEG_INFINITY {
            o.fill(0.0);
            continue;
        }
        // Pass 2: exponentials, stored, and their sum.
        let inv = 1.0 / simd::exp_store_sum(o, x, m);
        // Pass 3: normalise.
        for e in o.iter_mut() {
            *e *= inv;
        }
    }
}

#[inline(always)]
fn softmax_backward_body(dinp: &mut [f32], out: &[f32], dout: &[f32], cols: usize) {
    for ((d, y), g) in dinp
        .chunks_exact_mut(cols)
        .zip(out.chunks_exact(cols))
        .zip(dout.chunks_exact(cols))
    {
        // Forward: y = e^x / Σ e^x, so dx = y·(dy − Σ_j y_j·dy_j).
        let yg = simd::dot(y, g);
        for ((dd, &yy), &gg) in d.iter_mut().zip(y).zip(g) {
            *dd += yy * (gg - yg);
        }
    }
}

simd_dispatch!(fn softmax_forward_rows(out: &mut [f32], inp: &[f32], cols: usize) = softmax_forward_body);
simd_dispatch!(fn softmax_backward_rows(dinp: &mut [f32], out: &[f32], dout: &[f32], cols: usize) = softmax_backward_body);

/// Reference twin of [`softmax_forward`]: plain loops, f64 sums.
pub fn softmax_forward_reference(out: &mut [f32], inp: &[f32], rows: usize, cols: usize) {
    assert!(out.len() >= rows * cols && inp.len() >= rows * cols);
    for r in 0..rows {
        let x = &inp[r * cols..(r + 1) * cols];
        let max = x.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b)) as f64;
        if max == f64::NEG_INFINITY {
            out[r * cols..(r + 1) * cols].fill(0.0);
            continue;
        }
        let sum: f64 = x.iter().map(|&v| (v as f64 - max).exp()).sum();
        for k in 0..cols {
            out[r * cols + k] = ((x[k] as f64 - max).exp() / sum) as f32;
        }
    }
}

/// Reference twin of [`softmax_backward`]: plain loops, f64 sums.
pub fn softmax_backward_reference(
    dinp: &mut [f32],
    out: &[f32],
    dout: &[f32],
    rows: usize,
    cols: usize,
) {
    assert!(dinp.len() >= rows * cols && out.len() >= rows * cols && dout.len() >= rows * cols);
    for r in 0..rows {
        let y = &out[r * cols..(r + 1) * cols];
        let g = &dout[r * cols..(r + 1) * cols];
        let dot: f64 = y.iter().zip(g).map(|(&a, &b)| a as f64 * b as f64).sum();
        for k in 0..cols {
            dinp[r * cols + k] += (y[k] as f64 * (g[k] as f64 - dot)) as f32;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{assert_close, check_grad, rand_vec, weighted_sum};

    #[test]
    fn reference_gradients_match_finite_differences() {
        let (rows, cols) = (3, 7);
        let inp = rand_vec(rows * cols, 1, 3.0);
        let w = rand_vec(rows * cols, 2, 1.0);
        let mut out = vec![0.0; rows * cols];
        softmax_forward_reference(&mut out, &inp, rows, cols);
        for row in out.chunks(cols) {
            assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        }
        let mut dinp = vec![0.0; rows * cols];
        softmax_backward_reference(&mut dinp, &out, &w, rows, cols);
        check_grad("softmax", &inp, &dinp, 1e-2, 1e-4, 1e-3, |x| {
            let mut o = vec![0.0; rows * cols];
            softmax_forward_reference(&mut o, x, rows, cols);
            weighted_sum(&w, &o)
        });
    }

    #[test]
    fn fast_matches_reference() {
        for (rows, cols, scale) in [
            (37, 19, 5.0f32),
            (1, 1, 1.0),
            (5, 8192, 20.0),
            (256, 128, 3.0),
        ] {
            let mut inp = rand_vec(rows * cols, 3, scale);
            // Large offsets must not overflow: stability comes from subtracting the maximum.
            inp[0] += 1000.0;
            let (mut out, mut out_ref) = (vec![f32::NAN; rows * cols], vec![0.0; rows * cols]);
            softmax_forward(&mut out, &inp, rows, cols);
            softmax_forward_reference(&mut out_ref, &inp, rows, cols);
            assert_close(
                &out,
                &out_ref,
                1e-7,
                1e-5,
                &format!("softmax_forward {rows}x{cols}"),
            );
            let dout = rand_vec(rows * cols, 4, 1.0);
            let acc0 = rand_vec(rows * cols, 5, 1.0);
            let (mut d, mut d_ref) = (acc0.clone(), acc0);
            softmax_backward(&mut d, &out_ref, &dout, rows, cols);
            softmax_backward_reference(&mut d_ref, &out_ref, &dout, rows, cols);
            assert_close(
                &d,
                &d_ref,
                1e-6,
                1e-5,
                &format!("softmax_backward {rows}x{cols}"),
            );
        }
    }

    #[test]
    fn fully_masked_rows_give_zeros_not_nan() {
        let cols = 21;
        let mut inp = rand_vec(3 * cols, 9, 2.0);
        inp[cols..2 * cols].fill(f32::NEG_INFINITY);
        inp[2 * cols + 4] = f32::NEG_INFINITY;
        let (mut out, mut out_ref) = (vec![f32::NAN; 3 * cols], vec![f32::NAN; 3 * cols]);
        softmax_forward(&mut out, &inp, 3, cols);
        softmax_forward_reference(&mut out_ref, &inp, 3, cols);
        for o in [&out, &out_ref] {
            assert!(o[cols..2 * cols].iter().all(|&x| x == 0.0));
            assert_eq!(o[2 * cols + 4], 0.0);
            assert!((o[2 * cols..].iter().sum::<f32>() - 1.0).abs() < 1e-6);
        }
        let mut d = vec![0.0; 3 * cols];
        softmax_backward(&mut d, &out, &rand_vec(3 * cols, 10, 1.0), 3, cols);
        assert!(d[cols..2 * cols].iter().all(|&x| x == 0.0));
    }

    #[test]
    fn baseline_path_matches_reference() {
        let (rows, cols) = (7, 37);
        let inp = rand_vec(rows * cols, 6, 5.0);
        let (mut out, mut out_ref) = (vec![0.0; rows * cols], vec![0.0; rows * cols]);
        softmax_forward_body(&mut out, &inp, cols);
        softmax_forward_reference(&mut out_ref, &inp, rows, cols);
        assert_close(&out, &out_ref, 1e-7, 1e-5, "baseline softmax_forward");
        let dout = rand_vec(rows * cols, 7, 1.0);
        let (mut d, mut d_ref) = (vec![0.0; rows * cols], vec![0.0; rows * cols]);
        softmax_backward_body(&mut d, &out_ref, &dout, cols);
        softmax_backward_reference(&mut d_ref, &out_ref, &dout, rows, cols);
        assert_close(&d, &d_ref, 1e-6, 1e-5, "baseline softmax_backward");
    }
}
