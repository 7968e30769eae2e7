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
use crate::model::{ModelConfig, TensorInfo, TrainModel};
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

/// Test hooks for the fault-injection tests: pause in the middle of writing the weights and again
/// between the rename and the `DONE` marker, or fail
/// like a full disk after some bytes. Read from `REMASK_FAULT_SLEEP_IN_CHECKPOINT_MS` and
/// `REMASK_FAULT_DISK_FULL_AFTER_BYTES` by [`WriteFaults::from_env`].
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct WriteFaults {
    pub sleep_in_write_ms: u64,
    pub disk_full_after_bytes: Option<u64>,
}

impl WriteFaults {
    pub fn from_env() -> Self {
        let num = |k: &str| std::env::var(k).ok().and_then(|v| v.parse::<u64>().ok());
        Self {
            sleep_in_write_ms: num("REMASK_FAULT_SLEEP_IN_CHECKPOINT_MS").unwrap_or(0),
            disk_full_after_bytes: num("REMASK_FAULT_DISK_FULL_AFTER_BYTES"),
        }
    }
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

/// Writes a checkpoint for `data.state.step` and keeps the newest `keep_last` complete ones.
pub fn save(run_dir: &Path, data: &CheckpointData<'_>, keep_last: usize) -> Result<PathBuf> {
    save_with_faults(run_dir, data, keep_last, WriteFaults::from_env())
}

/// [`save`] with explicit fault hooks (tests).
pub fn save_with_faults(run_dir: &Path, data: &CheckpointData<'_>, keep_last: usize, faults: WriteFaults) -> Result<PathBuf> {
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
    if faults.sleep_in_write_ms > 0 {
        // Second pause: renamed but not yet marked complete.
        std::thread::sleep(std::time::Duration::from_millis(faults.sleep_in_write_ms));
    }
    let done_text = serde_json::to_string_pretty(&manifest).map_err(|e| Error::Other(e.to_string()))?;
    write_synced(&final_dir.join(DONE), done_text.as_bytes(), &mut Budget::unlimited())?;
    fsync_dir(&final_dir)?;
    prune(&parent, keep_last)?;
    Ok(final_dir)
}

fn write_tmp(tmp: &Path, data: &CheckpointData<'_>, faults: WriteFaults) -> Result<()> {
    if tmp.exists() {
        std::fs::remove_dir_all(tmp).map_err(|e| Error::io(tmp, e))?;
    }
    std::fs::create_dir_all(tmp).map_err(|e| Error::io(tmp, e))?;
    let mut budget = Budget { left: faults.disk_full_after_bytes };
    let json = |v: &dyn erased::Json| v.to_json();

    let weights: Vec<(String, &[usize], &[f32])> =
        data.tensors.iter().map(|t| (t.name.clone(), &t.shape[..], &data.params[t.offset..t.offset + t.numel()])).collect();
    let st = safetensors_bytes(&weights);
    // Write the weights in two halves with the optional pause between them, so a test can kill the
    // process while a checkpoint file is half-written.
    let path = tmp.join("model.safetensors");
    let mut f = File::create(&path).map_err(|e| Error::io(&path, e))?;
    let half = st.len() / 2;
    budget.write(&mut f, &st[..half], &path)?;
    f.flush().map_err(|e| Error::io(&path, e))?;
    if faults.sleep_in_write_ms > 0 {
        std::thread::sleep(std::time::Duration::from_millis(faults.sleep_in_write_ms));
    }
    budget.write(&mut f, &st[half..], &path)?;
    f.sync_all().map_err(|e| Error::io(&path, e))?;
    drop(f);

    let mut moments: Vec<(String, &[usize], &[f32])> = Vec::new();
    for t in data.tensors {
        moments.push((format!("exp_avg.{}", t.name), &t.shape[..], &data.m[t.offset..t.offset + t.numel()]));
    }
    for t in data.tensors {
        moments.push((format!("exp_avg_sq.{}", t.name), &t.shape[..], &data.v[t.offset..t.offset + t.numel()]));
    }
    write_synced(&tmp.join("optimizer.safetensors"), &safetensors_bytes(&moments), &mut budget)?;
    write_synced(&tmp.join("config.json"), json(data.model_config)?.as_bytes(), &mut budget)?;
    write_synced(&tmp.join("run_config.json"), json(data.run_config)?.as_bytes(), &mut budget)?;
    write_synced(&tmp.join("trainer_state.json"), json(data.state)?.as_bytes(), &mut budget)?;
    fsync_dir(tmp)
}

/// Small helper so the three JSON files share one error path.
mod erased {
    pub trait Json {
        fn to_json(&self) -> crate::Result<String>;
    }
    impl<T: serde::Serialize> Json for T {
        fn to_json(&self) -> crate::Result<String> {
            serde_json::to_string_pretty(self).map_err(|e| crate::Error::Other(format!("cannot serialize checkpoint JSON: {e}")))
        }
    }
}

/// Byte budget for the simulated full disk.
struct Budget {
    left: Option<u64>,
}

impl Budget {
    fn unlimited() -> Self {
        Self { left: None }
    }

