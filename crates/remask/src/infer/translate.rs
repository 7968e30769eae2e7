//! Translation with an encoder-decoder: the source is encoded once, its cross-attention keys and
//! values are cached, then the decoder runs one position per step, greedy (`beams = 1`) or with beam
//! search (beams decoded together as cache rows; length-normalised scores as in `transformers`:
//! sum of log-probabilities / length^`length_penalty`).

use super::forward::batch_of;
use super::kv_cache::Incremental;
use super::load::InferModel;
use crate::{DecoderBatch, Error, Result};

/// Decoding settings.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TranslateOptions {
    /// 1 = greedy.
    pub beams: usize,
    pub max_new_tokens: usize,
    /// Exponent of the length normalisation of beam scores.
    pub length_penalty: f32,
}

impl Default for TranslateOptions {
    fn default() -> Self {
        Self {
            beams: 1,
            max_new_tokens: 64,
            length_penalty: 1.0,
        }
    }
}

/// log softmax of one row, in place.
fn log_softmax(row: &mut [f32]) {
    let mx = row.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
    let lse = mx + row.iter().map(|x| (x - mx).exp()).sum::<f32>().ln();
    row.iter_mut().for_each(|x| *x -= lse);
}

/// The encoder output `[S,C]` of `src`.
pub fn encode_source(model: &mut InferModel, src: &[u32], start: u32) -> Result<Vec<f32>> {
    let InferModel::Seq2Seq(m) = model else {
        return Err(Error::config(
            "model.arch",
            "translate needs an encoder-decoder model",
        ));
    };
    let t = src.len();
    let mut batch = batch_of(src, None, &[t as u32], 1, t);
    batch.decoder = Some(
        DecoderBatch::new(1, 1)
            .with_input_ids(vec![start])
            .with_lengths(vec![1]),
    );
    m.logits(&batch)?;
    Ok(m.encoder_hidden_states().to_vec())
}

/// Translates `src` (ids with the model's special tokens). Returns the target ids after `start`,
/// without the final `eos`.
pub fn translate(
    model: &mut InferModel,
    src: &[u32],
    start: u32,
    eos: Option<u32>,
    opts: &TranslateOptions,
) -> Result<Vec<u32>> {
    if src.is_empty() {
        return Err(Error::config("source", "is empty"));
    }
    if opts.beams == 0 {
        return Err(Error::config("beams", "must be at least 1"));
    }
    let enc = encode_source(model, src, start)?;
    let cfg = model.config().clone();
    let params = model.params();
    let mut dec = Incremental::new(&cfg)?;
    let max_new = opts.max_new_tokens.min(cfg.max_positions.saturating_sub(1));
    let mut cache = dec.cache(1);
    dec.set_source(&mut cache, 0, &enc, params);
    let v = cfg.vocab_size;
    // Active beams: (tokens after start, summed log-probability); row i of the cache is beam i.
    let mut beams: Vec<(Vec<u32>, f32)> = vec![(Vec::new(), 0.0)];
    let mut finished: Vec<(Vec<u32>, f32)> = Vec::new();
    let mut inputs = vec![start];
    let norm = |len: usize, score: f32| score / (len.max(1) as f32).powf(opts.length_penalty);
    for step in 0..max_new {
        let mut logits = dec.step(&mut cache, &inputs, params)?.to_vec();
        let mut cands: Vec<(f32, usize, u32)> = Vec::with_capacity(beams.len() * v);
        for (bi, (_, score)) in beams.iter().enumerate() {
            let row = &mut logits[bi * v..(bi + 1) * v];
            log_softmax(row);
            cands.extend(
                row.iter()
                    .enumerate()
                    .map(|(id, &lp)| (score + lp, bi, id as u32)),
            );
        }
        cands.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
        let mut next: Vec<(Vec<u32>, f32)> = Vec::new();
        let mut from = Vec::new();
        for &(score, bi, id) in cands.iter().take(2 * opts.beams.max(1)) {
            let mut toks = beams[bi].0.clone();
            if Some(id) == eos {
                finished.push((toks.clone(), norm(toks.len() + 1, score)));
            } else {
                toks.push(id);
                next.push((toks, score));
                from.push(bi);
            }
            if next.len() == opts.beams {
                break;
            }
        }
        let last = step + 1 == max_new;
        if next.is_empty() || last {
            finished.extend(next.iter().map(|(t, s)| (t.clone(), norm(t.len(), *s))));
            break;
        }
        // Done once enough hypotheses ended and no active beam can still beat the best of them
        // (greedy: the first eos).
        if finished.len() >= opts.beams {
            let best_done = finished
                .iter()
                .map(|f| f.1)
                .fold(f32::NEG_INFINITY, f32::max);
            let best_active = next
                .iter()
                .map(|(t, s)| norm(t.len(), *s))
                .fold(f32::NEG_INFINITY, f32::max);
            if opts.beams == 1 || best_done >= best_active {
                break;
            }
        }
        cache.reorder(&from);
        inputs = next.iter().map(|(t, _)| t[t.len() - 1]).collect();
        beams = next;
    }
    let best = finished
        .into_iter()
        .fold(None::<(Vec<u32>, f32)>, |acc, f| match acc {
            Some(a) if a.1 >= f.1 => Some(a),
            _ => Some(f),
        });
    Ok(best.map(|b| b.0).unwrap_or_default())
}
