//! Per-token-id adaptive masking (`when = { mode = "token-id" }`), after Edman & Fraser's adaptive
//! MLM (BabyLM 2025): every vocabulary id has a masking probability that follows a moving average of
//! the model's loss on it, bounded so that the realised rate stays on target.
//!
//! T = positions per row, n = the row's eligible positions, r = the rate at this point of training.
//!
//! 1. **Feedback** (the same running statistics as `adaptive`, [`AdaptiveStats`]): after every
//!    optimizer step the trainer hands back the loss of every labelled position; the id's running
//!    loss `L[v] ← d · L[v] + (1 − d) · ℓ` and the running mean over all feedback `m` are updated.
//! 2. **Score** of id v: `s_v = L[v] / m` (1 for an id never seen, and for every id before any
//!    feedback).
//! 3. **Probabilities** of a row: `p_j = clamp(c · s_{t_j}, floor · r, ceiling · r)` with the one
//!    scale c that makes `Σ p_j = r · n` ([`fit_bounded`]); since floor ≤ 1 ≤ ceiling, such a c
//!    exists, so the bounds and the expected count hold together.
//! 4. **Selection** ([`choose`]): `bernoulli`, position j independently with probability p_j;
//!    `exact`, systematic sampling over a keyed random order of the eligible positions: one uniform
//!    u, position j chosen when a point u + k (k = 0, 1, …) falls in its stretch of the cumulative
//!    sum. Every position is then chosen with probability exactly p_j, and the count is r · n
//!    rounded down, plus one with probability equal to its fractional part: the `exact` rule.
//!
//! All draws come from the row's keyed RNG: the same key and the same statistics give the same mask.

use remask_kernels::rng::KeyedRng;

use super::adaptive::AdaptiveStats;
use super::config::CountRule;

/// Per-token-id adaptive masking of a run: the running statistics and the bounds of
/// `[masking] when = { mode = "token-id" }`.
#[derive(Clone, Debug, PartialEq)]
pub struct TokenIdAdaptive {
    pub stats: AdaptiveStats,
    /// Lowest probability of a position, as a multiple of the rate.
    pub floor: f32,
    /// Highest probability of a position, as a multiple of the rate (capped at probability 1).
    pub ceiling: f32,
}

/// Scores at or below this are treated as this (a token the model predicts perfectly still has the
/// floor probability, never a zero weight that would stall the fit).
const MIN_SCORE: f64 = 1e-6;

impl TokenIdAdaptive {
    pub fn new(vocab_size: usize, decay: f32, floor: f32, ceiling: f32) -> Self {
        Self {
            stats: AdaptiveStats::new(vocab_size, decay),
            floor,
            ceiling,
        }
    }

    /// Score of token id `id`: its running loss over the running mean loss; 1 when unseen.
    pub fn score(&self, id: u32) -> f32 {
        let s = &self.stats;
        let l = s.loss.get(id as usize).copied().unwrap_or(-1.0);
        if l < 0.0 || s.updates == 0 || !(s.mean.is_finite() && s.mean > 0.0) {
            1.0
        } else {
            l / s.mean
        }
    }

    /// Writes the masking probability of every position of a row at `rate` into `probs[T]` (0 where
    /// not eligible) and returns the expected count `rate · n`.
    pub fn row_probabilities(
        &self,
        probs: &mut [f32],
        tokens: &[u32],
        eligible: &[bool],
        rate: f32,
    ) -> f64 {
        let mut n = 0usize;
        for ((p, &id), &e) in probs.iter_mut().zip(tokens).zip(eligible) {
            *p = if e { self.score(id) } else { 0.0 };
            n += usize::from(e);
        }
        // The same product as the `exact` rule's budget (`probabilistic_round(rate · n)`).
        let target = (rate * n as f32) as f64;
        let lo = self.floor as f64 * rate as f64;
        let hi = (self.ceiling as f64 * rate as f64).min(1.0);
        fit_bounded(probs, eligible, lo, hi, target);
        target
    }
}

/// Turns the scores in `values` (eligible positions only) into probabilities
/// `p_j = clamp(c · s_j, lo, hi)` with c such that `Σ p_j = target`. Needs `lo · n ≤ target ≤ hi · n`
/// (it holds for `lo = floor · r`, `hi = ceiling · r`, `target = r · n`); outside that range the
/// result is all `lo` or all `hi`, the nearest it can get.
pub fn fit_bounded(values: &mut [f32], eligible: &[bool], lo: f64, hi: f64, target: f64) {
    let mut n = 0usize;
    let (mut smin, mut smax) = (f64::INFINITY, 0.0f64);
    for (v, &e) in values.iter().zip(eligible) {
        if e {
            let s = (*v as f64).max(MIN_SCORE);
            smin = smin.min(s);
            smax = smax.max(s);
            n += 1;
        }
    }
    if n == 0 {
        return;
    }
    if hi - lo <= f64::EPSILON * hi.max(1.0) || !smax.is_finite() {
        // floor = ceiling = 1 (or unusable scores): every position gets the mean probability.
        let p = (target / n as f64).clamp(lo, hi) as f32;
        values
            .iter_mut()
            .zip(eligible)
            .for_each(|(v, &e)| *v = if e { p } else { 0.0 });
        return;
    }
    let sum_at = |c: f64| -> f64 {
        values
            .iter()
            .zip(eligible)
            .filter(|x| *x.1)
            .map(|(&v, _)| (c * (v as f64).max(MIN_SCORE)).clamp(lo, hi))
            .sum()
    };
    // Σ clamp(c · s_j) rises with c from n · lo (c = lo / smax) to n · hi (c = hi / smin): bisect on
    // log c, then solve the linear piece the bisection lands in exactly.
    let (mut a, mut b) = (lo / smax, hi / smin);
    for _ in 0..60 {
        let c = (a * b).sqrt();
        if sum_at(c) < target {
            a = c;
        } else {
            b = c;
        }
    }
    let (mut fixed, mut free) = (0.0f64, 0.0f64);
    for (&v, &e) in values.iter().zip(eligible) {
        if e {
            let s = (v as f64).max(MIN_SCORE);
            let p = b * s;
            if p <= lo {
                fixed += lo;
            } else if p >= hi {
                fixed += hi;
            } else {
                free += s;
            }
        }
    }
    let c = if free > 0.0 {
        ((target - fixed) / free).max(0.0)
    } else {
        b
    };
    for (v, &e) in values.iter_mut().zip(eligible) {
        *v = if e {
            (c * (*v as f64).max(MIN_SCORE)).clamp(lo, hi) as f32
        } else {
            0.0
        };
    }
}

