//! Row-wise softmax over the last dimension, numerically stable (max subtracted).
//!
//! Shapes: rows × cols, row-major.

/// out[rows,cols] = softmax(inp) per row. Overwrites out.
pub fn softmax_forward(out: &mut [f32], inp: &[f32], rows: usize, cols: usize) {
    softmax_forward_reference(out, inp, rows, cols);
}

/// dinp[rows,cols] += out·(dout − Σ_j out_j·dout_j) per row.
pub fn softmax_backward(dinp: &mut [f32], out: &[f32], dout: &[f32], rows: usize, cols: usize) {
    softmax_backward_reference(dinp, out, dout, rows, cols);
}

/// Reference twin of [`softmax_forward`]: plain loops, f64 sums.
pub fn softmax_forward_reference(out: &mut [f32], inp: &[f32], rows: usize, cols: usize) {
    assert!(out.len() >= rows * cols && inp.len() >= rows * cols);
    for r in 0..rows {
        let x = &inp[r * cols..(r + 1) * cols];
        let max = x.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b)) as f64;
        let sum: f64 = x.iter().map(|&v| (v as f64 - max).exp()).sum();
        for k in 0..cols {
            out[r * cols + k] = ((x[k] as f64 - max).exp() / sum) as f32;
        }
    }
}

/// Reference twin of [`softmax_backward`]: plain loops, f64 sums.
pub fn softmax_backward_reference(dinp: &mut [f32], out: &[f32], dout: &[f32], rows: usize, cols: usize) {
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
