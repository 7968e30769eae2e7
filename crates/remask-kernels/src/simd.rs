//! Helpers the fast kernels share: runtime CPU-feature dispatch, lane-parallel reductions that LLVM
//! vectorises, a fast vectorisable `exp`, and the split of rows into rayon tasks.
//!
//! Reductions use `LANES` independent accumulators over `chunks_exact(LANES)`, because LLVM may not
//! reassociate a single floating-point accumulator and would otherwise leave the loop scalar.

/// Independent accumulators per reduction: 16 f32 = one AVX-512 register or two AVX2 ones.
pub(crate) const LANES: usize = 16;

/// Defines `fn $name(args) -> ret` that runs `$body(args)` compiled for AVX-512 or AVX2+FMA when the
/// CPU has them (detected once and cached by std), and the baseline build otherwise. `$body` must be
/// an `#[inline(always)]` function so it is compiled inside each variant with that variant's
/// features. The variants compute the same bits: bodies are elementwise or reduce through explicit
/// `LANES` accumulators, so the vector width changes only how many lanes one instruction covers.
macro_rules! simd_dispatch {
    ($(#[$meta:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)? = $body:path) => {
        $(#[$meta])*
        #[allow(clippy::too_many_arguments)]
        $vis fn $name($($arg: $ty),*) $(-> $ret)? {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx2,fma")]
                #[allow(clippy::too_many_arguments)]
                unsafe fn avx512($($arg: $ty),*) $(-> $ret)? {
                    $body($($arg),*)
                }
                #[target_feature(enable = "avx2,fma")]
                #[allow(clippy::too_many_arguments)]
                unsafe fn avx2($($arg: $ty),*) $(-> $ret)? {
                    $body($($arg),*)
                }
                if std::arch::is_x86_feature_detected!("avx512f") {
                    // SAFETY: the features `avx512` was compiled for are present on this CPU.
                    return unsafe { avx512($($arg),*) };
                }
                if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
                    // SAFETY: the features `avx2` was compiled for are present on this CPU.
                    return unsafe { avx2($($arg),*) };
                }
            }
            $body($($arg),*)
        }
    };
}
pub(crate) use simd_dispatch;

/// Rows per rayon task for a row-wise kernel over `rows × cols`: about `TASK_ELEMS` elements per
/// task, so small problems stay on one thread and large ones split into many stealable pieces.
#[inline]
pub(crate) fn rows_per_task(cols: usize) -> usize {
    const TASK_ELEMS: usize = 1 << 14;
    (TASK_ELEMS / cols.max(1)).max(1)
}

/// Elements per rayon task for elementwise kernels.
pub(crate) const ELEMS_PER_TASK: usize = 1 << 15;

/// Σ x, lane-parallel.
#[inline(always)]
pub(crate) fn sum(x: &[f32]) -> f32 {
    let mut acc = [0.0f32; LANES];
    let chunks = x.chunks_exact(LANES);
    let tail = chunks.remainder();
    for ch in chunks {
        for (a, &v) in acc.iter_mut().zip(ch) {
            *a += v;
        }
    }
    acc.iter().sum::<f32>() + tail.iter().sum::<f32>()
}

