//! Crash-safe checkpoints.
//!
//! Layout of `RUN_DIR/checkpoints/step-000100/`:
//! - `model.safetensors`: the weights, one F32 tensor per [`TensorInfo`] under its Hugging Face-style
//!   name;
//! - `config.json`: the model config ([`ModelConfig`], what inference and HF export read);
//! - `run_config.json`: the whole run config;
//! - `optimizer.safetensors`: AdamW moments as `exp_avg.<name>` and `exp_avg_sq.<name>`;
//! - `trainer_state.json`: step, data cursor (global sample index), tokens seen, optimizer step count,
//!   RNG seed, skipped-step counters and the batch source's state;
//! - `DONE`: written last; lists every file with its size and CRC-32C, which [`load`] verifies.
//!
//! Writing goes to `checkpoints/.tmp-step-000100/`; every file is fsynced, the directory is renamed
//! to its final name, the parent is fsynced, and only then is `DONE` written (and fsynced). A
//! directory without `DONE` is never loaded and is cleaned up by the next save. Deleting an old
//! checkpoint removes its `DONE` first, so a half-deleted directory never looks complete.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::config::RunConfig;
use crate::fault::{FaultPlan, WriteBudget};
use crate::model::{ModelConfig, TensorInfo, TrainModel};
use crate::tensor_file::{self, Elements, TensorRef};
use crate::{Error, Result};

/// The name of the completion marker.
pub const DONE: &str = "DONE";
/// Version of the trainer-state format.
pub const FORMAT_VERSION: u32 = 1;

/// Everything besides tensors that exact resume needs.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TrainerState {
    pub format_version: u32,
    /// Optimizer steps completed; also the learning-rate schedule's position.
    pub step: u64,
    /// Steps the run is planned for (the budget resolved at the start).
    pub total_steps: u64,
    /// Data cursor: global sample index of the next row to read.
    pub cursor: u64,
    /// Real tokens consumed.
    pub tokens_seen: u64,
    /// AdamW updates applied (differs from `step` when steps were skipped).
    pub optimizer_t: u64,
    /// Steps skipped because of non-finite loss or gradients, in total and in a row at the end.
    pub skipped_steps: u64,
    pub consecutive_nonfinite: u64,
    /// Run seed. Every random decision is keyed by (seed, purpose, step or epoch, index), so the seed
    /// and the counters above are the whole RNG state: dropout uses key(seed, Dropout, step, micro-batch).
    pub seed: u64,
    /// [`crate::BatchSource::state`] of the training source.
    pub source_state: serde_json::Value,
    /// Loss and token counts since the last metrics record, so records after a resume equal those
    /// of an uninterrupted run.
    #[serde(default)]
    pub window: MetricsWindow,
    /// Why the run stopped here, when it did (e.g. "interrupted", "non-finite").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_reason: Option<String>,
}

/// Loss and token counts accumulated since the last metrics record.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct MetricsWindow {
    pub loss_sum: f64,
    pub labels: u64,
    pub tokens: u64,
}

/// What a checkpoint holds, borrowed from the trainer.
pub struct CheckpointData<'a> {
    pub model_config: &'a ModelConfig,
    pub run_config: &'a RunConfig,
    pub tensors: &'a [TensorInfo],
    pub params: &'a [f32],
    /// AdamW first and second moments (same layout as `params`).
    pub m: &'a [f32],
    pub v: &'a [f32],
    pub state: &'a TrainerState,
}

/// `step-000100`.
pub fn dir_name(step: u64) -> String {
    format!("step-{step:06}")
}

fn parse_step(name: &str) -> Option<u64> {
    name.strip_prefix("step-")?.parse().ok()
}

/// The checkpoints directory of a run.
pub fn checkpoints_dir(run_dir: &Path) -> PathBuf {
    run_dir.join("checkpoints")
}

