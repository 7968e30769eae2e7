//! Whole-word masking: all pieces of a chosen word are hidden together. Words come from the row's
//! `word_starts` (the tokenizer's pre-tokenizer words, or jieba words for Chinese, computed when the
//! data is prepared).

use remask_kernels::rng::KeyedRng;

use super::config::CountRule;
use super::strategy::{collect_units, select_units, MaskingStrategy, RowView, Scratch, Selection};

/// Chooses whole words. With `Bernoulli` each word is chosen with probability `rate` (so the expected
/// token share is `rate`); with `Exact` words are added in random order while they fit a token budget
/// of `rate · n` (probabilistically rounded), as BERT's whole-word masking does.
#[derive(Clone, Copy, Debug)]
pub struct WholeWordMasking {
    pub count: CountRule,
}

impl MaskingStrategy for WholeWordMasking {
    fn name(&self) -> &'static str {
        "whole-word"
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
        select_units(
            chosen,
            &s.units,
            n,
            Selection {
                rate,
                count: self.count,
                weights: row.weights,
            },
            rng,
            &mut s.select,
        );
    }
}
