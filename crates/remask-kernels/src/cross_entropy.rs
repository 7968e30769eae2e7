//! Softmax cross-entropy over the vocabulary, with ignored labels.
//!
//! Shapes: N = rows (labelled positions or B*T), V = vocabulary. logits/dlogits [N,V], targets [N],
//! losses [N]. Rows whose target is [`IGNORE_INDEX`] get loss 0 and a zero gradient row.
//!
//! The fast kernels run rows in parallel; each row takes a lane-parallel max, a lane-parallel sum of
//! fast exponentials, and one normalising pass. `loss_sum` is summed sequentially over `losses` after
//! the parallel part, so it does not depend on the thread count.

use crate::simd::{self, rows_per_task, simd_dispatch, LANES};
use rayon::prelude::*;

/// Label value meaning "no loss at this position" (PyTorch's `ignore_index` default).
pub const IGNORE_INDEX: i32 = -100;

/// Totals over the non-ignored rows of one call.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct CeStats {
    /// Sum of the per-row losses (nats), accumulated in f64.
    pub loss_sum: f64,
    /// Number of non-ignored rows.
    pub count: usize,
    /// Number of non-ignored rows whose argmax equals the target (first maximum wins ties).
    pub correct: usize,
}

impl CeStats {
    /// Adds another call's totals into these.
    pub fn merge(&mut self, other: CeStats) {
        self.loss_sum += other.loss_sum;
        self.count += other.count;
        self.correct += other.correct;
    }
}

/// Returns the target as a column index, or None for an ignored row. Panics on any other negative
/// value or a target ≥ V (a programmer error: the data pipeline validates labels).
#[inline]
pub(crate) fn target_index(t: i32, v: usize) -> Option<usize> {
    if t == IGNORE_INDEX {
        return None;
    }
    assert!(
        t >= 0 && (t as usize) < v,
        "cross-entropy target {t} outside [0, {v})"
    );
    Some(t as usize)
}

/// losses[N] = -log softmax(logits[i])[targets[i]], 0 where targets[i] == IGNORE_INDEX.
pub fn cross_entropy_forward(
    losses: &mut [f32],
    logits: &[f32],
    targets: &[i32],
    n: usize,
    v: usize,
) -> CeStats {
    assert!(losses.len() >= n && logits.len() >= n * v && targets.len() >= n);
    if n == 0 || v == 0 {
        return cross_entropy_forward_reference(losses, logits, targets, n, v);
    }
    let rows = rows_per_task(v);
    let (count, correct) = logits[..n * v]
        .par_chunks(rows * v)
        .zip(losses[..n].par_chunks_mut(rows))
        .zip(targets[..n].par_chunks(rows))
        .map(|((x, l), t)| ce_forward_rows(l, x, t, v))
        .reduce(|| (0, 0), |a, b| (a.0 + b.0, a.1 + b.1));
    finish_stats(&losses[..n], count, correct)
}

/// Sums the per-row losses sequentially in f64 (ignored rows hold 0), so the total is the same for
/// every thread count.
fn finish_stats(losses: &[f32], count: usize, correct: usize) -> CeStats {
    CeStats {
        loss_sum: losses.iter().map(|&l| l as f64).sum(),
        count,
        correct,
    }
}

