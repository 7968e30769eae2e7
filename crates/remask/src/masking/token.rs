//! Token-level masking (BERT): every eligible token is a unit of its own.

use remask_kernels::rng::KeyedRng;

use super::config::CountRule;
use super::strategy::{collect_units, probabilistic_round, select_units, MaskingStrategy, RowView, Scratch};

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

    fn choose(&self, chosen: &mut [bool], row: &RowView<'_>, rate: f32, rng: &mut KeyedRng, s: &mut Scratch) {
        chosen.iter_mut().for_each(|c| *c = false);
        if self.count == CountRule::Bernoulli && row.weights.is_none() {
            // Fast path: one draw per eligible token, no unit list.
            for (c, &e) in chosen.iter_mut().zip(row.eligible) {
                if e && rng.next_f32() < rate {
                    *c = true;
                }
            }
            return;
        }
        if self.count == CountRule::Exact && row.weights.is_none() {
            // Fast path: a partial Fisher-Yates over the eligible positions picks exactly the budget.
            s.order.clear();
            s.order.extend(row.eligible.iter().enumerate().filter(|(_, &e)| e).map(|(i, _)| i as u32));
            let n = s.order.len();
            let budget = probabilistic_round(rate * n as f32, rng).min(n);
            for i in 0..budget {
                let j = i + rng.below((n - i) as u64) as usize;
                s.order.swap(i, j);
                chosen[s.order[i] as usize] = true;
            }
            return;
        }
        let n = collect_units(&mut s.units, row, false);
        select_units(chosen, &s.units, n, rate, self.count, row.weights, rng, &mut s.order, &mut s.keys, &mut s.probs);
    }
}
