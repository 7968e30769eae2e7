//! The fused kernel's per-tile softmax steps, with the mask applied as lane masks.
//!
//! - [`forward_step`]: one online-softmax step over a score tile (running max and sum per query row,
//!   rescaling of the output accumulator rows, S ← exp(S − m_new)).
//! - [`backward_probs`]: S ← exp(S − lse) for the backward's recomputed probabilities.
//!
//! On AVX-512 each row runs through hand-written intrinsics: the tile's bitmap word becomes a 16-lane
//! mask (no element is ever written as −∞ first), the row max and sum are vector reductions, and exp
//! is the same polynomial as [`fast_exp`](super::simd::fast_exp). Rows are short (one tile, 64 keys
//! by default), so the per-row horizontal work that an auto-vectorized loop does in scalar code was
//! as costly as the exponentials themselves. Elsewhere the portable loops of [`super::simd`] run;
//! they are also the reference twins the tests compare against.

use super::simd::{online_softmax_step, probs_from_lse};

/// One online-softmax step over `s` (`m` rows × `n` columns, row stride `ld`, already scaled) with
/// the partial-tile bitmap `bits` (`words` u64 per row, bit j = column j; `None` = all allowed).
/// Updates the running row max `mrow` and sum `lrow`, multiplies row i of the output accumulator
/// `o` (`m × d`, stride `d`) by exp(m_old − m_new) when the max grew, and turns `s` into
/// exp(s − m_new) (0 where masked and on rows that have seen no allowed key yet).
#[allow(clippy::too_many_arguments)]
pub(crate) fn forward_step(
    s: &mut [f32],
    ld: usize,
    m: usize,
    n: usize,
    bits: Option<&[u64]>,
    words: usize,
    mrow: &mut [f32],
    lrow: &mut [f32],
    o: &mut [f32],
    d: usize,
) {
    assert!(
        m <= mrow.len() && m <= lrow.len() && o.len() >= m * d,
        "forward_step: row buffers too small"
    );
    assert!(
        m == 0 || s.len() >= (m - 1) * ld + n,
        "forward_step: s too small"
    );
    if let Some(b) = bits {
        assert!(
            b.len() >= m * words && words * 64 >= n,
            "forward_step: bitmap too small"
        );
    }
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx512f") {
            // SAFETY: AVX-512F is available (checked); the asserts above bound every access.
            unsafe { avx512::forward_step(s, ld, m, n, bits, words, mrow, lrow, o, d) };
            return;
        }
    }
    forward_step_portable(s, ld, m, n, bits, words, mrow, lrow, o, d);
}

/// [`forward_step`] on any CPU: the portable online-softmax step one row at a time, so the rescale
/// factor needs no buffer (this runs once per tile).
#[allow(clippy::too_many_arguments)]
fn forward_step_portable(
    s: &mut [f32],
    ld: usize,
    m: usize,
    n: usize,
    bits: Option<&[u64]>,
    words: usize,
    mrow: &mut [f32],
    lrow: &mut [f32],
    o: &mut [f32],
    d: usize,
) {
    for i in 0..m {
        let mut alpha = [1f32];
        let row_bits = bits.map(|b| &b[i * words..(i + 1) * words]);
        online_softmax_step(
            &mut s[i * ld..],
            ld,
            1,
            n,
            row_bits,
            words,
            &mut mrow[i..i + 1],
            &mut lrow[i..i + 1],
            &mut alpha,
        );
        if alpha[0] != 1.0 {
            o[i * d..(i + 1) * d]
                .iter_mut()
                .for_each(|x| *x *= alpha[0]);
        }
    }
}