/// Writes a checkpoint for `data.state.step` and keeps the newest `keep_last` complete ones. `faults`
/// is [`FaultPlan::default()`] except in crash tests.
pub fn save(
    run_dir: &Path,
    data: &CheckpointData<'_>,
    keep_last: usize,
    faults: &FaultPlan,
) -> Result<PathBuf> {
    let parent = checkpoints_dir(run_dir);
    std::fs::create_dir_all(&parent).map_err(|e| Error::io(&parent, e))?;
    clean_stale(&parent)?;
    let name = dir_name(data.state.step);
    let tmp = parent.join(format!(".tmp-{name}"));
    let final_dir = parent.join(&name);
    if let Err(e) = write_tmp(&tmp, data, faults) {
        // Leave nothing half-written behind; earlier checkpoints were never touched.
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(Error::Checkpoint {
            path: final_dir,
            message: format!(
                "could not be written ({e}); the earlier checkpoints are untouched: free the space or fix the \
                 problem, then continue with `remask train --resume`"
            ),
        });
    }
    let mut manifest = manifest_of(&tmp)?;
    manifest.step = data.state.step;
    if final_dir.exists() {
        // Only possible for a step re-done after a crash: move the old directory aside first.
        let trash = parent.join(format!(".trash-{name}"));
        let _ = std::fs::remove_file(final_dir.join(DONE));
        std::fs::rename(&final_dir, &trash).map_err(|e| Error::io(&final_dir, e))?;
        std::fs::remove_dir_all(&trash).map_err(|e| Error::io(&trash, e))?;
    }
    std::fs::rename(&tmp, &final_dir).map_err(|e| Error::io(&final_dir, e))?;
    fsync_dir(&parent)?;
    // Second pause point of a crash test: renamed but not yet marked complete.
    faults.pause();
    let done_text =
        serde_json::to_string_pretty(&manifest).map_err(|e| Error::Other(e.to_string()))?;
    write_synced(
        &final_dir.join(DONE),
        done_text.as_bytes(),
        &mut WriteBudget::unlimited(),
    )?;
    fsync_dir(&final_dir)?;
    prune(&parent, keep_last)?;
    Ok(final_dir)
}

fn write_tmp(tmp: &Path, data: &CheckpointData<'_>, faults: &FaultPlan) -> Result<()> {
    if tmp.exists() {
        std::fs::remove_dir_all(tmp).map_err(|e| Error::io(tmp, e))?;
    }
    std::fs::create_dir_all(tmp).map_err(|e| Error::io(tmp, e))?;
    let mut budget = faults.write_budget();
    let json = |v: &dyn erased::Json| v.to_json();

    let weights: Vec<TensorRef<'_>> = data
        .tensors
        .iter()
        .map(|t| {
            (
                t.name.as_str(),
                &t.shape[..],
                Elements::F32(&data.params[t.offset..t.offset + t.numel()]),
            )
        })
        .collect();
    let st = tensor_file::to_bytes(&weights)?;
    // Write the weights in two halves with a pause point between them, so a crash test can kill the
    // process while a checkpoint file is half-written.
    let path = tmp.join("model.safetensors");
    let mut f = File::create(&path).map_err(|e| Error::io(&path, e))?;
    let half = st.len() / 2;
    budget.write(&mut f, &st[..half], &path)?;
    f.flush().map_err(|e| Error::io(&path, e))?;
    faults.pause();
    budget.write(&mut f, &st[half..], &path)?;
    f.sync_all().map_err(|e| Error::io(&path, e))?;
    drop(f);

    let names: Vec<(String, String)> = data
        .tensors
        .iter()
        .map(|t| {
            (
                format!("exp_avg.{}", t.name),
                format!("exp_avg_sq.{}", t.name),
            )
        })
        .collect();
    let mut moments: Vec<TensorRef<'_>> = Vec::new();
    for (t, (m_name, _)) in data.tensors.iter().zip(&names) {
        moments.push((
            m_name.as_str(),
            &t.shape[..],
            Elements::F32(&data.m[t.offset..t.offset + t.numel()]),
        ));
    }
    for (t, (_, v_name)) in data.tensors.iter().zip(&names) {
        moments.push((
            v_name.as_str(),
            &t.shape[..],
            Elements::F32(&data.v[t.offset..t.offset + t.numel()]),
        ));
    }
    write_synced(
        &tmp.join("optimizer.safetensors"),
        &tensor_file::to_bytes(&moments)?,
        &mut budget,
    )?;
    write_synced(
        &tmp.join("config.json"),
        json(data.model_config)?.as_bytes(),
        &mut budget,
    )?;
    write_synced(
        &tmp.join("run_config.json"),
        json(data.run_config)?.as_bytes(),
        &mut budget,
    )?;
    write_synced(
        &tmp.join("trainer_state.json"),
        json(data.state)?.as_bytes(),
        &mut budget,
    )?;
    fsync_dir(tmp)
}