    fn write(&mut self, f: &mut File, bytes: &[u8], path: &Path) -> Result<()> {
        if let Some(left) = self.left {
            if (bytes.len() as u64) > left {
                let _ = f.write_all(&bytes[..left as usize]);
                self.left = Some(0);
                // ENOSPC, exactly what a full disk reports.
                return Err(Error::io(path, std::io::Error::from_raw_os_error(28)));
            }
            self.left = Some(left - bytes.len() as u64);
        }
        f.write_all(bytes).map_err(|e| Error::io(path, e))
    }
}

fn write_synced(path: &Path, bytes: &[u8], budget: &mut Budget) -> Result<()> {
    let mut f = File::create(path).map_err(|e| Error::io(path, e))?;
    budget.write(&mut f, bytes, path)?;
    f.sync_all().map_err(|e| Error::io(path, e))
}

fn fsync_dir(dir: &Path) -> Result<()> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(|e| Error::io(dir, e))
}

/// Serializes F32 tensors in the safetensors format (8-byte little-endian header length, JSON header
/// padded with spaces to a multiple of 8, then the raw little-endian data in the listed order).
pub fn safetensors_bytes(tensors: &[(String, &[usize], &[f32])]) -> Vec<u8> {
    let mut header = serde_json::Map::new();
    header.insert("__metadata__".into(), serde_json::json!({ "format": "pt" }));
    let mut offset = 0usize;
    for (name, shape, data) in tensors {
        let end = offset + data.len() * 4;
        header.insert(name.clone(), serde_json::json!({ "dtype": "F32", "shape": shape, "data_offsets": [offset, end] }));
        offset = end;
    }
    let mut h = serde_json::Value::Object(header).to_string().into_bytes();
    while h.len() % 8 != 0 {
        h.push(b' ');
    }
    let mut out = Vec::with_capacity(8 + h.len() + offset);
    out.extend_from_slice(&(h.len() as u64).to_le_bytes());
    out.extend_from_slice(&h);
    for (_, _, data) in tensors {
        for x in *data {
            out.extend_from_slice(&x.to_le_bytes());
        }
    }
    out
}

