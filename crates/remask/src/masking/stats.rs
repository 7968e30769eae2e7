//! Masking statistics over a set of rows and epochs: what `remask inspect masking --json` reports and
//! what the property tests check.

use serde::Serialize;

use super::masker::MaskScratch;
use super::plan::MaskPlan;
use super::pmi::PmiMasking;
use super::row::{MaskedRow, TokenRowBuf};
use super::strategy::{RowView, SegmentScratch};

/// Statistics of the masks of `rows` over `epochs` epochs.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct MaskingStats {
    /// Share of eligible tokens chosen.
    pub mask_rate: f64,
    /// Of the chosen: replaced by the mask token.
    pub mask_token_share: f64,
    /// Of the chosen: replaced by another token.
    pub random_token_share: f64,
    /// Of the chosen: left as they were (a random draw of the original token counts here too).
    pub unchanged_share: f64,
    pub epochs: u64,
    /// Mean over rows and epochs ≥ 1 of the share of a row's chosen positions that were also chosen in
    /// the previous epoch (static, K = 1: 1.0; dynamic: about the rate).
    pub epoch_overlap: f64,
    pub rows: u64,
    pub eligible_tokens: u64,
    pub chosen_tokens: u64,
    /// Chosen positions that are special tokens or padding (must be 0).
    pub chosen_ineligible: u64,
}

/// Masks every row in every epoch as training would at its start (progress 0: the plan's key epoch,
/// its rate) and counts. Row r is keyed as row r of its split.
pub fn collect_stats(plan: &MaskPlan, rows: &[TokenRowBuf], epochs: u64) -> MaskingStats {
    let masker = plan.masker();
    let mut s = MaskingStats {
        epochs,
        rows: rows.len() as u64,
        ..Default::default()
    };
    let (mut mask, mut random, mut same) = (0u64, 0u64, 0u64);
    let (mut overlap_sum, mut overlap_n) = (0.0f64, 0u64);
    let mut scratch = MaskScratch::default();
    let mut prev: Vec<Vec<bool>> = vec![Vec::new(); rows.len()];
    for e in 0..epochs {
        for (r, row) in rows.iter().enumerate() {
            let t = row.ids.len();
            let mut input = vec![0u32; t];
            let mut labels = vec![0i32; t];
            plan.mask_train(
                row.view(),
                r as u64,
                e,
                0.0,
                MaskedRow {
                    input: &mut input,
                    labels: &mut labels,
                },
                &mut scratch,
            );
            let chosen = &scratch.chosen;
            let mut n_chosen = 0u64;
            for i in 0..t {
                let eligible = i < row.length && !masker.is_special(row.ids[i]);
                if e == 0 {
                    s.eligible_tokens += u64::from(eligible);
                }
                if !chosen[i] {
                    continue;
                }
                n_chosen += 1;
                if !eligible {
                    s.chosen_ineligible += 1;
                }
                if input[i] == masker.replacement().mask_id() {
                    mask += 1;
                } else if input[i] != row.ids[i] {
                    random += 1;
                } else {
                    same += 1;
                }
            }
            s.chosen_tokens += n_chosen;
            if e > 0 && n_chosen > 0 {
                let both = (0..t).filter(|&i| chosen[i] && prev[r][i]).count();
                overlap_sum += both as f64 / n_chosen as f64;
                overlap_n += 1;
            }
            prev[r].clear();
            prev[r].extend_from_slice(chosen);
        }
    }
    let eligible_all = (s.eligible_tokens * epochs).max(1) as f64;
    s.mask_rate = s.chosen_tokens as f64 / eligible_all;
    let c = s.chosen_tokens.max(1) as f64;
    s.mask_token_share = mask as f64 / c;
    s.random_token_share = random as f64 / c;
    s.unchanged_share = same as f64 / c;
    s.epoch_overlap = if overlap_n == 0 {
        0.0
    } else {
        overlap_sum / overlap_n as f64
    };
    s
}

/// PMI masking: how much of the masking falls on the vocabulary's n-grams (`remask inspect masking
/// --strategy pmi --json`, key `pmi`).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct NgramMaskStats {
    /// N-grams in the vocabulary.
    pub vocabulary: u64,
    /// N-gram units found in the rows (per epoch; the split of a row does not change).
    pub ngram_units: u64,
    /// Share of eligible tokens that lie inside an n-gram unit.
    pub ngram_coverage: f64,
    /// Of the chosen tokens: the share inside n-gram units.
    pub ngram_share: f64,
    /// N-gram units hidden, summed over epochs (each whole).
    pub ngrams_masked: u64,
    /// N-gram units only partly hidden, summed over epochs (must be 0).
    pub ngrams_split: u64,
}

/// [`NgramMaskStats`] of `rows` over `epochs`, masked as [`collect_stats`] masks them; `None` unless
/// the plan's strategy is `pmi`.
pub fn collect_ngram_stats(
    plan: &MaskPlan,
    rows: &[TokenRowBuf],
    epochs: u64,
) -> Option<NgramMaskStats> {
    let masker = plan.masker();
    let vocab = masker.ngrams()?;
    let pmi = PmiMasking {
        count: masker.config().count,
        vocab: vocab.clone(),
    };
    let mut s = NgramMaskStats {
        vocabulary: vocab.len() as u64,
        ..Default::default()
    };
    let (mut scratch, mut seg) = (MaskScratch::default(), SegmentScratch::default());
    let (mut eligible, mut units, mut is_ngram) = (Vec::new(), Vec::new(), Vec::new());
    let (mut eligible_n, mut covered, mut chosen_n, mut chosen_in) = (0u64, 0u64, 0u64, 0u64);
    for (r, row) in rows.iter().enumerate() {
        masker.eligible(row.view(), &mut eligible);
        let view = RowView {
            ids: &row.ids,
            eligible: &eligible,
            word_starts: &row.word_starts,
            weights: None,
        };
        eligible_n += pmi.segment(&view, &mut units, Some(&mut is_ngram), &mut seg) as u64;
        for (&(_, l), &g) in units.iter().zip(&is_ngram) {
            if g {
                s.ngram_units += 1;
                covered += l as u64;
            }
        }
        for e in 0..epochs {
            let t = row.ids.len();
            let (mut input, mut labels) = (vec![0u32; t], vec![0i32; t]);
            plan.mask_train(
                row.view(),
                r as u64,
                e,
                0.0,
                MaskedRow {
                    input: &mut input,
                    labels: &mut labels,
                },
                &mut scratch,
            );
            chosen_n += scratch.chosen.iter().filter(|&&c| c).count() as u64;
            for (&(a, l), &g) in units.iter().zip(&is_ngram) {
                if !g {
                    continue;
                }
                let hidden = scratch.chosen[a as usize..(a + l) as usize]
                    .iter()
                    .filter(|&&c| c)
                    .count() as u32;
                chosen_in += hidden as u64;
                if hidden == l {
                    s.ngrams_masked += 1;
                } else if hidden > 0 {
                    s.ngrams_split += 1;
                }
            }
        }
    }
    s.ngram_coverage = covered as f64 / eligible_n.max(1) as f64;
    s.ngram_share = chosen_in as f64 / chosen_n.max(1) as f64;
    Some(s)
}
