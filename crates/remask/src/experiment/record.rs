//! What one training run of the comparison contributes: its curves and its cost figures.

use serde::{Deserialize, Serialize};

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

/// Everything the report needs from one (strategy, seed) run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    pub strategy: String,
    pub seed: u64,
    /// Training loss as the run went (on the masks it trained on).
    pub train_curve: Vec<CurvePoint>,
    /// Validation loss and accuracy on the fixed validation masks, at the evaluation cadence.
    pub eval_curve: Vec<EvalPoint>,
    /// Loss on a fixed-mask sample of the *training* split at the end (for the train−validation gap).
    pub final_train_loss: f64,
    /// Final validation loss and accuracy.
    pub final_val_loss: f64,
    pub final_val_accuracy: f64,
    /// Training tokens per second over the whole run.
    pub tokens_per_s: f64,
    /// Wall-clock seconds of training (evaluation excluded).
    pub wall_s: f64,
    /// Mean milliseconds per step spent deciding and applying MLM masks.
    pub masking_ms_per_step: f64,
    /// Bytes on disk used for stored masks (static copies); 0 for masks decided during training.
    pub mask_bytes: u64,
    /// `mask_bytes` per training token (row position of the training split; all copies together).
    #[serde(default)]
    pub mask_bytes_per_token: f64,
    /// Directory of the run (metrics and final checkpoint), relative to the comparison's output.
    pub run_dir: String,
}
