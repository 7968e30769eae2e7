//! Layer normalisation over the channel dimension.
//!
//! Shapes: N = rows (B*T), C = channels. `mean` and `rstd` ([N]) are saved for the backward.

/// out[N,C] = (inp − mean)·rstd·weight[C] + bias[C], with mean[N] and rstd[N] = 1/sqrt(var + eps)
/// written for the backward. Overwrites out, mean and rstd.
pub fn layernorm_forward(out: &mut [f32], mean: &mut [f32], rstd: &mut [f32], inp: &[f32],
                         weight: &[f32], bias: &[f32], n: usize, c: usize, eps: f32) {
    layernorm_forward_reference(out, mean, rstd, inp, weight, bias, n, c, eps);
}

/// Reference twin of [`layernorm_forward`]: plain loops, f64 statistics.
pub fn layernorm_forward_reference(out: &mut [f32], mean: &mut [f32], rstd: &mut [f32], inp: &[f32],
                                   weight: &[f32], bias: &[f32], n: usize, c: usize, eps: f32) {
    assert!(out.len() >= n * c && inp.len() >= n * c && mean.len() >= n && rstd.len() >= n);
    assert!(weight.len() >= c && bias.len() >= c);
    for i in 0..n {
        let x = &inp[i * c..(i + 1) * c];
        let m = x.iter().map(|&v| v as f64).sum::<f64>() / c as f64;
        let var = x.iter().map(|&v| (v as f64 - m) * (v as f64 - m)).sum::<f64>() / c as f64;
        let s = 1.0 / (var + eps as f64).sqrt();
        for k in 0..c {
            out[i * c + k] = (((x[k] as f64 - m) * s) * weight[k] as f64 + bias[k] as f64) as f32;
        }
        mean[i] = m as f32;
        rstd[i] = s as f32;
    }
}

/// dinp[N,C] += ∂L/∂inp; dweight[C] += Σ_rows dout·norm; dbias[C] += Σ_rows dout.
pub fn layernorm_backward(dinp: &mut [f32], dweight: &mut [f32], dbias: &mut [f32], dout: &[f32],
                          inp: &[f32], weight: &[f32], mean: &[f32], rstd: &[f32], n: usize, c: usize) {
    layernorm_backward_reference(dinp, dweight, dbias, dout, inp, weight, mean, rstd, n, c);
}

/// Reference twin of [`layernorm_backward`]: plain loops, f64 accumulation.
pub fn layernorm_backward_reference(dinp: &mut [f32], dweight: &mut [f32], dbias: &mut [f32], dout: &[f32],
                                    inp: &[f32], weight: &[f32], mean: &[f32], rstd: &[f32], n: usize, c: usize) {
    assert!(dinp.len() >= n * c && dout.len() >= n * c && inp.len() >= n * c);
    assert!(dweight.len() >= c && dbias.len() >= c && weight.len() >= c && mean.len() >= n && rstd.len() >= n);
    for i in 0..n {
        let m = mean[i] as f64;
        let s = rstd[i] as f64;
        // Forward: norm = (x − mean)·rstd; out = norm·weight + bias.
        // dnorm = dout·weight; dx = rstd·(dnorm − mean(dnorm) − norm·mean(dnorm·norm)).
        let mut dnorm_mean = 0.0f64;
        let mut dnorm_norm_mean = 0.0f64;
        for k in 0..c {
            let norm = (inp[i * c + k] as f64 - m) * s;
            let dnorm = dout[i * c + k] as f64 * weight[k] as f64;
            dnorm_mean += dnorm;
            dnorm_norm_mean += dnorm * norm;
        }
        dnorm_mean /= c as f64;
        dnorm_norm_mean /= c as f64;
        for k in 0..c {
            let norm = (inp[i * c + k] as f64 - m) * s;
            let d = dout[i * c + k] as f64;
            let dnorm = d * weight[k] as f64;
            dbias[k] += d as f32;
            dweight[k] += (d * norm) as f32;
            dinp[i * c + k] += ((dnorm - dnorm_mean - norm * dnorm_norm_mean) * s) as f32;
        }
    }
}