/// Small helper so the three JSON files share one error path.
mod erased {
    pub trait Json {
        fn to_json(&self) -> crate::Result<String>;
    }
    impl<T: serde::Serialize> Json for T {
        fn to_json(&self) -> crate::Result<String> {
            serde_json::to_string_pretty(self)
                .map_err(|e| crate::Error::Other(format!("cannot serialize checkpoint JSON: {e}")))
        }
    }
}

fn write_synced(path: &Path, bytes: &[u8], budget: &mut WriteBudget) -> Result<()> {
    let mut f = File::create(path).map_err(|e| Error::io(path, e))?;
    budget.write(&mut f, bytes, path)?;
    f.sync_all().map_err(|e| Error::io(path, e))
}

fn fsync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(dir, e))
}

/// Reads a checkpoint's F32 tensors (any other dtype is refused): name → (shape, values).
pub fn read_safetensors(path: &Path) -> Result<BTreeMap<String, (Vec<usize>, Vec<f32>)>> {
    tensor_file::read_f32(path).map_err(|e| Error::Checkpoint {
        path: path.into(),
        message: reason_of(&e),
    })
}

/// The `DONE` marker's content: each file's size and CRC-32C.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub step: u64,
    pub files: BTreeMap<String, FileSum>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct FileSum {
    pub bytes: u64,
    pub crc32c: u32,
}

fn manifest_of(dir: &Path) -> Result<Manifest> {
    let mut files = BTreeMap::new();
    for name in [
        "model.safetensors",
        "optimizer.safetensors",
        "config.json",
        "run_config.json",
        "trainer_state.json",
    ] {
        let p = dir.join(name);
        let bytes = std::fs::read(&p).map_err(|e| Error::io(&p, e))?;
        files.insert(
            name.to_string(),
            FileSum {
                bytes: bytes.len() as u64,
                crc32c: crc32c::crc32c(&bytes),
            },
        );
    }
    Ok(Manifest { step: 0, files })
}

/// Whether a checkpoint directory is marked complete.
pub fn is_complete(dir: &Path) -> bool {
    dir.join(DONE).is_file()
}

/// Complete checkpoints of a run, oldest first, as (step, directory).
pub fn list_complete(run_dir: &Path) -> Result<Vec<(u64, PathBuf)>> {
    let parent = checkpoints_dir(run_dir);
    let mut out = Vec::new();
    let entries = match std::fs::read_dir(&parent) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(Error::io(&parent, e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(&parent, e))?;
        let name = entry.file_name();
        if let Some(step) = name.to_str().and_then(parse_step) {
            if is_complete(&entry.path()) {
                out.push((step, entry.path()));
            }
        }
    }
    out.sort();
    Ok(out)
}

/// The newest complete checkpoint of a run, or a clear error when there is none.
pub fn latest_complete(run_dir: &Path) -> Result<PathBuf> {
    list_complete(run_dir)?.pop().map(|(_, p)| p).ok_or_else(|| Error::Checkpoint {
        path: run_dir.into(),
        message: "no complete checkpoint to resume from (a checkpoint counts once its DONE marker exists); \
                  start a new run without --resume"
            .into(),
    })
}

/// A complete checkpoint that failed verification and was passed over.
#[derive(Clone, Debug, PartialEq)]
pub struct Skipped {
    pub dir: PathBuf,
    /// Why it failed (e.g. a file whose CRC-32C differs from the `DONE` marker).
    pub reason: String,
}

/// Loads the newest complete checkpoint of a run that verifies (sizes, CRC-32C, readable files),
/// passing over newer ones that do not; those are returned with the reason, for a warning. A
/// checkpoint that fails verification is never loaded. Errors when no complete checkpoint exists or
/// none verifies.
pub fn load_newest_verified(run_dir: &Path) -> Result<(LoadedCheckpoint, Vec<Skipped>)> {
    let all = list_complete(run_dir)?;
    if all.is_empty() {
        latest_complete(run_dir)?;
    }
    let mut skipped = Vec::new();
    for (_, dir) in all.into_iter().rev() {
        match load(&dir) {
            Ok(ck) => return Ok((ck, skipped)),
            Err(e) => skipped.push(Skipped {
                reason: reason_of(&e),
                dir,
            }),
        }
    }
    let list: Vec<String> = skipped
        .iter()
        .map(|s| format!("{}: {}", s.dir.display(), s.reason))
        .collect();
    Err(Error::Checkpoint {
        path: run_dir.into(),
        message: format!(
            "no complete checkpoint verifies ({}); start a new run without --resume",
            list.join("; ")
        ),
    })
}

