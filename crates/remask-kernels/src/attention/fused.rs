//! Fused tiled attention (first version: delegates to the reference twins).

use super::{attention_backward_reference, attention_forward_reference, AttnShape};
use crate::block_mask::BlockMask;

#[allow(clippy::too_many_arguments)]
pub(super) fn forward(out: &mut [f32], lse: &mut [f32], q: &[f32], k: &[f32], v: &[f32], mask: &BlockMask, shape: AttnShape, scale: f32) {
    attention_forward_reference(out, lse, q, k, v, mask, shape, scale)
}

#[allow(clippy::too_many_arguments)]
pub(super) fn backward(
    dq: &mut [f32],
    dk: &mut [f32],
    dv: &mut [f32],
    dout: &[f32],
    q: &[f32],
    k: &[f32],
    v: &[f32],
    out: &[f32],
    lse: &[f32],
    mask: &BlockMask,
    shape: AttnShape,
    scale: f32,
) {
    attention_backward_reference(dq, dk, dv, dout, q, k, v, out, lse, mask, shape, scale)
}
