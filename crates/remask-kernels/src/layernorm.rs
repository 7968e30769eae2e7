//! Layer normalisation over the channel dimension.
//!
//! Shapes: N = rows (B*T), C = channels. `mean` and `rstd` ([N]) are saved for the backward.
//!
//! The fast kernels run rows in parallel with lane-parallel f32 sums. The backward splits in two
//! parallel phases so no task needs scratch memory: rows for dinp, then column blocks for
//! dweight/dbias (each block sweeps all rows and owns its slice of the parameter gradients).

#![allow(clippy::too_many_arguments)] // Kernel signatures follow llm.c: buffers first, sizes last.

use crate::simd::{self, rows_per_task, simd_dispatch, LANES};
use rayon::prelude::*;

/// Columns per task in the dweight/dbias phase of the backward.
const COL_BLOCK: usize = 64;

/// out[N,C] = (inp − mean)·rstd·weight[C] + bias[C], with mean[N] and rstd[N] = 1/sqrt(var + eps)
/// written for the backward. Overwrites out, mean and rstd.
pub fn layernorm_forward(
    out: &mut [f32],
    mean: &mut [f32],
    rstd: &mut [f32],
    inp: &[f32],
    weight: &[f32],
    bias: &[f32],
    n: usize,
    c: usize,
    eps: f32,
) {
    assert!(out.len() >= n * c && inp.len() >= n * c && mean.len() >= n && rstd.len() >= n);
    assert!(weight.len() >= c && bias.len() >= c);
    if n == 0 || c == 0 {
        return;
    }
    let rows = rows_per_task(c);
    let (weight, bias) = (&weight[..c], &bias[..c]);
    out[..n * c]
        .par_chunks_mut(rows * c)
        .zip(mean[..n].par_chunks_mut(rows))
        .zip(rstd[..n].par_chunks_mut(rows))
        .zip(inp[..n * c].par_chunks(rows * c))
        .for_each(|(((o, m), s), x)| layernorm_forward_rows(o, m, s, x, weight, bias, c, eps));
}

#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn layernorm_forward_body(
    out: &mut [f32],
    mean: &mut [f32],
    rstd: &mut [f32],
    inp: &[f32],
    weight: &[f32],
    bias: &[f32],
    c: usize,
    eps: f32,
) {
    for (((o, m_out), s_out), x) in out
        .chunks_exact_mut(c)
        .zip(mean.iter_mut())
        .zip(rstd.iter_mut())
        .zip(inp.chunks_exact(c))
    {
        // Pass 1: mean. Pass 2: variance around it (two passes avoid E[x²]−E[x]² cancellation).
        let m = simd::sum(x) / c as f32;
        let mut acc = [0.0f32; LANES];
        let chunks = x.chunks_exact(LANES);
        let tail: f32 = chunks.remainder().iter().map(|&v| (v - m) * (v - m)).sum();
        for ch in chunks {
            for (a, &v) in acc.iter_mut().zip(ch) {
                *a += (v - m) * (v - m);
            }
        }
        let var = (acc.iter().sum::<f32>() + tail) / c as f32;
        let s = 1.0 / (var + eps).sqrt();
        // Pass 3: normalise, scale, shift.
        for (((ov, &xv), &w), &b) in o.iter_mut().zip(x).zip(weight).zip(bias) {
            *ov = (xv - m) * s * w + b;
        }
        *m_out = m;
        *s_out = s;
    }
}

simd_dispatch!(fn layernorm_forward_rows(out: &mut [f32], mean: &mut [f32], rstd: &mut [f32], inp: &[f32],
                                         weight: &[f32], bias: &[f32], c: usize, eps: f32) = layernorm_forward_body);

/// Reference twin of [`layernorm_forward`]: plain loops, f64 statistics.
pub fn layernorm_forward_reference(
    out: &mut [f32],
    mean: &mut [f32],
    rstd: &mut [f32],
    inp: &[f32],
    weight: &[f32],
    bias: &[f32],
    n: usize,
    c: usize,
    eps: f32,
) {
    assert!(out.len() >= n * c && inp.len() >= n * c && mean.len() >= n && rstd.len() >= n);
    assert!(weight.len() >= c && bias.len() >= c);
    for i in 0..n {
        let x = &inp[i * c..(i + 1) * c];
        let m = x.iter().map(|&v| v as f64).sum::<f64>() / c as f64;
        let var = x
            .iter()
            .map(|&v| (v as f64 - m) * (v as f64 - m))
            .sum::<f64>()
            / c as f64;
        let s = 1.0 / (var + eps as f64).sqrt();
        for k in 0..c {
            out[i * c + k] = (((x[k] as f64 - m) * s) * weight[k] as f64 + bias[k] as f64) as f32;
        }
        mean[i] = m as f32;
        rstd[i] = s as f32;
    }
}

