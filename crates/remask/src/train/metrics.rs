//! Metrics sinks: `metrics.jsonl` (one JSON object per line) and TensorBoard scalars.
//!
//! Each line has `"kind": "train"` or `"kind": "eval"` and `"step"` = optimizer steps completed.
//! On resume from the checkpoint at step N, lines with a step after N (written before a crash, for
//! steps that will now be redone) are dropped so the file reads as one uninterrupted run.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::tensorboard::EventWriter;
use crate::eval::EvalResult;
use crate::{Error, Result};

/// One training log record.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainRecord {
    /// Optimizer steps completed.
    pub step: u64,
    /// Real (non-padding) tokens consumed so far.
    pub tokens: u64,
    /// Mean loss per label over the steps since the previous record.
    pub loss: f64,
    /// Learning rate of the last update.
    pub lr: f64,
    /// Global gradient norm before clipping, of the last step.
    pub grad_norm: f64,
    /// Real tokens per second of wall time since the previous record.
    pub tokens_per_s: f64,
    /// Labelled positions / real tokens since the previous record (the realised masking rate for MLM).
    pub mask_rate: f64,
    /// Steps skipped so far because the loss or gradient was not finite.
    pub skipped_steps: u64,
}

/// Writes metrics.jsonl and, optionally, TensorBoard events.
pub struct MetricsWriter {
    path: PathBuf,
    jsonl: File,
    tensorboard: Option<EventWriter>,
}

impl MetricsWriter {
    /// Opens `run_dir/metrics.jsonl` for appending. With `resume_step = Some(n)`, drops records of
    /// steps after `n` first. A fresh run (`None`) starts both sinks empty: what a run killed before
    /// its first checkpoint left there (it can never be resumed) is removed. TensorBoard files go to
    /// `run_dir/tensorboard/`.
    pub fn open(run_dir: &Path, resume_step: Option<u64>, tensorboard: bool) -> Result<Self> {
        let path = run_dir.join("metrics.jsonl");
        match resume_step {
            Some(n) => truncate_after(&path, n)?,
            None => remove_earlier_sessions(run_dir)?,
        }
        let jsonl = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| Error::io(&path, e))?;
        let tensorboard = if tensorboard {
            // The first step this session logs is resume_step + 1; TensorBoard drops older files'
            // events from that step on (orphans of the interrupted session).
            Some(EventWriter::create(
                &run_dir.join("tensorboard"),
                resume_step.map_or(0, |s| s + 1),
            )?)
        } else {
            None
        };
        Ok(Self {
            path,
            jsonl,
            tensorboard,
        })
    }

    pub fn train(&mut self, r: &TrainRecord) -> Result<()> {
        let mut v = serde_json::to_value(r).map_err(|e| Error::Other(e.to_string()))?;
        v["kind"] = "train".into();
        self.line(&v)?;
        if let Some(tb) = &mut self.tensorboard {
            tb.scalars(
                r.step,
                &[
                    ("train/loss", r.loss),
                    ("train/lr", r.lr),
                    ("train/grad_norm", r.grad_norm),
                    ("train/tokens_per_s", r.tokens_per_s),
                    ("train/mask_rate", r.mask_rate),
                    ("train/tokens", r.tokens as f64),
                ],
            )?;
            tb.flush()?;
        }
        Ok(())
    }

    pub fn eval(&mut self, step: u64, r: &EvalResult) -> Result<()> {
        let mut v = serde_json::to_value(r).map_err(|e| Error::Other(e.to_string()))?;
        v["kind"] = "eval".into();
        v["step"] = step.into();
        self.line(&v)?;
        if let Some(tb) = &mut self.tensorboard {
            let mut scalars = vec![
                ("eval/loss", r.loss),
                ("eval/accuracy", r.accuracy),
                ("eval/perplexity", r.perplexity),
            ];
            if let Some(p) = r.pseudo_perplexity {
                scalars.push(("eval/pseudo_perplexity", p));
            }
            tb.scalars(step, &scalars)?;
            tb.flush()?;
        }
        Ok(())
    }

    /// A free-form event line (run start, resume, skipped step, stop reason).
    pub fn event(&mut self, step: u64, kind: &str, message: &str) -> Result<()> {
        self.line(&serde_json::json!({ "kind": kind, "step": step, "message": message }))
    }

    fn line(&mut self, v: &serde_json::Value) -> Result<()> {
        let mut text = v.to_string();
        text.push('\n');
        self.jsonl
            .write_all(text.as_bytes())
            .map_err(|e| Error::io(&self.path, e))
    }
}

