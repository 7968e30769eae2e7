//! GELU activation, exact (erf) and tanh-approximated forms.
//!
//! Shapes: elementwise over any length; `inp`, `out`, `dout`, `dinp` have equal lengths.

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
    gelu_forward_reference(out, inp, kind);
}

/// dinp += gelu'(inp)·dout, elementwise.
pub fn gelu_backward(dinp: &mut [f32], inp: &[f32], dout: &[f32], kind: GeluKind) {
    gelu_backward_reference(dinp, inp, dout, kind);
}

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
        GeluKind::Erf => 0.5 * (1.0 + erf_f64(x * FRAC_1_SQRT_2)) + x * FRAC_1_SQRT_2PI * (-0.5 * x * x).exp(),
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
        let mut nn = 0.0f64;
        loop {
            nn += 1.0;
            term *= -x2 / nn;
            let add = term / (2.0 * nn + 1.0);
            sum += add;
            if add.abs() < 1e-17 * sum.abs() {
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
    if x < 0.0 { -r } else { r }
}