/// Writes `chosen[T]` from the probabilities `probs[T]` (summing to `target` over the eligible
/// positions) under `count` (see the module doc). `order` is a reusable buffer.
pub fn choose(
    chosen: &mut [bool],
    eligible: &[bool],
    probs: &[f32],
    target: f64,
    count: CountRule,
    rng: &mut KeyedRng,
    order: &mut Vec<u32>,
) {
    chosen.iter_mut().for_each(|c| *c = false);
    match count {
        CountRule::Bernoulli => {
            for ((c, &e), &p) in chosen.iter_mut().zip(eligible).zip(probs) {
                if e {
                    *c = rng.next_f32() < p;
                }
            }
        }
        CountRule::Exact => {
            order.clear();
            order.extend(
                eligible
                    .iter()
                    .enumerate()
                    .filter(|x| *x.1)
                    .map(|(i, _)| i as u32),
            );
            let n = order.len();
            if n == 0 {
                return;
            }
            // A uniform random order (Fisher-Yates), so that which positions are chosen together
            // does not depend on where they sit in the row.
            for i in 0..n - 1 {
                let j = i + rng.below((n - i) as u64) as usize;
                order.swap(i, j);
            }
            // Systematic sampling: the points u, u + 1, u + 2, … below `target`; position j is
            // chosen when one falls in [cum_before_j, cum_after_j) (at most one: p_j ≤ 1). The last
            // stretch ends at `target` itself, so the count is exactly #{k : u + k < target}.
            let mut next = rng.next_f64();
            let mut cum = 0.0f64;
            for (k, &j) in order.iter().enumerate() {
                cum = if k + 1 == n {
                    target
                } else {
                    cum + probs[j as usize] as f64
                };
                if next < cum {
                    chosen[j as usize] = true;
                    next += 1.0;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fit_hits_the_target_within_the_bounds() {
        let eligible = [true, true, false, true, true, true, true, true, true];
        // Very uneven scores: the easiest and hardest ids are held at the bounds.
        let mut v = [0.01f32, 50.0, 9.0, 1.0, 1.2, 0.8, 1.0, 3.0, 0.0];
        let (lo, hi, target) = (0.075, 0.3, 0.15 * 8.0);
        fit_bounded(&mut v, &eligible, lo, hi, target);
        let sum: f64 = v.iter().map(|&p| p as f64).sum();
        assert!((sum - target).abs() < 1e-5, "{sum} vs {target}: {v:?}");
        assert_eq!(v[2], 0.0, "ineligible positions get 0");
        assert!(
            (v[0] - 0.075).abs() < 1e-7 && (v[8] - 0.075).abs() < 1e-7,
            "floor: {v:?}"
        );
        assert!(
            (v[1] - 0.3).abs() < 1e-7 && (v[7] - 0.3).abs() < 1e-7,
            "ceiling: {v:?}"
        );
        // Between the bounds, probabilities keep the scores' ratios.
        assert!(
            (v[4] / v[3] - 1.2).abs() < 1e-5 && (v[5] / v[3] - 0.8).abs() < 1e-5,
            "{v:?}"
        );
        // Equal scores give the rate itself.
        let mut u = [2.0f32; 6];
        fit_bounded(&mut u, &[true; 6], 0.075, 0.3, 0.9);
        assert!(u.iter().all(|&p| (p - 0.15).abs() < 1e-7), "{u:?}");
    }

    #[test]
    fn systematic_sampling_count_is_the_exact_rule() {
        let eligible = [true; 10];
        let probs = [0.1f32, 0.5, 0.2, 0.9, 0.3, 0.3, 0.1, 0.4, 0.2, 0.3];
        let target: f64 = probs.iter().map(|&p| p as f64).sum();
        let (mut chosen, mut order) = (vec![false; 10], Vec::new());
        let mut hits = [0usize; 10];
        let draws = 40_000;
        for i in 0..draws {
            let mut rng = KeyedRng::new(3, remask_kernels::rng::Purpose::Other, 0, i);
            choose(
                &mut chosen,
                &eligible,
                &probs,
                target,
                CountRule::Exact,
                &mut rng,
                &mut order,
            );
            let c = chosen.iter().filter(|&&c| c).count();
            assert!(c == 3 || c == 4, "count {c} for target {target}");
            chosen
                .iter()
                .zip(&mut hits)
                .for_each(|(&c, h)| *h += usize::from(c));
        }
        for (h, &p) in hits.iter().zip(&probs) {
            let f = *h as f64 / draws as f64;
            // 4 standard deviations of a binomial share at 40,000 draws.
            let sd = (p as f64 * (1.0 - p as f64) / draws as f64).sqrt();
            assert!(
                (f - p as f64).abs() < 4.0 * sd + 1e-3,
                "inclusion {f} for probability {p}"
            );
        }
    }
}
