//! What one training run of the comparison contributes: its curves and its cost figures.

use serde::{Deserialize, Deserializer, Serialize};

/// Reads a figure that JSON wrote as `null` because it was not finite (serde_json writes NaN that
/// way) back as NaN, so every `report.json` can be read again.
pub(crate) fn f64_or_nan<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}

/// One point of a loss curve.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct CurvePoint {
    /// Training tokens seen (input positions, padding excluded) when the point was taken.
    pub tokens: u64,
    /// Mean loss per label (nats).
    pub loss: f64,
}

/// An evaluation on the fixed validation masks.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct EvalPoint {
    pub tokens: u64,
    /// Wall-clock seconds since the run started.
    pub seconds: f64,
    pub loss: f64,
    pub accuracy: f64,
}

/// Everything the report needs from one (strategy, seed, regime) run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    pub strategy: String,
    pub seed: u64,
    /// Data repetition E of the run's regime (`None`: the whole corpus).
    #[serde(default)]
    pub regime: Option<u32>,
    /// Training rows the run read (its regime's corpus subset).
    #[serde(default)]
    pub train_rows: u64,
    /// Training loss as the run went (on the masks it trained on).
    pub train_curve: Vec<CurvePoint>,
    /// Validation loss and accuracy on the fixed validation masks, at the evaluation cadence.
    pub eval_curve: Vec<EvalPoint>,
    /// Loss on a fixed-mask sample of the *training* split at the end (for the train−validation gap).
    #[serde(deserialize_with = "f64_or_nan")]
    pub final_train_loss: f64,
    /// Final validation loss and accuracy.
    #[serde(deserialize_with = "f64_or_nan")]
    pub final_val_loss: f64,
    #[serde(deserialize_with = "f64_or_nan")]
    pub final_val_accuracy: f64,
    /// Training tokens per second over the whole run.
    #[serde(deserialize_with = "f64_or_nan")]
    pub tokens_per_s: f64,
    /// Wall-clock seconds of training (evaluation excluded).
    #[serde(deserialize_with = "f64_or_nan")]
    pub wall_s: f64,
    /// Mean milliseconds per step spent deciding and applying MLM masks.
    #[serde(deserialize_with = "f64_or_nan")]
    pub masking_ms_per_step: f64,
    /// Bytes on disk used for stored masks (static copies); 0 for masks decided during training.
    pub mask_bytes: u64,
    /// Directory of the run (metrics and final checkpoint), relative to the comparison's output.
    pub run_dir: String,
    /// Loss and accuracy on the out-of-domain text (fixed masks), when measured.
    #[serde(default)]
    pub final_ood_loss: Option<f64>,
    #[serde(default)]
    pub final_ood_accuracy: Option<f64>,
    /// Zero-shot minimal-pair accuracy (a tie is wrong), when measured.
    #[serde(default)]
    pub minimal_pairs: Option<f64>,
    /// CLM: validation loss with every document read alone (document-causal attention), whatever
    /// mask the model trained with.
    #[serde(default)]
    pub final_val_loss_isolated: Option<f64>,
    /// Why the run counts as failed (diverged, or ended above the unigram baseline); `None` if not.
    #[serde(default)]
    pub failed: Option<String>,
    /// The run this one is identical to by construction and was not trained again (its `run_dir`).
    #[serde(default)]
    pub same_as: Option<String>,
}

impl RunRecord {
    /// `static-seed2` or `static-E64-seed2`: how the run is named in reports and directories.
    pub fn name(&self) -> String {
        run_name(&self.strategy, self.regime, self.seed)
    }
}

/// The name of the run of `strategy` in `regime` with `seed`.
pub fn run_name(strategy: &str, regime: Option<u32>, seed: u64) -> String {
    match regime {
        Some(e) => format!("{strategy}-E{e}-seed{seed}"),
        None => format!("{strategy}-seed{seed}"),
    }
}
