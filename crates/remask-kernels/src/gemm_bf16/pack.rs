//! Packing f32 matrices into the bf16 layouts of [`PackedLhs`](super::PackedLhs) and
//! [`PackedRhs`](super::PackedRhs), rounding every value (times an optional scale) to bf16.
//!
//! Each layout has two source orientations (row-major or transposed). The AVX-512 paths convert
//! 16 or 32 values per instruction, transpose in registers (16 × 16 blocks of 32-bit words, a bf16
//! pair being one word) and read their source front to back; the scalar loops are their twins and
//! run on other CPUs. Large packs are split over rayon's pool ([`Split::Pool`]); the attention
//! kernel packs its tiles inside its own tasks ([`Split::Caller`]).

use rayon::prelude::*;

use super::{BLOCK, PANEL};
use crate::bf16::Bf16;
use crate::strided_gemm::MatRef;

/// Values per rayon task of a pack.
const PACK_TASK: usize = 1 << 16;

/// Whether a pack may use rayon's pool.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Split {
    /// Only the calling thread.
    Caller,
    /// Rayon's pool, in tasks of about [`PACK_TASK`] values.
    Pool,
}

/// Runs `f(i)` for `i in 0..count`, on the pool in groups of `per_task` when `split` allows.
fn for_each_index(split: Split, count: usize, per_task: usize, f: impl Fn(usize) + Sync + Send) {
    match split {
        Split::Pool if count > per_task => (0..count)
            .into_par_iter()
            .with_min_len(per_task.max(1))
            .for_each(f),
        _ => (0..count).for_each(f),
    }
}

/// A pointer into a pack that tasks write in disjoint parts.
#[derive(Clone, Copy)]
struct Shared(*mut Bf16);

impl Shared {
    /// The pointer (a method, so closures capture the whole `Shared`, which is `Sync`).
    fn ptr(self) -> *mut Bf16 {
        self.0
    }
}
// SAFETY: only used by tasks that write disjoint elements (see the callers).
unsafe impl Send for Shared {}
// SAFETY: as above.
unsafe impl Sync for Shared {}

/// `dst` (`round_up(m, 32)` rows of `ld` values) ← bf16(scale · src[m × k]), zero elsewhere.
pub(crate) fn lhs(
    dst: &mut [Bf16],
    ld: usize,
    src: MatRef<'_>,
    m: usize,
    k: usize,
    scale: f32,
    split: Split,
) {
    let rows = m.div_ceil(BLOCK).max(1) * BLOCK;
    assert!(
        ld >= k && ld.is_multiple_of(32) && dst.len() >= rows * ld,
        "pack lhs: dst too small"
    );
    if m > 0 && k > 0 {
        assert!(
            (m - 1) * src.rs + (k - 1) * src.cs < src.data.len(),
            "pack lhs: src too small"
        );
    }
    let dst = &mut dst[..rows * ld];
    dst[m * ld..].iter_mut().for_each(|x| *x = Bf16::ZERO);
    let out = Shared(dst.as_mut_ptr());
    let fast = crate::cpu::has_avx512_bf16();
    if fast && src.rs == 1 && src.cs != 1 {
        // Transposed source: a task per 32 source rows (32 values of K), read front to back, one
        // 64-byte line written per A row.
        for_each_index(split, ld / 32, (PACK_TASK / (32 * m.max(1))).max(1), |kb| {
            // SAFETY: AVX-512 F/BW/BF16 are available (checked); block kb writes only columns
            // 32·kb..32·kb+32 of rows < m, disjoint from every other block and inside dst (asserted
            // above); the source bounds are asserted above.
            unsafe { avx512::lhs_transposed_block(out.ptr(), ld, src, m, k, 32 * kb, scale) };
        });
        return;
    }
    // A task per group of 16 rows.
    for_each_index(split, m.div_ceil(16), (PACK_TASK / (16 * ld)).max(1), |g| {
        let (r0, rows) = (16 * g, (m - 16 * g).min(16));
        // SAFETY: group g writes rows 16g..16g+16 only, disjoint from every other group, inside
        // dst (asserted above).
        let dst = unsafe { std::slice::from_raw_parts_mut(out.ptr().add(r0 * ld), rows * ld) };
        if fast && src.cs == 1 {
            // SAFETY: AVX-512 F/BW/BF16 are available (checked); bounds asserted above.
            unsafe { avx512::lhs_rows(dst, ld, src, r0, rows, k, scale) };
        } else {
            lhs_rows_scalar(dst, ld, src, r0, rows, k, scale);
        }
    });
}

