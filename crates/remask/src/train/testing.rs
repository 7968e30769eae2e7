//! Small stand-ins for the real model and data pipeline, used by the trainer's tests, the fault test
//! and the hidden `--toy` mode of `remask train`: a bigram softmax model with exact gradients and
//! keyed dropout, and a synthetic [`BatchSource`] with keyed MLM masking and optional adaptive
//! feedback state. They implement the same traits as the real components, so everything the trainer
//! does (accumulation, clipping, checkpoints, exact resume) is exercised without them.

use remask_kernels::rng::{key, mix64, KeyedRng, Purpose};
use serde::{Deserialize, Serialize};

use crate::model::{Arch, ModelConfig, StepStats, TensorInfo, TrainModel};
use crate::{Batch, BatchSource, Error, Result, IGNORE_INDEX};

/// Predicts the token at position t from the input token at t-1 (a start row at document starts):
/// `logits = dropout(W[prev]) + b`, W `[V+1, V]`, b `[V]`.
pub struct BigramModel {
    config: ModelConfig,
    tensors: Vec<TensorInfo>,
    params: Vec<f32>,
    grads: Vec<f32>,
    label_losses: Vec<f32>,
    dropout: f32,
    /// Batches containing any of these sample ids produce a NaN loss (for non-finite-step tests).
    pub poison_samples: Vec<u64>,
    /// Output of [`TrainModel::logits`].
    logits_buf: Vec<f32>,
    /// Sleep this long in every forward/backward (lets fault tests kill a run between steps).
    pub step_delay: std::time::Duration,
}

impl BigramModel {
    /// A model over `vocab` tokens with weights drawn from N(0, 0.02²) keyed by `seed`.
    pub fn new(vocab: usize, dropout: f32, seed: u64) -> Self {
        let config = ModelConfig {
            arch: Arch::Decoder,
            attention: crate::attention::AttentionMaskSpec::Causal,
            vocab_size: vocab,
            d_model: vocab,
            n_heads: 1,
            n_layers: 1,
            d_ff: vocab,
            dropout,
            ..ModelConfig::default()
        };
        Self::from_config(config, seed)
    }

    /// A model for a config (only `vocab_size` and `dropout` matter).
    pub fn from_config(config: ModelConfig, seed: u64) -> Self {
        let v = config.vocab_size;
        let tensors = vec![
            TensorInfo {
                name: "bigram.weight".into(),
                offset: 0,
                shape: vec![v + 1, v],
                weight_decay: true,
            },
            TensorInfo {
                name: "bigram.bias".into(),
                offset: (v + 1) * v,
                shape: vec![v],
                weight_decay: false,
            },
        ];
        let n = (v + 1) * v + v;
        let mut rng = KeyedRng::new(seed, Purpose::Init, 0, 0);
        let mut params: Vec<f32> = (0..n).map(|_| 0.02 * rng.normal()).collect();
        params[(v + 1) * v..].iter_mut().for_each(|x| *x = 0.0);
        let dropout = config.dropout;
        Self {
            config,
            tensors,
            params,
            grads: vec![0.0; n],
            label_losses: Vec::new(),
            dropout,
            poison_samples: Vec::new(),
            logits_buf: Vec::new(),
            step_delay: Default::default(),
        }
    }

    fn vocab(&self) -> usize {
        self.config.vocab_size
    }

    /// Loss of predicting `target` after `prev` (None = document start), without dropout.
    pub fn label_loss(&self, prev: Option<u32>, target: u32) -> f32 {
        let v = self.vocab();
        let mut logits = vec![0.0f32; v];
        self.row_logits(&mut logits, prev.map_or(v, |p| p as usize), None);
        let (loss, _) = softmax_ce(&mut logits, target as usize);
        loss
    }

    /// logits[V] = W[row] (with dropout mask from `dropout_key`) + b.
    fn row_logits(&self, out: &mut [f32], row: usize, dropout_key: Option<u64>) {
        let v = self.vocab();
        let w = &self.params[row * v..(row + 1) * v];
        let b = &self.params[(v + 1) * v..];
        for j in 0..v {
            out[j] = w[j] * self.keep_scale(dropout_key, j) + b[j];
        }
    }

