//! Transposing one head's keys or values, `[T × D]` → `[D × T]`, so the fused kernel's score tiles
//! (`Q·Kᵀ`, `dO·Vᵀ`) become plain row-major tile products.

/// `out[j * ldo + i] = inp[i * c + j]` for `i < r`, `j < c`: `out` is `[C × R]` with row stride `ldo`.
pub(crate) fn transpose(out: &mut [f32], ldo: usize, inp: &[f32], r: usize, c: usize) {
    if r == 0 || c == 0 {
        return;
    }
    assert!(
        ldo >= r && out.len() >= (c - 1) * ldo + r,
        "transpose: out too small"
    );
    assert!(inp.len() >= r * c, "transpose: inp too small");
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx512f") {
            // SAFETY: AVX-512F is available (checked); the asserts above bound every access.
            unsafe { transpose_avx512(out, ldo, inp, r, c) };
            return;
        }
    }
    transpose_reference(out, ldo, inp, r, c);
}

/// The plain twin: a blocked scalar transpose.
pub(crate) fn transpose_reference(out: &mut [f32], ldo: usize, inp: &[f32], r: usize, c: usize) {
    const B: usize = 16;
    for i0 in (0..r).step_by(B) {
        for j0 in (0..c).step_by(B) {
            for i in i0..(i0 + B).min(r) {
                for j in j0..(j0 + B).min(c) {
                    out[j * ldo + i] = inp[i * c + j];
                }
            }
        }
    }
}

/// 16×16 blocks transposed in registers: 16 row loads, 64 shuffles, 16 stores per block (masked at
/// the ragged edges). Gathers were measured slower than the scalar loop on AMD Zen 4.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn transpose_avx512(out: &mut [f32], ldo: usize, inp: &[f32], r: usize, c: usize) {
    use std::arch::x86_64::*;
    let (op, ip) = (out.as_mut_ptr(), inp.as_ptr());
    let lanes = |k: usize| -> __mmask16 {
        if k >= 16 {
            0xFFFF
        } else {
            (1u16 << k) - 1
        }
    };
    let mut i0 = 0;
    while i0 < r {
        let rows = r - i0;
        let store_mask = lanes(rows);
        let mut j0 = 0;
        while j0 < c {
            let cols = c - j0;
            let load_mask = lanes(cols);
            let mut x = [_mm512_setzero_ps(); 16];
            for (i, xi) in x.iter_mut().enumerate().take(rows.min(16)) {
                *xi = _mm512_maskz_loadu_ps(load_mask, ip.add((i0 + i) * c + j0));
            }
            // The same columns of the next 16 rows, asked for now: the loads above wait on memory (a
            // head's keys and values are usually not in cache yet), and without this the transpose
            // ran at a few GB/s, one miss after another (AMD Zen 5: 4.3% of a document-mask
            // attention benchmark's time, 1.7% with it; a distance of two blocks measured the same).
            for i in 16..16 + rows.saturating_sub(16).min(16) {
                _mm_prefetch::<_MM_HINT_T0>(ip.add((i0 + i) * c + j0) as *const i8);
            }
            // Pairs of rows interleaved, then groups of four: u[4g + s] holds rows 4g..4g+3 of
            // columns s, s+4, s+8, s+12 (one per 128-bit lane).
            let mut u = [_mm512_setzero_ps(); 16];
            for g in 0..4 {
                let lo01 = _mm512_unpacklo_ps(x[4 * g], x[4 * g + 1]);
                let hi01 = _mm512_unpackhi_ps(x[4 * g], x[4 * g + 1]);
                let lo23 = _mm512_unpacklo_ps(x[4 * g + 2], x[4 * g + 3]);
                let hi23 = _mm512_unpackhi_ps(x[4 * g + 2], x[4 * g + 3]);
                u[4 * g] = _mm512_shuffle_ps::<0x44>(lo01, lo23);
                u[4 * g + 1] = _mm512_shuffle_ps::<0xEE>(lo01, lo23);
                u[4 * g + 2] = _mm512_shuffle_ps::<0x44>(hi01, hi23);
                u[4 * g + 3] = _mm512_shuffle_ps::<0xEE>(hi01, hi23);
            }
            // Then 128-bit lanes regrouped so each vector is one whole column.
            for s in 0..4 {
                let v0 = _mm512_shuffle_f32x4::<0x88>(u[s], u[4 + s]);
                let v1 = _mm512_shuffle_f32x4::<0xDD>(u[s], u[4 + s]);
                let v2 = _mm512_shuffle_f32x4::<0x88>(u[8 + s], u[12 + s]);
                let v3 = _mm512_shuffle_f32x4::<0xDD>(u[8 + s], u[12 + s]);
                let cols_out = [
                    (s, _mm512_shuffle_f32x4::<0x88>(v0, v2)),
                    (s + 8, _mm512_shuffle_f32x4::<0xDD>(v0, v2)),
                    (s + 4, _mm512_shuffle_f32x4::<0x88>(v1, v3)),
                    (s + 12, _mm512_shuffle_f32x4::<0xDD>(v1, v3)),
                ];
                for (j, col) in cols_out {
                    if j < cols {
                        _mm512_mask_storeu_ps(op.add((j0 + j) * ldo + i0), store_mask, col);
                    }
                }
            }
            j0 += 16;
        }
        i0 += 16;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transpose_matches_reference_on_ragged_shapes() {
        for &(r, c) in &[(1usize, 1usize), (16, 64), (37, 5), (100, 64), (15, 17)] {
            let ldo = r + 3;
            let inp: Vec<f32> = (0..r * c).map(|x| x as f32 * 0.5 - 7.0).collect();
            let (mut fast, mut plain) = (vec![-1f32; c * ldo], vec![-1f32; c * ldo]);
            transpose(&mut fast, ldo, &inp, r, c);
            transpose_reference(&mut plain, ldo, &inp, r, c);
            assert_eq!(fast, plain, "r{r} c{c}");
            assert_eq!(plain[(c - 1) * ldo + r - 1], inp[r * c - 1]);
            // The padding between output rows is untouched.
            assert!((0..c).all(|j| plain[j * ldo + r..(j + 1) * ldo].iter().all(|&x| x == -1.0)));
        }
    }
}
