//! Minimal pairs scored by a model with its own tokenizer: which scoring a model gets, and how a
//! sentence becomes the ids it reads. The scoring itself is `eval::minimal_pairs`.

use super::load::SpecialIds;
use super::tokenize::InferTokenizer;
use crate::eval::minimal_pairs::{
    encode_pairs, score_pairs, EncodedSentence, MinimalPair, MinimalPairResult, Scoring,
};
use crate::model::{Arch, ModelConfig, TrainModel};
use crate::{Error, Result};

/// The scoring of a model: PLL for an encoder with an MLM head (it needs a mask token), the summed
/// log-probability for a decoder. `missing_head` lists head tensors an imported model lacked.
pub fn scoring_for(
    config: &ModelConfig,
    specials: &SpecialIds,
    missing_head: &[String],
) -> Result<Scoring> {
    if !missing_head.is_empty() {
        return Err(Error::config(
            "model",
            format!(
                "the model has no language-modelling head ({} missing): minimal pairs need one",
                missing_head.join(", ")
            ),
        ));
    }
    match config.arch {
        Arch::Encoder => match specials.mask {
            Some(mask) => Ok(Scoring::PseudoLogLikelihood { mask }),
            None => Err(Error::config("tokenizer", "the encoder's tokenizer has no [MASK] / <mask> token: pseudo-log-likelihood needs one")),
        },
        Arch::Decoder => Ok(Scoring::Causal),
        Arch::EncoderDecoder => Err(Error::config(
            "model.arch",
            "minimal pairs score encoders (pseudo-log-likelihood) and decoders (summed log-probability), not encoder-decoders",
        )),
    }
}

/// A sentence as the model reads it: the tokenizer's ids with its special tokens (BERT:
/// `[CLS] … [SEP]`). A causal model whose tokenizer adds no start token (GPT-2) gets `bos` in front,
/// so the first word is scored too.
pub fn encode_sentence(
    tok: &InferTokenizer,
    scoring: Scoring,
    bos: Option<u32>,
    text: &str,
) -> Result<EncodedSentence> {
    let (mut ids, mut special) = tok.encode_with_special_mask(text)?;
    if let (Scoring::Causal, Some(b)) = (scoring, bos) {
        if ids.first() != Some(&b) {
            ids.insert(0, b);
            special.insert(0, true);
        }
    }
    Ok(EncodedSentence { ids, special })
}

/// Scores `pairs` with `model` (its tokenizer `tok`, its special ids): accuracy overall and per UID,
/// and every pair's scores. Errors name the pair's file and line (a sentence longer than the
/// model's positions, nothing to score).
pub fn score_minimal_pairs(
    model: &mut dyn TrainModel,
    tok: &InferTokenizer,
    specials: &SpecialIds,
    scoring: Scoring,
    pairs: &[MinimalPair],
    rows_per_pass: usize,
) -> Result<MinimalPairResult> {
    let max = model.config().max_positions;
    let encoded = encode_pairs(pairs, max, scoring, |t| {
        encode_sentence(tok, scoring, specials.bos, t)
    })?;
    score_pairs(model, pairs, &encoded, scoring, rows_per_pass)
}
