//! Helpers shared by the f32 and bf16 attention tests: random inputs, one forward + backward run,
//! and the built-in mask shapes.

use super::AttnShape;
use crate::block_mask::BlockMask;
use crate::rng::{KeyedRng, Purpose};

pub(super) fn randn(n: usize, seed: u64, scale: f32) -> Vec<f32> {
    let mut r = KeyedRng::new(seed, Purpose::Other, 0, n as u64);
    (0..n).map(|_| r.normal() * scale).collect()
}

pub(super) struct Run {
    pub out: Vec<f32>,
    pub lse: Vec<f32>,
    pub dq: Vec<f32>,
    pub dk: Vec<f32>,
    pub dv: Vec<f32>,
}

pub(super) type Fwd<'a> =
    &'a dyn Fn(&mut [f32], &mut [f32], &[f32], &[f32], &[f32], &BlockMask, AttnShape, f32);
pub(super) type Bwd<'a> = &'a dyn Fn(
    &mut [f32],
    &mut [f32],
    &mut [f32],
    &[f32],
    &[f32],
    &[f32],
    &[f32],
    &[f32],
    &[f32],
    &BlockMask,
    AttnShape,
    f32,
);

#[allow(clippy::too_many_arguments)]
pub(super) fn run(
    fwd: Fwd<'_>,
    bwd: Bwd<'_>,
    q: &[f32],
    k: &[f32],
    v: &[f32],
    dout: &[f32],
    mask: &BlockMask,
    shape: AttnShape,
) -> Run {
    let scale = 1.0 / (shape.head_dim as f32).sqrt();
    let mut out = vec![f32::NAN; shape.q_len()];
    let mut lse = vec![f32::NAN; shape.lse_len()];
    fwd(&mut out, &mut lse, q, k, v, mask, shape, scale);
    // Gradients are overwritten: start from garbage to prove it.
    let mut dq = vec![7.0; shape.q_len()];
    let mut dk = vec![7.0; shape.kv_len()];
    let mut dv = vec![7.0; shape.kv_len()];
    bwd(
        &mut dq, &mut dk, &mut dv, dout, q, k, v, &out, &lse, mask, shape, scale,
    );
    Run {
        out,
        lse,
        dq,
        dk,
        dv,
    }
}

/// The built-in masks, described by key intervals per query (as the library compiles them).
pub(super) fn builtin_masks(b: usize, t: usize, tile: usize) -> Vec<(&'static str, BlockMask)> {
    let lens: Vec<usize> = (0..b).map(|i| t - (i * 7) % (t / 2).max(1)).collect();
    let mut v = Vec::new();
    v.push((
        "padding",
        BlockMask::from_intervals(b, 1, t, t, tile, tile, |b, _, _, o| o.push(0..lens[b])),
    ));
    v.push((
        "causal",
        BlockMask::from_intervals(b, 1, t, t, tile, tile, |b, _, q, o| {
            o.push(0..(q + 1).min(lens[b]))
        }),
    ));
    // Documents of lengths 5, 11, 3, ... packed back to back, padding after lens[b].
    let doc_of = |b: usize, p: usize| -> Option<usize> {
        if p >= lens[b] {
            return None;
        }
        let mut start = 0;
        for (i, len) in [5usize, 11, 3, 17, 9].iter().cycle().enumerate() {
            if p < start + len {
                return Some(i);
            }
            start += len;
        }
        None
    };
    v.push((
        "document",
        BlockMask::from_fn(b, 1, t, t, tile, tile, |b, _, q, k| {
            doc_of(b, q).is_some() && doc_of(b, q) == doc_of(b, k)
        }),
    ));
    v.push((
        "document-causal",
        BlockMask::from_fn(b, 1, t, t, tile, tile, |b, _, q, k| {
            k <= q && doc_of(b, q).is_some() && doc_of(b, q) == doc_of(b, k)
        }),
    ));
    v.push((
        "sliding",
        BlockMask::from_intervals(b, 1, t, t, tile, tile, |b, _, q, o| {
            o.push((q + 1).saturating_sub(6)..(q + 1).min(lens[b]))
        }),
    ));
    v.push((
        "prefix",
        BlockMask::from_intervals(b, 1, t, t, tile, tile, |b, _, q, o| {
            o.push(0..(q + 1).max(3 + b).min(lens[b]))
        }),
    ));
    v
}
