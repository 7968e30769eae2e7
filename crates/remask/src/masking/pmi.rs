//! PMI masking (Levine et al., ICLR 2021): collocations, n-grams of 2–5 words that occur together far
//! more often than chance, are hidden as units, like whole words; single words fill the rest of the
//! rate. The n-grams come from the prepared directory's vocabulary ([`NgramVocab`], built at
//! `prepare` time by [`super::pmi_score`]).
//!
//! A row is split into masking units ([`PmiMasking::segment`]): from left to right, at each word the
//! longest vocabulary n-gram that starts there (5 words down to 2) becomes one unit, else the word
//! does. The split depends on the row only (not on the key), so an n-gram unit is either hidden
//! whole or not at all, whatever the draw. Units are then chosen as whole-word masking chooses words
//! (uniform random order filling a budget of `rate · n` tokens, or Bernoulli per unit), so the
//! realised rate is the configured one.

use std::sync::Arc;

use remask_kernels::rng::KeyedRng;

use super::config::CountRule;
use super::ngram_vocab::{extend, word_hash, NgramVocab, MAX_N, NGRAM_SEED};
use super::strategy::{
    collect_units, select_units, MaskingStrategy, RowView, Scratch, SegmentScratch, Selection,
};

/// Chooses vocabulary n-grams and single words as units.
#[derive(Clone, Debug)]
pub struct PmiMasking {
    pub count: CountRule,
    pub vocab: Arc<NgramVocab>,
}

impl PmiMasking {
    /// Splits the eligible positions of `row` into units (start, len), written to `units`; with
    /// `ngram`, also whether each unit is a vocabulary n-gram. Returns the number of eligible tokens.
    pub fn segment(
        &self,
        row: &RowView<'_>,
        units: &mut Vec<(u32, u32)>,
        mut ngram: Option<&mut Vec<bool>>,
        s: &mut SegmentScratch,
    ) -> usize {
        let n_tokens = collect_units(&mut s.words, row, true);
        let words = &s.words;
        s.hashes.clear();
        s.hashes.extend(
            words
                .iter()
                .map(|&(a, l)| word_hash(&row.ids[a as usize..(a + l) as usize])),
        );
        units.clear();
        if let Some(f) = ngram.as_deref_mut() {
            f.clear();
        }
        let mut lens = [0u16; MAX_N];
        let mut k = 0;
        while k < words.len() {
            let mut best = 1;
            // A unit that does not start at a word start (a word cut by the row's start) joins no n-gram.
            if !self.vocab.is_empty()
                && row
                    .word_starts
                    .get(words[k].0 as usize)
                    .copied()
                    .unwrap_or(false)
            {
                let start = words[k].0 as usize;
                let mut h = NGRAM_SEED;
                for n in 1..=MAX_N.min(words.len() - k) {
                    let j = k + n - 1;
                    if n > 1 && words[j].0 != words[j - 1].0 + words[j - 1].1 {
                        break;
                    }
                    if words[j].1 > u16::MAX as u32 {
                        break;
                    }
                    h = extend(h, s.hashes[j]);
                    lens[n - 1] = words[j].1 as u16;
                    let end = (words[j].0 + words[j].1) as usize;
                    if n >= 2
                        && self
                            .vocab
                            .lookup(h, &row.ids[start..end], &lens[..n])
                            .is_some()
                    {
                        best = n;
                    }
                }
            }
            let (a, _) = words[k];
            let (b, bl) = words[k + best - 1];
            units.push((a, b + bl - a));
            if let Some(f) = ngram.as_deref_mut() {
                f.push(best > 1);
            }
            k += best;
        }
        n_tokens
    }
}

impl MaskingStrategy for PmiMasking {
    fn name(&self) -> &'static str {
        "pmi"
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
        let n = self.segment(row, &mut s.units, None, &mut s.segment);
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
