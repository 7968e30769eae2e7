//! What lets `remask compare --resume OUT` continue a comparison that was interrupted (Ctrl-C,
//! SIGTERM, kill -9, a crash): each run directory says how far it got.
//!
//! - A **finished** run has `result.json` (its record and audit line), written last and atomically;
//!   a resumed comparison keeps it as it is.
//! - A **partial** run has checkpoints (the runner checkpoints at every evaluation) and `eval.jsonl`,
//!   one line per evaluation, appended as they happen. Resuming it continues the trainer from its
//!   newest checkpoint that verifies ([`start_trainer`]) and keeps the evaluations up to that step
//!   ([`EvalLog::open`]); the rest is redone, so the run ends as an uninterrupted one would.
//! - Anything else is trained from the start.
//!
//! Runs are keyed by their directory, `runs/<strategy>[-E<epochs>]-seed<k>`, so whatever runs a
//! comparison plans (strategies, seeds, regimes), each is found again by name.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::data::{prepare, DataConfig, Meta};
use crate::masking::MaskingConfig;
use crate::model::TrainModel;
use crate::train::checkpoint;
use crate::train::{RunConfig, Trainer, TrainerOptions};
use crate::{Batch, BatchSource, Error, Result};

/// A finished run's result file.
pub const RESULT: &str = "result.json";
/// A run's evaluations so far.
pub const EVAL_LOG: &str = "eval.jsonl";

/// Writes a finished run's result (temporary name, fsync, rename: it exists whole or not at all).
pub fn write_result<T: Serialize>(run_dir: &Path, value: &T) -> Result<()> {
    let path = run_dir.join(RESULT);
    let tmp = run_dir.join(format!(".{RESULT}.tmp"));
    let text = serde_json::to_string_pretty(value)
        .map_err(|e| Error::Other(format!("{}: {e}", path.display())))?;
    File::create(&tmp)
        .and_then(|mut f| {
            f.write_all(text.as_bytes())?;
            f.sync_all()
        })
        .map_err(|e| Error::io(&tmp, e))?;
    std::fs::rename(&tmp, &path).map_err(|e| Error::io(&path, e))
}

/// The result of a finished run, or None when the run did not finish (no or unreadable file: the
/// run is then redone).
pub fn read_result<T: DeserializeOwned>(run_dir: &Path) -> Option<T> {
    let text = std::fs::read_to_string(run_dir.join(RESULT)).ok()?;
    serde_json::from_str(&text).ok()
}

/// The evaluation log of one run.
pub struct EvalLog {
    path: PathBuf,
    file: File,
}

impl EvalLog {
    /// Opens `run_dir/eval.jsonl`. A fresh run (`resume_step = None`) starts it empty; a resumed one
    /// keeps the evaluations at steps up to `resume_step` and returns them in order. A torn last
    /// line (a kill in the middle of a write) is dropped.
    pub fn open<T: DeserializeOwned>(
        run_dir: &Path,
        resume_step: Option<u64>,
    ) -> Result<(Self, Vec<(u64, T)>)> {
        let path = run_dir.join(EVAL_LOG);
        let mut kept = Vec::new();
        let mut text = String::new();
        if let (Some(n), Ok(f)) = (resume_step, File::open(&path)) {
            for line in BufReader::new(f).lines() {
                let line = line.map_err(|e| Error::io(&path, e))?;
                let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else {
                    continue;
                };
                let Some(step) = v.get("step").and_then(|s| s.as_u64()) else {
                    continue;
                };
                let Some(point) = v
                    .get("point")
                    .and_then(|p| serde_json::from_value::<T>(p.clone()).ok())
                else {
                    continue;
                };
                if step <= n {
                    kept.push((step, point));
                    text.push_str(&line);
                    text.push('\n');
                }
            }
        }
        let tmp = run_dir.join(format!(".{EVAL_LOG}.tmp"));
        std::fs::write(&tmp, &text).map_err(|e| Error::io(&tmp, e))?;
        std::fs::rename(&tmp, &path).map_err(|e| Error::io(&path, e))?;
        let file = OpenOptions::new()
            .append(true)
            .open(&path)
            .map_err(|e| Error::io(&path, e))?;
        Ok((Self { path, file }, kept))
    }

