//! Tests of the attention kernels: fused == reference (outputs and all three input gradients) for
//! every built-in mask shape and for random masks at lengths that are not multiples of the tile,
//! reference gradients == finite differences, fully masked rows give zeros, packed documents ==
//! separate documents, and the dense baseline == reference.

use proptest::prelude::*;

use super::dense::{attention_backward_dense, attention_forward_dense, mask_bias};
use super::tests_common::{builtin_masks, randn, run, Run};
use super::*;
use crate::block_mask::BlockMask;
use crate::rng::mix64;

fn assert_close(name: &str, got: &[f32], want: &[f32], tol: f32) {
    assert_eq!(got.len(), want.len(), "{name}: length");
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        if w == f32::NEG_INFINITY {
            assert_eq!(g, w, "{name}[{i}]");
            continue;
        }
        assert!(g.is_finite(), "{name}[{i}] = {g} (want {w})");
        assert!(
            (g - w).abs() <= tol * (1.0 + w.abs()),
            "{name}[{i}]: fused {g} vs reference {w}"
        );
    }
}

/// Fused vs reference on one mask; returns the reference run.
fn check_against_reference(mask: &BlockMask, heads: usize, d: usize, seed: u64) -> Run {
    let shape = AttnShape {
        batch: mask.batch(),
        heads,
        tq: mask.tq(),
        tk: mask.tk(),
        head_dim: d,
    };
    let q = randn(shape.q_len(), seed, 1.0);
    let k = randn(shape.kv_len(), seed + 1, 1.0);
    let v = randn(shape.kv_len(), seed + 2, 1.0);
    let dout = randn(shape.q_len(), seed + 3, 1.0);
    let fused = run(
        &attention_forward,
        &attention_backward,
        &q,
        &k,
        &v,
        &dout,
        mask,
        shape,
    );
    let reference = run(
        &attention_forward_reference,
        &attention_backward_reference,
        &q,
        &k,
        &v,
        &dout,
        mask,
        shape,
    );
    assert_close("out", &fused.out, &reference.out, 1e-5);
    assert_close("lse", &fused.lse, &reference.lse, 1e-5);
    assert_close("dq", &fused.dq, &reference.dq, 1e-5);
    assert_close("dk", &fused.dk, &reference.dk, 1e-5);
    assert_close("dv", &fused.dv, &reference.dv, 1e-5);
    reference
}

#[test]
fn fused_matches_reference_for_builtin_masks_at_odd_lengths() {
    for &(t, tile, d) in &[(37, 8, 16), (45, 16, 8), (70, 64, 32)] {
        for (name, mask) in builtin_masks(3, t, tile) {
            eprintln!("mask {name} T={t} tile={tile}");
            check_against_reference(&mask, 2, d, t as u64);
        }
    }
}

/// The backward cuts each head's key tiles into chunks when there are fewer than two (b, h) pairs per
/// thread: on 1 thread it runs per head, on 16 per (head, key chunk) with dQ summed over chunks. Both
/// schedules match the reference, on every built-in mask, with a ragged last tile and chunk.
#[test]
fn backward_matches_reference_per_head_and_per_key_chunk() {
    for threads in [1, 16] {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .expect("thread pool");
        pool.install(|| {
            for (name, mask) in builtin_masks(1, 83, 8) {
                eprintln!("mask {name}, {threads} threads");
                check_against_reference(&mask, 2, 16, 31);
            }
        });
    }
}

#[test]
fn cross_attention_shape_and_per_head_masks() {
    // Tq != Tk, a mask per head, tiles that are not square.
    let mask = BlockMask::from_fn(2, 3, 19, 41, 8, 16, |b, h, q, k| {
        (k + q * (h + 1) + b) % 5 != 0 && k < 30 + b * 5
    });
    check_against_reference(&mask, 3, 24, 11);
}