    /// Dropout multiplier of element j: 0 or 1/(1-p), decided by (key, j) only.
    fn keep_scale(&self, dropout_key: Option<u64>, j: usize) -> f32 {
        match dropout_key {
            Some(k) if self.dropout > 0.0 => {
                let u = (mix64(k ^ (j as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)) >> 40) as f32
                    / (1u64 << 24) as f32;
                if u < self.dropout {
                    0.0
                } else {
                    1.0 / (1.0 - self.dropout)
                }
            }
            _ => 1.0,
        }
    }

    fn run(&mut self, batch: &Batch, backward: Option<(f32, u64)>) -> Result<StepStats> {
        batch.validate()?;
        let (v, t) = (self.vocab(), batch.seq_len);
        let mut stats = StepStats::default();
        self.label_losses.clear();
        let mut logits = vec![0.0f32; v];
        let poisoned = batch
            .sample_ids
            .iter()
            .any(|s| self.poison_samples.contains(s));
        for r in 0..batch.batch_size {
            for p in 0..t {
                let i = r * t + p;
                let label = batch.labels[i];
                if label == IGNORE_INDEX {
                    continue;
                }
                if label < 0 || label as usize >= v {
                    return Err(Error::shape(
                        "batch.labels",
                        format!("a token id < {v}"),
                        label,
                    ));
                }
                let prev = if p == 0 || batch.positions[i] == 0 {
                    v
                } else {
                    batch.input_ids[i - 1] as usize
                };
                if prev > v {
                    return Err(Error::shape(
                        "batch.input_ids",
                        format!("a token id < {v}"),
                        prev,
                    ));
                }
                let dkey = backward.map(|(_, k)| mix64(k ^ i as u64));
                self.row_logits(&mut logits, prev, dkey);
                let argmax = argmax(&logits);
                let (mut loss, probs) = softmax_ce(&mut logits, label as usize);
                if poisoned {
                    loss = f32::NAN;
                }
                stats.loss_sum += loss as f64;
                stats.n_labels += 1;
                stats.n_correct += usize::from(argmax == label as usize);
                self.label_losses.push(loss);
                if let Some((scale, _)) = backward {
                    // dlogits = scale · (softmax − onehot); logits = W[prev]·keep + b.
                    let mut dlogits = probs;
                    dlogits[label as usize] -= 1.0;
                    let bias_at = (v + 1) * v;
                    for j in 0..v {
                        let d = scale * dlogits[j] * if poisoned { f32::NAN } else { 1.0 };
                        self.grads[prev * v + j] += d * self.keep_scale(dkey, j);
                        self.grads[bias_at + j] += d;
                    }
                }
            }
        }
        Ok(stats)
    }
}

fn argmax(x: &[f32]) -> usize {
    let mut best = 0;
    for (j, &y) in x.iter().enumerate() {
        if y > x[best] {
            best = j;
        }
    }
    best
}

/// In place: logits → probabilities; returns (−log p[target], probabilities).
fn softmax_ce(logits: &mut [f32], target: usize) -> (f32, Vec<f32>) {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0.0f64;
    for x in logits.iter_mut() {
        *x = (*x - max).exp();
        sum += *x as f64;
    }
    for x in logits.iter_mut() {
        *x = (*x as f64 / sum) as f32;
    }
    (-(logits[target].max(1e-30)).ln(), logits.to_vec())
}

impl TrainModel for BigramModel {
    crate::model::train_model_buffers!();
    fn forward_backward(
        &mut self,
        batch: &Batch,
        grad_scale: f32,
        dropout_key: u64,
    ) -> Result<StepStats> {
        if !self.step_delay.is_zero() {
            std::thread::sleep(self.step_delay);
        }
        self.run(batch, Some((grad_scale, dropout_key)))
    }
    fn forward_eval(&mut self, batch: &Batch) -> Result<StepStats> {
        self.run(batch, None)
    }
    fn last_label_losses(&self) -> &[f32] {
        &self.label_losses
    }
    fn logits(&mut self, batch: &Batch) -> Result<&[f32]> {
        batch.validate()?;
        let (v, t) = (self.vocab(), batch.seq_len);
        let mut out = vec![0.0f32; batch.batch_size * t * v];
        for r in 0..batch.batch_size {
            for p in 0..t {
                let i = r * t + p;
                let prev = if p == 0 || batch.positions[i] == 0 {
                    v
                } else {
                    (batch.input_ids[i - 1] as usize).min(v)
                };
                self.row_logits(&mut out[i * v..(i + 1) * v], prev, None);
            }
        }
        self.logits_buf = out;
        Ok(&self.logits_buf)
    }
}

