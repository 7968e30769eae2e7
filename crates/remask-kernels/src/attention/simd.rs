//! Element-wise pieces of attention (masking, exponentials, row sums) written as plain loops and
//! compiled three times: for AVX-512, for AVX2+FMA and for the baseline target, picked at run time.
//! The fused kernel and the dense baseline share them, so a benchmark ratio compares tiling and
//! sparsity, not two different `exp` implementations.

/// exp(x) for x ≤ 88.7, 0 for x < -87.3 (including -∞). Range reduction to r ∈ [-ln2/2, ln2/2]
/// and a degree-6 polynomial: relative error below 2e-7. Branch-free so loops over it vectorize.
#[inline(always)]
#[allow(clippy::manual_clamp)]
pub(crate) fn fast_exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    const ROUND: f32 = 12_582_912.0; // 1.5·2^23: adding and subtracting it rounds to an integer.
    let xc = if x < -87.0 {
        -87.0
    } else if x > 88.7 {
        88.7
    } else {
        x
    };
    let t = xc * LOG2E + ROUND;
    let n = t - ROUND;
    // t's bit pattern is ROUND's plus the integer n: integer arithmetic recovers n without a
    // float-to-int cast (whose saturating semantics would not vectorize).
    let ni = (t.to_bits() as i32).wrapping_sub(ROUND.to_bits() as i32);
    let r = xc - n * LN2_HI - n * LN2_LO;
    let p = 1.0
        + r * (1.0
            + r * (0.5
                + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0))))));
    let pow = f32::from_bits((ni.wrapping_add(127) << 23) as u32);
    if x < -87.0 {
        0.0
    } else {
        p * pow
    }
}

/// Declares `pub(crate) fn $name(args)` that runs `$imp` compiled for the best instruction set.
macro_rules! dispatch {
    ($(#[$doc:meta])* fn $name:ident / $imp:ident ( $($arg:ident : $ty:ty),* $(,)? )) => {
        $(#[$doc])*
        #[allow(clippy::too_many_arguments)]
        pub(crate) fn $name($($arg: $ty),*) {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx2,fma")]
                #[allow(clippy::too_many_arguments)]
                unsafe fn avx512($($arg: $ty),*) { $imp($($arg),*) }
                #[target_feature(enable = "avx2,fma")]
                #[allow(clippy::too_many_arguments)]
                unsafe fn avx2($($arg: $ty),*) { $imp($($arg),*) }
                if std::is_x86_feature_detected!("avx512f") {
                    // SAFETY: the CPU supports the enabled features (checked just above).
                    return unsafe { avx512($($arg),*) };
                }
                if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
                    // SAFETY: as above.
                    return unsafe { avx2($($arg),*) };
                }
            }
            $imp($($arg),*)
        }
    };
}

dispatch! {
    /// One online-softmax step of the fused forward over a score tile `s` (`m` rows × `n` columns,
    /// row stride `ld`, already scaled). Masked elements (bit 0 in `bits`, rows of `words` u64) are
    /// dropped. Updates the running row max `mrow` and sum `lrow`, writes the factor `alpha` by which
    /// earlier accumulators must be rescaled, and turns `s` into the unnormalised probabilities
    /// `exp(s − m_new)` (0 where masked, and on rows that have seen no allowed key yet).
    fn online_softmax_step / online_softmax_step_impl(s: &mut [f32], ld: usize, m: usize, n: usize, bits: Option<&[u64]>, words: usize, mrow: &mut [f32], lrow: &mut [f32], alpha: &mut [f32])
}

#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn online_softmax_step_impl(
    s: &mut [f32],
    ld: usize,
    m: usize,
    n: usize,
    bits: Option<&[u64]>,
    words: usize,
    mrow: &mut [f32],
    lrow: &mut [f32],
    alpha: &mut [f32],
) {
    for i in 0..m {
        let row = &mut s[i * ld..i * ld + n];
        if let Some(bits) = bits {
            apply_bits(row, &bits[i * words..(i + 1) * words]);
        }
        let mx = row_max(row);
        let m_new = if mx > mrow[i] { mx } else { mrow[i] };
        if m_new == f32::NEG_INFINITY {
            row.iter_mut().for_each(|x| *x = 0.0);
            alpha[i] = 1.0;
            continue;
        }
        alpha[i] = if mrow[i] == f32::NEG_INFINITY {
            0.0
        } else {
            fast_exp(mrow[i] - m_new)
        };
        row.iter_mut().for_each(|x| *x = fast_exp(*x - m_new));
        let sum = lane_sum(row);
        lrow[i] = lrow[i] * alpha[i] + sum;
        mrow[i] = m_new;
    }
}

dispatch! {
    /// Backward recomputation of probabilities in place: `s ← exp(s − lse_i)` (`m × n`, stride `ld`),
    /// 0 where masked or where the row is fully masked (`lse_i = −∞`).
    fn probs_from_lse / probs_from_lse_impl(s: &mut [f32], ld: usize, m: usize, n: usize, bits: Option<&[u64]>, words: usize, lse: &[f32])
}

#[inline(always)]
fn probs_from_lse_impl(
    s: &mut [f32],
    ld: usize,
    m: usize,
    n: usize,
    bits: Option<&[u64]>,
    words: usize,
    lse: &[f32],
) {
    for i in 0..m {
        let row = &mut s[i * ld..i * ld + n];
        let l = lse[i];
        if l == f32::NEG_INFINITY {
            row.iter_mut().for_each(|x| *x = 0.0);
            continue;
        }
        if let Some(bits) = bits {
            apply_bits(row, &bits[i * words..(i + 1) * words]);
        }
        row.iter_mut().for_each(|x| *x = fast_exp(*x - l));
    }
}

