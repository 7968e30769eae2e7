//! Paired statistics over seeds: the same seed gives two strategies the same initial weights and the
//! same data order, so each seed yields one difference d = a − b, and the question is whether the
//! mean of d differs from 0.
//!
//! The interval is Student's t over the seeds' differences: mean ± t(0.975, n − 1) · s / √n
//! (s the sample standard deviation of d). A difference is *called* only when the interval excludes
//! 0. The smallest effect a comparison can resolve is reported as the minimum detectable effect at
//! 80% power, (t(0.975, n − 1) + t(0.80, n − 1)) · s / √n: a true mean difference of that size would
//! be called in about 4 of 5 repetitions of the experiment.

use serde::{Deserialize, Serialize};

/// The paired comparison of one measure between strategy `a` and the baseline `b` in one regime.
/// This is one entry of `report.json`'s `comparisons`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    /// The measure's key (`val_loss`, `ood_loss`, `minimal_pairs`, ...; see `super::measure`).
    pub measure: String,
    /// The compared strategy.
    pub a: String,
    /// The baseline.
    pub b: String,
    /// Data repetition E of the regime (epochs), or `None` for one regime over the whole corpus.
    pub regime: Option<u32>,
    /// Mean over seeds of (a − b).
    #[serde(deserialize_with = "super::record::f64_or_nan")]
    pub mean_diff: f64,
    /// 95% Student-t interval of the mean difference; `None` with fewer than 2 pairs.
    pub ci95: Option<[f64; 2]>,
    /// Seeds (pairs) that entered: both runs finished and neither failed.
    pub seeds: usize,
    /// True when the interval excludes 0.
    pub called: bool,
    /// Standard deviation of the differences over seeds.
    #[serde(deserialize_with = "super::record::f64_or_nan")]
    pub sd: f64,
    /// Minimum detectable effect at 80% power (see the module docs); `None` with fewer than 2 pairs.
    pub resolvable: Option<f64>,
    /// Whether lower values of the measure are better (losses) or higher (accuracies).
    pub lower_is_better: bool,
    /// True when the two runs of every pair are the same run (identical by construction).
    pub identical: bool,
}