/// Σ_j e^(x_j − m), lane-parallel.
#[inline(always)]
fn sum_exp(x: &[f32], m: f32) -> f32 {
    let mut acc = [0.0f32; LANES];
    let chunks = x.chunks_exact(LANES);
    let tail: f32 = chunks.remainder().iter().map(|&v| simd::exp(v - m)).sum();
    for ch in chunks {
        for (a, &v) in acc.iter_mut().zip(ch) {
            *a += simd::exp(v - m);
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// Whether target column t holds the row's first maximum m (PyTorch's argmax tie rule).
#[inline(always)]
fn is_first_argmax(x: &[f32], t: usize, m: f32) -> bool {
    x[t] == m && !x[..t].contains(&m)
}

#[inline(always)]
fn ce_forward_body(
    losses: &mut [f32],
    logits: &[f32],
    targets: &[i32],
    v: usize,
) -> (usize, usize) {
    let (mut count, mut correct) = (0, 0);
    for ((loss, x), &target) in losses.iter_mut().zip(logits.chunks_exact(v)).zip(targets) {
        let Some(t) = target_index(target, v) else {
            *loss = 0.0;
            continue;
        };
        // loss = log Σ e^x − x_t = log Σ e^(x−m) + m − x_t.
        let m = simd::max(x);
        *loss = sum_exp(x, m).ln() + (m - x[t]);
        count += 1;
        correct += is_first_argmax(x, t, m) as usize;
    }
    (count, correct)
}

/// The gradient of one row in place: on entry `d` holds e^(x−m) for the row and `sum` their sum,
/// on exit scale·(softmax − onehot(t)).
#[inline(always)]
fn normalise_gradient_row(d: &mut [f32], sum: f32, t: usize, scale: f32) {
    let f = scale / sum;
    for e in d.iter_mut() {
        *e *= f;
    }
    d[t] -= scale;
}

#[inline(always)]
fn ce_backward_body(dlogits: &mut [f32], logits: &[f32], targets: &[i32], scale: f32, v: usize) {
    for ((d, x), &target) in dlogits
        .chunks_exact_mut(v)
        .zip(logits.chunks_exact(v))
        .zip(targets)
    {
        let Some(t) = target_index(target, v) else {
            d.fill(0.0);
            continue;
        };
        let m = simd::max(x);
        let sum = simd::exp_store_sum(d, x, m);
        normalise_gradient_row(d, sum, t, scale);
    }
}

#[inline(always)]
fn ce_fused_body(
    rows: &mut [f32],
    losses: &mut [f32],
    targets: &[i32],
    scale: f32,
    v: usize,
) -> (usize, usize) {
    let (mut count, mut correct) = (0, 0);
    for ((row, loss), &target) in rows.chunks_exact_mut(v).zip(losses.iter_mut()).zip(targets) {
        let Some(t) = target_index(target, v) else {
            *loss = 0.0;
            row.fill(0.0);
            continue;
        };
        // Everything that needs the logits happens before the row is overwritten.
        let m = simd::max(row);
        let xt = row[t];
        correct += is_first_argmax(row, t, m) as usize;
        count += 1;
        let sum = simd::exp_in_place_sum(row, m);
        *loss = sum.ln() + (m - xt);
        normalise_gradient_row(row, sum, t, scale);
    }
    (count, correct)
}

simd_dispatch!(fn ce_forward_rows(losses: &mut [f32], logits: &[f32], targets: &[i32], v: usize) -> (usize, usize) = ce_forward_body);
simd_dispatch!(fn ce_backward_rows(dlogits: &mut [f32], logits: &[f32], targets: &[i32], scale: f32, v: usize) = ce_backward_body);
simd_dispatch!(fn ce_fused_rows(rows: &mut [f32], losses: &mut [f32], targets: &[i32], scale: f32, v: usize) -> (usize, usize) = ce_fused_body);

/// dlogits[N,V] = scale·(softmax(logits) − onehot(target)); 0 rows where ignored. Overwrites dlogits.
pub fn cross_entropy_backward(
    dlogits: &mut [f32],
    logits: &[f32],
    targets: &[i32],
    scale: f32,
    n: usize,
    v: usize,
) {
    assert!(dlogits.len() >= n * v && logits.len() >= n * v && targets.len() >= n);
    if n == 0 || v == 0 {
        return;
    }
    let rows = rows_per_task(v);
    dlogits[..n * v]
        .par_chunks_mut(rows * v)
        .zip(logits[..n * v].par_chunks(rows * v))
        .zip(targets[..n].par_chunks(rows))
        .for_each(|((d, x), t)| ce_backward_rows(d, x, t, scale, v));
}

/// Fused and in place: logits[N,V] in, dlogits out (same buffer), losses[N] out. Saves an N×V buffer.
pub fn cross_entropy_fused(
    logits_to_dlogits: &mut [f32],
    losses: &mut [f32],
    targets: &[i32],
    scale: f32,
    n: usize,
    v: usize,
) -> CeStats {
    assert!(logits_to_dlogits.len() >= n * v && losses.len() >= n && targets.len() >= n);
    if n == 0 || v == 0 {
        return cross_entropy_fused_reference(logits_to_dlogits, losses, targets, scale, n, v);
    }
    let rows = rows_per_task(v);
    let (count, correct) = logits_to_dlogits[..n * v]
        .par_chunks_mut(rows * v)
        .zip(losses[..n].par_chunks_mut(rows))
        .zip(targets[..n].par_chunks(rows))
        .map(|((x, l), t)| ce_fused_rows(x, l, t, scale, v))
        .reduce(|| (0, 0), |a, b| (a.0 + b.0, a.1 + b.1));
    finish_stats(&losses[..n], count, correct)
}

/// Reference twin of [`cross_entropy_forward`]: plain loops, f64 log-sum-exp.
pub fn cross_entropy_forward_reference(
    losses: &mut [f32],
    logits: &[f32],
    targets: &[i32],
    n: usize,
    v: usize,
) -> CeStats {
    assert!(losses.len() >= n && logits.len() >= n * v && targets.len() >= n);
    let mut stats = CeStats::default();
    for i in 0..n {
        let row = &logits[i * v..(i + 1) * v];
        let Some(t) = target_index(targets[i], v) else {
            losses[i] = 0.0;
            continue;
        };
        let mut max = f32::NEG_INFINITY;
        let mut argmax = 0;
        for (j, &x) in row.iter().enumerate() {
            if x > max {
                max = x;
                argmax = j;
            }
        }
        let sum: f64 = row.iter().map(|&x| (x as f64 - max as f64).exp()).sum();
        let loss = sum.ln() + max as f64 - row[t] as f64;
        losses[i] = loss as f32;
        stats.loss_sum += loss;
        stats.count += 1;
        stats.correct += (argmax == t) as usize;
    }
    stats
}

/// Reference twin of [`cross_entropy_backward`]: plain loops, f64 sums.
pub fn cross_entropy_backward_reference(
    dlogits: &mut [f32],
    logits: &[f32],
    targets: &[i32],
    scale: f32,
    n: usize,
    v: usize,
) {
    assert!(dlogits.len() >= n * v && logits.len() >= n * v && targets.len() >= n);
    for i in 0..n {
        let row = &logits[i * v..(i + 1) * v];
        let drow = &mut dlogits[i * v..(i + 1) * v];
        let Some(t) = target_index(targets[i], v) else {
            drow.fill(0.0);
            continue;
        };
        let max = row.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b)) as f64;
        let sum: f64 = row.iter().map(|&x| (x as f64 - max).exp()).sum();
        for j in 0..v {
            let p = (row[j] as f64 - max).exp() / sum;
            let y = if j == t { 1.0 } else { 0.0 };
            drow[j] = (scale as f64 * (p - y)) as f32;
        }
    }
}

/// Reference twin of [`cross_entropy_fused`]: the unfused forward then backward through a copy.
/// It allocates a row buffer; it exists for tests only.
pub fn cross_entropy_fused_reference(
    logits_to_dlogits: &mut [f32],
    losses: &mut [f32],
    targets: &[i32],
    scale: f32,
    n: usize,
    v: usize,
) -> CeStats {
    assert!(logits_to_dlogits.len() >= n * v && losses.len() >= n && targets.len() >= n);
    let mut stats = CeStats::default();
    let mut row_copy = vec![0.0f32; v];
    for i in 0..n {
        row_copy.copy_from_slice(&logits_to_dlogits[i * v..(i + 1) * v]);
        let s = cross_entropy_forward_reference(
            &mut losses[i..i + 1],
            &row_copy,
            &targets[i..i + 1],
            1,
            v,
        );
        stats.merge(s);
        cross_entropy_backward_reference(
            &mut logits_to_dlogits[i * v..(i + 1) * v],
            &row_copy,
            &targets[i..i + 1],
            scale,
            1,
            v,
        );
    }
    stats
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{assert_close, check_grad, rand_vec};

    fn targets_with_ignored(n: usize, v: usize, seed: u64) -> Vec<i32> {
        let r = rand_vec(n, seed, 1.0);
        r.iter()
            .enumerate()
            .map(|(i, &x)| {
                if i % 3 == 1 {
                    IGNORE_INDEX
                } else {
                    ((x.abs() * v as f32) as usize).min(v - 1) as i32
                }
            })
            .collect()
    }

    #[test]
    fn reference_gradients_match_finite_differences() {
        let (n, v) = (5, 7);
        let logits = rand_vec(n * v, 1, 3.0);
        let targets = targets_with_ignored(n, v, 2);
        let w = rand_vec(n, 3, 1.0);
        // Objective Σ_i w_i·loss_i: its gradient is row i of backward(scale = 1) times w_i.
        let mut d = vec![f32::NAN; n * v];
        cross_entropy_backward_reference(&mut d, &logits, &targets, 1.0, n, v);
        for (row, &wi) in d.chunks_mut(v).zip(&w) {
            row.iter_mut().for_each(|x| *x *= wi);
        }
        check_grad("cross-entropy", &logits, &d, 1e-2, 1e-4, 1e-3, |x| {
            let mut losses = vec![0.0; n];
            cross_entropy_forward_reference(&mut losses, x, &targets, n, v);
            losses
                .iter()
                .zip(&w)
                .map(|(&l, &wi)| l as f64 * wi as f64)
                .sum()
        });
        // Ignored rows: zero loss, zero gradient, not counted.
        let mut losses = vec![f32::NAN; n];
        let stats = cross_entropy_forward_reference(&mut losses, &logits, &targets, n, v);
        for i in (0..n).filter(|i| targets[*i] == IGNORE_INDEX) {
            assert_eq!(losses[i], 0.0);
            assert!(d[i * v..(i + 1) * v].iter().all(|&x| x == 0.0));
        }
        assert_eq!(
            stats.count,
            targets.iter().filter(|&&t| t != IGNORE_INDEX).count()
        );
        let direct: f64 = losses.iter().map(|&l| l as f64).sum();
        assert!((stats.loss_sum - direct).abs() < 1e-5);
    }

    #[test]
    fn correct_counts_first_argmax() {
        let logits = [1.0, 3.0, 3.0, 0.0, /* row 2 */ 5.0, 0.0, 0.0, 0.0];
        let mut losses = [0.0; 2];
        // Row 0: ties at 1 and 2, target 2 is not the first maximum; row 1: target 0 is.
        let stats = cross_entropy_forward(&mut losses, &logits, &[2, 0], 2, 4);
        assert_eq!((stats.count, stats.correct), (2, 1));
        let stats = cross_entropy_forward(&mut losses, &logits, &[1, IGNORE_INDEX], 2, 4);
        assert_eq!((stats.count, stats.correct), (1, 1));
    }

    fn check_fast(n: usize, v: usize, scale_logits: f32) {
        let logits = rand_vec(n * v, 4, scale_logits);
        let targets = targets_with_ignored(n, v, 5);
        let scale = 0.37f32;
        let what = format!("{n}x{v}");
        let (mut l, mut l_ref) = (vec![f32::NAN; n], vec![f32::NAN; n]);
        let s = cross_entropy_forward(&mut l, &logits, &targets, n, v);
        let s_ref = cross_entropy_forward_reference(&mut l_ref, &logits, &targets, n, v);
        assert_close(&l, &l_ref, 1e-5, 1e-5, &format!("ce forward {what}"));
        assert_eq!((s.count, s.correct), (s_ref.count, s_ref.correct));
        assert!((s.loss_sum - s_ref.loss_sum).abs() < 1e-5 * (1.0 + s_ref.loss_sum.abs()));
        let (mut d, mut d_ref) = (vec![f32::NAN; n * v], vec![f32::NAN; n * v]);
        cross_entropy_backward(&mut d, &logits, &targets, scale, n, v);
        cross_entropy_backward_reference(&mut d_ref, &logits, &targets, scale, n, v);
        assert_close(&d, &d_ref, 1e-7, 1e-5, &format!("ce backward {what}"));
        // Fused == unfused: same losses, stats and gradient, in place.
        let mut fused = logits.clone();
        let mut l_fused = vec![f32::NAN; n];
        let s_fused = cross_entropy_fused(&mut fused, &mut l_fused, &targets, scale, n, v);
        assert_close(&l_fused, &l, 1e-6, 1e-6, &format!("ce fused losses {what}"));
        assert_close(&fused, &d, 1e-8, 1e-6, &format!("ce fused gradient {what}"));
        assert_eq!((s_fused.count, s_fused.correct), (s.count, s.correct));
        assert!((s_fused.loss_sum - s.loss_sum).abs() < 1e-6 * (1.0 + s.loss_sum.abs()));
        let mut fused_ref = logits.clone();
        let mut l_fused_ref = vec![f32::NAN; n];
        let s_fused_ref =
            cross_entropy_fused_reference(&mut fused_ref, &mut l_fused_ref, &targets, scale, n, v);
        assert_eq!(s_fused_ref, s_ref);
        assert_eq!(fused_ref, d_ref);
    }

    #[test]
    fn fast_matches_reference() {
        check_fast(37, 19, 4.0);
        check_fast(1, 1, 1.0);
        check_fast(70, 8192, 10.0);
    }

    #[test]
    fn baseline_path_matches_reference() {
        let (n, v) = (9, 37);
        let logits = rand_vec(n * v, 8, 6.0);
        let targets = targets_with_ignored(n, v, 9);
        let (mut l, mut l_ref) = (vec![0.0; n], vec![0.0; n]);
        let counts = ce_forward_body(&mut l, &logits, &targets, v);
        let s_ref = cross_entropy_forward_reference(&mut l_ref, &logits, &targets, n, v);
        assert_close(&l, &l_ref, 1e-5, 1e-5, "baseline ce forward");
        assert_eq!(counts, (s_ref.count, s_ref.correct));
        let (mut d, mut d_ref) = (vec![0.0; n * v], vec![0.0; n * v]);
        ce_backward_body(&mut d, &logits, &targets, 0.5, v);
        cross_entropy_backward_reference(&mut d_ref, &logits, &targets, 0.5, n, v);
        assert_close(&d, &d_ref, 1e-7, 1e-5, "baseline ce backward");
        let mut fused = logits.clone();
        let mut l_fused = vec![0.0; n];
        assert_eq!(
            ce_fused_body(&mut fused, &mut l_fused, &targets, 0.5, v),
            counts
        );
        assert_close(&fused, &d_ref, 1e-7, 1e-5, "baseline ce fused gradient");
        assert_close(&l_fused, &l_ref, 1e-5, 1e-5, "baseline ce fused losses");
    }
}