/// The task a [`SyntheticSource`] produces.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub enum TaskKind {
    /// Hide each real token with probability `rate` (adaptive: scaled by the loss feedback).
    Mlm { rate: f32 },
    /// Next-token labels.
    Clm,
}

/// Rows of a noisy Markov chain over `vocab - 1` tokens (the last id is the mask token), keyed by
/// (seed, epoch, global sample index), with some padding.
pub struct SyntheticSource {
    pub num_samples: u64,
    pub seq_len: usize,
    pub vocab: usize,
    pub seed: u64,
    pub task: TaskKind,
    pub adaptive: bool,
    /// Adaptive state: exponential moving average of the fed-back label losses.
    ema_loss: f64,
    /// Feedback calls received (part of the state).
    feedbacks: u64,
}

impl SyntheticSource {
    pub fn new(
        num_samples: u64,
        seq_len: usize,
        vocab: usize,
        seed: u64,
        task: TaskKind,
        adaptive: bool,
    ) -> Self {
        Self {
            num_samples,
            seq_len,
            vocab,
            seed,
            task,
            adaptive,
            ema_loss: 1.0,
            feedbacks: 0,
        }
    }

    /// The id used for hidden tokens.
    pub fn mask_token_id(&self) -> u32 {
        (self.vocab - 1) as u32
    }

    /// The masking rate currently in force.
    pub fn rate(&self, base: f32) -> f32 {
        if self.adaptive {
            (base as f64 * (0.5 + self.ema_loss / 4.0)).clamp(0.05, 0.9) as f32
        } else {
            base
        }
    }

    fn row_tokens(&self, row: u64) -> Vec<u32> {
        let n = (self.vocab - 1) as u64;
        let mut rng = KeyedRng::new(self.seed, Purpose::Other, 0, row);
        let len = self.seq_len - (row % 3) as usize;
        let mut toks = Vec::with_capacity(len);
        let mut cur = rng.below(n);
        for _ in 0..len {
            toks.push(cur as u32);
            cur = if rng.next_f32() < 0.2 {
                rng.below(n)
            } else {
                (cur * 3 + 1) % n
            };
        }
        toks
    }
}

impl BatchSource for SyntheticSource {
    fn num_samples(&self) -> u64 {
        self.num_samples
    }

    fn batch(&mut self, first_sample: u64, batch_size: usize, progress: f32) -> Result<Batch> {
        let t = self.seq_len;
        let mut b = Batch::new(batch_size, t);
        for k in 0..batch_size {
            let g = first_sample + k as u64;
            let (epoch, row) = (g / self.num_samples, g % self.num_samples);
            let toks = self.row_tokens(row);
            let len = toks.len();
            let mut input: Vec<u32> = toks.clone();
            let mut labels = vec![IGNORE_INDEX; t];
            match self.task {
                TaskKind::Mlm { rate } => {
                    // A masking-rate schedule: the rate grows slightly with training progress.
                    let rate = self.rate(rate) * (1.0 + 0.1 * progress);
                    let mut rng = KeyedRng::from_key(key(self.seed, Purpose::MaskSelect, epoch, g));
                    for p in 0..len {
                        if rng.next_f32() < rate {
                            labels[p] = toks[p] as i32;
                            input[p] = self.mask_token_id();
                        }
                    }
                }
                TaskKind::Clm => {
                    for p in 0..len.saturating_sub(1) {
                        labels[p] = toks[p + 1] as i32;
                    }
                }
            }
            input.resize(t, 0);
            b.lengths[k] = len as u32;
            b.sample_ids[k] = g;
            let o = b.row_mut(k);
            o.input_ids.copy_from_slice(&input);
            o.labels.copy_from_slice(&labels);
            for p in 0..len {
                o.positions[p] = p as u32;
                o.doc_ids[p] = 0;
            }
        }
        Ok(b)
    }

