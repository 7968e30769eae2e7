//! GELU activation, exact (erf) and tanh-approximated forms.
//!
//! Shapes: elementwise over any length; `inp`, `out`, `dout`, `dinp` have equal lengths.
//!
//! The fast kernels evaluate both forms branch-free in f32 so the loops vectorise:
//! - Erf: Φ(x) = ½(1 + erf(x/√2)). For |z| = |x/√2| < 1, erf(z) = z·P(z²); beyond, erfc(|z|) =
//!   e^(−z²)·Q(1/(1 + |z|/2)), and Φ = 1 − ½erfc for x > 0, ½erfc for x < 0, which keeps the small
//!   negative tail relatively accurate. P and Q are least-squares fits (relative error < 1e-8 in
//!   exact arithmetic, a few f32 ulp as evaluated).
//! - Tanh: ½(1 + tanh u) = σ(2u), so gelu = x·σ(2u) needs one exp and no cancellation.

use crate::simd::{self, simd_dispatch, ELEMS_PER_TASK};
use rayon::prelude::*;

/// Which GELU formula: `Erf` is the exact x·Φ(x) (BERT, PyTorch's default), `Tanh` is GPT-2's
/// approximation 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GeluKind {
    Erf,
    Tanh,
}

const SQRT_2_OVER_PI: f64 = 0.797_884_560_802_865_4;
const FRAC_1_SQRT_2: f64 = std::f64::consts::FRAC_1_SQRT_2;
const FRAC_1_SQRT_2PI: f64 = 0.398_942_280_401_432_7;

/// out = gelu(inp), elementwise. Overwrites out.
pub fn gelu_forward(out: &mut [f32], inp: &[f32], kind: GeluKind) {
    assert_eq!(out.len(), inp.len());
    out.par_chunks_mut(ELEMS_PER_TASK)
        .zip(inp.par_chunks(ELEMS_PER_TASK))
        .for_each(|(o, x)| gelu_forward_chunk(o, x, kind));
}

/// dinp += gelu'(inp)·dout, elementwise.
pub fn gelu_backward(dinp: &mut [f32], inp: &[f32], dout: &[f32], kind: GeluKind) {
    gelu_backward_with(dinp, inp, dout, kind, true);
}

/// dinp = gelu'(inp)·dout, elementwise, overwriting dinp (never read): what [`gelu_backward`]
/// gives on a zeroed dinp, bit for bit, without the pass that zeroes it and the read of it.
pub fn gelu_backward_set(dinp: &mut [f32], inp: &[f32], dout: &[f32], kind: GeluKind) {
    gelu_backward_with(dinp, inp, dout, kind, false);
}

/// out = gelu(x), and gelu'(x) written over x: the forward of a training step, which keeps the
/// derivative instead of the input, so that the backward ([`gelu_backward_from_grad`]) is one
/// multiply per element instead of a second evaluation of the activation. `out` bit for bit equals
/// [`gelu_forward`]'s, and the backward's result [`gelu_backward_set`]'s.
pub fn gelu_forward_save_grad(out: &mut [f32], x_then_grad: &mut [f32], kind: GeluKind) {
    assert_eq!(out.len(), x_then_grad.len());
    out.par_chunks_mut(ELEMS_PER_TASK)
        .zip(x_then_grad.par_chunks_mut(ELEMS_PER_TASK))
        .for_each(|(o, x)| gelu_forward_save_grad_chunk(o, x, kind));
}

/// d = gelu'(x)·d in place, from the derivative [`gelu_forward_save_grad`] kept: bit for bit what
/// [`gelu_backward_set`] writes given x and the incoming d.
pub fn gelu_backward_from_grad(d: &mut [f32], grad: &[f32]) {
    assert_eq!(d.len(), grad.len());
    d.par_chunks_mut(ELEMS_PER_TASK)
        .zip(grad.par_chunks(ELEMS_PER_TASK))
        .for_each(|(d, g)| gelu_backward_from_grad_chunk(d, g));
}

