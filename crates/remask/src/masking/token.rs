//! Token-level masking (BERT): every eligible token is a unit of its own.

use remask_kernels::rng::KeyedRng;

use super::config::CountRule;
use super::strategy::{
    collect_units, probabilistic_round, select_units, MaskingStrategy, RowView, Scratch, Selection,
};

/// Chooses single tokens; `count` decides between Bernoulli per token and an exact, probabilistically
/// rounded count (see [`CountRule`]).
#[derive(Clone, Copy, Debug)]
pub struct TokenMasking {
    pub count: CountRule,
}

impl MaskingStrategy for TokenMasking {
    fn name(&self) -> &'static str {
        "token"
    }

    fn choose(
        &self,
        chosen: &mut [bool],
        row: &RowView<'_>,
        rate: f32,
        rng: &mut KeyedRng,
        s: &mut Scratch,
    ) {
        chosen.iter_mut().for_each(|c| *c = false);
        if self.count == CountRule::Bernoulli && row.weights.is_none() {
            // Fast path: one draw per eligible token, no unit list.
            // The draws of all eligible tokens at once (the same values as one next_f32 each, in
            // order), then a branch-free compare: it is true ~15% of the time at random.
            let n = row.eligible.iter().filter(|&&e| e).count();
            s.select.probs.resize(n, 0.0);
            rng.fill_f32(&mut s.select.probs[..n]);
            let mut k = 0;
            for (c, &e) in chosen.iter_mut().zip(row.eligible) {
                if e {
                    *c = s.select.probs[k] < rate;
                    k += 1;
                }
            }
            return;
        }
        if self.count == CountRule::Exact && row.weights.is_none() {
            // Fast path: a partial Fisher-Yates over the eligible positions picks exactly the budget.
            // Eligible positions compacted without a branch: every position is written, the count
            // only advances past eligible ones.
            s.select.order.resize(row.eligible.len(), 0);
            let mut n = 0;
            for (i, &e) in row.eligible.iter().enumerate() {
                s.select.order[n] = i as u32;
                n += e as usize;
            }
            s.select.order.truncate(n);
            let budget = probabilistic_round(rate * n as f32, rng).min(n);
            for i in 0..budget {
                let j = i + rng.below((n - i) as u64) as usize;
                s.select.order.swap(i, j);
                chosen[s.select.order[i] as usize] = true;
            }
            return;
        }
        let n = collect_units(&mut s.units, row, false);
        let how = Selection {
            rate,
            count: self.count,
            weights: row.weights,
        };
        select_units(chosen, &s.units, n, how, rng, &mut s.select);
    }
}