#[test]
fn fully_masked_rows_give_zeros_not_nan() {
    // Rows 0..3 of every batch row and all of batch row 1 see nothing.
    let mask = BlockMask::from_fn(2, 1, 21, 21, 8, 8, |b, _, q, k| b == 0 && q >= 3 && k <= q);
    let r = check_against_reference(&mask, 2, 8, 5);
    let shape_d = 8;
    for bh in 0..4 {
        for i in 0..21 {
            let masked = bh >= 2 || i < 3;
            let row = &r.out[(bh * 21 + i) * shape_d..][..shape_d];
            if masked {
                assert!(
                    row.iter().all(|&x| x == 0.0),
                    "masked row {bh}/{i} not zero"
                );
                assert_eq!(r.lse[bh * 21 + i], f32::NEG_INFINITY);
                assert!(r.dq[(bh * 21 + i) * shape_d..][..shape_d]
                    .iter()
                    .all(|&x| x == 0.0));
            }
        }
    }
    // Keys only masked queries could read get no gradient.
    assert!(r.dk[2 * 21 * shape_d..]
        .iter()
        .chain(&r.dv[2 * 21 * shape_d..])
        .all(|&x| x == 0.0));
}

#[test]
fn reference_gradients_match_finite_differences() {
    let mask = BlockMask::from_fn(1, 1, 6, 7, 4, 4, |_, _, q, k| {
        k <= q + 1 && !(q == 2 && k == 0)
    });
    let shape = AttnShape {
        batch: 1,
        heads: 1,
        tq: 6,
        tk: 7,
        head_dim: 3,
    };
    let scale = 0.7;
    let q = randn(shape.q_len(), 1, 1.0);
    let k = randn(shape.kv_len(), 2, 1.0);
    let v = randn(shape.kv_len(), 3, 1.0);
    let w = randn(shape.q_len(), 4, 1.0);
    // loss = Σ w ∘ out, so dout = w.
    let loss = |q: &[f32], k: &[f32], v: &[f32]| -> f64 {
        let mut out = vec![0.0; shape.q_len()];
        let mut lse = vec![0.0; shape.lse_len()];
        attention_forward_reference(&mut out, &mut lse, q, k, v, &mask, shape, scale);
        out.iter().zip(&w).map(|(&o, &w)| o as f64 * w as f64).sum()
    };
    let mut out = vec![0.0; shape.q_len()];
    let mut lse = vec![0.0; shape.lse_len()];
    attention_forward_reference(&mut out, &mut lse, &q, &k, &v, &mask, shape, scale);
    let (mut dq, mut dk, mut dv) = (vec![0.0; q.len()], vec![0.0; k.len()], vec![0.0; v.len()]);
    attention_backward_reference(
        &mut dq, &mut dk, &mut dv, &w, &q, &k, &v, &out, &lse, &mask, shape, scale,
    );
    let eps = 1e-2f32;
    for which in 0..3 {
        let analytic = [&dq, &dk, &dv][which];
        for i in 0..analytic.len() {
            let (mut qp, mut kp, mut vp) = (q.clone(), k.clone(), v.clone());
            let (mut qm, mut km, mut vm) = (q.clone(), k.clone(), v.clone());
            match which {
                0 => {
                    qp[i] += eps;
                    qm[i] -= eps;
                }
                1 => {
                    kp[i] += eps;
                    km[i] -= eps;
                }
                _ => {
                    vp[i] += eps;
                    vm[i] -= eps;
                }
            }
            let fd = (loss(&qp, &kp, &vp) - loss(&qm, &km, &vm)) / (2.0 * eps as f64);
            let a = analytic[i] as f64;
            assert!(
                (fd - a).abs() < 2e-3 * (1.0 + a.abs()),
                "grad {which}[{i}]: finite difference {fd} vs analytic {a}"
            );
        }
    }
}