/// The part of a load error that says why (without the checkpoint's path, which the caller names).
fn reason_of(e: &Error) -> String {
    match e {
        Error::Checkpoint { message, .. } => message.clone(),
        other => other.to_string(),
    }
}

/// Deletes temporary and trash directories and incomplete `step-*` directories left by a crash.
fn clean_stale(parent: &Path) -> Result<()> {
    for entry in std::fs::read_dir(parent).map_err(|e| Error::io(parent, e))? {
        let entry = entry.map_err(|e| Error::io(parent, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let stale = name.starts_with(".tmp-step-")
            || name.starts_with(".trash-step-")
            || (parse_step(&name).is_some() && !is_complete(&entry.path()));
        if stale && entry.path().is_dir() {
            std::fs::remove_dir_all(entry.path()).map_err(|e| Error::io(entry.path(), e))?;
        }
    }
    Ok(())
}

/// Keeps the newest `keep_last` complete checkpoints. `DONE` goes first, so an interrupted delete
/// leaves an incomplete directory, never a corrupt complete one.
fn prune(parent: &Path, keep_last: usize) -> Result<()> {
    let run_dir = parent.parent().unwrap_or(parent);
    let all = list_complete(run_dir)?;
    let excess = all.len().saturating_sub(keep_last.max(1));
    for (_, dir) in all.into_iter().take(excess) {
        let done = dir.join(DONE);
        std::fs::remove_file(&done).map_err(|e| Error::io(&done, e))?;
        fsync_dir(&dir)?;
        std::fs::remove_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    }
    Ok(())
}

/// A complete checkpoint read back from disk.
#[derive(Clone, Debug)]
pub struct LoadedCheckpoint {
    pub dir: PathBuf,
    pub model_config: ModelConfig,
    pub run_config: RunConfig,
    pub state: TrainerState,
    /// Weights: name → (shape, values).
    pub weights: BTreeMap<String, (Vec<usize>, Vec<f32>)>,
    /// Optimizer moments: `exp_avg.<name>` / `exp_avg_sq.<name>` → (shape, values).
    pub moments: BTreeMap<String, (Vec<usize>, Vec<f32>)>,
}

/// Loads a complete checkpoint, verifying the sizes and CRCs its `DONE` marker lists.
pub fn load(dir: &Path) -> Result<LoadedCheckpoint> {
    let err = |message: String| Error::Checkpoint {
        path: dir.into(),
        message,
    };
    if !dir.is_dir() {
        return Err(err("no such checkpoint directory".into()));
    }
    if !is_complete(dir) {
        return Err(err(
            "incomplete checkpoint (no DONE marker): it was interrupted while being written".into(),
        ));
    }
    let done_path = dir.join(DONE);
    let done = std::fs::read_to_string(&done_path).map_err(|e| Error::io(&done_path, e))?;
    let manifest: Manifest =
        serde_json::from_str(&done).map_err(|e| err(format!("unreadable DONE marker: {e}")))?;
    for (name, sum) in &manifest.files {
        let p = dir.join(name);
        let bytes = std::fs::read(&p).map_err(|e| Error::io(&p, e))?;
        if bytes.len() as u64 != sum.bytes || crc32c::crc32c(&bytes) != sum.crc32c {
            return Err(err(format!(
                "{name} is corrupt (size or CRC-32C differs from the DONE marker)"
            )));
        }
    }
    let read_json = |name: &str| -> Result<String> {
        let p = dir.join(name);
        std::fs::read_to_string(&p).map_err(|e| Error::io(&p, e))
    };
    let model_config: ModelConfig = serde_json::from_str(&read_json("config.json")?)
        .map_err(|e| err(format!("config.json: {e}")))?;
    let run_config: RunConfig = serde_json::from_str(&read_json("run_config.json")?)
        .map_err(|e| err(format!("run_config.json: {e}")))?;
    let state: TrainerState = serde_json::from_str(&read_json("trainer_state.json")?)
        .map_err(|e| err(format!("trainer_state.json: {e}")))?;
    if state.format_version != FORMAT_VERSION {
        return Err(err(format!(
            "trainer state format {} is not supported (this build reads {FORMAT_VERSION})",
            state.format_version
        )));
    }
    let weights = read_safetensors(&dir.join("model.safetensors"))?;
    let moments = read_safetensors(&dir.join("optimizer.safetensors"))?;
    Ok(LoadedCheckpoint {
        dir: dir.into(),
        model_config,
        run_config,
        state,
        weights,
        moments,
    })
}

/// Explains how two model configs differ, or None when they are equal.
pub fn config_difference(checkpoint: &ModelConfig, model: &ModelConfig) -> Option<String> {
    if checkpoint == model {
        return None;
    }
    let a = serde_json::to_value(checkpoint).ok()?;
    let b = serde_json::to_value(model).ok()?;
    let (Some(a), Some(b)) = (a.as_object(), b.as_object()) else {
        return Some("model configs differ".into());
    };
    let diffs: Vec<String> = a
        .iter()
        .filter(|(k, v)| b.get(*k) != Some(v))
        .map(|(k, v)| {
            format!(
                "{k}: checkpoint has {v}, the run has {}",
                b.get(k).map_or("nothing".into(), |x| x.to_string())
            )
        })
        .collect();
    Some(diffs.join("; "))
}

impl LoadedCheckpoint {
    /// Checks that the checkpoint's architecture equals `model`'s and copies the weights in.
    pub fn restore_params<M: TrainModel + ?Sized>(&self, model: &mut M) -> Result<()> {
        if let Some(diff) = config_difference(&self.model_config, model.config()) {
            return Err(Error::Checkpoint {
                path: self.dir.clone(),
                message: format!(
                    "checkpoint is from a different architecture or vocabulary ({diff})"
                ),
            });
        }
        let tensors = model.tensors().to_vec();
        let params = model.params_mut();
        copy_named(&self.dir, &self.weights, &tensors, params, "")
    }

    /// Copies the optimizer moments into `m` and `v` (layout of `tensors`).
    pub fn restore_moments(
        &self,
        tensors: &[TensorInfo],
        m: &mut [f32],
        v: &mut [f32],
    ) -> Result<()> {
        copy_named(&self.dir, &self.moments, tensors, m, "exp_avg.")?;
        copy_named(&self.dir, &self.moments, tensors, v, "exp_avg_sq.")
    }
}

fn copy_named(
    dir: &Path,
    source: &BTreeMap<String, (Vec<usize>, Vec<f32>)>,
    tensors: &[TensorInfo],
    dest: &mut [f32],
    prefix: &str,
) -> Result<()> {
    for t in tensors {
        let name = format!("{prefix}{}", t.name);
        let (shape, values) = source.get(&name).ok_or_else(|| Error::Checkpoint {
            path: dir.into(),
            message: format!(
                "tensor `{name}` is missing: the checkpoint is from a different architecture"
            ),
        })?;
        if shape != &t.shape {
            return Err(Error::Checkpoint {
                path: dir.into(),
                message: format!(
                    "tensor `{name}` has shape {shape:?}, the model expects {:?}",
                    t.shape
                ),
            });
        }
        dest[t.offset..t.offset + t.numel()].copy_from_slice(values);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::testing::BigramModel;

    fn run_config() -> RunConfig {
        RunConfig::from_toml_str("[budget]\nsteps = 10\n", &[]).unwrap()
    }

    fn save_step(
        run: &Path,
        model: &BigramModel,
        step: u64,
        keep: usize,
        faults: FaultPlan,
    ) -> Result<PathBuf> {
        let rc = run_config();
        let n = model.params().len();
        let (m, v) = (vec![0.5f32; n], vec![0.25f32; n]);
        let state = TrainerState {
            format_version: FORMAT_VERSION,
            step,
            cursor: step * 4,
            seed: 7,
            ..Default::default()
        };
        let data = CheckpointData {
            model_config: model.config(),
            run_config: &rc,
            tensors: model.tensors(),
            params: model.params(),
            m: &m,
            v: &v,
            state: &state,
        };
        save(run, &data, keep, &faults)
    }

    #[test]
    fn save_load_round_trip_and_safetensors_is_standard() {
        let dir = tempfile::tempdir().unwrap();
        let model = BigramModel::new(5, 0.0, 1);
        let ck = save_step(dir.path(), &model, 3, 2, FaultPlan::default()).unwrap();
        assert_eq!(ck.file_name().unwrap(), "step-000003");
        let loaded = load(&ck).unwrap();
        assert_eq!(loaded.state.cursor, 12);
        let mut other = BigramModel::new(5, 0.0, 99);
        assert_ne!(other.params(), model.params());
        loaded.restore_params(&mut other).unwrap();
        assert_eq!(other.params(), model.params());
        let (mut m, mut v) = (
            vec![0.0; model.params().len()],
            vec![0.0; model.params().len()],
        );
        loaded
            .restore_moments(model.tensors(), &mut m, &mut v)
            .unwrap();
        assert!(m.iter().all(|&x| x == 0.5) && v.iter().all(|&x| x == 0.25));
        // The weights file is what the safetensors crate expects, with the model's names and shapes.
        let bytes = std::fs::read(ck.join("model.safetensors")).unwrap();
        let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        let mut names = st.names();
        names.sort();
        assert_eq!(names, vec!["bigram.bias", "bigram.weight"]);
        assert_eq!(st.tensor("bigram.weight").unwrap().shape(), &[6, 5]);
        // config.json is the bare model config.
        let cfg: ModelConfig =
            serde_json::from_str(&std::fs::read_to_string(ck.join("config.json")).unwrap())
                .unwrap();
        assert_eq!(&cfg, model.config());
    }

    #[test]
    fn keeps_last_n_and_ignores_incomplete_directories() {
        let dir = tempfile::tempdir().unwrap();
        let model = BigramModel::new(4, 0.0, 1);
        for step in [1, 2, 3, 4] {
            save_step(dir.path(), &model, step, 2, FaultPlan::default()).unwrap();
        }
        let steps: Vec<u64> = list_complete(dir.path())
            .unwrap()
            .iter()
            .map(|(s, _)| *s)
            .collect();
        assert_eq!(steps, vec![3, 4]);
        // A directory without DONE (crash between rename and marker) is never picked.
        let partial = checkpoints_dir(dir.path()).join("step-000009");
        std::fs::create_dir_all(&partial).unwrap();
        assert!(latest_complete(dir.path())
            .unwrap()
            .ends_with("step-000004"));
        assert!(matches!(load(&partial), Err(Error::Checkpoint { .. })));
        // The next save cleans it up.
        save_step(dir.path(), &model, 5, 2, FaultPlan::default()).unwrap();
        assert!(!partial.exists());
    }

    #[test]
    fn full_disk_fails_cleanly_and_keeps_previous_checkpoints() {
        let dir = tempfile::tempdir().unwrap();
        let model = BigramModel::new(4, 0.0, 1);
        let good = save_step(dir.path(), &model, 1, 3, FaultPlan::default()).unwrap();
        for limit in [0, 10, 100, 200] {
            let faults = FaultPlan {
                disk_full_after_bytes: Some(limit),
                ..Default::default()
            };
            let e = save_step(dir.path(), &model, 2, 3, faults).unwrap_err();
            assert!(e.to_string().contains("No space left"), "{e}");
        }
        let names: Vec<String> = std::fs::read_dir(checkpoints_dir(dir.path()))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, vec!["step-000001"], "no temporary leftovers");
        load(&good).unwrap();
    }

    #[test]
    fn corruption_and_wrong_architecture_are_reported() {
        let dir = tempfile::tempdir().unwrap();
        let model = BigramModel::new(4, 0.0, 1);
        let ck = save_step(dir.path(), &model, 1, 3, FaultPlan::default()).unwrap();
        let mut bigger = BigramModel::new(6, 0.0, 1);
        let e = load(&ck)
            .unwrap()
            .restore_params(&mut bigger)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("different architecture or vocabulary") && e.contains("vocab_size"),
            "{e}"
        );
        let p = ck.join("model.safetensors");
        let mut bytes = std::fs::read(&p).unwrap();
        let n = bytes.len();
        bytes[n - 1] ^= 1;
        std::fs::write(&p, bytes).unwrap();
        let e = load(&ck).unwrap_err().to_string();
        assert!(e.contains("corrupt"), "{e}");
        let e = latest_complete(&dir.path().join("nothing"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("no complete checkpoint"), "{e}");
    }
}