/// Removes `metrics.jsonl` and the TensorBoard event files of an earlier session that never reached
/// a checkpoint.
fn remove_earlier_sessions(run_dir: &Path) -> Result<()> {
    let path = run_dir.join("metrics.jsonl");
    match std::fs::remove_file(&path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(Error::io(&path, e)),
        _ => {}
    }
    let tb = run_dir.join("tensorboard");
    let Ok(entries) = std::fs::read_dir(&tb) else {
        return Ok(());
    };
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(&tb, e))?;
        if entry
            .file_name()
            .to_string_lossy()
            .starts_with("events.out.tfevents.")
        {
            std::fs::remove_file(entry.path()).map_err(|e| Error::io(entry.path(), e))?;
        }
    }
    Ok(())
}

/// Rewrites `path` keeping only lines whose `step` is at most `n` (and lines that do not parse, which
/// can only be a torn last line after a crash; those are dropped too).
fn truncate_after(path: &Path, n: u64) -> Result<()> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io(path, e)),
    };
    let mut kept = String::new();
    for line in BufReader::new(file).lines() {
        let line = line.map_err(|e| Error::io(path, e))?;
        let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else {
            continue;
        };
        if v.get("step")
            .and_then(|s| s.as_u64())
            .is_some_and(|s| s <= n)
        {
            kept.push_str(&line);
            kept.push('\n');
        }
    }
    let tmp = path.with_extension("jsonl.tmp");
    std::fs::write(&tmp, kept).map_err(|e| Error::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
}

/// Reads the `train` records of a metrics.jsonl (for tests and reports).
pub fn read_train_records(path: &Path) -> Result<Vec<TrainRecord>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let mut out = Vec::new();
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line)
            .map_err(|e| Error::data(path, format!("bad metrics line: {e}")))?;
        if v.get("kind").and_then(|k| k.as_str()) == Some("train") {
            out.push(
                serde_json::from_value(v)
                    .map_err(|e| Error::data(path, format!("bad train record: {e}")))?,
            );
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(step: u64) -> TrainRecord {
        TrainRecord {
            step,
            tokens: step * 10,
            loss: 1.0 / step as f64,
            lr: 0.1,
            grad_norm: 1.0,
            tokens_per_s: 5.0,
            mask_rate: 0.15,
            skipped_steps: 0,
        }
    }

    #[test]
    fn resume_drops_records_after_the_checkpoint_step() {
        let dir = tempfile::tempdir().unwrap();
        let mut m = MetricsWriter::open(dir.path(), None, false).unwrap();
        for s in 1..=6 {
            m.train(&rec(s)).unwrap();
        }
        drop(m);
        // A torn last line, as after kill -9 in the middle of a write.
        let path = dir.path().join("metrics.jsonl");
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"{\"kind\":\"train\",\"st").unwrap();
        drop(f);
        let mut m = MetricsWriter::open(dir.path(), Some(4), false).unwrap();
        m.train(&rec(5)).unwrap();
        drop(m);
        let steps: Vec<u64> = read_train_records(&path)
            .unwrap()
            .iter()
            .map(|r| r.step)
            .collect();
        assert_eq!(steps, vec![1, 2, 3, 4, 5]);
        // A fresh run in the directory (the earlier one never reached a checkpoint) starts empty.
        let mut m = MetricsWriter::open(dir.path(), None, false).unwrap();
        m.train(&rec(1)).unwrap();
        drop(m);
        let steps: Vec<u64> = read_train_records(&path)
            .unwrap()
            .iter()
            .map(|r| r.step)
            .collect();
        assert_eq!(steps, vec![1]);
    }
}
