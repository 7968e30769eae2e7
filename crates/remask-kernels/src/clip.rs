//! Global gradient-norm computation and clipping.
//!
//! Shapes: one flat gradient buffer of any length.
//!
//! The fast norm splits the buffer into a fixed number of parts, sums squares in f64 per part in
//! parallel, and adds the parts in order, so the result is the same for every thread count.

use crate::simd::{simd_dispatch, ELEMS_PER_TASK};
use rayon::prelude::*;

/// Fixed number of partial sums of the norm (independent of the thread count, for determinism).
const NORM_PARTS: usize = 64;

/// Global L2 norm, f64 accumulation.
pub fn grad_norm(grads: &[f32]) -> f32 {
    if grads.len() < ELEMS_PER_TASK {
        return sum_squares_chunk(grads).sqrt() as f32;
    }
    let part = grads.len().div_ceil(NORM_PARTS);
    let mut parts = [0.0f64; NORM_PARTS];
    parts
        .par_iter_mut()
        .zip(grads.par_chunks(part))
        .for_each(|(s, g)| *s = sum_squares_chunk(g));
    parts.iter().sum::<f64>().sqrt() as f32
}

/// Scales grads by max_norm/norm when norm > max_norm; returns the norm before clipping.
/// A non-finite norm is returned without touching grads (the caller decides to skip the step).
pub fn clip_grad_norm(grads: &mut [f32], max_norm: f32) -> f32 {
    let norm = grad_norm(grads);
    if norm.is_finite() && norm > max_norm {
        let s = (max_norm as f64 / norm as f64) as f32;
        grads
            .par_chunks_mut(ELEMS_PER_TASK)
            .for_each(|g| g.iter_mut().for_each(|x| *x *= s));
    }
    norm
}

#[inline(always)]
fn sum_squares_body(g: &[f32]) -> f64 {
    const L: usize = 8;
    let mut acc = [0.0f64; L];
    let chunks = g.chunks_exact(L);
    let tail: f64 = chunks
        .remainder()
        .iter()
        .map(|&x| x as f64 * x as f64)
        .sum();
    for ch in chunks {
        for (a, &x) in acc.iter_mut().zip(ch) {
            *a += x as f64 * x as f64;
        }
    }
    acc.iter().sum::<f64>() + tail
}

simd_dispatch!(fn sum_squares_chunk(g: &[f32]) -> f64 = sum_squares_body);

/// Reference twin of [`grad_norm`]: a sequential f64 sum.
pub fn grad_norm_reference(grads: &[f32]) -> f32 {
    grads
        .iter()
        .map(|&g| g as f64 * g as f64)
        .sum::<f64>()
        .sqrt() as f32
}

/// Reference twin of [`clip_grad_norm`]: a sequential loop.
pub fn clip_grad_norm_reference(grads: &mut [f32], max_norm: f32) -> f32 {
    let norm = grad_norm_reference(grads);
    if norm.is_finite() && norm > max_norm {
        let s = (max_norm as f64 / norm as f64) as f32;
        for g in grads.iter_mut() {
            *g *= s;
        }
    }
    norm
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::rand_vec;

    #[test]
    fn norm_matches_f64_sum_and_is_thread_independent() {
        for len in [0usize, 1, 37, 100_003, 1_000_000] {
            let g = rand_vec(len, 1, 1.0);
            let want = g.iter().map(|&x| x as f64 * x as f64).sum::<f64>().sqrt();
            let got = grad_norm(&g) as f64;
            assert!(
                (got - want).abs() <= 1e-6 * want,
                "len {len}: {got} vs {want}"
            );
            assert!((grad_norm_reference(&g) as f64 - want).abs() <= 1e-6 * want);
            let one = rayon::ThreadPoolBuilder::new()
                .num_threads(1)
                .build()
                .expect("pool")
                .install(|| grad_norm(&g));
            let three = rayon::ThreadPoolBuilder::new()
                .num_threads(3)
                .build()
                .expect("pool")
                .install(|| grad_norm(&g));
            assert_eq!(one.to_bits(), three.to_bits());
        }
        // f64 accumulation: 2^24 + many ones would be lost in an f32 running sum.
        let mut g = vec![1.0f32; 1 << 20];
        g[0] = 4096.0 * 4096.0;
        let want = ((4096.0f64 * 4096.0).powi(2) + ((1 << 20) - 1) as f64).sqrt();
        assert!((grad_norm(&g) as f64 - want).abs() <= 1e-7 * want);
    }

    #[test]
    fn clip_scales_only_above_max() {
        for clip in [
            clip_grad_norm as fn(&mut [f32], f32) -> f32,
            clip_grad_norm_reference,
        ] {
            let g0 = rand_vec(100_003, 2, 1.0);
            let norm0 = grad_norm_reference(&g0);
            let mut g = g0.clone();
            let returned = clip(&mut g, 2.0 * norm0);
            assert_eq!(returned, norm0);
            assert_eq!(g, g0, "below max_norm nothing changes");
            let returned = clip(&mut g, 0.25 * norm0);
            assert_eq!(returned, norm0, "the norm before clipping is returned");
            let after = grad_norm_reference(&g);
            assert!(
                (after / (0.25 * norm0) - 1.0).abs() < 1e-5,
                "clipped norm {after}"
            );
            // Direction is preserved.
            let ratio = g[7] / g0[7];
            assert!(g
                .iter()
                .zip(&g0)
                .all(|(a, b)| (a - b * ratio).abs() <= 1e-6 * b.abs() + 1e-12));
            // A non-finite norm leaves the gradients alone.
            let mut bad = g0.clone();
            bad[3] = f32::NAN;
            assert!(clip(&mut bad, 1.0).is_nan());
            assert_eq!(bad[4], g0[4]);
        }
    }
}