/// dinp[N,C] += ∂L/∂inp; dweight[C] += Σ_rows dout·norm; dbias[C] += Σ_rows dout.
pub fn layernorm_backward(
    dinp: &mut [f32],
    dweight: &mut [f32],
    dbias: &mut [f32],
    dout: &[f32],
    inp: &[f32],
    weight: &[f32],
    mean: &[f32],
    rstd: &[f32],
    n: usize,
    c: usize,
) {
    assert!(dinp.len() >= n * c && dout.len() >= n * c && inp.len() >= n * c);
    assert!(
        dweight.len() >= c
            && dbias.len() >= c
            && weight.len() >= c
            && mean.len() >= n
            && rstd.len() >= n
    );
    if n == 0 || c == 0 {
        return;
    }
    let (dout, inp, weight, mean, rstd) = (
        &dout[..n * c],
        &inp[..n * c],
        &weight[..c],
        &mean[..n],
        &rstd[..n],
    );
    // Phase 1: dinp, rows in parallel.
    let rows = rows_per_task(c);
    dinp[..n * c]
        .par_chunks_mut(rows * c)
        .zip(dout.par_chunks(rows * c))
        .zip(inp.par_chunks(rows * c))
        .zip(mean.par_chunks(rows))
        .zip(rstd.par_chunks(rows))
        .for_each(|((((d, g), x), m), s)| layernorm_dinp_rows(d, g, x, weight, m, s, c));
    // Phase 2: dweight and dbias, column blocks in parallel.
    dweight[..c]
        .par_chunks_mut(COL_BLOCK)
        .zip(dbias[..c].par_chunks_mut(COL_BLOCK))
        .enumerate()
        .for_each(|(blk, (dw, db))| {
            layernorm_dparams_block(dw, db, dout, inp, mean, rstd, blk * COL_BLOCK, c)
        });
}

#[inline(always)]
fn layernorm_dinp_body(
    dinp: &mut [f32],
    dout: &[f32],
    inp: &[f32],
    weight: &[f32],
    mean: &[f32],
    rstd: &[f32],
    c: usize,
) {
    let rows = dinp
        .chunks_exact_mut(c)
        .zip(dout.chunks_exact(c))
        .zip(inp.chunks_exact(c))
        .zip(mean)
        .zip(rstd);
    for ((((d, g), x), &m), &s) in rows {
        // Forward: norm = (x − mean)·rstd; out = norm·weight + bias.
        // dnorm = dout·weight; dx = rstd·(dnorm − mean(dnorm) − norm·mean(dnorm·norm)).
        let mut acc_d = [0.0f32; LANES];
        let mut acc_dn = [0.0f32; LANES];
        let (mut tail_d, mut tail_dn) = (0.0f32, 0.0f32);
        let gc = g.chunks_exact(LANES);
        let xc = x.chunks_exact(LANES);
        let wc = weight.chunks_exact(LANES);
        for ((&gv, &xv), &wv) in gc
            .remainder()
            .iter()
            .zip(xc.remainder())
            .zip(wc.remainder())
        {
            let dnorm = gv * wv;
            tail_d += dnorm;
            tail_dn += dnorm * ((xv - m) * s);
        }
        for ((gch, xch), wch) in gc.zip(xc).zip(wc) {
            for ((((ad, adn), &gv), &xv), &wv) in acc_d
                .iter_mut()
                .zip(acc_dn.iter_mut())
                .zip(gch)
                .zip(xch)
                .zip(wch)
            {
                let dnorm = gv * wv;
                *ad += dnorm;
                *adn += dnorm * ((xv - m) * s);
            }
        }
        let dnorm_mean = (acc_d.iter().sum::<f32>() + tail_d) / c as f32;
        let dnorm_norm_mean = (acc_dn.iter().sum::<f32>() + tail_dn) / c as f32;
        for (((dv, &gv), &xv), &wv) in d.iter_mut().zip(g).zip(x).zip(weight) {
            let norm = (xv - m) * s;
            *dv += (gv * wv - dnorm_mean - norm * dnorm_norm_mean) * s;
        }
    }
}