    /// Appends the evaluation at `step`.
    pub fn append<T: Serialize>(&mut self, step: u64, point: &T) -> Result<()> {
        let v = serde_json::json!({ "step": step, "point": point });
        let mut line = v.to_string();
        line.push('\n');
        self.file
            .write_all(line.as_bytes())
            .map_err(|e| Error::io(&self.path, e))
    }
}

/// The prepared data of `dir`: reused when `reuse` and the directory is complete (it holds
/// `meta.json`) with the same `[data]` section (and, for static masking, the same masking); prepared
/// now otherwise. `prepare` is deterministic, so both give the same bytes.
pub fn prepared(
    data: &DataConfig,
    masking: &MaskingConfig,
    dir: &Path,
    reuse: bool,
) -> Result<Meta> {
    if reuse {
        if let Ok(meta) = Meta::read(dir) {
            let same_data = DataConfig {
                dir: None,
                ..meta.data.clone()
            } == DataConfig {
                dir: None,
                ..data.clone()
            };
            let same_static = masking.dupe_factor().is_none() || meta.masking == *masking;
            if same_data && same_static {
                return Ok(meta);
            }
        }
    }
    prepare(data, masking, dir)
}

/// The trainer of one run: resumed from the newest checkpoint that verifies when the run directory
/// has one (its config must be this run's), otherwise fresh. Returns the step it starts at when it
/// resumed.
pub fn start_trainer<M: TrainModel, S: BatchSource>(
    model: M,
    source: S,
    eval: Vec<Batch>,
    cfg: RunConfig,
    run_dir: &Path,
    opts: TrainerOptions,
) -> Result<(Trainer<M, S>, Option<u64>)> {
    if checkpoint::list_complete(run_dir)?.is_empty() {
        return Ok((Trainer::new(model, source, eval, cfg, run_dir, opts)?, None));
    }
    let (ck, _skipped) = checkpoint::load_newest_verified(run_dir)?;
    if ck.run_config != cfg {
        return Err(Error::Checkpoint {
            path: ck.dir.clone(),
            message: "was trained with another config than this comparison plans for the run; start over with --force".into(),
        });
    }
    let step = ck.state.step;
    Ok((
        Trainer::resume(model, source, eval, &ck, run_dir, opts)?,
        Some(step),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::experiment::EvalPoint;

    fn point(tokens: u64) -> EvalPoint {
        EvalPoint {
            tokens,
            seconds: 0.5,
            loss: 1.0 / (tokens + 1) as f64,
            accuracy: 0.25,
        }
    }

    #[test]
    fn eval_log_keeps_points_up_to_the_resume_step() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, old) = EvalLog::open::<EvalPoint>(dir.path(), None).unwrap();
        assert!(old.is_empty());
        for step in [0, 4, 8, 12] {
            log.append(step, &point(step * 10)).unwrap();
        }
        drop(log);
        let mut f = OpenOptions::new()
            .append(true)
            .open(dir.path().join(EVAL_LOG))
            .unwrap();
        f.write_all(b"{\"step\":16,\"po").unwrap();
        drop(f);
        let (mut log, kept) = EvalLog::open::<EvalPoint>(dir.path(), Some(8)).unwrap();
        assert_eq!(kept, vec![(0, point(0)), (4, point(40)), (8, point(80))]);
        log.append(12, &point(120)).unwrap();
        drop(log);
        let (_, kept) = EvalLog::open::<EvalPoint>(dir.path(), Some(100)).unwrap();
        assert_eq!(kept.len(), 4);
        let (_, kept) = EvalLog::open::<EvalPoint>(dir.path(), None).unwrap();
        assert!(kept.is_empty(), "a fresh run starts the log empty");
    }

    #[test]
    fn results_are_whole_or_absent() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read_result::<EvalPoint>(dir.path()), None);
        write_result(dir.path(), &point(3)).unwrap();
        assert_eq!(read_result::<EvalPoint>(dir.path()), Some(point(3)));
        std::fs::write(dir.path().join(RESULT), "{\"tok").unwrap();
        assert_eq!(
            read_result::<EvalPoint>(dir.path()),
            None,
            "a torn file counts as not finished"
        );
    }
}