fn gelu_backward_with(dinp: &mut [f32], inp: &[f32], dout: &[f32], kind: GeluKind, add: bool) {
    assert!(dinp.len() == inp.len() && dout.len() == inp.len());
    dinp.par_chunks_mut(ELEMS_PER_TASK)
        .zip(inp.par_chunks(ELEMS_PER_TASK))
        .zip(dout.par_chunks(ELEMS_PER_TASK))
        .for_each(|((d, x), g)| gelu_backward_chunk(d, x, g, kind, add));
}

const SQRT_2_OVER_PI_F32: f32 = SQRT_2_OVER_PI as f32;
const FRAC_1_SQRT_2_F32: f32 = std::f32::consts::FRAC_1_SQRT_2;
const FRAC_1_SQRT_2PI_F32: f32 = FRAC_1_SQRT_2PI as f32;

/// Φ(x) = ½(1 + erf(x/√2)) and e^(−x²/2), in f32, branch-free.
#[inline(always)]
fn normal_cdf_and_gauss(x: f32) -> (f32, f32) {
    let z = x * FRAC_1_SQRT_2_F32;
    let z2 = z * z;
    let e = simd::exp(-z2);
    // |z| < 1: erf(z) = z·P(z²).
    let p = -5.667_438e-4f32;
    let p = p * z2 + 4.927_301e-3;
    let p = p * z2 - 2.672_081e-2;
    let p = p * z2 + 1.128_057_7e-1;
    let p = p * z2 - 3.761_239e-1;
    let p = p * z2 + std::f32::consts::FRAC_2_SQRT_PI;
    let cdf_small = 0.5 + 0.5 * (z * p);
    // |z| ≥ 1: erfc(|z|) = e^(−z²)·Q(t), t = 1/(1 + |z|/2) (|z| clamped to 12, where erfc is 0 in f32).
    let a = z.abs().min(12.0);
    let t = 1.0 / (1.0 + 0.5 * a);
    let q = 8.795_009e-2f32;
    let q = q * t - 2.081_923_7e-1;
    let q = q * t + 5.740_298e-2;
    let q = q * t + 8.025_699e-2;
    let q = q * t + 1.698_334_5e-1;
    let q = q * t + 2.495_335_5e-1;
    let q = q * t + 2.815_947_4e-1;
    let q = q * t + 2.821_408e-1;
    let q = q * t - 1.703_072e-6;
    let half_erfc = 0.5 * (e * q);
    let cdf_large = if x > 0.0 { 1.0 - half_erfc } else { half_erfc };
    let cdf = if z.abs() < 1.0 { cdf_small } else { cdf_large };
    (cdf, e)
}

/// s = σ(2u) with u = √(2/π)(x + 0.044715x³), i.e. ½(1 + tanh u); also 1 − s (computed as e·s,
/// without cancellation) and du/dx.
#[inline(always)]
fn tanh_gate(x: f32) -> (f32, f32, f32) {
    let x2 = x * x;
    let u = SQRT_2_OVER_PI_F32 * (x + 0.044715 * x2 * x);
    let du = SQRT_2_OVER_PI_F32 * (1.0 + 3.0 * 0.044715 * x2);
    let e = simd::exp(-2.0 * u);
    let s = 1.0 / (1.0 + e);
    (s, e * s, du)
}

/// gelu(x) and gelu'(x) of the erf form: gelu = x·Φ(x), gelu' = Φ(x) + x·φ(x). Every path (forward,
/// backward, forward keeping the derivative) evaluates them here, so they agree bit for bit.
#[inline(always)]
fn erf_value_and_grad(x: f32) -> (f32, f32) {
    let (cdf, e) = normal_cdf_and_gauss(x);
    (x * cdf, cdf + x * FRAC_1_SQRT_2PI_F32 * e)
}