#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn layernorm_dparams_body(
    dweight: &mut [f32],
    dbias: &mut [f32],
    dout: &[f32],
    inp: &[f32],
    mean: &[f32],
    rstd: &[f32],
    j0: usize,
    c: usize,
) {
    // dweight[j] += Σ_rows dout·norm; dbias[j] += Σ_rows dout, for the columns j0..j0+width.
    let width = dweight.len();
    let mut acc_w = [0.0f32; COL_BLOCK];
    let mut acc_b = [0.0f32; COL_BLOCK];
    let (acc_w, acc_b) = (&mut acc_w[..width], &mut acc_b[..width]);
    for (((g, x), &m), &s) in dout
        .chunks_exact(c)
        .zip(inp.chunks_exact(c))
        .zip(mean)
        .zip(rstd)
    {
        let (g, x) = (&g[j0..j0 + width], &x[j0..j0 + width]);
        for (((aw, ab), &gv), &xv) in acc_w.iter_mut().zip(acc_b.iter_mut()).zip(g).zip(x) {
            *aw += gv * ((xv - m) * s);
            *ab += gv;
        }
    }
    for (d, &a) in dweight.iter_mut().zip(acc_w.iter()) {
        *d += a;
    }
    for (d, &a) in dbias.iter_mut().zip(acc_b.iter()) {
        *d += a;
    }
}

simd_dispatch!(fn layernorm_dinp_rows(dinp: &mut [f32], dout: &[f32], inp: &[f32], weight: &[f32], mean: &[f32],
                                      rstd: &[f32], c: usize) = layernorm_dinp_body);
simd_dispatch!(fn layernorm_dparams_block(dweight: &mut [f32], dbias: &mut [f32], dout: &[f32], inp: &[f32],
                                          mean: &[f32], rstd: &[f32], j0: usize, c: usize) = layernorm_dparams_body);

