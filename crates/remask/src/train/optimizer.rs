//! AdamW over a model's flat parameter buffer, tensor by tensor (so weight decay follows each
//! tensor's `weight_decay` flag), with moments in two flat buffers of the same layout.

use remask_kernels::adamw::{adamw_update, AdamW};

use super::config::OptimizerConfig;
use crate::model::TensorInfo;

/// AdamW state: first and second moments and the number of updates applied so far.
#[derive(Clone, Debug, PartialEq)]
pub struct Optimizer {
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    pub weight_decay: f32,
    /// First moments, same layout as the parameters.
    pub m: Vec<f32>,
    /// Second moments, same layout as the parameters.
    pub v: Vec<f32>,
    /// Updates applied so far (AdamW's bias-correction step count is `t + 1` for the next update).
    pub t: u64,
}

impl Optimizer {
    pub fn new(cfg: &OptimizerConfig, num_params: usize) -> Self {
        Self {
            beta1: cfg.beta1,
            beta2: cfg.beta2,
            eps: cfg.eps,
            weight_decay: cfg.weight_decay,
            m: vec![0.0; num_params],
            v: vec![0.0; num_params],
            t: 0,
        }
    }

    /// One AdamW update of every tensor in `tensors` (views into `params` and `grads`) at rate `lr`.
    pub fn step(&mut self, params: &mut [f32], grads: &[f32], tensors: &[TensorInfo], lr: f32) {
        assert_eq!(
            params.len(),
            self.m.len(),
            "optimizer state and parameters differ in size"
        );
        assert_eq!(
            grads.len(),
            params.len(),
            "gradients and parameters differ in size"
        );
        self.t += 1;
        for info in tensors {
            let r = info.offset..info.offset + info.numel();
            let hp = AdamW {
                lr,
                beta1: self.beta1,
                beta2: self.beta2,
                eps: self.eps,
                weight_decay: if info.weight_decay {
                    self.weight_decay
                } else {
                    0.0
                },
            };
            adamw_update(
                &mut params[r.clone()],
                &grads[r.clone()],
                &mut self.m[r.clone()],
                &mut self.v[r],
                &hp,
                self.t,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(name: &str, offset: usize, shape: Vec<usize>, weight_decay: bool) -> TensorInfo {
        TensorInfo {
            name: name.into(),
            offset,
            shape,
            weight_decay,
        }
    }

    #[test]
    fn decay_only_on_flagged_tensors_and_matches_a_hand_step() {
        let cfg = OptimizerConfig {
            lr: 0.1,
            weight_decay: 0.5,
            ..Default::default()
        };
        let tensors = vec![info("w", 0, vec![2, 2], true), info("b", 4, vec![2], false)];
        let mut opt = Optimizer::new(&cfg, 6);
        let mut p = vec![1.0f32; 6];
        let g = vec![0.0f32; 6];
        opt.step(&mut p, &g, &tensors, 0.1);
        // With a zero gradient only the decoupled decay moves the weights: p -= lr * wd * p.
        for &x in &p[..4] {
            assert!((x - 0.95).abs() < 1e-6, "{x}");
        }
        assert_eq!(&p[4..], &[1.0, 1.0]);
        // A first step with gradient g moves each parameter by about lr * sign(g) (bias-corrected).
        let mut opt = Optimizer::new(
            &OptimizerConfig {
                weight_decay: 0.0,
                ..cfg
            },
            6,
        );
        let mut p = vec![0.0f32; 6];
        let g = vec![0.3, -2.0, 5.0, -0.01, 1.0, 1.0];
        opt.step(&mut p, &g, &tensors, 0.1);
        for (x, gi) in p.iter().zip(&g) {
            assert!((x + 0.1 * gi.signum()).abs() < 1e-4, "{x} for grad {gi}");
        }
        assert_eq!(opt.t, 1);
    }
}