/// gelu(x) and gelu'(x) of the tanh form: gelu = x·s, s = σ(2u), gelu' = s + 2x·s(1−s)·u'.
#[inline(always)]
fn tanh_value_and_grad(x: f32) -> (f32, f32) {
    let (s, one_minus_s, du) = tanh_gate(x);
    (x * s, s + 2.0 * x * s * one_minus_s * du)
}

#[inline(always)]
fn gelu_forward_body(out: &mut [f32], inp: &[f32], kind: GeluKind) {
    // The unused derivative is dead code the compiler drops.
    match kind {
        GeluKind::Erf => {
            for (o, &x) in out.iter_mut().zip(inp) {
                *o = erf_value_and_grad(x).0;
            }
        }
        GeluKind::Tanh => {
            for (o, &x) in out.iter_mut().zip(inp) {
                *o = tanh_value_and_grad(x).0;
            }
        }
    }
}

/// `add`: dinp += gelu'·dout; else dinp = 0 + gelu'·dout (the `0 +` keeps a zeroed dinp's bits:
/// it turns a product of −0 into +0, as adding into +0 does).
#[inline(always)]
fn gelu_backward_body(dinp: &mut [f32], inp: &[f32], dout: &[f32], kind: GeluKind, add: bool) {
    match (kind, add) {
        (GeluKind::Erf, true) => {
            for ((d, &x), &g) in dinp.iter_mut().zip(inp).zip(dout) {
                *d += erf_value_and_grad(x).1 * g;
            }
        }
        (GeluKind::Erf, false) => {
            for ((d, &x), &g) in dinp.iter_mut().zip(inp).zip(dout) {
                *d = 0.0 + erf_value_and_grad(x).1 * g;
            }
        }
        (GeluKind::Tanh, true) => {
            for ((d, &x), &g) in dinp.iter_mut().zip(inp).zip(dout) {
                *d += tanh_value_and_grad(x).1 * g;
            }
        }
        (GeluKind::Tanh, false) => {
            for ((d, &x), &g) in dinp.iter_mut().zip(inp).zip(dout) {
                *d = 0.0 + tanh_value_and_grad(x).1 * g;
            }
        }
    }
}

/// Forward and derivative from one evaluation.
#[inline(always)]
fn gelu_forward_save_grad_body(out: &mut [f32], x_then_grad: &mut [f32], kind: GeluKind) {
    match kind {
        GeluKind::Erf => {
            for (o, xg) in out.iter_mut().zip(x_then_grad) {
                (*o, *xg) = erf_value_and_grad(*xg);
            }
        }
        GeluKind::Tanh => {
            for (o, xg) in out.iter_mut().zip(x_then_grad) {
                (*o, *xg) = tanh_value_and_grad(*xg);
            }
        }
    }
}

/// d = 0 + gelu'·d (the `0 +` as in [`gelu_backward_body`]: a product of −0 becomes +0).
#[inline(always)]
fn gelu_backward_from_grad_body(d: &mut [f32], grad: &[f32]) {
    for (d, &g) in d.iter_mut().zip(grad) {
        *d = 0.0 + g * *d;
    }
}

simd_dispatch!(fn gelu_forward_save_grad_chunk(out: &mut [f32], x_then_grad: &mut [f32], kind: GeluKind) = gelu_forward_save_grad_body);
simd_dispatch!(fn gelu_backward_from_grad_chunk(d: &mut [f32], grad: &[f32]) = gelu_backward_from_grad_body);
simd_dispatch!(fn gelu_forward_chunk(out: &mut [f32], inp: &[f32], kind: GeluKind) = gelu_forward_body);
simd_dispatch!(fn gelu_backward_chunk(dinp: &mut [f32], inp: &[f32], dout: &[f32], kind: GeluKind, add: bool) = gelu_backward_body);

