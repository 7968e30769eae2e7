//! Dense matrix products: the linear layer's forward and backward, and a general GEMM.
//!
//! Shapes: N = rows (B*T), C = input channels, OC = output channels. Weights are stored
//! `[OC, C]` (PyTorch's `nn.Linear` layout), so the forward is `out = inp · weightᵀ + bias`.

/// out[N,OC] = inp[N,C] · weight[OC,C]ᵀ + bias[OC]. Overwrites out.
pub fn matmul_forward(out: &mut [f32], inp: &[f32], weight: &[f32], bias: Option<&[f32]>, n: usize, c: usize, oc: usize) {
    matmul_forward_reference(out, inp, weight, bias, n, c, oc);
}

/// Reference twin of [`matmul_forward`]: plain loops.
pub fn matmul_forward_reference(out: &mut [f32], inp: &[f32], weight: &[f32], bias: Option<&[f32]>, n: usize, c: usize, oc: usize) {
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
pub fn matmul_backward(dinp: Option<&mut [f32]>, dweight: &mut [f32], dbias: Option<&mut [f32]>,
                       dout: &[f32], inp: &[f32], weight: &[f32], n: usize, c: usize, oc: usize) {
    matmul_backward_reference(dinp, dweight, dbias, dout, inp, weight, n, c, oc);
}

/// Reference twin of [`matmul_backward`]: plain loops.
pub fn matmul_backward_reference(dinp: Option<&mut [f32]>, dweight: &mut [f32], dbias: Option<&mut [f32]>,
                                 dout: &[f32], inp: &[f32], weight: &[f32], n: usize, c: usize, oc: usize) {
    assert!(dout.len() >= n * oc && inp.len() >= n * c && weight.len() >= oc * c && dweight.len() >= oc * c);
    // Forward: out[i,o] = Σ_k inp[i,k]·weight[o,k] + bias[o].
    if let Some(dinp) = dinp {
        for i in 0..n {
            for k in 0..c {
                let mut acc = 0.0f32;
                for o in 0..oc {
                    acc += dout[i * oc + o] * weight[o * c + k];
                }
                dinp[i * c + k] += acc;
            }
        }
    }
    for o in 0..oc {
        for k in 0..c {
            let mut acc = 0.0f32;
            for i in 0..n {
                acc += dout[i * oc + o] * inp[i * c + k];
            }
            dweight[o * c + k] += acc;
        }
    }
    if let Some(dbias) = dbias {
        for o in 0..oc {
            let mut acc = 0.0f32;
            for i in 0..n {
                acc += dout[i * oc + o];
            }
            dbias[o] += acc;
        }
    }
}

/// General GEMM: c[M,N] = alpha·op(a)·op(b) + beta·c, op(a) is [M,K] (a stored [K,M] if trans_a),
/// op(b) is [K,N] (b stored [N,K] if trans_b). beta = 0 ignores c's old contents (even NaN).
pub fn gemm(c: &mut [f32], a: &[f32], b: &[f32], m: usize, k: usize, n: usize,
            trans_a: bool, trans_b: bool, alpha: f32, beta: f32) {
    gemm_reference(c, a, b, m, k, n, trans_a, trans_b, alpha, beta);
}

/// Reference twin of [`gemm`]: plain loops.
pub fn gemm_reference(c: &mut [f32], a: &[f32], b: &[f32], m: usize, k: usize, n: usize,
                      trans_a: bool, trans_b: bool, alpha: f32, beta: f32) {
    assert!(c.len() >= m * n && a.len() >= m * k && b.len() >= k * n);
    for i in 0..m {
        for j in 0..n {
            let mut acc = 0.0f32;
            for p in 0..k {
                let av = if trans_a { a[p * m + i] } else { a[i * k + p] };
                let bv = if trans_b { b[j * k + p] } else { b[p * n + j] };
                acc += av * bv;
            }
            let old = if beta == 0.0 { 0.0 } else { beta * c[i * n + j] };
            c[i * n + j] = alpha * acc + old;
        }
    }
}