/// Rows `r0..r0+rows` of the lhs pack into `dst` (`rows × ld`), one value at a time.
fn lhs_rows_scalar(
    dst: &mut [Bf16],
    ld: usize,
    src: MatRef<'_>,
    r0: usize,
    rows: usize,
    k: usize,
    scale: f32,
) {
    for i in 0..rows {
        let row = &mut dst[i * ld..(i + 1) * ld];
        for (p, x) in row.iter_mut().enumerate() {
            *x = if p < k {
                Bf16::from_f32(scale * src.data[(r0 + i) * src.rs + p * src.cs])
            } else {
                Bf16::ZERO
            };
        }
    }
}

/// `dst` (panels of `panel_len`) ← bf16(src[k × n]) in the VNNI panel layout, zero elsewhere.
pub(crate) fn rhs(
    dst: &mut [Bf16],
    panel_len: usize,
    src: MatRef<'_>,
    k: usize,
    n: usize,
    split: Split,
) {
    let panels = n.div_ceil(BLOCK).max(1) * BLOCK / PANEL;
    let pairs = panel_len / (2 * PANEL);
    assert!(
        panel_len.is_multiple_of(32 * PANEL) && pairs * 2 >= k && dst.len() >= panels * panel_len,
        "pack rhs: dst too small"
    );
    if n > 0 && k > 0 {
        assert!(
            (k - 1) * src.rs + (n - 1) * src.cs < src.data.len(),
            "pack rhs: src too small"
        );
    }
    let out = Shared(dst.as_mut_ptr());
    if crate::cpu::has_avx512_bf16() && src.cs == 1 {
        // Row-major source: a task per pair-row, reading both source rows front to back and
        // writing one 64-byte pair-row per panel.
        for_each_index(
            split,
            pairs,
            (PACK_TASK / (2 * PANEL * panels)).max(1),
            |q| {
                // SAFETY: AVX-512 F/BW/BF16 are available (checked); pair-row q of every panel is
                // written by this task only, inside dst (asserted above); source bounds asserted above.
                unsafe { avx512::rhs_pair_row(out.ptr(), panel_len, panels, src, k, n, q) };
            },
        );
        return;
    }
    for_each_index(split, panels, (PACK_TASK / panel_len).max(1), |p| {
        // SAFETY: panel p is written by this task only, inside dst (asserted above).
        let panel =
            unsafe { std::slice::from_raw_parts_mut(out.ptr().add(p * panel_len), panel_len) };
        let (j0, cols) = (p * PANEL, n.saturating_sub(p * PANEL).min(PANEL));
        if crate::cpu::has_avx512_bf16() && src.rs == 1 {
            // SAFETY: AVX-512 F/BW/BF16 are available (checked); bounds asserted above.
            unsafe { avx512::rhs_panel_transposed(panel, src, j0, cols, k) };
        } else {
            rhs_panel_scalar(panel, src, j0, cols, k);
        }
    });
}