#[test]
fn packed_documents_equal_separate_documents() {
    // Three documents packed into one row of 40 (+ 4 padding) under a document mask give the same
    // outputs and gradients as each document run alone with no mask.
    let docs = [(0usize, 13usize), (13, 22), (35, 5)];
    let (t, h, d) = (44, 2, 8);
    let doc_of = |p: usize| docs.iter().position(|&(s, l)| p >= s && p < s + l);
    let mask = BlockMask::from_fn(1, 1, t, t, 16, 16, |_, _, q, k| {
        doc_of(q).is_some() && doc_of(q) == doc_of(k)
    });
    let shape = AttnShape {
        batch: 1,
        heads: h,
        tq: t,
        tk: t,
        head_dim: d,
    };
    let q = randn(shape.q_len(), 21, 1.0);
    let k = randn(shape.kv_len(), 22, 1.0);
    let v = randn(shape.kv_len(), 23, 1.0);
    let dout = randn(shape.q_len(), 24, 1.0);
    let packed = run(
        &attention_forward,
        &attention_backward,
        &q,
        &k,
        &v,
        &dout,
        &mask,
        shape,
    );
    for &(s, l) in &docs {
        let slice = |x: &[f32]| -> Vec<f32> {
            (0..h)
                .flat_map(|hh| x[(hh * t + s) * d..(hh * t + s + l) * d].to_vec())
                .collect()
        };
        let one = AttnShape {
            batch: 1,
            heads: h,
            tq: l,
            tk: l,
            head_dim: d,
        };
        let full = BlockMask::full(1, 1, l, l, 16, 16);
        let alone = run(
            &attention_forward,
            &attention_backward,
            &slice(&q),
            &slice(&k),
            &slice(&v),
            &slice(&dout),
            &full,
            one,
        );
        assert_close("out", &slice(&packed.out), &alone.out, 1e-5);
        assert_close("dq", &slice(&packed.dq), &alone.dq, 1e-5);
        assert_close("dk", &slice(&packed.dk), &alone.dk, 1e-5);
        assert_close("dv", &slice(&packed.dv), &alone.dv, 1e-5);
    }
    // Padding queries read nothing; padding keys get no gradient.
    for hh in 0..h {
        assert!(packed.out[(hh * t + 40) * d..(hh * t + 44) * d]
            .iter()
            .all(|&x| x == 0.0));
        assert!(packed.dk[(hh * t + 40) * d..(hh * t + 44) * d]
            .iter()
            .all(|&x| x == 0.0));
    }
}

#[test]
fn dense_baseline_matches_reference() {
    for (name, mask) in builtin_masks(2, 29, 8) {
        let shape = AttnShape {
            batch: 2,
            heads: 2,
            tq: 29,
            tk: 29,
            head_dim: 16,
        };
        let q = randn(shape.q_len(), 31, 1.0);
        let k = randn(shape.kv_len(), 32, 1.0);
        let v = randn(shape.kv_len(), 33, 1.0);
        let dout = randn(shape.q_len(), 34, 1.0);
        let reference = run(
            &attention_forward_reference,
            &attention_backward_reference,
            &q,
            &k,
            &v,
            &dout,
            &mask,
            shape,
        );
        let scale = 0.25;
        let mut bias = vec![0.0; 2 * 29 * 29];
        mask_bias(&mut bias, &mask);
        let (mut out, mut lse, mut probs) = (
            vec![0.0; shape.q_len()],
            vec![0.0; shape.lse_len()],
            vec![0.0; 4 * 29 * 29],
        );
        attention_forward_dense(
            &mut out, &mut lse, &mut probs, &q, &k, &v, &bias, 1, shape, scale,
        );
        let (mut dq, mut dk, mut dv, mut dp) = (
            vec![0.0; q.len()],
            vec![0.0; k.len()],
            vec![0.0; v.len()],
            vec![0.0; probs.len()],
        );
        attention_backward_dense(
            &mut dq, &mut dk, &mut dv, &mut dp, &dout, &q, &k, &v, &probs, shape, scale,
        );
        eprintln!("mask {name}");
        assert_close("out", &out, &reference.out, 1e-5);
        assert_close("lse", &lse, &reference.lse, 1e-5);
        assert_close("dq", &dq, &reference.dq, 1e-5);
        assert_close("dk", &dk, &reference.dk, 1e-5);
        assert_close("dv", &dv, &reference.dv, 1e-5);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Random element masks (including empty and full tiles and fully masked rows) at random odd
    /// sizes and tile shapes.
    #[test]
    fn fused_matches_reference_for_random_masks(
        tq in 1usize..50, tk in 1usize..50, tile_q in 1usize..20, tile_k in 1usize..70,
        density in 0u64..=4, seed in any::<u64>(), heads in 1usize..3, per_head in any::<bool>(),
    ) {
        let mh = if per_head { heads } else { 1 };
        // Allowed with probability density/4, in blocks of 3 keys so some tiles are empty or full.
        let mask = BlockMask::from_fn(2, mh, tq, tk, tile_q, tile_k, |b, h, q, k| {
            mix64(seed ^ ((b * 131 + h) * 1_000_003 + q * 1009 + k / 3) as u64) % 4 < density
        });
        check_against_reference(&mask, heads, 7, seed % 1000);
    }
}
