//! The measures a comparison reports for each run, and which way is better. A new measure is one
//! entry in [`MEASURES`] (and its field in `RunRecord`); the report's tables, paired comparisons and
//! `report.json` pick it up.

use super::record::RunRecord;
use super::stats::time_to_target;

/// What a measure may need besides the run itself.
#[derive(Clone, Copy, Debug, Default)]
pub struct MeasureContext {
    /// The validation loss "tokens to target" counts to (per regime).
    pub target_loss: f64,
}

/// One reported measure.
#[derive(Clone, Copy, Debug)]
pub struct Measure {
    /// The key in `report.json` (`comparisons[].measure`).
    pub key: &'static str,
    /// How the report names it.
    pub label: &'static str,
    pub lower_is_better: bool,
    /// Its value for a run (`None`: not measured).
    pub get: fn(&RunRecord, &MeasureContext) -> Option<f64>,
}

fn finite(x: f64) -> Option<f64> {
    x.is_finite().then_some(x)
}

/// Every measure, in report order.
pub const MEASURES: [Measure; 8] = [
    Measure {
        key: "val_loss",
        label: "in-domain validation loss",
        lower_is_better: true,
        get: |r, _| finite(r.final_val_loss),
    },
    Measure {
        key: "val_accuracy",
        label: "validation accuracy",
        lower_is_better: false,
        get: |r, _| finite(r.final_val_accuracy),
    },
    Measure {
        key: "val_loss_isolated",
        label: "validation loss, each document alone",
        lower_is_better: true,
        get: |r, _| r.final_val_loss_isolated,
    },
    Measure {
        key: "ood_loss",
        label: "out-of-domain loss",
        lower_is_better: true,
        get: |r, _| r.final_ood_loss,
    },
    Measure {
        key: "ood_accuracy",
        label: "out-of-domain accuracy",
        lower_is_better: false,
        get: |r, _| r.final_ood_accuracy,
    },
    Measure {
        key: "minimal_pairs",
        label: "minimal-pair accuracy",
        lower_is_better: false,
        get: |r, _| r.minimal_pairs,
    },
    Measure {
        key: "train_val_gap",
        label: "validation − training loss",
        lower_is_better: true,
        get: |r, _| finite(r.final_val_loss - r.final_train_loss),
    },
    Measure {
        key: "tokens_to_target",
        label: "tokens to reach the target loss",
        lower_is_better: true,
        get: |r, c| time_to_target(&r.eval_curve, c.target_loss).map(|t| t.0),
    },
];

/// The measure of `key`.
pub fn measure(key: &str) -> Option<&'static Measure> {
    MEASURES.iter().find(|m| m.key == key)
}