impl Comparison {
    /// Compares paired values `(a, b)` (one per seed; pairs with a non-finite value are left out).
    pub fn of(
        measure: &str,
        a: &str,
        b: &str,
        regime: Option<u32>,
        pairs: &[(f64, f64)],
        lower_is_better: bool,
        identical: bool,
    ) -> Self {
        let d: Vec<f64> = pairs
            .iter()
            .filter(|(x, y)| x.is_finite() && y.is_finite())
            .map(|(x, y)| x - y)
            .collect();
        let n = d.len();
        let mean = if n == 0 {
            f64::NAN
        } else {
            d.iter().sum::<f64>() / n as f64
        };
        let sd = if n < 2 {
            0.0
        } else {
            (d.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt()
        };
        let (ci95, resolvable) = if n < 2 {
            (None, None)
        } else {
            let df = (n - 1) as f64;
            let se = sd / (n as f64).sqrt();
            let half = t_quantile(0.975, df) * se;
            (
                Some([mean - half, mean + half]),
                Some((t_quantile(0.975, df) + t_quantile(0.80, df)) * se),
            )
        };
        let called = !identical && ci95.is_some_and(|[lo, hi]| lo > 0.0 || hi < 0.0);
        Comparison {
            measure: measure.into(),
            a: a.into(),
            b: b.into(),
            regime,
            mean_diff: mean,
            ci95,
            seeds: n,
            called,
            sd,
            resolvable,
            lower_is_better,
            identical,
        }
    }

    /// Whether `a` is better than `b` (only meaningful when called).
    pub fn a_is_better(&self) -> bool {
        (self.mean_diff < 0.0) == self.lower_is_better
    }
}

/// The p-quantile of Student's t distribution with `df` degrees of freedom (0 < p < 1), by bisection
/// on the distribution function.
pub fn t_quantile(p: f64, df: f64) -> f64 {
    if p == 0.5 {
        return 0.0;
    }
    if p < 0.5 {
        return -t_quantile(1.0 - p, df);
    }
    let (mut lo, mut hi) = (0.0f64, 1.0f64);
    while t_cdf(hi, df) < p {
        hi *= 2.0;
        if hi > 1e12 {
            return f64::INFINITY;
        }
    }
    for _ in 0..200 {
        let mid = 0.5 * (lo + hi);
        if t_cdf(mid, df) < p {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    0.5 * (lo + hi)
}

/// P(T ≤ t) for Student's t with `df` degrees of freedom: 1 − ½ I_{df/(df+t²)}(df/2, ½) for t ≥ 0.
pub fn t_cdf(t: f64, df: f64) -> f64 {
    let x = df / (df + t * t);
    let tail = 0.5 * incomplete_beta(x, 0.5 * df, 0.5);
    if t >= 0.0 {
        1.0 - tail
    } else {
        tail
    }
}

/// The regularized incomplete beta function I_x(a, b) (continued fraction, Numerical Recipes §6.4).
fn incomplete_beta(x: f64, a: f64, b: f64) -> f64 {
    if x <= 0.0 {
        return 0.0;
    }
    if x >= 1.0 {
        return 1.0;
    }
    let ln_front = ln_gamma(a + b) - ln_gamma(a) - ln_gamma(b) + a * x.ln() + b * (1.0 - x).ln();
    if x < (a + 1.0) / (a + b + 2.0) {
        ln_front.exp() * beta_fraction(x, a, b) / a
    } else {
        1.0 - ln_front.exp() * beta_fraction(1.0 - x, b, a) / b
    }
}

fn beta_fraction(x: f64, a: f64, b: f64) -> f64 {
    const TINY: f64 = 1e-300;
    let clamp = |v: f64| if v.abs() < TINY { TINY } else { v };
    // One term of the modified Lentz recurrence: updates (c, d) by the coefficient `aa` and returns
    // the factor the fraction's value is multiplied by.
    let step = |aa: f64, c: &mut f64, d: &mut f64| {
        *d = 1.0 / clamp(1.0 + aa * *d);
        *c = clamp(1.0 + aa / *c);
        *d * *c
    };
    let (qab, qap, qam) = (a + b, a + 1.0, a - 1.0);
    let mut c = 1.0;
    let mut d = 1.0 / clamp(1.0 - qab * x / qap);
    let mut h = d;
    for m in 1..300 {
        let m = m as f64;
        let m2 = 2.0 * m;
        h *= step(m * (b - m) * x / ((qam + m2) * (a + m2)), &mut c, &mut d);
        let del = step(
            -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2)),
            &mut c,
            &mut d,
        );
        h *= del;
        if (del - 1.0).abs() < 1e-15 {
            break;
        }
    }
    h
}

/// ln Γ(x) for x > 0 (Lanczos, g = 7, 9 terms; relative error below 1e-14).
fn ln_gamma(x: f64) -> f64 {
    const G: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        // Reflection: Γ(x) Γ(1 − x) = π / sin(πx).
        return (std::f64::consts::PI / (std::f64::consts::PI * x).sin()).ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let mut a = G[0];
    let t = x + 7.5;
    for (i, &g) in G.iter().enumerate().skip(1) {
        a += g / (x + i as f64);
    }
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + a.ln()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn t_quantiles_match_the_tables() {
        // Two-sided 95% and one-sided 80% critical values (any statistics table).
        for (df, q975, q80) in [
            (1.0, 12.706, 1.376),
            (2.0, 4.303, 1.061),
            (3.0, 3.182, 0.978),
            (4.0, 2.776, 0.941),
            (5.0, 2.571, 0.920),
            (9.0, 2.262, 0.883),
            (30.0, 2.042, 0.854),
            (1e6, 1.960, 0.842),
        ] {
            assert!(
                (t_quantile(0.975, df) - q975).abs() < 1e-3,
                "df {df}: {}",
                t_quantile(0.975, df)
            );
            assert!(
                (t_quantile(0.80, df) - q80).abs() < 1e-3,
                "df {df}: {}",
                t_quantile(0.80, df)
            );
        }
        assert!((t_quantile(0.025, 4.0) + 2.776).abs() < 1e-3);
        assert!((t_cdf(0.0, 3.0) - 0.5).abs() < 1e-12);
    }

    #[test]
    fn a_consistent_difference_is_called_and_noise_is_not() {
        let pairs = [(5.10, 5.00), (5.21, 5.10), (5.05, 4.96), (5.12, 5.01)];
        let c = Comparison::of(
            "val_loss",
            "static",
            "dynamic",
            Some(64),
            &pairs,
            true,
            false,
        );
        assert_eq!(c.seeds, 4);
        assert!((c.mean_diff - 0.1025).abs() < 1e-12);
        let [lo, hi] = c.ci95.unwrap();
        assert!(lo > 0.0 && hi > lo && c.called && !c.a_is_better(), "{c:?}");
        // Half-width = t(0.975, 3) · sd / 2.
        let sd = c.sd;
        assert!(((hi - lo) / 2.0 - 3.182_446 * sd / 2.0).abs() < 1e-5);
        assert!(c.resolvable.unwrap() > (hi - lo) / 2.0);

        let noisy = [(5.1, 5.0), (4.9, 5.0), (5.05, 5.0)];
        let c = Comparison::of("val_loss", "static", "dynamic", None, &noisy, true, false);
        assert!(!c.called && c.ci95.unwrap()[0] < 0.0 && c.ci95.unwrap()[1] > 0.0);
    }

    #[test]
    fn one_pair_gives_no_interval_and_identical_runs_are_never_called() {
        let c = Comparison::of(
            "val_loss",
            "a",
            "b",
            Some(1),
            &[(1.0, 2.0), (f64::NAN, 1.0)],
            true,
            false,
        );
        assert_eq!(
            (c.seeds, c.ci95, c.called, c.resolvable),
            (1, None, false, None)
        );
        assert_eq!(c.mean_diff, -1.0);
        let c = Comparison::of(
            "val_loss",
            "static",
            "dynamic",
            Some(1),
            &[(1.0, 1.0), (2.0, 2.0)],
            true,
            true,
        );
        assert_eq!(
            (c.mean_diff, c.ci95, c.called),
            (0.0, Some([0.0, 0.0]), false)
        );
        let json = serde_json::to_value(&c).unwrap();
        for key in [
            "measure",
            "a",
            "b",
            "regime",
            "mean_diff",
            "ci95",
            "seeds",
            "called",
        ] {
            assert!(json.get(key).is_some(), "{key}");
        }
    }
}
