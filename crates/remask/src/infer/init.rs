//! Continue pretraining an imported model (`remask train --init-from DIR`): the weights of a Hugging
//! Face directory (or remask checkpoint) are copied by name into the freshly built model of a run,
//! after checking that both describe the same architecture.

use std::path::Path;

use super::load::load;
use crate::model::{ModelConfig, TrainModel};
use crate::{Error, Result};

/// The architecture fields that must agree (everything but dropout, init, the attention mask kind
/// and the precision, which only change training).
fn differences(run: &ModelConfig, src: &ModelConfig) -> Vec<String> {
    let a = serde_json::to_value(run).unwrap_or_default();
    let b = serde_json::to_value(src).unwrap_or_default();
    let skip = ["dropout", "init_std", "attention", "precision"];
    let mut out = Vec::new();
    if let (Some(a), Some(b)) = (a.as_object(), b.as_object()) {
        for (k, va) in a {
            if skip.contains(&k.as_str()) {
                continue;
            }
            let vb = b.get(k).cloned().unwrap_or_default();
            let same = match (va.as_f64(), vb.as_f64()) {
                (Some(x), Some(y)) => (x - y).abs() <= 1e-6 * x.abs().max(y.abs()),
                _ => *va == vb,
            };
            if !same {
                out.push(format!(
                    "model.{k}: the run has {va}, the imported model has {vb}"
                ));
            }
        }
    }
    out
}

/// Copies the weights of `dir` into `model`. Returns the names of the tensors that kept their fresh
/// initialisation (the head of a bare `BertModel`).
pub fn init_from(dir: &Path, model: &mut dyn TrainModel) -> Result<Vec<String>> {
    let src = load(dir, None)?;
    let diff = differences(model.config(), src.model.config());
    if !diff.is_empty() {
        return Err(Error::data(
            dir,
            format!(
                "does not fit the run's [model] section: {}",
                diff.join("; ")
            ),
        ));
    }
    let src_tensors = src.model.tensors();
    let src_params = src.model.params();
    let tensors = model.tensors().to_vec();
    let params = model.params_mut();
    let mut kept = Vec::new();
    for t in &tensors {
        if src.missing_head.contains(&t.name) {
            kept.push(t.name.clone());
            continue;
        }
        let s = src_tensors
            .iter()
            .find(|s| s.name == t.name)
            .ok_or_else(|| {
                Error::data(
                    dir,
                    format!("missing tensor `{}` (expected shape {:?})", t.name, t.shape),
                )
            })?;
        if s.shape != t.shape {
            return Err(Error::shape(
                format!("{}: tensor `{}`", dir.display(), t.name),
                format!("{:?}", t.shape),
                format!("{:?}", s.shape),
            ));
        }
        params[t.offset..t.offset + t.numel()]
            .copy_from_slice(&src_params[s.offset..s.offset + s.numel()]);
    }
    Ok(kept)
}
