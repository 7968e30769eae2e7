//! Fill-mask with an encoder: the most likely tokens, with their probabilities, at every masked
//! position.

use super::forward::batch_of;
use super::load::InferModel;
use crate::{Error, Result};

/// The top-k predictions at one masked position.
#[derive(Clone, Debug, PartialEq)]
pub struct MaskPrediction {
    /// Position of the mask in `ids`.
    pub position: usize,
    /// (token id, probability), most likely first.
    pub top: Vec<(u32, f32)>,
}

/// Predicts every position of `ids` that holds `mask_id`; `k` candidates each.
pub fn fill_mask(
    model: &mut InferModel,
    ids: &[u32],
    mask_id: u32,
    k: usize,
) -> Result<Vec<MaskPrediction>> {
    let InferModel::Lm(m) = model else {
        return Err(Error::config(
            "model.arch",
            "fill-mask needs an encoder with an MLM head",
        ));
    };
    if crate::model::TrainModel::config(m).arch != crate::model::Arch::Encoder {
        return Err(Error::config(
            "model.arch",
            "fill-mask needs an encoder with an MLM head (this is a decoder: use generate)",
        ));
    }
    let positions: Vec<usize> = ids
        .iter()
        .enumerate()
        .filter(|(_, &id)| id == mask_id)
        .map(|(i, _)| i)
        .collect();
    if positions.is_empty() {
        return Err(Error::config(
            "text",
            format!(
                "has no mask token (id {mask_id}); write [MASK] where a word should be predicted"
            ),
        ));
    }
    let t = ids.len();
    let batch = batch_of(ids, None, &[t as u32], 1, t);
    let logits = m.logits(&batch)?;
    let v = logits.len() / t;
    Ok(positions
        .into_iter()
        .map(|p| {
            let row = &logits[p * v..(p + 1) * v];
            let mx = row.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
            let sum: f64 = row.iter().map(|&x| ((x - mx) as f64).exp()).sum();
            let mut idx: Vec<u32> = (0..v as u32).collect();
            idx.sort_by(|&a, &b| row[b as usize].total_cmp(&row[a as usize]).then(a.cmp(&b)));
            let top = idx
                .into_iter()
                .take(k)
                .map(|i| (i, (((row[i as usize] - mx) as f64).exp() / sum) as f32))
                .collect();
            MaskPrediction { position: p, top }
        })
        .collect())
}