/// Reference twin of [`gelu_forward`]: exact f64 formulas.
pub fn gelu_forward_reference(out: &mut [f32], inp: &[f32], kind: GeluKind) {
    assert_eq!(out.len(), inp.len());
    for (o, &x) in out.iter_mut().zip(inp) {
        *o = gelu_f64(x as f64, kind) as f32;
    }
}

/// Reference twin of [`gelu_backward`]: exact f64 formulas.
pub fn gelu_backward_reference(dinp: &mut [f32], inp: &[f32], dout: &[f32], kind: GeluKind) {
    assert!(dinp.len() == inp.len() && dout.len() == inp.len());
    for ((d, &x), &g) in dinp.iter_mut().zip(inp).zip(dout) {
        *d += (gelu_grad_f64(x as f64, kind) * g as f64) as f32;
    }
}

/// gelu(x) in f64.
pub(crate) fn gelu_f64(x: f64, kind: GeluKind) -> f64 {
    match kind {
        GeluKind::Erf => 0.5 * x * (1.0 + erf_f64(x * FRAC_1_SQRT_2)),
        GeluKind::Tanh => 0.5 * x * (1.0 + (SQRT_2_OVER_PI * (x + 0.044715 * x * x * x)).tanh()),
    }
}

/// gelu'(x) in f64.
pub(crate) fn gelu_grad_f64(x: f64, kind: GeluKind) -> f64 {
    match kind {
        // d/dx x·Φ(x) = Φ(x) + x·φ(x).
        GeluKind::Erf => {
            0.5 * (1.0 + erf_f64(x * FRAC_1_SQRT_2)) + x * FRAC_1_SQRT_2PI * (-0.5 * x * x).exp()
        }
        GeluKind::Tanh => {
            let u = SQRT_2_OVER_PI * (x + 0.044715 * x * x * x);
            let t = u.tanh();
            let du = SQRT_2_OVER_PI * (1.0 + 3.0 * 0.044715 * x * x);
            0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * du
        }
    }
}