/// Reads the F32 tensors of a safetensors file: name → (shape, values).
pub fn read_safetensors(path: &Path) -> Result<BTreeMap<String, (Vec<usize>, Vec<f32>)>> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let st = safetensors::SafeTensors::deserialize(&bytes)
        .map_err(|e| Error::Checkpoint { path: path.into(), message: format!("not a valid safetensors file: {e}") })?;
    let mut out = BTreeMap::new();
    for (name, view) in st.tensors() {
        if view.dtype() != safetensors::Dtype::F32 {
            return Err(Error::Checkpoint { path: path.into(), message: format!("tensor `{name}` is {:?}, expected F32", view.dtype()) });
        }
        let values = view.data().chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
        out.insert(name, (view.shape().to_vec(), values));
    }
    Ok(out)
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
    for name in ["model.safetensors", "optimizer.safetensors", "config.json", "run_config.json", "trainer_state.json"] {
        let p = dir.join(name);
        let bytes = std::fs::read(&p).map_err(|e| Error::io(&p, e))?;
        files.insert(name.to_string(), FileSum { bytes: bytes.len() as u64, crc32c: crc32c::crc32c(&bytes) });
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
    let err = |message: String| Error::Checkpoint { path: dir.into(), message };
    if !dir.is_dir() {
        return Err(err("no such checkpoint directory".into()));
    }
    if !is_complete(dir) {
        return Err(err("incomplete checkpoint (no DONE marker): it was interrupted while being written".into()));
    }
    let done_path = dir.join(DONE);
    let done = std::fs::read_to_string(&done_path).map_err(|e| Error::io(&done_path, e))?;
    let manifest: Manifest = serde_json::from_str(&done).map_err(|e| err(format!("unreadable DONE marker: {e}")))?;
    for (name, sum) in &manifest.files {
        let p = dir.join(name);
        let bytes = std::fs::read(&p).map_err(|e| Error::io(&p, e))?;
        if bytes.len() as u64 != sum.bytes || crc32c::crc32c(&bytes) != sum.crc32c {
            return Err(err(format!("{name} is corrupt (size or CRC-32C differs from the DONE marker)")));
        }
    }
    let read_json = |name: &str| -> Result<String> {
        let p = dir.join(name);
        std::fs::read_to_string(&p).map_err(|e| Error::io(&p, e))
    };
    let model_config: ModelConfig =
        serde_json::from_str(&read_json("config.json")?).map_err(|e| err(format!("config.json: {e}")))?;
    let run_config: RunConfig =
        serde_json::from_str(&read_json("run_config.json")?).map_err(|e| err(format!("run_config.json: {e}")))?;
    let state: TrainerState =
        serde_json::from_str(&read_json("trainer_state.json")?).map_err(|e| err(format!("trainer_state.json: {e}")))?;
    if state.format_version != FORMAT_VERSION {
        return Err(err(format!("trainer state format {} is not supported (this build reads {FORMAT_VERSION})", state.format_version)));
    }
    let weights = read_safetensors(&dir.join("model.safetensors"))?;
    let moments = read_safetensors(&dir.join("optimizer.safetensors"))?;
    Ok(LoadedCheckpoint { dir: dir.into(), model_config, run_config, state, weights, moments })
}

/// Explains how two model configs differ, or None when they are equal.
pub fn config_difference(checkpoint: &ModelConfig, model: &ModelConfig) -> Option<String> {
    if checkpoint == model {
        return None;
    }
    let a = serde_json::to_value(checkpoint).ok()?;
    let b = serde_json::to_value(model).ok()?;
    let (Some(a), Some(b)) = (a.as_object(), b.as_object()) else { return Some("model configs differ".into()) };
    let diffs: Vec<String> = a
        .iter()
        .filter(|(k, v)| b.get(*k) != Some(v))
        .map(|(k, v)| format!("{k}: checkpoint has {v}, the run has {}", b.get(k).map_or("nothing".into(), |x| x.to_string())))
        .collect();
    Some(diffs.join("; "))
}

impl LoadedCheckpoint {
    /// Checks that the checkpoint's architecture equals `model`'s and copies the weights in.
    pub fn restore_params<M: TrainModel + ?Sized>(&self, model: &mut M) -> Result<()> {
        if let Some(diff) = config_difference(&self.model_config, model.config()) {
            return Err(Error::Checkpoint {
                path: self.dir.clone(),
                message: format!("checkpoint is from a different architecture or vocabulary ({diff})"),
            });
        }
        let tensors = model.tensors().to_vec();
        let params = model.params_mut();
        copy_named(&self.dir, &self.weights, &tensors, params, "")
    }