/// Reference twin of [`layernorm_backward`]: plain loops, f64 accumulation.
pub fn layernorm_backward_reference(
    dinp: &mut [f32],
    dweight: &mut [f32],
    dbias: &mut [f32],
    dout: &[f32],
    inp: &[f32],
    weight: &[f32],
    mean: &[f32],
    rstd: &[f32],
    n: usize,
    c: usize,
) {
    assert!(dinp.len() >= n * c && dout.len() >= n * c && inp.len() >= n * c);
    assert!(
        dweight.len() >= c
            && dbias.len() >= c
            && weight.len() >= c
            && mean.len() >= n
            && rstd.len() >= n
    );
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{assert_close, check_grad, rand_vec, weighted_sum};

    #[test]
    fn reference_gradients_match_finite_differences() {
        let (n, c, eps) = (3, 6, 1e-5);
        let inp = rand_vec(n * c, 1, 2.0);
        let weight = rand_vec(c, 2, 1.5);
        let bias = rand_vec(c, 3, 1.0);
        let w = rand_vec(n * c, 4, 1.0);
        let (mut out, mut mean, mut rstd) = (vec![0.0; n * c], vec![0.0; n], vec![0.0; n]);
        layernorm_forward_reference(
            &mut out, &mut mean, &mut rstd, &inp, &weight, &bias, n, c, eps,
        );
        let (mut dinp, mut dweight, mut dbias) = (vec![0.0; n * c], vec![0.0; c], vec![0.0; c]);
        layernorm_backward_reference(
            &mut dinp,
            &mut dweight,
            &mut dbias,
            &w,
            &inp,
            &weight,
            &mean,
            &rstd,
            n,
            c,
        );
        let obj = |x: &[f32], wt: &[f32], b: &[f32]| {
            let (mut o, mut m, mut s) = (vec![0.0; n * c], vec![0.0; n], vec![0.0; n]);
            layernorm_forward_reference(&mut o, &mut m, &mut s, x, wt, b, n, c, eps);
            weighted_sum(&w, &o)
        };
        let (h, atol, rtol) = (1e-2, 5e-4, 2e-3);
        check_grad("layernorm dinp", &inp, &dinp, h, atol, rtol, |x| {
            obj(x, &weight, &bias)
        });
        check_grad("layernorm dweight", &weight, &dweight, h, atol, rtol, |x| {
            obj(&inp, x, &bias)
        });
        check_grad("layernorm dbias", &bias, &dbias, h, atol, rtol, |x| {
            obj(&inp, &weight, x)
        });
    }

    fn check_fast(n: usize, c: usize) {
        let eps = 1e-5;
        let mut inp = rand_vec(n * c, 5, 3.0);
        // A large common offset: the two-pass variance must not cancel.
        inp.iter_mut().take(c).for_each(|x| *x += 100.0);
        let weight = rand_vec(c, 6, 1.5);
        let bias = rand_vec(c, 7, 1.0);
        let what = format!("{n}x{c}");
        let (mut out, mut mean, mut rstd) =
            (vec![f32::NAN; n * c], vec![f32::NAN; n], vec![f32::NAN; n]);
        let (mut out_r, mut mean_r, mut rstd_r) = (vec![0.0; n * c], vec![0.0; n], vec![0.0; n]);
        layernorm_forward(
            &mut out, &mut mean, &mut rstd, &inp, &weight, &bias, n, c, eps,
        );
        layernorm_forward_reference(
            &mut out_r,
            &mut mean_r,
            &mut rstd_r,
            &inp,
            &weight,
            &bias,
            n,
            c,
            eps,
        );
        assert_close(&out, &out_r, 2e-5, 1e-5, &format!("layernorm out {what}"));
        assert_close(
            &mean,
            &mean_r,
            1e-5,
            1e-6,
            &format!("layernorm mean {what}"),
        );
        assert_close(&rstd, &rstd_r, 0.0, 1e-5, &format!("layernorm rstd {what}"));
        let dout = rand_vec(n * c, 8, 1.0);
        let (d0, dw0, db0) = (
            rand_vec(n * c, 9, 1.0),
            rand_vec(c, 10, 1.0),
            rand_vec(c, 11, 1.0),
        );
        let (mut d, mut dw, mut db) = (d0.clone(), dw0.clone(), db0.clone());
        let (mut d_r, mut dw_r, mut db_r) = (d0, dw0, db0);
        layernorm_backward(
            &mut d, &mut dw, &mut db, &dout, &inp, &weight, &mean_r, &rstd_r, n, c,
        );
        layernorm_backward_reference(
            &mut d_r, &mut dw_r, &mut db_r, &dout, &inp, &weight, &mean_r, &rstd_r, n, c,
        );
        let tol_rows = 1e-5 * (n as f32).sqrt();
        assert_close(&d, &d_r, 2e-5, 1e-4, &format!("layernorm dinp {what}"));
        assert_close(
            &dw,
            &dw_r,
            tol_rows,
            1e-4,
            &format!("layernorm dweight {what}"),
        );
        assert_close(
            &db,
            &db_r,
            tol_rows,
            1e-4,
            &format!("layernorm dbias {what}"),
        );
    }

    #[test]
    fn fast_matches_reference() {
        check_fast(37, 19);
        check_fast(1, 1);
        check_fast(300, 256);
        check_fast(9, 130);
    }

    #[test]
    fn baseline_path_matches_reference() {
        let (n, c, eps) = (5, 37, 1e-5);
        let inp = rand_vec(n * c, 12, 3.0);
        let (weight, bias) = (rand_vec(c, 13, 1.5), rand_vec(c, 14, 1.0));
        let (mut out, mut mean, mut rstd) = (vec![0.0; n * c], vec![0.0; n], vec![0.0; n]);
        let (mut out_r, mut mean_r, mut rstd_r) = (vec![0.0; n * c], vec![0.0; n], vec![0.0; n]);
        layernorm_forward_body(&mut out, &mut mean, &mut rstd, &inp, &weight, &bias, c, eps);
        layernorm_forward_reference(
            &mut out_r,
            &mut mean_r,
            &mut rstd_r,
            &inp,
            &weight,
            &bias,
            n,
            c,
            eps,
        );
        assert_close(&out, &out_r, 2e-5, 1e-5, "baseline layernorm out");
        assert_close(&rstd, &rstd_r, 0.0, 1e-5, "baseline layernorm rstd");
        let dout = rand_vec(n * c, 15, 1.0);
        let (mut d, mut dw, mut db) = (vec![0.0; n * c], vec![0.0; c], vec![0.0; c]);
        let (mut d_r, mut dw_r, mut db_r) = (vec![0.0; n * c], vec![0.0; c], vec![0.0; c]);
        layernorm_dinp_body(&mut d, &dout, &inp, &weight, &mean_r, &rstd_r, c);
        // Two column blocks: a full one and a partial one.
        let (dw_a, dw_b) = dw.split_at_mut(COL_BLOCK.min(c));
        let (db_a, db_b) = db.split_at_mut(COL_BLOCK.min(c));
        layernorm_dparams_body(dw_a, db_a, &dout, &inp, &mean_r, &rstd_r, 0, c);
        if !dw_b.is_empty() {
            layernorm_dparams_body(dw_b, db_b, &dout, &inp, &mean_r, &rstd_r, COL_BLOCK, c);
        }
        layernorm_backward_reference(
            &mut d_r, &mut dw_r, &mut db_r, &dout, &inp, &weight, &mean_r, &rstd_r, n, c,
        );
        assert_close(&d, &d_r, 2e-5, 1e-4, "baseline layernorm dinp");
        assert_close(&dw, &dw_r, 1e-5, 1e-4, "baseline layernorm dweight");
        assert_close(&db, &db_r, 1e-5, 1e-4, "baseline layernorm dbias");
    }
}