/// One panel: columns `j0..j0+cols` (≤ 16) of src, all pair-rows of the panel (zero past k).
fn rhs_panel_scalar(panel: &mut [Bf16], src: MatRef<'_>, j0: usize, cols: usize, k: usize) {
    for (q, row) in panel.chunks_exact_mut(2 * PANEL).enumerate() {
        for jj in 0..PANEL {
            for s in 0..2 {
                let p = 2 * q + s;
                row[2 * jj + s] = if jj < cols && p < k {
                    Bf16::from_f32(src.data[p * src.rs + (j0 + jj) * src.cs])
                } else {
                    Bf16::ZERO
                };
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    use super::PANEL;
    use crate::bf16::avx512::cvt32;
    use crate::bf16::Bf16;
    use crate::prefetch::{prefetch, prefetch_row_ahead, rows_ahead};
    use crate::strided_gemm::MatRef;

    #[inline(always)]
    fn lanes(left: usize) -> __mmask16 {
        if left >= 16 {
            0xFFFF
        } else {
            (1u16 << left) - 1
        }
    }

    /// `x · scale` unless scale is 1.
    #[inline(always)]
    unsafe fn scaled(x: __m512, scale: f32) -> __m512 {
        if scale == 1.0 {
            x
        } else {
            _mm512_mul_ps(x, _mm512_set1_ps(scale))
        }
    }

    /// 16 × 16 transpose of 32-bit words in registers (bf16 pairs or f32 alike: shuffles only
    /// move bits).
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn transpose16(x: [__m512; 16]) -> [__m512; 16] {
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
        let mut out = [_mm512_setzero_ps(); 16];
        for s in 0..4 {
            let v0 = _mm512_shuffle_f32x4::<0x88>(u[s], u[4 + s]);
            let v1 = _mm512_shuffle_f32x4::<0xDD>(u[s], u[4 + s]);
            let v2 = _mm512_shuffle_f32x4::<0x88>(u[8 + s], u[12 + s]);
            let v3 = _mm512_shuffle_f32x4::<0xDD>(u[8 + s], u[12 + s]);
            out[s] = _mm512_shuffle_f32x4::<0x88>(v0, v2);
            out[s + 8] = _mm512_shuffle_f32x4::<0xDD>(v0, v2);
            out[s + 4] = _mm512_shuffle_f32x4::<0x88>(v1, v3);
            out[s + 12] = _mm512_shuffle_f32x4::<0xDD>(v1, v3);
        }
        out
    }

    /// Rows `r0..r0+rows` of a row-major-source lhs pack (`dst` is `rows × ld`).
    #[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
    pub(super) unsafe fn lhs_rows(
        dst: &mut [Bf16],
        ld: usize,
        src: MatRef<'_>,
        r0: usize,
        rows: usize,
        k: usize,
        scale: f32,
    ) {
        let dp = dst.as_mut_ptr() as *mut u16;
        for i in 0..rows {
            prefetch_row_ahead(src.data, src.rs, r0 + i, k);
            let s = src.data.as_ptr().add((r0 + i) * src.rs);
            let d = dp.add(i * ld);
            let mut p = 0;
            while p < ld {
                let lo = _mm512_maskz_loadu_ps(lanes(k.saturating_sub(p)), s.add(p));
                let hi = _mm512_maskz_loadu_ps(lanes(k.saturating_sub(p + 16)), s.add(p + 16));
                _mm512_storeu_si512(
                    d.add(p) as *mut __m512i,
                    cvt32(scaled(lo, scale), scaled(hi, scale)),
                );
                p += 32;
            }
        }
    }

    /// Columns `p0..p0+32` of rows `0..m` of a transposed-source lhs pack.
    ///
    /// # Safety
    /// AVX-512 F/BW/BF16; `out` addresses `m` rows of `ld` values; the source holds k × m.
    #[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
    pub(super) unsafe fn lhs_transposed_block(
        out: *mut Bf16,
        ld: usize,
        src: MatRef<'_>,
        m: usize,
        k: usize,
        p0: usize,
        scale: f32,
    ) {
        let base = src.data.as_ptr();
        let op = out as *mut u16;
        let mut i0 = 0;
        while i0 < m {
            let mask = lanes(m - i0);
            // Source rows p0..p0+32, columns i0..i0+16 (rows past k are zero).
            let mut lo = [_mm512_setzero_ps(); 16];
            let mut hi = [_mm512_setzero_ps(); 16];
            for r in 0..16 {
                if p0 + r < k {
                    lo[r] = _mm512_maskz_loadu_ps(mask, base.add((p0 + r) * src.cs + i0));
                }
                if p0 + 16 + r < k {
                    hi[r] = _mm512_maskz_loadu_ps(mask, base.add((p0 + 16 + r) * src.cs + i0));
                }
            }
            let (tl, th) = (transpose16(lo), transpose16(hi));
            for i in 0..(m - i0).min(16) {
                let v = cvt32(scaled(tl[i], scale), scaled(th[i], scale));
                _mm512_storeu_si512(op.add((i0 + i) * ld + p0) as *mut __m512i, v);
            }
            i0 += 16;
        }
    }

    /// Pair-row `q` (source rows 2q, 2q+1) of every panel of a row-major-source rhs pack.
    ///
    /// # Safety
    /// AVX-512 F/BW/BF16; `out` addresses `panels` panels of `panel_len` values; the source holds
    /// k × n.
    #[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
    pub(super) unsafe fn rhs_pair_row(
        out: *mut Bf16,
        panel_len: usize,
        panels: usize,
        src: MatRef<'_>,
        k: usize,
        n: usize,
        q: usize,
    ) {
        // Interleaves the two rows value by value: [r0[0], r1[0], r0[1], r1[1], ...].
        let idx = _mm512_set_epi16(
            31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8, 23, 7, 22, 6, 21, 5, 20,
            4, 19, 3, 18, 2, 17, 1, 16, 0,
        );
        prefetch_row_ahead(src.data, src.rs, 2 * q, n);
        prefetch_row_ahead(src.data, src.rs, 2 * q + 1, n);
        let base = src.data.as_ptr();
        let op = out as *mut u16;
        for p in 0..panels {
            let j0 = p * PANEL;
            let m = lanes(n.saturating_sub(j0));
            let load = |r: usize| {
                if r < k && j0 < n {
                    _mm512_maskz_loadu_ps(m, base.add(r * src.rs + j0))
                } else {
                    _mm512_setzero_ps()
                }
            };
            let v = cvt32(load(2 * q), load(2 * q + 1));
            _mm512_storeu_si512(
                op.add(p * panel_len + q * 2 * PANEL) as *mut __m512i,
                _mm512_permutexvar_epi16(idx, v),
            );
        }
    }

    /// One panel of a transposed-source rhs pack (element (p, j) at `data[j·cs + p]`): each source
    /// row j holds column j's pairs back to back; 16 rows × 16 pairs transposed as 32-bit words.
    #[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
    pub(super) unsafe fn rhs_panel_transposed(
        panel: &mut [Bf16],
        src: MatRef<'_>,
        j0: usize,
        cols: usize,
        k: usize,
    ) {
        let pp = panel.as_mut_ptr() as *mut u16;
        let pairs = panel.len() / (2 * PANEL);
        let base = src.data.as_ptr();
        // The rows a later panel reads, at about AHEAD_BYTES (whole panels, at least the next).
        let ahead = rows_ahead(k).max(PANEL) / PANEL * PANEL;
        let mut q0 = 0;
        while q0 < pairs {
            let mut x = [_mm512_setzero_ps(); 16];
            let p0 = 2 * q0;
            for jj in 0..cols {
                if let Some(at) = (j0 + jj + ahead).checked_mul(src.cs) {
                    prefetch(src.data, at + p0, k.saturating_sub(p0).min(32));
                }
            }
            let (m0, m1) = (
                lanes(k.saturating_sub(p0)),
                lanes(k.saturating_sub(p0 + 16)),
            );
            for (jj, xv) in x.iter_mut().enumerate().take(cols) {
                let row = base.add((j0 + jj) * src.cs + p0);
                let v = cvt32(
                    _mm512_maskz_loadu_ps(m0, row),
                    _mm512_maskz_loadu_ps(m1, row.add(16)),
                );
                *xv = _mm512_castsi512_ps(v);
            }
            let t = transpose16(x);
            for (q, tv) in t.iter().enumerate().take(pairs - q0) {
                _mm512_storeu_ps(pp.add((q0 + q) * 2 * PANEL) as *mut f32, *tv);
            }
            q0 += 16;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::rand_vec;

    /// The fast packs equal the scalar twins, in both orientations, on ragged shapes, scaled or
    /// not, on the pool or the calling thread.
    #[test]
    fn packs_match_scalar_twins() {
        for &(r, c) in &[
            (1usize, 1usize),
            (5, 7),
            (16, 32),
            (33, 70),
            (40, 17),
            (64, 64),
            // Many A rows and a long K in both orientations (the attention and head shapes).
            (300, 1100),
        ] {
            let ld = c + 3;
            let src = rand_vec(r * ld + c, 3, 2.0);
            for (transposed, scale, split) in [
                (false, 1.0, Split::Pool),
                (true, 1.0, Split::Caller),
                (false, 0.125, Split::Caller),
                (true, 0.3, Split::Pool),
            ] {
                // As lhs: m = r, k = c (transposed: the stored matrix is c × r with row stride m + 1).
                let (m, k) = (r, c);
                let view = if transposed {
                    MatRef::transposed(&src, m + 1)
                } else {
                    MatRef::rows(&src, ld)
                };
                let lda = k.div_ceil(32) * 32;
                let rows = m.div_ceil(BLOCK) * BLOCK;
                let mut fast = vec![Bf16(7); rows * lda];
                let mut plain = vec![Bf16(9); rows * lda];
                lhs(&mut fast, lda, view, m, k, scale, split);
                lhs_rows_scalar(&mut plain, lda, view, 0, m, k, scale);
                plain[m * lda..].iter_mut().for_each(|x| *x = Bf16::ZERO);
                assert_eq!(
                    fast, plain,
                    "lhs {r}x{c} transposed={transposed} scale={scale}"
                );
                // As rhs: k = r, n = c.
                let (k, n) = (r, c);
                let view = if transposed {
                    MatRef::transposed(&src, k + 1)
                } else {
                    MatRef::rows(&src, ld)
                };
                let panel_len = k.div_ceil(32) * 32 * PANEL;
                let panels = n.div_ceil(BLOCK) * BLOCK / PANEL;
                let mut fast = vec![Bf16(7); panels * panel_len];
                let mut plain = vec![Bf16(9); panels * panel_len];
                rhs(&mut fast, panel_len, view, k, n, split);
                for (p, panel) in plain.chunks_mut(panel_len).enumerate() {
                    rhs_panel_scalar(
                        panel,
                        view,
                        p * PANEL,
                        n.saturating_sub(p * PANEL).min(PANEL),
                        k,
                    );
                }
                assert_eq!(fast, plain, "rhs {r}x{c} transposed={transposed}");
                // The layout: element (p, j) of B sits at panel j/16, pair-row p/2, slot p%2.
                let (p, j) = (k - 1, n - 1);
                let want = Bf16::from_f32(view.data[p * view.rs + j * view.cs]);
                assert_eq!(
                    plain[j / PANEL * panel_len + p / 2 * 32 + (j % PANEL) * 2 + p % 2],
                    want
                );
            }
        }
    }
}