    fn feedback(&mut self, _batch: &Batch, label_losses: &[f32]) {
        if !self.adaptive || label_losses.is_empty() {
            return;
        }
        let mean = label_losses.iter().map(|&x| x as f64).sum::<f64>() / label_losses.len() as f64;
        self.ema_loss = 0.9 * self.ema_loss + 0.1 * mean;
        self.feedbacks += 1;
    }

    fn state(&self) -> serde_json::Value {
        serde_json::json!({ "ema_loss": self.ema_loss, "feedbacks": self.feedbacks })
    }

    fn restore(&mut self, state: &serde_json::Value) -> Result<()> {
        if state.is_null() {
            return Ok(());
        }
        let bad = || Error::Other(format!("synthetic source: bad saved state {state}"));
        self.ema_loss = state
            .get("ema_loss")
            .and_then(|x| x.as_f64())
            .ok_or_else(bad)?;
        self.feedbacks = state
            .get("feedbacks")
            .and_then(|x| x.as_u64())
            .ok_or_else(bad)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bigram model's gradient equals central finite differences of its loss (in f32, so the
    /// tolerance is loose, but a wrong index or sign is far outside it).
    #[test]
    fn bigram_gradient_matches_finite_differences() {
        let mut m = BigramModel::new(6, 0.3, 9);
        // Make the weights large enough that the loss depends on them visibly.
        for (i, p) in m.params.iter_mut().enumerate() {
            *p = ((i * 37 % 11) as f32 - 5.0) * 0.2;
        }
        let mut src = SyntheticSource::new(4, 5, 6, 1, TaskKind::Clm, false);
        let b = src.batch(0, 4, 0.0).unwrap();
        let key = 1234;
        m.forward_backward(&b, 1.0, key).unwrap();
        let g = m.grads.clone();
        let eps = 1e-2f32;
        let mut checked = 0;
        for i in 0..m.params.len() {
            let orig = m.params[i];
            m.params[i] = orig + eps;
            let up = m.run(&b, Some((0.0, key))).unwrap().loss_sum;
            m.params[i] = orig - eps;
            let down = m.run(&b, Some((0.0, key))).unwrap().loss_sum;
            m.params[i] = orig;
            let fd = (up - down) / (2.0 * eps as f64);
            assert!(
                (fd - g[i] as f64).abs() < 2e-2 * (1.0 + fd.abs()),
                "param {i}: fd {fd} vs grad {}",
                g[i]
            );
            checked += usize::from(g[i] != 0.0);
        }
        assert!(
            checked > 10,
            "only {checked} non-zero gradients: the test checks too little"
        );
    }

    #[test]
    fn source_is_keyed_and_adaptive_state_round_trips() {
        let mut a = SyntheticSource::new(10, 8, 12, 3, TaskKind::Mlm { rate: 0.3 }, true);
        let whole = a.batch(4, 6, 0.5).unwrap();
        let part = a.batch(6, 2, 0.5).unwrap();
        assert_eq!(&whole.input_ids[2 * 8..4 * 8], &part.input_ids[..]);
        assert_eq!(&whole.labels[2 * 8..4 * 8], &part.labels[..]);
        // A second epoch masks differently.
        let next = a.batch(14, 2, 0.5).unwrap();
        assert_ne!(next.labels, part.labels);
        a.feedback(&part, &[3.0, 4.0]);
        let mut b = SyntheticSource::new(10, 8, 12, 3, TaskKind::Mlm { rate: 0.3 }, true);
        assert_ne!(a.rate(0.3), b.rate(0.3));
        b.restore(&a.state()).unwrap();
        assert_eq!(a.rate(0.3), b.rate(0.3));
        assert_eq!(a.batch(20, 3, 0.1).unwrap(), b.batch(20, 3, 0.1).unwrap());
    }
}
