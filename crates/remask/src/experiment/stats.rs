//! Small statistics over seeds: median and range, and "tokens to reach a target loss".

use serde::{Deserialize, Serialize};

use super::record::EvalPoint;

/// Median and range of one figure over seeds.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Spread {
    pub median: f64,
    pub min: f64,
    pub max: f64,
    /// Number of values (seeds) that had the figure.
    pub n: usize,
}

impl Spread {
    /// The spread of `values`, ignoring non-finite ones; `None` when nothing is left.
    pub fn of(values: &[f64]) -> Option<Spread> {
        let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
        if v.is_empty() {
            return None;
        }
        v.sort_by(|a, b| a.total_cmp(b));
        let n = v.len();
        let median = if n % 2 == 1 {
            v[n / 2]
        } else {
            0.5 * (v[n / 2 - 1] + v[n / 2])
        };
        Some(Spread {
            median,
            min: v[0],
            max: v[n - 1],
            n,
        })
    }

    /// Whether two ranges overlap: then a difference between the medians is inside the seed spread.
    pub fn overlaps(&self, other: &Spread) -> bool {
        self.min <= other.max && other.min <= self.max
    }
}

/// Tokens and seconds at which the validation loss first reaches `target`, interpolating linearly
/// between evaluation points; `None` if it never does.
pub fn time_to_target(curve: &[EvalPoint], target: f64) -> Option<(f64, f64)> {
    let mut prev: Option<&EvalPoint> = None;
    for p in curve {
        if p.loss <= target {
            return Some(match prev {
                Some(a) if a.loss > p.loss => {
                    let f = (a.loss - target) / (a.loss - p.loss);
                    (
                        a.tokens as f64 + f * (p.tokens as f64 - a.tokens as f64),
                        a.seconds + f * (p.seconds - a.seconds),
                    )
                }
                _ => (p.tokens as f64, p.seconds),
            });
        }
        prev = Some(p);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spread_median_even_odd_and_nan() {
        let s = Spread::of(&[3.0, 1.0, 2.0]).unwrap();
        assert_eq!((s.median, s.min, s.max, s.n), (2.0, 1.0, 3.0, 3));
        let s = Spread::of(&[4.0, 1.0, f64::NAN, 2.0, 3.0]).unwrap();
        assert_eq!((s.median, s.n), (2.5, 4));
        assert!(Spread::of(&[f64::NAN]).is_none());
    }

    #[test]
    fn overlap_is_symmetric_and_strict() {
        let a = Spread {
            median: 1.5,
            min: 1.0,
            max: 2.0,
            n: 3,
        };
        let b = Spread {
            median: 2.5,
            min: 2.0,
            max: 3.0,
            n: 3,
        };
        let c = Spread {
            median: 3.5,
            min: 3.1,
            max: 4.0,
            n: 3,
        };
        assert!(a.overlaps(&b) && b.overlaps(&a));
        assert!(!a.overlaps(&c) && !c.overlaps(&a));
    }

    #[test]
    fn target_is_interpolated() {
        let p = |tokens, seconds, loss| EvalPoint {
            tokens,
            seconds,
            loss,
            accuracy: 0.0,
        };
        let curve = [p(0, 0.0, 8.0), p(100, 10.0, 6.0), p(200, 20.0, 4.0)];
        assert_eq!(time_to_target(&curve, 5.0), Some((150.0, 15.0)));
        assert_eq!(time_to_target(&curve, 8.5), Some((0.0, 0.0)));
        assert_eq!(time_to_target(&curve, 3.0), None);
    }
}
