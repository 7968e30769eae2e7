//! Inverted dropout with keyed, counter-based decisions.
//!
//! Element i is kept iff `mix64(key + i·φ)`'s top 24 bits, as a uniform in [0,1), are ≥ p. The
//! decision depends on (key, i) only, so thread count and chunking never change the mask.
//! Shapes: elementwise; `mask` holds 1 for kept and 0 for dropped elements.

use crate::rng::mix64;
use crate::simd::{simd_dispatch, ELEMS_PER_TASK};
use rayon::prelude::*;

const GOLDEN: u64 = 0x9e37_79b9_7f4a_7c15;

/// Whether element `i` is kept under `key` with drop probability `p`.
#[inline]
pub fn dropout_keep(key: u64, i: u64, p: f32) -> bool {
    let u = (mix64(key.wrapping_add(i.wrapping_mul(GOLDEN))) >> 40) as f32
        * (1.0 / (1u64 << 24) as f32);
    u >= p
}

/// The scale applied to kept elements: 1/(1−p), or 0 when p ≥ 1 (everything dropped).
#[inline]
pub(crate) fn keep_scale(p: f32) -> f32 {
    if p < 1.0 {
        1.0 / (1.0 - p)
    } else {
        0.0
    }
}

/// out = inp·mask/(1−p); mask[i] = 1 where kept, 0 where dropped. Overwrites out and mask.
/// p = 0 copies inp and sets every mask byte to 1.
pub fn dropout_forward(out: &mut [f32], mask: &mut [u8], inp: &[f32], p: f32, key: u64) {
    assert!(out.len() == inp.len() && mask.len() == inp.len());
    assert!(
        (0.0..=1.0).contains(&p),
        "dropout probability {p} outside [0, 1]"
    );
    // Integer form of the test u ≥ p for u = k/2^24: k ≥ ⌈p·2^24⌉ (exact, so identical to the twin).
    let threshold = (p as f64 * (1u64 << 24) as f64).ceil() as u64;
    let scale = keep_scale(p);
    out.par_chunks_mut(ELEMS_PER_TASK)
        .zip(mask.par_chunks_mut(ELEMS_PER_TASK))
        .zip(inp.par_chunks(ELEMS_PER_TASK))
        .enumerate()
        .for_each(|(k, ((o, m), x))| {
            dropout_forward_chunk(o, m, x, threshold, scale, key, (k * ELEMS_PER_TASK) as u64)
        });
}

/// dinp += dout·mask/(1−p).
pub fn dropout_backward(dinp: &mut [f32], dout: &[f32], mask: &[u8], p: f32) {
    assert!(dinp.len() == dout.len() && mask.len() == dout.len());
    let scale = keep_scale(p);
    dinp.par_chunks_mut(ELEMS_PER_TASK)
        .zip(dout.par_chunks(ELEMS_PER_TASK))
        .zip(mask.par_chunks(ELEMS_PER_TASK))
        .for_each(|((d, g), m)| dropout_backward_chunk(d, g, m, scale));
}

#[inline(always)]
fn dropout_forward_body(
    out: &mut [f32],
    mask: &mut [u8],
    inp: &[f32],
    threshold: u64,
    scale: f32,
    key: u64,
    first: u64,
) {
    for (i, ((o, m), &x)) in out.iter_mut().zip(mask.iter_mut()).zip(inp).enumerate() {
        let bits = mix64(key.wrapping_add((first + i as u64).wrapping_mul(GOLDEN))) >> 40;
        let keep = bits >= threshold;
        *m = keep as u8;
        *o = if keep { x * scale } else { 0.0 };
    }
}

#[inline(always)]
fn dropout_backward_body(dinp: &mut [f32], dout: &[f32], mask: &[u8], scale: f32) {
    for ((d, &g), &m) in dinp.iter_mut().zip(dout).zip(mask) {
        *d += g * (m as f32 * scale);
    }
}

simd_dispatch!(fn dropout_forward_chunk(out: &mut [f32], mask: &mut [u8], inp: &[f32], threshold: u64, scale: f32,
                                        key: u64, first: u64) = dropout_forward_body);
simd_dispatch!(fn dropout_backward_chunk(dinp: &mut [f32], dout: &[f32], mask: &[u8], scale: f32) = dropout_backward_body);

/// Reference twin of [`dropout_forward`]: a sequential loop.
pub fn dropout_forward_reference(out: &mut [f32], mask: &mut [u8], inp: &[f32], p: f32, key: u64) {
    assert!(out.len() == inp.len() && mask.len() == inp.len());
    assert!(
        (0.0..=1.0).contains(&p),
        "dropout probability {p} outside [0, 1]"
    );
    let scale = keep_scale(p);
    for i in 0..inp.len() {
        let keep = p == 0.0 || dropout_keep(key, i as u64, p);
        mask[i] = keep as u8;
        out[i] = if keep { inp[i] * scale } else { 0.0 };
    }
}

