//! The MLM side of leakage: a labelled position must not show its own target in the model input,
//! except for the configured "unchanged" share of BERT's replacement rule (80/10/10).

use serde::Serialize;

use crate::masking::config::MaskingConfig;
use crate::{Batch, Result, IGNORE_INDEX};

/// How the labelled positions of real batches were corrupted.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct MaskingAudit {
    /// Labelled positions seen.
    pub labels: usize,
    /// Labelled positions whose input is the mask token.
    pub masked: usize,
    /// Labelled positions whose input is another token (random replacement).
    pub random: usize,
    /// Labelled positions whose input is the target itself (visible to the model).
    pub unchanged: usize,
    /// `unchanged / labels`.
    pub unchanged_share: f64,
    /// The configured unchanged share plus the chance that a random draw hits the target.
    pub expected_unchanged_share: f64,
    /// Largest share accepted: expected + 4 standard deviations + 1 / labels.
    pub max_unchanged_share: f64,
    pub passed: bool,
}

impl MaskingAudit {
    /// The one-line verdict.
    pub fn line(&self) -> String {
        format!(
            "{} mlm-targets: {} labels, {:.3} masked, {:.3} random, {:.3} unchanged (target visible; configured {:.3}, accepted <= {:.3})",
            if self.passed { "PASS" } else { "LEAK" },
            self.labels,
            self.masked as f64 / self.labels.max(1) as f64,
            self.random as f64 / self.labels.max(1) as f64,
            self.unchanged_share,
            self.expected_unchanged_share,
            self.max_unchanged_share,
        )
    }
}

/// Counts, over `batches` (as the loader gives them to the model), the labelled positions whose input
/// is `mask_token`, another token, or the target itself, and checks that the visible-target share is
/// no larger than `masking.unchanged_share` allows (plus `random_share / vocab_size` for random draws
/// that hit the target, and sampling noise).
pub fn audit_masking(
    batches: &[Batch],
    mask_token: u32,
    vocab_size: usize,
    masking: &MaskingConfig,
) -> Result<MaskingAudit> {
    let (mut labels, mut masked, mut random, mut unchanged) = (0, 0, 0, 0);
    for b in batches {
        b.validate()?;
        for (&id, &l) in b.input_ids.iter().zip(&b.labels) {
            if l == IGNORE_INDEX {
                continue;
            }
            labels += 1;
            if id as i64 == l as i64 {
                unchanged += 1;
            } else if id == mask_token {
                masked += 1;
            } else {
                random += 1;
            }
        }
    }
    let n = labels.max(1) as f64;
    let p = (masking.unchanged_share as f64
        + masking.random_share as f64 / vocab_size.max(1) as f64)
        .min(1.0);
    let max = p + 4.0 * (p * (1.0 - p) / n).sqrt() + 1.0 / n;
    let share = unchanged as f64 / n;
    Ok(MaskingAudit {
        labels,
        masked,
        random,
        unchanged,
        unchanged_share: share,
        expected_unchanged_share: p,
        max_unchanged_share: max,
        passed: share <= max,
    })
}