    /// Copies the optimizer moments into `m` and `v` (layout of `tensors`).
    pub fn restore_moments(&self, tensors: &[TensorInfo], m: &mut [f32], v: &mut [f32]) -> Result<()> {
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
            message: format!("tensor `{name}` is missing: the checkpoint is from a different architecture"),
        })?;
        if shape != &t.shape {
            return Err(Error::Checkpoint {
                path: dir.into(),
                message: format!("tensor `{name}` has shape {shape:?}, the model expects {:?}", t.shape),
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

    fn save_step(run: &Path, model: &BigramModel, step: u64, keep: usize, faults: WriteFaults) -> Result<PathBuf> {
        let rc = run_config();
        let n = model.params().len();
        let (m, v) = (vec![0.5f32; n], vec![0.25f32; n]);
        let state = TrainerState { format_version: FORMAT_VERSION, step, cursor: step * 4, seed: 7, ..Default::default() };
        let data = CheckpointData {
            model_config: model.config(),
            run_config: &rc,
            tensors: model.tensors(),
            params: model.params(),
            m: &m,
            v: &v,
            state: &state,
        };
        save_with_faults(run, &data, keep, faults)
    }

    #[test]
    fn save_load_round_trip_and_safetensors_is_standard() {
        let dir = tempfile::tempdir().unwrap();
        let model = BigramModel::new(5, 0.0, 1);
        let ck = save_step(dir.path(), &model, 3, 2, WriteFaults::default()).unwrap();
        assert_eq!(ck.file_name().unwrap(), "step-000003");
        let loaded = load(&ck).unwrap();
        assert_eq!(loaded.state.cursor, 12);
        let mut other = BigramModel::new(5, 0.0, 99);
        assert_ne!(other.params(), model.params());
        loaded.restore_params(&mut other).unwrap();
        assert_eq!(other.params(), model.params());
        let (mut m, mut v) = (vec![0.0; model.params().len()], vec![0.0; model.params().len()]);
        loaded.restore_moments(model.tensors(), &mut m, &mut v).unwrap();
        assert!(m.iter().all(|&x| x == 0.5) && v.iter().all(|&x| x == 0.25));
        // The weights file is what the safetensors crate expects, with the model's names and shapes.
        let bytes = std::fs::read(ck.join("model.safetensors")).unwrap();
        let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        let mut names = st.names();
        names.sort();
        assert_eq!(names, vec!["bigram.bias", "bigram.weight"]);
        assert_eq!(st.tensor("bigram.weight").unwrap().shape(), &[6, 5]);
        // config.json is the bare model config.
        let cfg: ModelConfig = serde_json::from_str(&std::fs::read_to_string(ck.join("config.json")).unwrap()).unwrap();
        assert_eq!(&cfg, model.config());
    }

    #[test]
    fn keeps_last_n_and_ignores_incomplete_directories() {
        let dir = tempfile::tempdir().unwrap();
        let model = BigramModel::new(4, 0.0, 1);
        for step in [1, 2, 3, 4] {
            save_step(dir.path(), &model, step, 2, WriteFaults::default()).unwrap();
        }
        let steps: Vec<u64> = list_complete(dir.path()).unwrap().iter().map(|(s, _)| *s).collect();
        assert_eq!(steps, vec![3, 4]);
        // A directory without DONE (crash between rename and marker) is never picked.
        let partial = checkpoints_dir(dir.path()).join("step-000009");
        std::fs::create_dir_all(&partial).unwrap();
        assert!(latest_complete(dir.path()).unwrap().ends_with("step-000004"));
        assert!(matches!(load(&partial), Err(Error::Checkpoint { .. })));
        // The next save cleans it up.
        save_step(dir.path(), &model, 5, 2, WriteFaults::default()).unwrap();
        assert!(!partial.exists());
    }

    #[test]
    fn full_disk_fails_cleanly_and_keeps_previous_checkpoints() {
        let dir = tempfile::tempdir().unwrap();
        let model = BigramModel::new(4, 0.0, 1);
        let good = save_step(dir.path(), &model, 1, 3, WriteFaults::default()).unwrap();
        for limit in [0, 10, 100, 200] {
            let faults = WriteFaults { disk_full_after_bytes: Some(limit), ..Default::default() };
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
        let ck = save_step(dir.path(), &model, 1, 3, WriteFaults::default()).unwrap();
        let mut bigger = BigramModel::new(6, 0.0, 1);
        let e = load(&ck).unwrap().restore_params(&mut bigger).unwrap_err().to_string();
        assert!(e.contains("different architecture or vocabulary") && e.contains("vocab_size"), "{e}");
        let p = ck.join("model.safetensors");
        let mut bytes = std::fs::read(&p).unwrap();
        let n = bytes.len();
        bytes[n - 1] ^= 1;
        std::fs::write(&p, bytes).unwrap();
        let e = load(&ck).unwrap_err().to_string();
        assert!(e.contains("corrupt"), "{e}");
        let e = latest_complete(&dir.path().join("nothing")).unwrap_err().to_string();
        assert!(e.contains("no complete checkpoint"), "{e}");
    }
}
