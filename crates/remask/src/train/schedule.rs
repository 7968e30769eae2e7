//! Learning-rate schedule: linear warmup from 0 to the peak, then constant, linear or cosine decay to
//! `min_lr_ratio * peak` at the last step. A pure function of the step, so resume needs only the step.

use super::config::{Decay, ScheduleConfig};

/// The schedule of one run.
#[derive(Clone, Debug, PartialEq)]
pub struct LrSchedule {
    pub peak: f32,
    pub warmup_steps: u64,
    pub total_steps: u64,
    pub decay: Decay,
    pub min_lr_ratio: f32,
}

impl LrSchedule {
    pub fn new(peak: f32, cfg: &ScheduleConfig, total_steps: u64) -> Self {
        Self {
            peak,
            warmup_steps: cfg.warmup_steps,
            total_steps,
            decay: cfg.decay,
            min_lr_ratio: cfg.min_lr_ratio,
        }
    }

    /// Learning rate of the update made at 0-based `step`.
    pub fn lr(&self, step: u64) -> f32 {
        let peak = self.peak as f64;
        if step < self.warmup_steps {
            // Warmup: step 0 already gets a small non-zero rate (PyTorch's LambdaLR convention with +1).
            return (peak * (step + 1) as f64 / self.warmup_steps as f64) as f32;
        }
        let floor = peak * self.min_lr_ratio as f64;
        let span = self.total_steps.saturating_sub(self.warmup_steps).max(1);
        // Progress through the decay phase: 0 at the first post-warmup step, 1 at the last step.
        let done =
            ((step - self.warmup_steps) as f64 / (span.saturating_sub(1)).max(1) as f64).min(1.0);
        let lr = match self.decay {
            Decay::Constant => peak,
            Decay::Linear => floor + (peak - floor) * (1.0 - done),
            Decay::Cosine => {
                floor + (peak - floor) * 0.5 * (1.0 + (std::f64::consts::PI * done).cos())
            }
        };
        lr as f32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sched(decay: Decay, warmup: u64, total: u64, min: f32) -> LrSchedule {
        LrSchedule::new(
            1.0,
            &ScheduleConfig {
                warmup_steps: warmup,
                decay,
                min_lr_ratio: min,
            },
            total,
        )
    }

    #[test]
    fn warmup_rises_linearly_to_peak() {
        let s = sched(Decay::Linear, 4, 20, 0.0);
        let lrs: Vec<f32> = (0..4).map(|i| s.lr(i)).collect();
        assert_eq!(lrs, vec![0.25, 0.5, 0.75, 1.0]);
    }

    #[test]
    fn linear_and_cosine_end_at_the_floor_and_are_monotone() {
        for decay in [Decay::Linear, Decay::Cosine] {
            let s = sched(decay, 3, 13, 0.1);
            assert!(
                (s.lr(3) - 1.0).abs() < 1e-6,
                "{decay:?} starts decay at the peak"
            );
            assert!(
                (s.lr(12) - 0.1).abs() < 1e-6,
                "{decay:?} ends at the floor: {}",
                s.lr(12)
            );
            assert!(
                (s.lr(100) - 0.1).abs() < 1e-6,
                "{decay:?} stays at the floor"
            );
            for i in 3..12 {
                assert!(s.lr(i + 1) <= s.lr(i), "{decay:?} decreases at {i}");
            }
        }
        // Cosine is at the midpoint halfway through the decay phase.
        let s = sched(Decay::Cosine, 0, 11, 0.0);
        assert!((s.lr(5) - 0.5).abs() < 1e-6);
        let s = sched(Decay::Constant, 2, 10, 0.0);
        assert_eq!(s.lr(9), 1.0);
    }
}