dispatch! {
    /// Softmax backward in place: `dp ← p ∘ (dp − drow_i)` (`m × n`, both with stride `ld`).
    fn softmax_grad / softmax_grad_impl(dp: &mut [f32], p: &[f32], ld: usize, m: usize, n: usize, drow: &[f32])
}

#[inline(always)]
fn softmax_grad_impl(dp: &mut [f32], p: &[f32], ld: usize, m: usize, n: usize, drow: &[f32]) {
    for i in 0..m {
        let di = drow[i];
        let dpr = &mut dp[i * ld..i * ld + n];
        let pr = &p[i * ld..i * ld + n];
        dpr.iter_mut()
            .zip(pr)
            .for_each(|(g, &p)| *g = p * (*g - di));
    }
}

dispatch! {
    /// Dense masked softmax in place over `rows × cols` (stride `cols`): `s ← softmax(s + bias)` with
    /// an additive bias (0 or −∞) of the same shape; writes each row's log-sum-exp to `lse`. Fully
    /// masked rows become 0 with lse −∞.
    fn masked_softmax_rows / masked_softmax_rows_impl(s: &mut [f32], bias: &[f32], lse: &mut [f32], rows: usize, cols: usize)
}

#[inline(always)]
fn masked_softmax_rows_impl(
    s: &mut [f32],
    bias: &[f32],
    lse: &mut [f32],
    rows: usize,
    cols: usize,
) {
    for i in 0..rows {
        let row = &mut s[i * cols..(i + 1) * cols];
        let br = &bias[i * cols..(i + 1) * cols];
        row.iter_mut().zip(br).for_each(|(x, &b)| *x += b);
        let mx = row_max(row);
        if mx == f32::NEG_INFINITY {
            row.iter_mut().for_each(|x| *x = 0.0);
            lse[i] = f32::NEG_INFINITY;
            continue;
        }
        row.iter_mut().for_each(|x| *x = fast_exp(*x - mx));
        let sum = lane_sum(row);
        let inv = 1.0 / sum;
        row.iter_mut().for_each(|x| *x *= inv);
        lse[i] = mx + sum.ln();
    }
}

dispatch! {
    /// Dense softmax backward in place: `dp ← p ∘ (dp − Σ_j p_j dp_j)` per row (`rows × cols`).
    fn softmax_rows_grad / softmax_rows_grad_impl(dp: &mut [f32], p: &[f32], rows: usize, cols: usize)
}

#[inline(always)]
fn softmax_rows_grad_impl(dp: &mut [f32], p: &[f32], rows: usize, cols: usize) {
    for i in 0..rows {
        let dpr = &mut dp[i * cols..(i + 1) * cols];
        let pr = &p[i * cols..(i + 1) * cols];
        let di = dot(dpr, pr);
        dpr.iter_mut()
            .zip(pr)
            .for_each(|(g, &p)| *g = p * (*g - di));
    }
}

/// Sets `row[j] = −∞` where bit `j` of `bits` is 0.
#[inline(always)]
fn apply_bits(row: &mut [f32], bits: &[u64]) {
    for (w, chunk) in row.chunks_mut(64).enumerate() {
        let word = bits[w];
        if word == u64::MAX {
            continue;
        }
        for (j, x) in chunk.iter_mut().enumerate() {
            if (word >> j) & 1 == 0 {
                *x = f32::NEG_INFINITY;
            }
        }
    }
}

/// Maximum of a row (−∞ for an empty one), with 16 independent lanes so it vectorizes.
#[inline(always)]
fn row_max(row: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; 16];
    let mut chunks = row.chunks_exact(16);
    for c in &mut chunks {
        for l in 0..16 {
            acc[l] = if c[l] > acc[l] { c[l] } else { acc[l] };
        }
    }
    let mut mx = f32::NEG_INFINITY;
    for &x in chunks.remainder().iter().chain(acc.iter()) {
        mx = if x > mx { x } else { mx };
    }
    mx
}

/// Sum with 16 independent lanes (a sequential float sum would not vectorize).
#[inline(always)]
fn lane_sum(row: &[f32]) -> f32 {
    let mut acc = [0f32; 16];
    let mut chunks = row.chunks_exact(16);
    for c in &mut chunks {
        for l in 0..16 {
            acc[l] += c[l];
        }
    }
    acc.iter().sum::<f32>() + chunks.remainder().iter().sum::<f32>()
}

/// Dot product with 16 independent lanes.
#[inline(always)]
pub(crate) fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 16];
    let mut ca = a.chunks_exact(16);
    let mut cb = b.chunks_exact(16);
    for (x, y) in (&mut ca).zip(&mut cb) {
        for l in 0..16 {
            acc[l] += x[l] * y[l];
        }
    }
    let mut s: f32 = acc.iter().sum();
    for (x, y) in ca.remainder().iter().zip(cb.remainder()) {
        s += x * y;
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_exp_is_accurate() {
        let mut x = -90.0f32;
        while x < 88.0 {
            let (got, want) = (fast_exp(x) as f64, (x as f64).exp());
            if x < -87.0 {
                assert_eq!(got, 0.0);
            } else {
                assert!(
                    ((got - want) / want).abs() < 5e-7,
                    "exp({x}) = {got}, want {want}"
                );
            }
            x += 0.0137;
        }
        assert_eq!(fast_exp(f32::NEG_INFINITY), 0.0);
    }
}
