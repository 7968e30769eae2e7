//! `Masker`: a masking config made concrete for one vocabulary: the strategy, the replacement rule and
//! the special-token table. It masks one row from a key, so the same (seed, epoch, index) always gives
//! the same corruption, whatever thread, batch size or process computes it.

use std::sync::Arc;

use remask_kernels::rng::{KeyedRng, Purpose};

use super::adaptive::Adaptive;
use super::config::{MaskingConfig, StrategyKind};
use super::ngram_vocab::NgramVocab;
use super::pmi::PmiMasking;
use super::replace::Replacement;
use super::row::{MaskKey, MaskedRow, TokenRow};
use super::span::SpanMasking;
use super::strategy::{MaskingStrategy, RowView, Scratch};
use super::token::TokenMasking;
use super::token_id::{self, TokenIdAdaptive};
use super::whole_word::WholeWordMasking;
use crate::{Error, Result};

/// Per-thread buffers for [`Masker::mask_row`].
#[derive(Clone, Debug, Default)]
pub struct MaskScratch {
    pub strategy: Scratch,
    pub eligible: Vec<bool>,
    /// Adaptive position weights (or, per-token-id mode, probabilities) of the row being masked.
    pub weights: Vec<f32>,
    pub chosen: Vec<bool>,
}

/// What masking needs to know about a vocabulary.
#[derive(Clone, Copy, Debug)]
pub struct Vocab<'a> {
    /// V: ids are `0..size`.
    pub size: u32,
    /// The mask token id.
    pub mask_id: u32,
    /// Every special token id: never chosen, never drawn as a random replacement.
    pub special_ids: &'a [u32],
    /// Token frequencies of the training split, for frequency-weighted random replacement (see
    /// [`MaskingConfig::needs_token_counts`]); `None` otherwise.
    pub counts: Option<&'a [u64]>,
    /// PMI masking's n-gram vocabulary (the prepared directory's `ngrams.bin`; see
    /// [`MaskingConfig::needs_ngrams`]); `None` otherwise.
    pub ngrams: Option<&'a Arc<NgramVocab>>,
}

/// The strategy a config names. PMI masking needs the n-gram vocabulary `ngrams`.
pub fn strategy_for(
    config: &MaskingConfig,
    ngrams: Option<&Arc<NgramVocab>>,
) -> Result<Box<dyn MaskingStrategy>> {
    Ok(match config.strategy {
        StrategyKind::Token => Box::new(TokenMasking {
            count: config.count,
        }),
        StrategyKind::WholeWord => Box::new(WholeWordMasking {
            count: config.count,
        }),
        StrategyKind::Span => Box::new(SpanMasking {
            count: config.count,
            span: config.span,
        }),
        StrategyKind::Pmi => {
            let vocab = ngrams.ok_or_else(|| {
                Error::config(
                    "masking.strategy",
                    "\"pmi\" needs the n-gram vocabulary of a prepared directory (ngrams.bin); prepare the data with this remask, or choose another strategy",
                )
            })?;
            Box::new(PmiMasking {
                count: config.count,
                vocab: Arc::clone(vocab),
            })
        }
    })
}

/// Masks rows for one vocabulary.
pub struct Masker {
    config: MaskingConfig,
    strategy: Box<dyn MaskingStrategy>,
    replacement: Replacement,
    /// `special[id]`: the id is a special token (never chosen, never drawn as a random replacement);
    /// the last entry (index V) stands for ids outside the vocabulary.
    special: Vec<bool>,
    /// `Some((lo, hi))` when the special ids are exactly `lo..=hi` (the usual layout: [PAD], [UNK],
    /// [CLS], [SEP], [MASK] first), so eligibility is a range test that vectorizes.
    special_block: Option<(u32, u32)>,
    /// PMI masking's n-gram vocabulary.
    ngrams: Option<Arc<NgramVocab>>,
}

impl Masker {
    /// `vocab.counts` is used when the config asks for frequency-weighted random replacement.
    pub fn new(config: &MaskingConfig, vocab: &Vocab<'_>) -> Result<Self> {
        config.validate("masking")?;
        let Vocab {
            size: vocab_size,
            mask_id,
            special_ids,
            counts,
            ngrams,
        } = *vocab;
        let shares = [
            config.mask_share,
            config.random_share,
            config.unchanged_share,
        ];
        let replacement = match (config.frequency_weighted_random, counts) {
            (true, Some(c)) => Replacement::weighted(mask_id, shares, c, special_ids)?,
            _ => Replacement::uniform(mask_id, shares, vocab_size, special_ids)?,
        };
        // One entry past the vocabulary stands for every out-of-range id (special: never chosen).
        let mut special = vec![false; vocab_size as usize + 1];
        special[vocab_size as usize] = true;
        for &s in special_ids {
            if let Some(x) = special.get_mut(s as usize) {
                *x = true;
            }
        }
        let in_vocab: Vec<u32> = special
            .iter()
            .take(vocab_size as usize)
            .enumerate()
            .filter(|(_, &x)| x)
            .map(|(i, _)| i as u32)
            .collect();
        let special_block = match (in_vocab.first(), in_vocab.last()) {
            (Some(&lo), Some(&hi)) if (hi - lo) as usize + 1 == in_vocab.len() => Some((lo, hi)),
            _ => None,
        };
        let strategy = strategy_for(config, ngrams)?;
        let ngrams = ngrams.filter(|_| config.needs_ngrams()).cloned();
        Ok(Self {
            config: config.clone(),
            strategy,
            replacement,
            special,
            special_block,
            ngrams,
        })
    }