/// Σ x·y, lane-parallel.
#[inline(always)]
pub(crate) fn dot(x: &[f32], y: &[f32]) -> f32 {
    debug_assert_eq!(x.len(), y.len());
    let mut acc = [0.0f32; LANES];
    let xc = x.chunks_exact(LANES);
    let yc = y.chunks_exact(LANES);
    let tail: f32 = xc
        .remainder()
        .iter()
        .zip(yc.remainder())
        .map(|(&a, &b)| a * b)
        .sum();
    for (cx, cy) in xc.zip(yc) {
        for ((a, &u), &v) in acc.iter_mut().zip(cx).zip(cy) {
            *a += u * v;
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// max x (−∞ for an empty slice; NaN entries are skipped, callers see them through their sums).
#[inline(always)]
pub(crate) fn max(x: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; LANES];
    let chunks = x.chunks_exact(LANES);
    let tail = chunks.remainder();
    for ch in chunks {
        for (a, &v) in acc.iter_mut().zip(ch) {
            *a = if v > *a { v } else { *a };
        }
    }
    let mut m = f32::NEG_INFINITY;
    for &v in acc.iter().chain(tail) {
        m = if v > m { v } else { m };
    }
    m
}

/// e^x in f32 with about 1 ulp of error (Cody-Waite reduction and the Cephes `expf` polynomial),
/// branch-free so loops over it vectorise. Returns 0 below −87.33 and saturates near 2^127 above
/// 88.3; NaN propagates.
#[inline(always)]
pub(crate) fn exp(x: f32) -> f32 {
    const LO: f32 = -87.33;
    const HI: f32 = 88.3;
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // 1.5·2^23: adding it rounds to an integer, which then sits in the low mantissa bits.
    const MAGIC: f32 = 12_582_912.0;
    let xc = x.clamp(LO, HI);
    let shifted = xc * LOG2E + MAGIC;
    let n = shifted - MAGIC;
    let r = xc - n * LN2_HI - n * LN2_LO;
    let p = 1.987_569_1e-4f32;
    let p = p * r + 1.398_199_9e-3;
    let p = p * r + 8.333_452e-3;
    let p = p * r + 4.166_579_6e-2;
    let p = p * r + 1.666_666_5e-1;
    let p = p * r + 0.5;
    let er = p * r * r + r + 1.0;
    let pow2 = f32::from_bits(
        (shifted
            .to_bits()
            .wrapping_sub(MAGIC.to_bits())
            .wrapping_add(127))
            << 23,
    );
    if x < LO {
        0.0
    } else {
        er * pow2
    }
}

/// Writes out[j] = e^(x[j] − m) and returns Σ_j out[j], lane-parallel, in one pass.
#[inline(always)]
pub(crate) fn exp_store_sum(out: &mut [f32], x: &[f32], m: f32) -> f32 {
    debug_assert_eq!(out.len(), x.len());
    let main = x.len() / LANES * LANES;
    let (out_main, out_tail) = out.split_at_mut(main);
    let (x_main, x_tail) = x.split_at(main);
    let mut acc = [0.0f32; LANES];
    for (och, xch) in out_main
        .chunks_exact_mut(LANES)
        .zip(x_main.chunks_exact(LANES))
    {
        for ((a, o), &v) in acc.iter_mut().zip(och).zip(xch) {
            let e = exp(v - m);
            *o = e;
            *a += e;
        }
    }
    let mut tail = 0.0f32;
    for (o, &v) in out_tail.iter_mut().zip(x_tail) {
        *o = exp(v - m);
        tail += *o;
    }
    acc.iter().sum::<f32>() + tail
}

/// In place: x[j] = e^(x[j] − m), returning the sum, lane-parallel, in one pass.
#[inline(always)]
pub(crate) fn exp_in_place_sum(x: &mut [f32], m: f32) -> f32 {
    let mut acc = [0.0f32; LANES];
    let mut chunks = x.chunks_exact_mut(LANES);
    for ch in &mut chunks {
        for (a, v) in acc.iter_mut().zip(ch.iter_mut()) {
            *v = exp(*v - m);
            *a += *v;
        }
    }
    let mut tail = 0.0f32;
    for v in chunks.into_remainder() {
        *v = exp(*v - m);
        tail += *v;
    }
    acc.iter().sum::<f32>() + tail
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_exp_is_accurate_and_handles_extremes() {
        let mut worst = 0.0f64;
        let mut x = -87.0f32;
        while x < 88.0 {
            let got = exp(x) as f64;
            let want = (x as f64).exp();
            worst = worst.max((got / want - 1.0).abs());
            x += 0.0137;
        }
        assert!(worst < 3e-7, "worst relative error {worst}");
        assert_eq!(exp(0.0), 1.0);
        assert_eq!(exp(-100.0), 0.0);
        assert_eq!(exp(f32::NEG_INFINITY), 0.0);
        assert!(exp(f32::NAN).is_nan());
        assert!(exp(100.0).is_finite() && exp(100.0) > 1e38);
    }

    #[test]
    fn exp_sums_store_and_sum() {
        for len in [0usize, 5, 16, 37] {
            let x: Vec<f32> = (0..len).map(|i| (i as f32 * 0.37).sin() * 3.0).collect();
            let want: Vec<f32> = x.iter().map(|&v| exp(v - 1.5)).collect();
            let mut out = vec![f32::NAN; len];
            let s1 = exp_store_sum(&mut out, &x, 1.5);
            assert_eq!(out, want);
            let mut inplace = x.clone();
            let s2 = exp_in_place_sum(&mut inplace, 1.5);
            assert_eq!(inplace, want);
            let direct: f32 = want.iter().sum();
            assert!((s1 - direct).abs() <= 1e-5 * (1.0 + direct) && s1 == s2);
        }
    }

    #[test]
    fn lane_reductions_match_sequential_sums() {
        for len in [0, 1, 15, 16, 17, 100] {
            let x: Vec<f32> = (0..len).map(|i| ((i * 7919) % 23) as f32 - 11.0).collect();
            let y: Vec<f32> = (0..len)
                .map(|i| ((i * 104_729) % 13) as f32 - 6.0)
                .collect();
            assert_eq!(sum(&x), x.iter().sum::<f32>(), "sum len {len}");
            assert_eq!(
                dot(&x, &y),
                x.iter().zip(&y).map(|(a, b)| a * b).sum::<f32>(),
                "dot len {len}"
            );
            assert_eq!(
                max(&x),
                x.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b)),
                "max len {len}"
            );
        }
    }
}
