//! `MaskingStrategy`: the trait that chooses which positions of a row are hidden, and the shared unit
//! selection it is built from (a unit is one token or one whole word).
//!
//! T = positions per row. A strategy sees a [`RowView`] (which positions are eligible, where words
//! start, optional adaptive weights, and the token ids, which only PMI masking reads to find its
//! n-grams) and writes `chosen[T]`. Only eligible positions may be chosen, so it can never choose a
//! special token or padding.

use remask_kernels::rng::KeyedRng;

use super::config::CountRule;

/// What a strategy sees of one row. All slices are `[T]`.
#[derive(Clone, Copy, Debug)]
pub struct RowView<'a> {
    /// Token ids (positions from the row's length on are padding).
    pub ids: &'a [u32],
    /// True where a position may be chosen (not special, not padding).
    pub eligible: &'a [bool],
    /// True where a token starts a word (from the tokenizer's pre-tokenizer, or jieba for Chinese).
    pub word_starts: &'a [bool],
    /// Adaptive masking: relative weight of each position (mean 1 over eligible positions); `None`
    /// means uniform.
    pub weights: Option<&'a [f32]>,
}

/// Reusable buffers, so that choosing allocates nothing after warm-up.
#[derive(Clone, Debug, Default)]
pub struct Scratch {
    /// The row's selection units (start, len).
    pub(crate) units: Vec<(u32, u32)>,
    pub(crate) select: SelectScratch,
    /// PMI masking's word list and hashes.
    pub(crate) segment: SegmentScratch,
}

/// Buffers of PMI masking's row split (`PmiMasking::segment`).
#[derive(Clone, Debug, Default)]
pub struct SegmentScratch {
    /// The row's words (start, len).
    pub(crate) words: Vec<(u32, u32)>,
    /// Their hashes.
    pub(crate) hashes: Vec<u64>,
}

/// Buffers of [`select_units`] (and of the strategies' fast paths).
#[derive(Clone, Debug, Default)]
pub struct SelectScratch {
    /// A unit or position order.
    pub(crate) order: Vec<u32>,
    /// Race keys of the weighted order.
    pub(crate) keys: Vec<f32>,
    /// Unit weights, or uniform draws.
    pub(crate) probs: Vec<f32>,
    /// Units whose Bernoulli probability is capped at 1.
    pub(crate) capped: Vec<bool>,
}

/// How many units [`select_units`] chooses and by what weight.
#[derive(Clone, Copy, Debug)]
pub struct Selection<'a> {
    /// Share of the row's eligible tokens to choose.
    pub rate: f32,
    pub count: CountRule,
    /// Position weights (adaptive masking), or `None` for uniform.
    pub weights: Option<&'a [f32]>,
}

/// Chooses the positions of a row to hide.
pub trait MaskingStrategy: Send + Sync {
    /// Short name for reports (`token`, `whole-word`, `span`, `pmi`).
    fn name(&self) -> &'static str;

    /// Overwrites `chosen[T]`: true where the position is hidden. Only eligible positions may be
    /// chosen; about `rate` of them are, following the strategy's count rule.
    fn choose(
        &self,
        chosen: &mut [bool],
        row: &RowView<'_>,
        rate: f32,
        rng: &mut KeyedRng,
        scratch: &mut Scratch,
    );
}

/// `x` rounded down, plus one with probability equal to its fractional part (expectation exactly `x`).
#[inline]
pub fn probabilistic_round(x: f32, rng: &mut KeyedRng) -> usize {
    let x = x.max(0.0);
    let floor = x.floor();
    floor as usize + usize::from(rng.next_f32() < x - floor)
}

/// Binomial(n, p) drawn as n Bernoulli trials (n is at most a row's length).
#[inline]
pub fn binomial(n: usize, p: f32, rng: &mut KeyedRng) -> usize {
    (0..n).filter(|_| rng.next_f32() < p).count()
}

/// Collects the selection units of a row into `units` as (start, len): every eligible token on its own
/// (`by_words = false`), or maximal runs of eligible tokens that start at a word start (`by_words`).
/// Returns the number of eligible tokens.
pub fn collect_units(units: &mut Vec<(u32, u32)>, row: &RowView<'_>, by_words: bool) -> usize {
    units.clear();
    let mut n = 0;
    let mut open = false;
    for (i, &e) in row.eligible.iter().enumerate() {
        if !e {
            open = false;
            continue;
        }
        n += 1;
        if by_words && open && !row.word_starts[i] {
            if let Some(last) = units.last_mut() {
                last.1 += 1;
            }
        } else {
            units.push((i as u32, 1));
            open = true;
        }
    }
    n
}

