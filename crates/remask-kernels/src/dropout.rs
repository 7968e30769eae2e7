//! Inverted dropout with keyed, counter-based decisions.
//!
//! Element i is kept iff `mix64(key + i·φ)`'s top 24 bits, as a uniform in [0,1), are ≥ p. The
//! decision depends on (key, i) only, so thread count and chunking never change the mask.
//! Shapes: elementwise; `mask` holds 1 for kept and 0 for dropped elements.

use crate::rng::mix64;

const GOLDEN: u64 = 0x9e37_79b9_7f4a_7c15;

/// Whether element `i` is kept under `key` with drop probability `p`.
#[inline]
pub fn dropout_keep(key: u64, i: u64, p: f32) -> bool {
    let u = (mix64(key.wrapping_add(i.wrapping_mul(GOLDEN))) >> 40) as f32 * (1.0 / (1u64 << 24) as f32);
    u >= p
}

/// The scale applied to kept elements: 1/(1−p), or 0 when p ≥ 1 (everything dropped).
#[inline]
pub(crate) fn keep_scale(p: f32) -> f32 {
    if p < 1.0 { 1.0 / (1.0 - p) } else { 0.0 }
}

/// out = inp·mask/(1−p); mask[i] = 1 where kept, 0 where dropped. Overwrites out and mask.
/// p = 0 copies inp and sets every mask byte to 1.
pub fn dropout_forward(out: &mut [f32], mask: &mut [u8], inp: &[f32], p: f32, key: u64) {
    dropout_forward_reference(out, mask, inp, p, key);
}

/// dinp += dout·mask/(1−p).
pub fn dropout_backward(dinp: &mut [f32], dout: &[f32], mask: &[u8], p: f32) {
    dropout_backward_reference(dinp, dout, mask, p);
}

/// Reference twin of [`dropout_forward`]: a sequential loop.
pub fn dropout_forward_reference(out: &mut [f32], mask: &mut [u8], inp: &[f32], p: f32, key: u64) {
    assert!(out.len() == inp.len() && mask.len() == inp.len());
    assert!((0.0..=1.0).contains(&p), "dropout probability {p} outside [0, 1]");
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
