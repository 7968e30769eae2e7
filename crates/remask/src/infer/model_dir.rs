//! The one resolver of "what kind of model directory is this": every command that reads a model
//! (`eval`, `audit`, `forward`, `fill-mask`, `generate`, `translate`, `export`, `train --init-from`)
//! goes through [`open`].
//!
//! - A **remask checkpoint**: `DONE` (or, when interrupted, `trainer_state.json`) inside; loaded
//!   and verified (sizes and CRC-32C listed in `DONE`). Its run directory is two levels up.
//! - A **run directory**: `checkpoints/` inside and no `config.json`; its newest checkpoint that
//!   verifies is used, newer ones that fail are passed over and listed ([`ModelDir::skipped`]).
//! - A **Hugging Face directory**: `config.json` + `model.safetensors` (read by `model::hf`).

use std::path::{Path, PathBuf};

use crate::train::checkpoint::{self, LoadedCheckpoint, Skipped};
use crate::{Error, Result};

/// A resolved model directory.
#[derive(Debug)]
pub enum ModelDir {
    /// A remask checkpoint, loaded and verified.
    Checkpoint {
        ckpt: Box<LoadedCheckpoint>,
        /// The run directory the checkpoint belongs to.
        run_dir: PathBuf,
        /// Newer complete checkpoints of the run that failed verification (run directories only).
        skipped: Vec<Skipped>,
    },
    /// A Hugging Face model directory (not yet read).
    HuggingFace { dir: PathBuf },
}

impl ModelDir {
    /// Newer checkpoints passed over because they failed verification.
    pub fn skipped(&self) -> &[Skipped] {
        match self {
            ModelDir::Checkpoint { skipped, .. } => skipped,
            ModelDir::HuggingFace { .. } => &[],
        }
    }

    /// The checkpoint, or an error saying that `what` needs one.
    pub fn into_checkpoint(self, what: &str) -> Result<(LoadedCheckpoint, PathBuf)> {
        match self {
            ModelDir::Checkpoint { ckpt, run_dir, .. } => Ok((*ckpt, run_dir)),
            ModelDir::HuggingFace { dir } => Err(Error::data(
                dir,
                format!("is a Hugging Face model directory; {what} needs a remask checkpoint or run directory"),
            )),
        }
    }
}

/// Whether `dir` looks like a remask checkpoint directory (complete or not).
pub fn is_checkpoint_dir(dir: &Path) -> bool {
    dir.join(checkpoint::DONE).is_file() || dir.join("trainer_state.json").is_file()
}

/// Whether `dir` looks like a run directory.
pub fn is_run_dir(dir: &Path) -> bool {
    dir.join("checkpoints").is_dir() && !dir.join("config.json").is_file()
}

/// Resolves and, for remask checkpoints, loads `dir` (see the module docs).
pub fn open(dir: &Path) -> Result<ModelDir> {
    if !dir.is_dir() {
        return Err(Error::data(dir, "not a directory (expected a remask checkpoint, a run directory or a Hugging Face model directory)"));
    }
    if is_run_dir(dir) {
        let (ckpt, skipped) = checkpoint::load_newest_verified(dir)?;
        return Ok(ModelDir::Checkpoint {
            ckpt: Box::new(ckpt),
            run_dir: dir.to_path_buf(),
            skipped,
        });
    }
    if is_checkpoint_dir(dir) {
        let ckpt = checkpoint::load(dir)?;
        let run_dir = dir
            .parent()
            .and_then(Path::parent)
            .map_or_else(|| dir.to_path_buf(), Path::to_path_buf);
        return Ok(ModelDir::Checkpoint {
            ckpt: Box::new(ckpt),
            run_dir,
            skipped: Vec::new(),
        });
    }
    for name in ["config.json", "model.safetensors"] {
        if !dir.join(name).is_file() {
            return Err(Error::data(
                dir,
                format!(
                    "missing {name}: not a remask checkpoint (no DONE marker), a run directory (no checkpoints/) or a Hugging \
                     Face model directory (config.json + model.safetensors [+ tokenizer.json])"
                ),
            ));
        }
    }
    Ok(ModelDir::HuggingFace {
        dir: dir.to_path_buf(),
    })
}
