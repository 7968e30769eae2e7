//! Span masking (SpanBERT): contiguous runs of whole words, lengths drawn from a geometric
//! distribution truncated at `max_words` (p = 0.2, at most 10 words: mean ≈ 3.8 words).

use remask_kernels::rng::KeyedRng;

use super::config::{CountRule, SpanConfig};
use super::strategy::{
    binomial, collect_units, probabilistic_round, MaskingStrategy, RowView, Scratch,
};

/// Chooses spans of whole words until a token budget is reached. The budget is `rate · n` rounded
/// probabilistically (`Exact`) or Binomial(n, rate) (`Bernoulli`). A span starts at a uniformly chosen
/// word; one that would overflow the budget is skipped (SpanBERT); spans may touch or overlap.
#[derive(Clone, Copy, Debug)]
pub struct SpanMasking {
    pub count: CountRule,
    pub span: SpanConfig,
}

/// A span length in words from Geometric(p) truncated to 1..=max (inverse CDF, one draw).
#[inline]
pub fn sample_span_length(p: f32, max: u32, rng: &mut KeyedRng) -> u32 {
    let q = 1.0 - p as f64;
    let tail = q.powi(max as i32);
    // P(L <= k) = (1 - q^k) / (1 - q^max); invert u ~ U(0, 1).
    let u = rng.next_f64() * (1.0 - tail);
    let k = ((1.0 - u).ln() / q.ln()).floor() as u32 + 1;
    k.clamp(1, max)
}

impl MaskingStrategy for SpanMasking {
    fn name(&self) -> &'static str {
        "span"
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
        let n = collect_units(&mut s.units, row, true);
        if s.units.is_empty() {
            return;
        }
        let budget = match self.count {
            CountRule::Exact => probabilistic_round(rate * n as f32, rng),
            CountRule::Bernoulli => binomial(n, rate, rng),
        };
        let words = &s.units;
        let mut total = 0usize;
        // Enough attempts to fill the budget in practice; bounded so a tiny budget next to long words
        // cannot loop for long.
        let mut attempts = 4 * budget + 16;
        while total < budget && attempts > 0 {
            attempts -= 1;
            let len = sample_span_length(self.span.p, self.span.max_words, rng) as usize;
            let first = rng.below(words.len() as u64) as usize;
            let last = (first + len).min(words.len());
            let new: usize = words[first..last]
                .iter()
                .map(|&(st, l)| (st..st + l).filter(|&i| !chosen[i as usize]).count())
                .sum();
            if new == 0 || total + new > budget {
                continue;
            }
            for &(st, l) in &words[first..last] {
                chosen[st as usize..(st + l) as usize]
                    .iter_mut()
                    .for_each(|c| *c = true);
            }
            total += new;
        }
    }
}