    pub fn config(&self) -> &MaskingConfig {
        &self.config
    }

    pub fn strategy(&self) -> &dyn MaskingStrategy {
        self.strategy.as_ref()
    }

    pub fn replacement(&self) -> &Replacement {
        &self.replacement
    }

    /// PMI masking's n-gram vocabulary (strategy `pmi` only).
    pub fn ngrams(&self) -> Option<&Arc<NgramVocab>> {
        self.ngrams.as_ref()
    }

    /// Writes `eligible[T]`: true where `row`'s position is a real, non-special token.
    pub fn eligible(&self, row: TokenRow<'_>, eligible: &mut Vec<bool>) {
        let tokens = row.ids;
        let t = tokens.len();
        eligible.clear();
        let real = row.length.min(t);
        match self.special_block {
            Some((lo, hi)) => {
                let vocab = (self.special.len() - 1) as u32;
                eligible.extend(
                    tokens[..real]
                        .iter()
                        .map(|&id| id.wrapping_sub(lo) > hi - lo && id < vocab),
                );
            }
            None => eligible.extend(tokens[..real].iter().map(|&id| !self.is_special(id))),
        }
        eligible.resize(t, false);
    }

    /// True for special token ids (and ids outside the vocabulary).
    #[inline]
    pub fn is_special(&self, id: u32) -> bool {
        self.special[(id as usize).min(self.special.len() - 1)]
    }

    /// Masks one row at `rate` with the draws of `key`: writes `out` from the row's original tokens.
    /// The row's eligible positions (real, not special) are computed once, here; with `adaptive`, the
    /// strategy sees position weights from the running per-token loss. The chosen positions are left
    /// in `scratch.chosen`.
    pub fn mask_row(
        &self,
        row: TokenRow<'_>,
        out: MaskedRow<'_>,
        rate: f32,
        key: MaskKey,
        adaptive: Option<&Adaptive>,
        scratch: &mut MaskScratch,
    ) {
        let tokens = row.ids;
        let t = tokens.len();
        self.eligible(row, &mut scratch.eligible);
        scratch.chosen.resize(t, false);
        let weights = match adaptive {
            Some(a) => {
                scratch.weights.resize(t, 0.0);
                a.row_weights(&mut scratch.weights, tokens, &scratch.eligible);
                Some(&scratch.weights[..])
            }
            None => None,
        };
        let view = RowView {
            ids: tokens,
            eligible: &scratch.eligible,
            word_starts: row.word_starts,
            weights,
        };
        let mut select = KeyedRng::new(key.seed, Purpose::MaskSelect, key.epoch, key.index);
        self.strategy.choose(
            &mut scratch.chosen,
            &view,
            rate,
            &mut select,
            &mut scratch.strategy,
        );
        let mut replace = KeyedRng::new(key.seed, Purpose::MaskReplace, key.epoch, key.index);
        self.replacement
            .apply(out.input, out.labels, tokens, &scratch.chosen, &mut replace);
    }

    /// Masks one row at `rate` with per-token-id probabilities (`when = { mode = "token-id" }`, which
    /// validation allows only with token-level masking): the probabilities of the row's eligible
    /// positions come from `adaptive`'s statistics and bounds, and the positions are drawn from them
    /// under the config's count rule ([`token_id::choose`]) with the draws of `key`. Corruption as in
    /// [`Self::mask_row`]; the chosen positions are left in `scratch.chosen`.
    pub fn mask_row_token_id(
        &self,
        row: TokenRow<'_>,
        out: MaskedRow<'_>,
        rate: f32,
        key: MaskKey,
        adaptive: &TokenIdAdaptive,
        scratch: &mut MaskScratch,
    ) {
        let tokens = row.ids;
        let t = tokens.len();
        self.eligible(row, &mut scratch.eligible);
        scratch.chosen.resize(t, false);
        scratch.weights.resize(t, 0.0);
        let target =
            adaptive.row_probabilities(&mut scratch.weights, tokens, &scratch.eligible, rate);
        let mut select = KeyedRng::new(key.seed, Purpose::MaskSelect, key.epoch, key.index);
        let order = &mut scratch.strategy.select.order;
        token_id::choose(
            &mut scratch.chosen,
            &scratch.eligible,
            &scratch.weights,
            target,
            self.config.count,
            &mut select,
            order,
        );
        let mut replace = KeyedRng::new(key.seed, Purpose::MaskReplace, key.epoch, key.index);
        self.replacement
            .apply(out.input, out.labels, tokens, &scratch.chosen, &mut replace);
    }
}
