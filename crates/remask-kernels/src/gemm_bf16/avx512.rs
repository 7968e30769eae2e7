//! The AVX-512 BF16 kernel: `vdpbf16ps` on register blocks of 6 rows × 64 columns of C.
//!
//! Per pair of K values (p, p+1): four 64-byte pair-rows of B (one per panel, 16 columns each) are
//! loaded once, and each of the 6 rows of A broadcasts its pair as one 32-bit word;
//! `vdpbf16ps` then adds `a[p+1]·b[p+1]` and `a[p]·b[p]` to each of 16 f32 lanes. 24 accumulators +
//! 4 B vectors + 1 broadcast = 29 of the 32 zmm registers.

use std::arch::x86_64::*;

use super::{Product, Start, K_CHUNK, PANEL};

/// Rows of C per register block.
const ROWS: usize = 6;
/// 16-column vectors (panels) per register block.
const VECS: usize = 4;

/// `c = start + alpha·A·B` on the calling thread; see [`super::product_raw`] for the contract.
///
/// # Safety
/// As [`super::product_raw`]; the CPU must have AVX-512 F, BW and BF16.
pub(super) unsafe fn product(c: *mut f32, ldc: usize, p: &Product<'_>) {
    // With alpha = 1 the accumulators start from C and run over all of K, so chunking K changes
    // nothing; otherwise each K chunk's sum is scaled and added (see the module doc of gemm_bf16).
    let chunk = if p.alpha == 1.0 { p.kpad } else { K_CHUNK };
    let mut k0 = 0;
    while k0 < p.kpad.max(1) {
        let kc = chunk.min(p.kpad - k0);
        let first = k0 == 0;
        let mut j0 = 0;
        while j0 < p.n {
            let cols = (p.n - j0).min(VECS * PANEL);
            let mut i0 = 0;
            while i0 < p.m {
                let rows = (p.m - i0).min(ROWS);
                let blk = Blk {
                    c: c.add(i0 * ldc + j0),
                    ldc,
                    a: p.a.data.as_ptr().add(i0 * p.a.ld + k0) as *const u16,
                    lda: p.a.ld,
                    b: p.b
                        .data
                        .as_ptr()
                        .add(j0 / PANEL * p.b.panel_len + k0 * PANEL)
                        as *const u16,
                    panel_len: p.b.panel_len,
                    pairs: kc / 2,
                    cols,
                    alpha: p.alpha,
                    // Later chunks always add to what the earlier ones stored.
                    start: match p.start {
                        _ if !first => Init::C,
                        Start::Zero => Init::Zero,
                        Start::C => Init::C,
                        Start::Bias(bias) => Init::Bias(bias.as_ptr().add(j0)),
                    },
                };
                dispatch(rows, cols.div_ceil(PANEL), &blk);
                i0 += rows;
            }
            j0 += cols;
        }
        if p.kpad == 0 {
            break;
        }
        k0 += kc;
    }
}

/// One register block's arguments.
struct Blk {
    c: *mut f32,
    ldc: usize,
    /// Row 0 of A at the chunk's first K value.
    a: *const u16,
    lda: usize,
    /// Panel 0 of B at the chunk's first pair-row.
    b: *const u16,
    panel_len: usize,
    pairs: usize,
    /// Columns of C in this block (≤ 64).
    cols: usize,
    alpha: f32,
    start: Init,
}

/// [`Start`] of one block (the bias pointer at the block's first column).
#[derive(Clone, Copy)]
enum Init {
    Zero,
    C,
    Bias(*const f32),
}

#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
unsafe fn dispatch(rows: usize, vecs: usize, x: &Blk) {
    macro_rules! go {
        ($($r:literal),*) => {
            match (rows, vecs) {
                $(
                    ($r, 4) => block::<$r, 4>(x),
                    ($r, 3) => block::<$r, 3>(x),
                    ($r, 2) => block::<$r, 2>(x),
                    ($r, _) => block::<$r, 1>(x),
                )*
                _ => unreachable!("register block rows are 1..=6"),
            }
        };
    }
    go!(6, 5, 4, 3, 2, 1);
}

/// One R × 16·V block of C over the chunk's K.
#[inline(always)]
#[allow(clippy::needless_range_loop)]
unsafe fn block<const R: usize, const V: usize>(x: &Blk) {
    let last_cols = x.cols - (V - 1) * PANEL;
    let mask = |v: usize| -> __mmask16 {
        if v + 1 < V || last_cols >= 16 {
            0xFFFF
        } else {
            (1u16 << last_cols) - 1
        }
    };
    // alpha = 1: the accumulators start from the start value; otherwise from 0 (scaled, then added).
    let mut acc = [[_mm512_setzero_ps(); V]; R];
    if x.alpha == 1.0 {
        match x.start {
            Init::Zero => {}
            Init::C => {
                for r in 0..R {
                    for v in 0..V {
                        acc[r][v] = _mm512_maskz_loadu_ps(mask(v), x.c.add(r * x.ldc + 16 * v));
                    }
                }
            }
            Init::Bias(bias) => {
                for v in 0..V {
                    let bv = _mm512_maskz_loadu_ps(mask(v), bias.add(16 * v));
                    for row in acc.iter_mut() {
                        row[v] = bv;
                    }
                }
            }
        }
    }
    for q in 0..x.pairs {
        let mut bv = [_mm512_setzero_si512(); V];
        for v in 0..V {
            bv[v] = _mm512_loadu_si512(x.b.add(v * x.panel_len + q * 2 * PANEL) as *const __m512i);
        }
        for r in 0..R {
            let pair = (x.a.add(r * x.lda + 2 * q) as *const i32).read_unaligned();
            let av: __m512bh = std::mem::transmute(_mm512_set1_epi32(pair));
            for v in 0..V {
                acc[r][v] = _mm512_dpbf16_ps(
                    acc[r][v],
                    av,
                    std::mem::transmute::<__m512i, __m512bh>(bv[v]),
                );
            }
        }
    }
    let alpha = _mm512_set1_ps(x.alpha);
    for r in 0..R {
        let crow = x.c.add(r * x.ldc);
        for v in 0..V {
            let out = if x.alpha == 1.0 {
                acc[r][v]
            } else {
                let scaled = _mm512_mul_ps(acc[r][v], alpha);
                match x.start {
                    Init::C => {
                        _mm512_add_ps(_mm512_maskz_loadu_ps(mask(v), crow.add(16 * v)), scaled)
                    }
                    _ => scaled,
                }
            };
            _mm512_mask_storeu_ps(crow.add(16 * v), mask(v), out);
        }
    }
}
