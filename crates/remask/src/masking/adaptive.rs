//! Adaptive masking: position weights from the model's recent losses. The trainer reports the loss of
//! every labelled position (through `BatchSource::feedback`); a running average per token id is kept,
//! and tokens the model currently finds hard are chosen more often. The weights are normalised to mean 1
//! over a row's eligible positions and mixed with uniform, so the expected mask budget is unchanged.

use serde::{Deserialize, Serialize};

use crate::batch::IGNORE_INDEX;
use crate::{Batch, Error, Result};

/// Adaptive masking of a run: the running statistics and the `[masking] when` parameters that turn
/// them into position weights.
#[derive(Clone, Debug, PartialEq)]
pub struct Adaptive {
    pub stats: AdaptiveStats,
    /// Softmax temperature over the normalised per-token loss.
    pub temperature: f32,
    /// Share of uniform weight mixed in.
    pub uniform_mix: f32,
}

impl Adaptive {
    /// Position weights of one row (see [`AdaptiveStats::row_weights`]).
    pub fn row_weights(&self, weights: &mut [f32], tokens: &[u32], eligible: &[bool]) {
        self.stats.row_weights(
            weights,
            tokens,
            eligible,
            self.temperature,
            self.uniform_mix,
        );
    }
}

/// Running loss per token id (exponential moving average).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AdaptiveStats {
    /// Running loss per token id; negative (-1) where no loss was seen yet.
    pub loss: Vec<f32>,
    /// Running mean loss over all feedback (the value unseen tokens get); 0 before any feedback.
    pub mean: f32,
    /// Number of losses received.
    pub updates: u64,
    /// Weight of the old value in each update.
    pub decay: f32,
}

impl AdaptiveStats {
    pub fn new(vocab_size: usize, decay: f32) -> Self {
        Self {
            loss: vec![-1.0; vocab_size],
            mean: 0.0,
            updates: 0,
            decay,
        }
    }

    /// Takes the per-label losses of `batch` (row-major order of its labelled positions).
    pub fn feedback(&mut self, batch: &Batch, label_losses: &[f32]) {
        let mut k = 0;
        for &label in &batch.labels {
            if label == IGNORE_INDEX {
                continue;
            }
            let Some(&l) = label_losses.get(k) else {
                return;
            };
            k += 1;
            if !l.is_finite() || l < 0.0 || label < 0 || label as usize >= self.loss.len() {
                continue;
            }
            let slot = &mut self.loss[label as usize];
            *slot = if *slot < 0.0 {
                l
            } else {
                self.decay * *slot + (1.0 - self.decay) * l
            };
            self.mean = if self.updates == 0 {
                l
            } else {
                0.99 * self.mean + 0.01 * l
            };
            self.updates += 1;
        }
    }

    /// Writes position weights of one row: `weights[i] = mix + (1 − mix) · softmax-share_i · n`, where the
    /// softmax runs over the eligible positions' running losses divided by `mean · temperature`; weights
    /// of ineligible positions are 0. Mean weight over eligible positions is 1.
    pub fn row_weights(
        &self,
        weights: &mut [f32],
        tokens: &[u32],
        eligible: &[bool],
        temperature: f32,
        mix: f32,
    ) {
        let mean = if self.updates > 0 && self.mean.is_finite() && self.mean > 0.0 {
            self.mean
        } else {
            1.0
        };
        let mut max = f32::NEG_INFINITY;
        for i in 0..tokens.len() {
            weights[i] = if eligible[i] {
                let l = self.loss.get(tokens[i] as usize).copied().unwrap_or(-1.0);
                let s = if l < 0.0 { 1.0 } else { l / mean } / temperature;
                max = max.max(s);
                s
            } else {
                0.0
            };
        }
        let mut sum = 0.0f32;
        let mut n = 0usize;
        for i in 0..tokens.len() {
            if eligible[i] {
                weights[i] = (weights[i] - max).exp();
                sum += weights[i];
                n += 1;
            }
        }
        if n == 0 || sum <= 0.0 {
            return;
        }
        let scale = n as f32 / sum;
        for i in 0..tokens.len() {
            if eligible[i] {
                weights[i] = mix + (1.0 - mix) * weights[i] * scale;
            }
        }
    }

    /// Serialises for a checkpoint.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
    }

    /// Reads what `to_json` wrote.
    pub fn from_json(v: &serde_json::Value, vocab_size: usize) -> Result<Self> {
        let s: Self = serde_json::from_value(v.clone()).map_err(|e| {
            Error::Other(format!(
                "adaptive masking state in checkpoint is unreadable: {e}"
            ))
        })?;
        if s.loss.len() != vocab_size {
            return Err(Error::shape(
                "adaptive masking state loss",
                vocab_size,
                s.loss.len(),
            ));
        }
        Ok(s)
    }
}