/// `s ← exp(s − lse_i)` over `m × n` (stride `ld`); 0 where masked (bitmap as in [`forward_step`])
/// and on fully masked rows (`lse_i = −∞`).
#[allow(clippy::too_many_arguments)]
pub(crate) fn backward_probs(
    s: &mut [f32],
    ld: usize,
    m: usize,
    n: usize,
    bits: Option<&[u64]>,
    words: usize,
    lse: &[f32],
) {
    assert!(m <= lse.len(), "backward_probs: lse too short");
    assert!(
        m == 0 || s.len() >= (m - 1) * ld + n,
        "backward_probs: s too small"
    );
    if let Some(b) = bits {
        assert!(
            b.len() >= m * words && words * 64 >= n,
            "backward_probs: bitmap too small"
        );
    }
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx512f") {
            // SAFETY: AVX-512F is available (checked); the asserts above bound every access.
            unsafe { avx512::backward_probs(s, ld, m, n, bits, words, lse) };
            return;
        }
    }
    probs_from_lse(s, ld, m, n, bits, words, &lse[..m]);
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    /// The lanes of a 16-wide vector that lie inside a row with `left` (> 0) elements to go.
    #[inline(always)]
    fn tail(left: usize) -> __mmask16 {
        if left >= 16 {
            0xFFFF
        } else {
            (1u16 << left) - 1
        }
    }

    /// The 16-lane mask of columns `c..c+16` of a row: allowed by `bits` and inside `n`.
    #[inline(always)]
    unsafe fn lanes(row_bits: Option<*const u64>, c: usize, n: usize) -> __mmask16 {
        let tail = tail(n - c);
        match row_bits {
            None => tail,
            Some(p) => ((*p.add(c / 64) >> (c % 64)) as u16) & tail,
        }
    }

    /// exp(x) lane-wise for finite x ≤ 0 (scores minus their row max or log-sum-exp): the range
    /// reduction and degree-6 polynomial of [`fast_exp`](crate::attention::simd::fast_exp), with the
    /// power of two applied by `vscalefps`, which also flushes results below 2^-126 cleanly to 0.
    #[inline(always)]
    unsafe fn exp(x: __m512) -> __m512 {
        let xc = _mm512_max_ps(x, _mm512_set1_ps(-88.0));
        let n = _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(
            _mm512_mul_ps(xc, _mm512_set1_ps(std::f32::consts::LOG2_E)),
        );
        let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693_145_75), xc);
        let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(1.428_606_8e-6), r);
        let mut p = _mm512_set1_ps(1.0 / 720.0);
        for c in [1.0 / 120.0, 1.0 / 24.0, 1.0 / 6.0, 0.5, 1.0, 1.0] {
            p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(c));
        }
        _mm512_scalef_ps(p, n)
    }

    #[allow(clippy::too_many_arguments)]
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn forward_step(
        s: &mut [f32],
        ld: usize,
        m: usize,
        n: usize,
        bits: Option<&[u64]>,
        words: usize,
        mrow: &mut [f32],
        lrow: &mut [f32],
        o: &mut [f32],
        d: usize,
    ) {
        let neg_inf = _mm512_set1_ps(f32::NEG_INFINITY);
        for i in 0..m {
            let row = s.as_mut_ptr().add(i * ld);
            let rb = bits.map(|b| b.as_ptr().add(i * words));
            let mut vmax = neg_inf;
            let mut c = 0;
            while c < n {
                let k = lanes(rb, c, n);
                vmax = _mm512_max_ps(vmax, _mm512_mask_loadu_ps(neg_inf, k, row.add(c)));
                c += 16;
            }
            let m_old = mrow[i];
            let m_new = _mm512_reduce_max_ps(vmax).max(m_old);
            if m_new == f32::NEG_INFINITY {
                // Nothing allowed so far: the row's probabilities are 0 and nothing needs rescaling.
                let mut c = 0;
                while c < n {
                    _mm512_mask_storeu_ps(row.add(c), tail(n - c), _mm512_setzero_ps());
                    c += 16;
                }
                continue;
            }
            let vm = _mm512_set1_ps(m_new);
            let mut vsum = _mm512_setzero_ps();
            let mut c = 0;
            while c < n {
                let k = lanes(rb, c, n);
                let t = tail(n - c);
                let e = _mm512_maskz_mov_ps(
                    k,
                    exp(_mm512_sub_ps(_mm512_maskz_loadu_ps(t, row.add(c)), vm)),
                );
                _mm512_mask_storeu_ps(row.add(c), t, e);
                vsum = _mm512_add_ps(vsum, e);
                c += 16;
            }
            let alpha = if m_old == f32::NEG_INFINITY {
                0.0
            } else {
                super::super::simd::fast_exp(m_old - m_new)
            };
            lrow[i] = lrow[i] * alpha + _mm512_reduce_add_ps(vsum);
            mrow[i] = m_new;
            if alpha != 1.0 {
                let orow = o.as_mut_ptr().add(i * d);
                let va = _mm512_set1_ps(alpha);
                let mut c = 0;
                while c < d {
                    let t = tail(d - c);
                    let x = _mm512_maskz_loadu_ps(t, orow.add(c));
                    _mm512_mask_storeu_ps(orow.add(c), t, _mm512_mul_ps(x, va));
                    c += 16;
                }
            }
        }
    }

    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn backward_probs(
        s: &mut [f32],
        ld: usize,
        m: usize,
        n: usize,
        bits: Option<&[u64]>,
        words: usize,
        lse: &[f32],
    ) {
        for (i, &l) in lse.iter().enumerate().take(m) {
            let row = s.as_mut_ptr().add(i * ld);
            let rb = bits.map(|b| b.as_ptr().add(i * words));
            let vl = _mm512_set1_ps(l);
            let mut c = 0;
            while c < n {
                let t = tail(n - c);
                let e = if l == f32::NEG_INFINITY {
                    _mm512_setzero_ps()
                } else {
                    let k = lanes(rb, c, n);
                    _mm512_maskz_mov_ps(
                        k,
                        exp(_mm512_sub_ps(_mm512_maskz_loadu_ps(t, row.add(c)), vl)),
                    )
                };
                _mm512_mask_storeu_ps(row.add(c), t, e);
                c += 16;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attention::simd::online_softmax_step;
    use crate::rng::{KeyedRng, Purpose};

    /// The dispatched steps (AVX-512 where the CPU has it) agree with the portable twins on full and
    /// partial tiles, short rows, rows with nothing allowed, and across two steps (rescaling).
    #[test]
    fn tile_steps_match_portable_twins() {
        let mut r = KeyedRng::new(3, Purpose::Other, 0, 0);
        for &(m, n, d) in &[
            (5usize, 64usize, 64usize),
            (7, 37, 20),
            (3, 16, 16),
            (64, 64, 64),
            (2, 100, 8),
        ] {
            let ld = n + 3;
            let words = n.div_ceil(64);
            let mut bits = vec![0u64; m * words];
            for (i, w) in bits.iter_mut().enumerate() {
                // Row 1 has nothing allowed; the others a random pattern.
                *w = if i / words == 1 { 0 } else { r.next_u64() };
            }
            for partial in [false, true] {
                let b = partial.then_some(&bits[..]);
                // The dispatched step (AVX-512 here) and the portable fallback both against the twin.
                type Step = fn(
                    &mut [f32],
                    usize,
                    usize,
                    usize,
                    Option<&[u64]>,
                    usize,
                    &mut [f32],
                    &mut [f32],
                    &mut [f32],
                    usize,
                );
                for fwd in [forward_step as Step, forward_step_portable] {
                    let (mut m1, mut l1) = (vec![f32::NEG_INFINITY; m], vec![0f32; m]);
                    let (mut m2, mut l2) = (m1.clone(), l1.clone());
                    let mut o1: Vec<f32> = (0..m * d).map(|_| r.normal()).collect();
                    let mut o2 = o1.clone();
                    for step in 0..2 {
                        let s0: Vec<f32> = (0..m * ld)
                            .map(|_| 3.0 * r.normal() + step as f32)
                            .collect();
                        let (mut s1, mut s2) = (s0.clone(), s0.clone());
                        fwd(&mut s1, ld, m, n, b, words, &mut m1, &mut l1, &mut o1, d);
                        let mut alpha = vec![0f32; m];
                        online_softmax_step(
                            &mut s2, ld, m, n, b, words, &mut m2, &mut l2, &mut alpha,
                        );
                        for i in 0..m {
                            if alpha[i] != 1.0 {
                                o2[i * d..(i + 1) * d]
                                    .iter_mut()
                                    .for_each(|x| *x *= alpha[i]);
                            }
                            for j in 0..n {
                                assert!(
                                    (s1[i * ld + j] - s2[i * ld + j]).abs()
                                        <= 1e-6 * s2[i * ld + j].abs().max(1.0),
                                    "s m{m} n{n} ({i},{j})"
                                );
                            }
                            assert_eq!(m1[i], m2[i]);
                            assert!(
                                (l1[i] - l2[i]).abs() <= 1e-5 * l2[i].abs().max(1.0),
                                "l m{m} n{n} row {i}"
                            );
                        }
                        o1.iter()
                            .zip(&o2)
                            .for_each(|(x, y)| assert!((x - y).abs() <= 1e-6 * y.abs().max(1.0)));
                        if partial {
                            // Row 1 allows nothing: it stays at zero probabilities and −∞ max.
                            assert!(
                                s1[ld..ld + n].iter().all(|&x| x == 0.0)
                                    && m1[1] == f32::NEG_INFINITY
                            );
                        }
                    }
                }
                let lse: Vec<f32> = (0..m)
                    .map(|i| {
                        if i == 1 {
                            f32::NEG_INFINITY
                        } else {
                            r.normal() + 4.0
                        }
                    })
                    .collect();
                let s0: Vec<f32> = (0..m * ld).map(|_| r.normal()).collect();
                let (mut s1, mut s2) = (s0.clone(), s0.clone());
                backward_probs(&mut s1, ld, m, n, b, words, &lse);
                probs_from_lse(&mut s2, ld, m, n, b, words, &lse);
                for i in 0..m {
                    for j in 0..n {
                        assert!(
                            (s1[i * ld + j] - s2[i * ld + j]).abs()
                                <= 1e-6 * s2[i * ld + j].abs().max(1e-3),
                            "p m{m} n{n} ({i},{j})"
                        );
                    }
                }
            }
        }
    }
}
