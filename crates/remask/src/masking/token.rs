//! Token-level masking (BERT): every eligible token is a unit of its own.

use remask_kernels::rng::KeyedRng;

use super::config::CountRule;
use super::strategy::{collect_units, select_units, MaskingStrategy, RowView, Scratch};

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
        let n = collect_units(&mut s.units, row, false);
        select_units(chosen, &s.units, n, rate, self.count, row.weights, rng, &mut s.order, &mut s.keys, &mut s.probs);
    }
}