/// Mean weight of a unit's tokens (1 without weights).
#[inline]
fn unit_weight(weights: Option<&[f32]>, (start, len): (u32, u32)) -> f32 {
    match weights {
        None => 1.0,
        Some(w) => {
            let s = &w[start as usize..(start + len) as usize];
            (s.iter().sum::<f32>() / len as f32).max(1e-6)
        }
    }
}

/// Chooses whole units so that about `rate · n_tokens` tokens are chosen, under `count`:
/// - `Bernoulli`: each unit independently, with probability `rate` (or, with weights, `c · w_u` capped
///   at 1, `c` set so that the expected number of chosen tokens is still `rate · n_tokens`);
/// - `Exact`: a budget of `rate · n_tokens` tokens rounded probabilistically, filled by units in a
///   random order (uniform shuffle, or an exponential race weighted by `w_u`), skipping units that
///   would overflow it.
///
/// `units` holds `n_tokens` eligible tokens; nothing is allocated once `scratch` has grown.
pub fn select_units(
    chosen: &mut [bool],
    units: &[(u32, u32)],
    n_tokens: usize,
    how: Selection<'_>,
    rng: &mut KeyedRng,
    scratch: &mut SelectScratch,
) {
    let Selection {
        rate,
        count,
        weights,
    } = how;
    let SelectScratch {
        order: scratch_order,
        keys: scratch_keys,
        probs: scratch_probs,
        capped,
    } = scratch;
    let mark = |chosen: &mut [bool], (start, len): (u32, u32)| {
        chosen[start as usize..(start + len) as usize]
            .iter_mut()
            .for_each(|c| *c = true);
    };
    match count {
        CountRule::Bernoulli => {
            if weights.is_none() {
                for &u in units {
                    if rng.next_f32() < rate {
                        mark(chosen, u);
                    }
                }
                return;
            }
            // Water-filling: p_u = min(1, c·w_u) with Σ p_u·len_u = rate·n.
            let target = rate as f64 * n_tokens as f64;
            scratch_probs.clear();
            scratch_probs.extend(units.iter().map(|&u| unit_weight(weights, u)));
            capped.clear();
            capped.resize(units.len(), false);
            let mut c = 0.0f64;
            for _ in 0..8 {
                let (mut fixed, mut free_w) = (0.0f64, 0.0f64);
                for (k, &(_, len)) in units.iter().enumerate() {
                    if capped[k] {
                        fixed += len as f64;
                    } else {
                        free_w += scratch_probs[k] as f64 * len as f64;
                    }
                }
                if free_w <= 0.0 {
                    break;
                }
                c = ((target - fixed) / free_w).max(0.0);
                let mut changed = false;
                for k in 0..units.len() {
                    if !capped[k] && c * scratch_probs[k] as f64 >= 1.0 {
                        capped[k] = true;
                        changed = true;
                    }
                }
                if !changed {
                    break;
                }
            }
            for (k, &u) in units.iter().enumerate() {
                let p = if capped[k] {
                    1.0
                } else {
                    (c * scratch_probs[k] as f64) as f32
                };
                if rng.next_f32() < p {
                    mark(chosen, u);
                }
            }
        }
        CountRule::Exact => {
            let budget = probabilistic_round(rate * n_tokens as f32, rng);
            if budget == 0 {
                return;
            }
            scratch_order.clear();
            scratch_order.extend(0..units.len() as u32);
            let all_single = units.iter().all(|u| u.1 == 1);
            if weights.is_none() {
                // Partial Fisher-Yates: the first positions of `order` become a uniform random order.
                let mut total = 0;
                for i in 0..scratch_order.len() {
                    let j = i + rng.below((scratch_order.len() - i) as u64) as usize;
                    scratch_order.swap(i, j);
                    let u = units[scratch_order[i] as usize];
                    if total + u.1 as usize <= budget {
                        mark(chosen, u);
                        total += u.1 as usize;
                        if total == budget || (all_single && total >= budget) {
                            break;
                        }
                    }
                }
                return;
            }
            // Weighted order without replacement (Efraimidis–Spirakis as an exponential race):
            // key_u = Exp(1) / w_u, smallest first.
            scratch_keys.clear();
            scratch_keys.extend(units.iter().map(|&u| {
                let e = -(1.0 - rng.next_f32()).ln();
                e / unit_weight(weights, u)
            }));
            let keys = &*scratch_keys;
            scratch_order.sort_unstable_by(|&a, &b| keys[a as usize].total_cmp(&keys[b as usize]));
            let mut total = 0;
            for &k in scratch_order.iter() {
                let u = units[k as usize];
                if total + u.1 as usize <= budget {
                    mark(chosen, u);
                    total += u.1 as usize;
                    if total == budget {
                        break;
                    }
                }
            }
        }
    }
}
