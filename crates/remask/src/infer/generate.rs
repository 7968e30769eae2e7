//! Text continuation with a decoder-only model: the prompt is fed through the KV cache one position
//! at a time, then each new token costs one position.

use super::kv_cache::Incremental;
use super::load::InferModel;
use super::sampling::{pick, SamplingOptions};
use crate::{Error, Result};

/// Continues `prompt` (ids, at least one) by up to `opts.max_new_tokens` tokens; stops after `eos`.
/// Returns the new tokens only.
pub fn generate(
    model: &InferModel,
    prompt: &[u32],
    opts: &SamplingOptions,
    eos: Option<u32>,
) -> Result<Vec<u32>> {
    opts.validate()?;
    let InferModel::Lm(m) = model else {
        return Err(Error::config(
            "model.arch",
            "generate needs a decoder-only model; use translate for an encoder-decoder",
        ));
    };
    let cfg = crate::model::TrainModel::config(m);
    if prompt.is_empty() {
        return Err(Error::config("prompt", "is empty: give at least one token"));
    }
    let room = cfg.max_positions.saturating_sub(prompt.len());
    let max_new = opts.max_new_tokens.min(room);
    let params = model.params();
    let mut dec = Incremental::new(cfg)?;
    let mut cache = dec.cache(1);
    let mut context = prompt.to_vec();
    let mut logits = Vec::new();
    for &id in prompt {
        logits = dec.step(&mut cache, &[id], params)?.to_vec();
    }
    let mut out = Vec::new();
    for step in 0..max_new {
        let next = pick(&mut logits, &context, opts, step as u64);
        out.push(next);
        context.push(next);
        if Some(next) == eos || step + 1 == max_new {
            break;
        }
        logits = dec.step(&mut cache, &[next], params)?.to_vec();
    }
    Ok(out)
}