/// Reference twin of [`dropout_backward`]: a sequential loop.
pub fn dropout_backward_reference(dinp: &mut [f32], dout: &[f32], mask: &[u8], p: f32) {
    assert!(dinp.len() == dout.len() && mask.len() == dout.len());
    let scale = keep_scale(p);
    for i in 0..dout.len() {
        if mask[i] != 0 {
            dinp[i] += dout[i] * scale;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::rand_vec;

    fn run_in_pool<T: Send>(threads: usize, f: impl FnOnce() -> T + Send) -> T {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .expect("thread pool")
            .install(f)
    }

    #[test]
    fn same_key_same_mask_for_any_thread_count_and_equal_to_twin() {
        let len = 200_003;
        let inp = rand_vec(len, 1, 1.0);
        let p = 0.1;
        let forward = || {
            let (mut out, mut mask) = (vec![0.0; len], vec![0u8; len]);
            dropout_forward(&mut out, &mut mask, &inp, p, 42);
            (out, mask)
        };
        let one = run_in_pool(1, forward);
        let three = run_in_pool(3, forward);
        assert_eq!(one, three);
        let (mut out_r, mut mask_r) = (vec![0.0; len], vec![0u8; len]);
        dropout_forward_reference(&mut out_r, &mut mask_r, &inp, p, 42);
        assert_eq!(one.1, mask_r);
        assert_eq!(one.0, out_r);
        // A different key gives a different mask.
        let (mut out2, mut mask2) = (vec![0.0; len], vec![0u8; len]);
        dropout_forward(&mut out2, &mut mask2, &inp, p, 43);
        assert_ne!(mask2, one.1);
    }

    #[test]
    fn keep_rate_scale_and_backward() {
        let len = 100_000;
        let inp = rand_vec(len, 2, 1.0);
        for p in [0.1f32, 0.5, 0.9] {
            let (mut out, mut mask) = (vec![0.0; len], vec![0u8; len]);
            dropout_forward(&mut out, &mut mask, &inp, p, 7);
            let kept = mask.iter().filter(|&&m| m == 1).count() as f64 / len as f64;
            // Binomial standard deviation is at most 0.0016 here; 5 sigma.
            assert!(
                (kept - (1.0 - p as f64)).abs() < 0.008,
                "p={p}: kept {kept}"
            );
            for i in 0..len {
                let want = if mask[i] == 1 {
                    inp[i] / (1.0 - p)
                } else {
                    0.0
                };
                assert!((out[i] - want).abs() <= 1e-6 * want.abs(), "p={p} i={i}");
            }
            let dout = rand_vec(len, 3, 1.0);
            let d0 = rand_vec(len, 4, 1.0);
            let (mut d, mut d_r) = (d0.clone(), d0.clone());
            dropout_backward(&mut d, &dout, &mask, p);
            dropout_backward_reference(&mut d_r, &dout, &mask, p);
            for i in 0..len {
                assert!((d[i] - d_r[i]).abs() <= 1e-6 * (1.0 + d_r[i].abs()));
                if mask[i] == 0 {
                    assert_eq!(d[i], d0[i], "dropped elements get no gradient");
                }
            }
        }
    }

    #[test]
    fn p_zero_is_identity_and_p_one_drops_everything() {
        let inp = rand_vec(1000, 5, 1.0);
        let (mut out, mut mask) = (vec![f32::NAN; 1000], vec![9u8; 1000]);
        dropout_forward(&mut out, &mut mask, &inp, 0.0, 11);
        assert_eq!(out, inp);
        assert!(mask.iter().all(|&m| m == 1));
        let mut d = vec![0.0; 1000];
        dropout_backward(&mut d, &inp, &mask, 0.0);
        assert_eq!(d, inp);
        dropout_forward(&mut out, &mut mask, &inp, 1.0, 11);
        assert!(out.iter().all(|&x| x == 0.0) && mask.iter().all(|&m| m == 0));
    }

    #[test]
    fn baseline_path_matches_reference() {
        let len = 1001;
        let inp = rand_vec(len, 40, 1.0);
        let p = 0.3f32;
        let threshold = (p as f64 * (1u64 << 24) as f64).ceil() as u64;
        let (mut out, mut mask) = (vec![0.0; len], vec![0u8; len]);
        dropout_forward_body(&mut out, &mut mask, &inp, threshold, keep_scale(p), 5, 0);
        let (mut out_r, mut mask_r) = (vec![0.0; len], vec![0u8; len]);
        dropout_forward_reference(&mut out_r, &mut mask_r, &inp, p, 5);
        assert_eq!(mask, mask_r);
        assert_eq!(out, out_r);
    }
}
