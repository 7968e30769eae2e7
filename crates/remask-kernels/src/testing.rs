//! Test helpers shared by the kernel tests: keyed random inputs, closeness checks and a central
//! finite-difference gradient checker. Compiled for tests only.

use crate::rng::{KeyedRng, Purpose};

/// `len` values uniform in [-scale, scale), reproducible from `seed`.
pub(crate) fn rand_vec(len: usize, seed: u64, scale: f32) -> Vec<f32> {
    let mut r = KeyedRng::new(seed, Purpose::Other, 0, 0);
    (0..len)
        .map(|_| (r.next_f32() * 2.0 - 1.0) * scale)
        .collect()
}

/// Asserts |a − b| ≤ atol + rtol·|b| elementwise, naming the first offending index.
pub(crate) fn assert_close(a: &[f32], b: &[f32], atol: f32, rtol: f32, what: &str) {
    assert_eq!(a.len(), b.len(), "{what}: length mismatch");
    for (i, (&x, &y)) in a.iter().zip(b).enumerate() {
        let ok = (x - y).abs() <= atol + rtol * y.abs() || (x.is_nan() && y.is_nan());
        assert!(
            ok,
            "{what}: index {i}: got {x}, expected {y} (atol {atol}, rtol {rtol})"
        );
    }
}

/// Central finite differences of `objective` with respect to every coordinate of `x`, compared
/// against `analytic`. Each coordinate is perturbed by ±h in f32 and the difference is divided by
/// the perturbation actually stored, so the only errors left are O(h²) truncation and f32 rounding
/// of the kernel's outputs; `atol`/`rtol` must cover those.
pub(crate) fn check_grad(
    what: &str,
    x: &[f32],
    analytic: &[f32],
    h: f32,
    atol: f64,
    rtol: f64,
    mut objective: impl FnMut(&[f32]) -> f64,
) {
    assert_eq!(x.len(), analytic.len(), "{what}: gradient length mismatch");
    let mut xp = x.to_vec();
    for i in 0..x.len() {
        let orig = x[i];
        xp[i] = orig + h;
        let hi = xp[i] as f64;
        let fp = objective(&xp);
        xp[i] = orig - h;
        let lo = xp[i] as f64;
        let fm = objective(&xp);
        xp[i] = orig;
        let fd = (fp - fm) / (hi - lo);
        let an = analytic[i] as f64;
        assert!(
            (an - fd).abs() <= atol + rtol * fd.abs(),
            "{what}: d/dx[{i}] analytic {an} vs finite difference {fd}"
        );
    }
}

/// Σ w·out in f64: the scalar objective whose gradient with respect to `out` is `w`.
pub(crate) fn weighted_sum(w: &[f32], out: &[f32]) -> f64 {
    w.iter().zip(out).map(|(&a, &b)| a as f64 * b as f64).sum()
}