/// erf in f64 to ~1e-15 relative: Maclaurin series near zero, continued fraction for erfc beyond.
pub(crate) fn erf_f64(x: f64) -> f64 {
    let a = x.abs();
    let r = if a < 2.5 {
        // erf(x) = 2/√π · Σ (−1)^n x^(2n+1) / (n!(2n+1)).
        let mut term = a;
        let mut sum = a;
        let x2 = a * a;
        // At |x| < 2.5 the terms fall below 1e-17 of the sum within 60 iterations.
        for nn in 1..80 {
            let nn = nn as f64;
            term *= -x2 / nn;
            let add = term / (2.0 * nn + 1.0);
            sum += add;
            if add.abs() <= 1e-17 * sum.abs() {
                break;
            }
        }
        sum * std::f64::consts::FRAC_2_SQRT_PI
    } else if a < 27.0 {
        // erfc(x) = exp(−x²)/√π · 1/(x + 1/2/(x + 1/(x + 3/2/(x + ...)))), evaluated bottom-up.
        let mut f = a;
        for k in (1..60).rev() {
            f = a + (k as f64 * 0.5) / f;
        }
        1.0 - (-a * a).exp() / (f * std::f64::consts::PI.sqrt())
    } else {
        1.0
    };
    if x < 0.0 {
        -r
    } else {
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{assert_close, check_grad, rand_vec, weighted_sum};

    #[test]
    fn erf_f64_matches_known_values() {
        // Values from Abramowitz & Stegun table 7.1 and erf's symmetry.
        for (x, want) in [
            (0.0, 0.0),
            (0.5, 0.520_499_877_813_046_5),
            (1.0, 0.842_700_792_949_714_9),
            (2.0, 0.995_322_265_018_952_7),
            (3.0, 0.999_977_909_503_001_4),
        ] {
            assert!((erf_f64(x) - want).abs() < 1e-14, "erf({x})");
            assert!((erf_f64(-x) + want).abs() < 1e-14, "erf(-{x})");
        }
        // The continued-fraction branch: erfc(4) = 1.541725790028002e-8.
        assert!(((1.0 - erf_f64(4.0)) / 1.541_725_790_028_002e-8 - 1.0).abs() < 1e-9);
    }

    #[test]
    fn reference_gradients_match_finite_differences() {
        let inp = rand_vec(41, 1, 4.0);
        let w = rand_vec(41, 2, 1.0);
        for kind in [GeluKind::Erf, GeluKind::Tanh] {
            let mut dinp = vec![0.0f32; 41];
            gelu_backward_reference(&mut dinp, &inp, &w, kind);
            check_grad(
                &format!("gelu {kind:?}"),
                &inp,
                &dinp,
                1e-2,
                1e-4,
                1e-3,
                |x| {
                    let mut out = vec![0.0; 41];
                    gelu_forward_reference(&mut out, x, kind);
                    weighted_sum(&w, &out)
                },
            );
        }
    }

    /// Overwriting equals adding into zeros, bit for bit (signs of zero included), on both forms,
    /// across task boundaries, and never reads the old dinp.
    #[test]
    fn set_equals_adding_into_zeros() {
        let len = 3 * ELEMS_PER_TASK + 5;
        let mut inp = rand_vec(len, 7, 6.0);
        let mut dout = rand_vec(len, 8, 1.0);
        // Products of ±0: gelu'(0) = ½, and a zero upstream gradient of either sign.
        (inp[0], dout[0], dout[1], dout[2]) = (0.0, -0.0, 0.0, -0.0);
        for kind in [GeluKind::Erf, GeluKind::Tanh] {
            let mut added = vec![0.0f32; len];
            gelu_backward(&mut added, &inp, &dout, kind);
            let mut set = vec![f32::NAN; len];
            gelu_backward_set(&mut set, &inp, &dout, kind);
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&set), bits(&added), "{kind:?}");
            assert!(
                set[1..3].iter().all(|x| x.to_bits() == 0),
                "{kind:?}: +0, not -0"
            );
        }
    }

    /// Keeping the derivative in the forward changes no bit: the output equals `gelu_forward`'s
    /// and the backward from it `gelu_backward_set`'s (signed zeros included), on both forms,
    /// across task boundaries, through the dispatcher and through the plain bodies.
    #[test]
    fn saved_grad_equals_recomputing() {
        let len = 3 * ELEMS_PER_TASK + 5;
        let mut inp = rand_vec(len, 9, 6.0);
        let mut dout = rand_vec(len, 10, 1.0);
        (inp[0], inp[1], inp[2]) = (0.0, -12.0, 30.0);
        (dout[0], dout[3], dout[4]) = (-0.0, 0.0, -0.0);
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        for kind in [GeluKind::Erf, GeluKind::Tanh] {
            let mut out = vec![0.0; len];
            gelu_forward(&mut out, &inp, kind);
            let mut want = vec![0.0; len];
            gelu_backward_set(&mut want, &inp, &dout, kind);
            let (mut out2, mut grad) = (vec![f32::NAN; len], inp.clone());
            gelu_forward_save_grad(&mut out2, &mut grad, kind);
            assert_eq!(bits(&out2), bits(&out), "{kind:?} forward");
            let mut d = dout.clone();
            gelu_backward_from_grad(&mut d, &grad);
            assert_eq!(bits(&d), bits(&want), "{kind:?} backward");
            // The plain bodies (the baseline build) agree with each other the same way.
            let (mut out_b, mut grad_b) = (vec![0.0; 1001], inp[..1001].to_vec());
            gelu_forward_save_grad_body(&mut out_b, &mut grad_b, kind);
            let mut fwd_b = vec![0.0; 1001];
            gelu_forward_body(&mut fwd_b, &inp[..1001], kind);
            assert_eq!(bits(&out_b), bits(&fwd_b), "{kind:?} baseline forward");
            let mut d_b = dout[..1001].to_vec();
            gelu_backward_from_grad_body(&mut d_b, &grad_b);
            let mut want_b = vec![0.0; 1001];
            gelu_backward_body(&mut want_b, &inp[..1001], &dout[..1001], kind, false);
            assert_eq!(bits(&d_b), bits(&want_b), "{kind:?} baseline backward");
            assert!(d[0].to_bits() == 0 && d[3].to_bits() == 0 && d[4].to_bits() == 0);
        }
    }

    #[test]
    fn tanh_form_approximates_erf_form() {
        let inp = rand_vec(1000, 3, 6.0);
        let (mut a, mut b) = (vec![0.0; 1000], vec![0.0; 1000]);
        gelu_forward_reference(&mut a, &inp, GeluKind::Erf);
        gelu_forward_reference(&mut b, &inp, GeluKind::Tanh);
        // The two forms differ by at most ~5e-4 (GPT-2's approximation error), but they do differ.
        assert_close(&b, &a, 1e-3, 0.0, "tanh vs erf");
        assert!(a.iter().zip(&b).any(|(x, y)| (x - y).abs() > 1e-5));
    }

    #[test]
    fn fast_matches_reference() {
        for (len, scale) in [(37usize, 3.0f32), (100_003, 8.0), (4096, 0.5)] {
            let mut inp = rand_vec(len, 4, scale);
            // Include the branch points and the extremes.
            for (i, v) in [
                0.0f32,
                std::f32::consts::SQRT_2,
                -std::f32::consts::SQRT_2,
                -12.0,
                12.0,
                -30.0,
                30.0,
            ]
            .into_iter()
            .enumerate()
            {
                inp[i] = v;
            }
            let dout = rand_vec(len, 5, 1.0);
            let acc0 = rand_vec(len, 6, 1.0);
            for kind in [GeluKind::Erf, GeluKind::Tanh] {
                let (mut out, mut out_ref) = (vec![f32::NAN; len], vec![0.0; len]);
                gelu_forward(&mut out, &inp, kind);
                gelu_forward_reference(&mut out_ref, &inp, kind);
                assert_close(
                    &out,
                    &out_ref,
                    1e-7,
                    1e-6,
                    &format!("gelu_forward {kind:?} len {len}"),
                );
                let (mut d, mut d_ref) = (acc0.clone(), acc0.clone());
                gelu_backward(&mut d, &inp, &dout, kind);
                gelu_backward_reference(&mut d_ref, &inp, &dout, kind);
                assert_close(
                    &d,
                    &d_ref,
                    1e-6,
                    1e-6,
                    &format!("gelu_backward {kind:?} len {len}"),
                );
            }
        }
    }

    #[test]
    fn baseline_path_matches_reference() {
        // The dispatcher picks AVX2 on this CPU; call the bodies directly for the baseline build.
        let inp = rand_vec(1001, 7, 6.0);
        let dout = rand_vec(1001, 8, 1.0);
        for kind in [GeluKind::Erf, GeluKind::Tanh] {
            let (mut out, mut out_ref) = (vec![0.0; 1001], vec![0.0; 1001]);
            gelu_forward_body(&mut out, &inp, kind);
            gelu_forward_reference(&mut out_ref, &inp, kind);
            assert_close(
                &out,
                &out_ref,
                1e-7,
                1e-6,
                &format!("baseline gelu_forward {kind:?}"),
            );
            let (mut d, mut d_ref) = (vec![0.0; 1001], vec![0.0; 1001]);
            gelu_backward_body(&mut d, &inp, &dout, kind, true);
            gelu_backward_reference(&mut d_ref, &inp, &dout, kind);
            assert_close(
                &d,
                &d_ref,
                1e-6,
                1e-6,
                &format!("baseline gelu_backward {kind:?}"),
            );
        }
    }
}
