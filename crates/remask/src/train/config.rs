//! The run configuration: one TOML file describing a whole training run.
//!
//! ```toml
//! [model]        # remask::model::ModelConfig (architecture, attention mask kind)
//! [data]         # remask::data::DataConfig (inputs, tokenizer, sequence length, packing)
//! [masking]      # remask::masking::MaskingConfig (strategy, rate, static / dynamic / adaptive)
//! [optimizer]    # AdamW hyper-parameters, batch size, gradient accumulation, clipping
//! [schedule]     # warmup, then linear / cosine / constant decay
//! [budget]       # exactly one of steps, epochs, tokens
//! [eval]         # evaluation cadence and size
//! [checkpoint]   # checkpoint cadence and how many to keep
//! [run]          # seed, threads, output directory, logging
//! ```
//!
//! Every section rejects unknown keys. `--set section.key=value` overrides are applied to the parsed
//! TOML value before it is deserialized, so they are checked exactly like keys in the file.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::data::DataConfig;
use crate::masking::MaskingConfig;
use crate::model::ModelConfig;
use crate::{Error, Result};

/// The whole run: every section of the TOML file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunConfig {
    /// The model architecture (stored in every checkpoint as `config.json`).
    #[serde(default)]
    pub model: ModelConfig,
    /// The corpus, tokenizer and row layout.
    #[serde(default)]
    pub data: DataConfig,
    /// MLM masking: strategy, rate, schedule and when masks are decided (ignored by CLM / translation).
    #[serde(default)]
    pub masking: MaskingConfig,
    #[serde(default)]
    pub optimizer: OptimizerConfig,
    #[serde(default)]
    pub schedule: ScheduleConfig,
    pub budget: BudgetConfig,
    #[serde(default)]
    pub eval: EvalConfig,
    #[serde(default)]
    pub checkpoint: CheckpointConfig,
    #[serde(default)]
    pub run: RunSection,
}

/// AdamW, batch geometry and gradient clipping.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OptimizerConfig {
    /// Peak learning rate (reached at the end of warmup).
    pub lr: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    /// Decoupled weight decay, applied only to tensors with two or more dimensions.
    pub weight_decay: f32,
    /// Rows per optimizer step (the global batch).
    pub batch_size: usize,
    /// Rows per forward/backward pass; `batch_size / micro_batch_size` micro-batches are accumulated
    /// per step. 0 means "the whole batch at once".
    pub micro_batch_size: usize,
    /// Global L2 norm the gradient is clipped to; 0 disables clipping.
    pub grad_clip: f32,
}

impl Default for OptimizerConfig {
    fn default() -> Self {
        // BERT's AdamW settings with a learning rate that suits small models.
        Self {
            lr: 5e-4,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.01,
            batch_size: 32,
            micro_batch_size: 0,
            grad_clip: 1.0,
        }
    }
}

impl OptimizerConfig {
    /// Rows per forward/backward pass.
    pub fn micro_batch(&self) -> usize {
        if self.micro_batch_size == 0 {
            self.batch_size
        } else {
            self.micro_batch_size
        }
    }

    /// Micro-batches accumulated per optimizer step.
    pub fn accumulation_steps(&self) -> usize {
        self.batch_size / self.micro_batch().max(1)
    }
}

/// How the learning rate decays after warmup.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Decay {
    Constant,
    Linear,
    Cosine,
}

/// Learning-rate schedule: linear warmup from 0, then decay to `min_lr_ratio * lr` at the last step.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScheduleConfig {
    pub warmup_steps: u64,
    pub decay: Decay,
    /// Final learning rate as a fraction of the peak.
    pub min_lr_ratio: f32,
}

impl Default for ScheduleConfig {
    fn default() -> Self {
        Self {
            warmup_steps: 0,
            decay: Decay::Linear,
            min_lr_ratio: 0.0,
        }
    }
}

/// How long to train: exactly one of the three.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BudgetConfig {
    /// Optimizer steps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub steps: Option<u64>,
    /// Passes over the training split (may be fractional).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epochs: Option<f64>,
    /// Token positions (rows × sequence length) processed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens: Option<u64>,
}

impl BudgetConfig {
    /// Resolves the budget to a number of optimizer steps (at least 1).
    pub fn total_steps(&self, num_samples: u64, batch_size: usize, seq_len: usize) -> u64 {
        let rows_per_step = batch_size.max(1) as f64;
        let steps = if let Some(s) = self.steps {
            s as f64
        } else if let Some(e) = self.epochs {
            (e * num_samples as f64 / rows_per_step).ceil()
        } else if let Some(t) = self.tokens {
            (t as f64 / (rows_per_step * seq_len.max(1) as f64)).ceil()
        } else {
            1.0
        };
        (steps as u64).max(1)
    }
}

/// Evaluation on the fixed validation batches.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EvalConfig {
    /// Evaluate every this many steps (and after the last step); 0 disables evaluation during training.
    pub every_steps: u64,
    /// Validation batches to evaluate (fixed at the start of the run).
    pub batches: usize,
    /// Rows per validation batch.
    pub batch_size: usize,
    /// Also compute MLM pseudo-perplexity (one forward per real token; slow).
    pub pseudo_perplexity: bool,
}

impl Default for EvalConfig {
    fn default() -> Self {
        Self {
            every_steps: 500,
            batches: 8,
            batch_size: 32,
            pseudo_perplexity: false,
        }
    }
}

/// Checkpoint cadence and retention.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CheckpointConfig {
    /// Write a checkpoint every this many steps (and at the end); 0 = only at the end and on Ctrl-C.
    pub every_steps: u64,
    /// Complete checkpoints kept; older ones are deleted.
    pub keep_last: usize,
}

impl Default for CheckpointConfig {
    fn default() -> Self {
        Self {
            every_steps: 1000,
            keep_last: 3,
        }
    }
}

/// Run-wide settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RunSection {
    /// The seed every keyed random decision derives from.
    pub seed: u64,
    /// Worker threads (0 = all cores).
    pub threads: usize,
    /// Run directory: checkpoints, metrics.jsonl, TensorBoard events.
    pub output_dir: PathBuf,
    /// Write a metrics record (and a log line when not on a terminal) every this many steps.
    pub log_every: u64,
    /// Stop the run after this many consecutive steps with a non-finite loss or gradient.
    pub max_nonfinite_steps: u64,
    /// Write TensorBoard event files next to metrics.jsonl.
    pub tensorboard: bool,
}

impl Default for RunSection {
    fn default() -> Self {
        Self {
            seed: 42,
            threads: 0,
            output_dir: PathBuf::from("runs/default"),
            log_every: 10,
            max_nonfinite_steps: 5,
            tensorboard: true,
        }
    }
}

/// The "file name" of configs parsed from text ([`RunConfig::load`] puts the real path in).
pub const CONFIG_TEXT: &str = "<config>";

/// A TOML syntax error as one line: where (line and column) and what.
pub fn toml_syntax_error(text: &str, e: &toml::de::Error) -> String {
    let what: Vec<&str> = e
        .message()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let what = what.join("; ");
    match e.span() {
        Some(span) => {
            let before = &text.as_bytes()[..span.start.min(text.len())];
            let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
            let line_start = before
                .iter()
                .rposition(|&b| b == b'\n')
                .map_or(0, |i| i + 1);
            let column = String::from_utf8_lossy(&before[line_start..])
                .chars()
                .count()
                + 1;
            format!("not valid TOML at line {line}, column {column}: {what}")
        }
        None => format!("not valid TOML: {what}"),
    }
}

impl RunConfig {
    /// Parses TOML text, applies `--set key=value` overrides and validates.
    pub fn from_toml_str(text: &str, overrides: &[String]) -> Result<Self> {
        let mut value: toml::Value = text
            .parse::<toml::Table>()
            .map(toml::Value::Table)
            .map_err(|e| Error::data(CONFIG_TEXT, toml_syntax_error(text, &e)))?;
        for o in overrides {
            apply_override(&mut value, o)?;
        }
        Self::from_value(value)
    }

    /// Reads a TOML file, applies `--set key=value` overrides and validates.
    pub fn load(path: &Path, overrides: &[String]) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Self::from_toml_str(&text, overrides).map_err(|e| match e {
            Error::Config { key, message } => {
                Error::config(key, format!("{message} (in {})", path.display()))
            }
            Error::Data { path: p, message } if p == Path::new(CONFIG_TEXT) => {
                Error::data(path, message)
            }
            other => other,
        })
    }

    /// Deserializes a TOML value (unknown keys are errors that name their path) and validates.
    pub fn from_value(value: toml::Value) -> Result<Self> {
        let cfg: RunConfig = serde_path_to_error::deserialize(value).map_err(|e| {
            let path = e.path().to_string();
            // toml appends "\nin `section`" lines; the key path already says where.
            let inner = e
                .into_inner()
                .to_string()
                .lines()
                .next()
                .unwrap_or_default()
                .trim()
                .to_string();
            let key = unknown_field_key(&path, &inner).unwrap_or(path);
            Error::config(
                if key == "." {
                    "<root>".to_string()
                } else {
                    key
                },
                inner,
            )
        })?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Checks ranges and consistency; errors name the key and what is allowed.
    pub fn validate(&self) -> Result<()> {
        let o = &self.optimizer;
        let positive = |key: &str, v: f32| {
            if v.is_finite() && v > 0.0 {
                Ok(())
            } else {
                Err(Error::config(
                    key,
                    format!("must be a finite number > 0, got {v}"),
                ))
            }
        };
        positive("optimizer.lr", o.lr)?;
        positive("optimizer.eps", o.eps)?;
        for (key, b) in [("optimizer.beta1", o.beta1), ("optimizer.beta2", o.beta2)] {
            if !(0.0..1.0).contains(&b) {
                return Err(Error::config(key, format!("must be in [0, 1), got {b}")));
            }
        }
        if !(o.weight_decay.is_finite() && o.weight_decay >= 0.0) {
            return Err(Error::config(
                "optimizer.weight_decay",
                format!("must be >= 0, got {}", o.weight_decay),
            ));
        }
        if !(o.grad_clip.is_finite() && o.grad_clip >= 0.0) {
            return Err(Error::config(
                "optimizer.grad_clip",
                format!("must be >= 0 (0 disables clipping), got {}", o.grad_clip),
            ));
        }
        if o.batch_size == 0 {
            return Err(Error::config("optimizer.batch_size", "must be >= 1"));
        }
        // Rows are allocated per micro-batch: absurd sizes are refused here, not by an aborting
        // allocation (found by fuzzing).
        const MAX_ROWS: usize = 1 << 20;
        for (key, v) in [
            ("optimizer.batch_size", o.batch_size),
            ("optimizer.micro_batch_size", o.micro_batch_size),
            ("eval.batch_size", self.eval.batch_size),
        ] {
            if v > MAX_ROWS {
                return Err(Error::config(
                    key,
                    format!("{v} rows is too many (at most {MAX_ROWS})"),
                ));
            }
        }
        if o.micro_batch_size > o.batch_size || o.batch_size % o.micro_batch() != 0 {
            return Err(Error::config(
                "optimizer.micro_batch_size",
                format!(
                    "must divide optimizer.batch_size ({}), got {}",
                    o.batch_size, o.micro_batch_size
                ),
            ));
        }
        let s = &self.schedule;
        if !(0.0..=1.0).contains(&s.min_lr_ratio) {
            return Err(Error::config(
                "schedule.min_lr_ratio",
                format!("must be in [0, 1], got {}", s.min_lr_ratio),
            ));
        }
        let b = &self.budget;
        let set = [b.steps.is_some(), b.epochs.is_some(), b.tokens.is_some()]
            .iter()
            .filter(|&&x| x)
            .count();
        if set != 1 {
            return Err(Error::config(
                "budget",
                format!("set exactly one of `steps`, `epochs`, `tokens` (found {set})"),
            ));
        }
        if b.steps == Some(0) {
            return Err(Error::config("budget.steps", "must be >= 1"));
        }
        if b.tokens == Some(0) {
            return Err(Error::config("budget.tokens", "must be >= 1"));
        }
        if let Some(e) = b.epochs {
            if !(e.is_finite() && e > 0.0) {
                return Err(Error::config(
                    "budget.epochs",
                    format!("must be a finite number > 0, got {e}"),
                ));
            }
        }
        if self.eval.every_steps > 0 && (self.eval.batches == 0 || self.eval.batch_size == 0) {
            return Err(Error::config(
                "eval.batches",
                "eval.batches and eval.batch_size must be >= 1 when eval.every_steps > 0",
            ));
        }
        if self.checkpoint.keep_last == 0 {
            return Err(Error::config(
                "checkpoint.keep_last",
                "must be >= 1 (the last checkpoint is needed to resume)",
            ));
        }
        if self.run.log_every == 0 {
            return Err(Error::config("run.log_every", "must be >= 1"));
        }
        if self.run.max_nonfinite_steps == 0 {
            return Err(Error::config("run.max_nonfinite_steps", "must be >= 1"));
        }
        self.model.validate()?;
        self.data.validate("data")?;
        self.masking.validate("masking")?;
        Ok(())
    }

    /// The configuration as TOML text (what `run_config.toml` in the run directory holds).
    pub fn to_toml_string(&self) -> Result<String> {
        toml::to_string_pretty(self)
            .map_err(|e| Error::Other(format!("cannot write the run config as TOML: {e}")))
    }
}

/// serde_path_to_error reports a missing field at its parent's path ("." for the root) with the
/// field in the message; this turns it into the field's own path ("budget"). Unknown fields already
/// carry their own path.
fn unknown_field_key(path: &str, message: &str) -> Option<String> {
    let rest = message.strip_prefix("missing field `")?;
    let field = &rest[..rest.find('`')?];
    Some(if path == "." || path.is_empty() {
        field.to_string()
    } else {
        format!("{path}.{field}")
    })
}

/// Applies one `section.key=value` override to a parsed TOML document. The value is parsed as a TOML
/// value (`0.1`, `true`, `"text"`, `[1, 2]`, `{ kind = "causal" }`); a bare word is taken as a string.
pub fn apply_override(root: &mut toml::Value, assignment: &str) -> Result<()> {
    let (path, raw) = assignment.split_once('=').ok_or_else(|| {
        Error::config(assignment, "an override must look like `section.key=value`")
    })?;
    let path = path.trim();
    let raw = raw.trim();
    if path.is_empty() || path.split('.').any(str::is_empty) {
        return Err(Error::config(
            path,
            "an override key must be a dotted path like `optimizer.lr`",
        ));
    }
    let value = parse_value(raw);
    let mut node = root;
    let parts: Vec<&str> = path.split('.').collect();
    for (i, part) in parts.iter().enumerate() {
        let table = node.as_table_mut().ok_or_else(|| {
            Error::config(
                parts[..i].join("."),
                "is not a table, cannot set a key inside it",
            )
        })?;
        if i + 1 == parts.len() {
            table.insert((*part).to_string(), value);
            return Ok(());
        }
        node = table
            .entry((*part).to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
    }
    Ok(())
}

fn parse_value(raw: &str) -> toml::Value {
    // Parse `x = <raw>` so every TOML value form works, including inline tables.
    match format!("x = {raw}").parse::<toml::Table>() {
        Ok(mut t) => t
            .remove("x")
            .unwrap_or_else(|| toml::Value::String(raw.to_string())),
        Err(_) => toml::Value::String(raw.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = "[budget]\nsteps = 10\n";

    fn config_key(r: Result<RunConfig>) -> (String, String) {
        match r {
            Err(Error::Config { key, message }) => (key, message),
            other => panic!("expected a config error, got {other:?}"),
        }
    }

    #[test]
    fn minimal_config_takes_defaults() {
        let c = RunConfig::from_toml_str(MINIMAL, &[]).unwrap();
        assert_eq!(c.budget.steps, Some(10));
        assert_eq!(c.optimizer, OptimizerConfig::default());
        assert_eq!(c.model, ModelConfig::default());
        assert_eq!(c.data, DataConfig::default());
        assert_eq!(c.masking, MaskingConfig::default());
    }

    #[test]
    fn data_and_masking_sections_are_checked_with_their_paths() {
        let c = RunConfig::from_toml_str(
            MINIMAL,
            &["data.seq_len=64".into(), "masking.rate=0.3".into()],
        )
        .unwrap();
        assert_eq!(c.data.seq_len, 64);
        assert_eq!(c.masking.rate, 0.3);
        let (key, _) = config_key(RunConfig::from_toml_str(
            MINIMAL,
            &["data.seq_len=2".into()],
        ));
        assert_eq!(key, "data.seq_len");
        let (key, _) = config_key(RunConfig::from_toml_str(
            MINIMAL,
            &["masking.rate=1.5".into()],
        ));
        assert_eq!(key, "masking.rate");
        let (key, _) = config_key(RunConfig::from_toml_str(
            MINIMAL,
            &["data.tokenizer.bogus=1".into()],
        ));
        assert_eq!(key, "data.tokenizer.bogus");
    }

    #[test]
    fn unknown_keys_are_rejected_with_their_path() {
        let (key, msg) = config_key(RunConfig::from_toml_str(
            "[budget]\nsteps = 1\n[optimizer]\nlrr = 0.1\n",
            &[],
        ));
        assert_eq!(key, "optimizer.lrr");
        assert!(
            msg.contains("`lr`"),
            "message should list allowed keys: {msg}"
        );
        let (key, _) = config_key(RunConfig::from_toml_str(
            "[budget]\nsteps = 1\n[bogus]\nx = 1\n",
            &[],
        ));
        assert_eq!(key, "bogus");
        let (key, _) = config_key(RunConfig::from_toml_str(
            "[budget]\nsteps = 1\n[model]\nd_modle = 3\n",
            &[],
        ));
        assert_eq!(key, "model.d_modle");
    }

    #[test]
    fn wrong_types_and_bad_values_name_the_key() {
        let (key, _) = config_key(RunConfig::from_toml_str(
            "[budget]\nsteps = 1\n[optimizer]\nlr = \"fast\"\n",
            &[],
        ));
        assert_eq!(key, "optimizer.lr");
        let (key, msg) = config_key(RunConfig::from_toml_str(
            "[budget]\nsteps = 1\n[optimizer]\nlr = -1.0\n",
            &[],
        ));
        assert_eq!(key, "optimizer.lr");
        assert!(msg.contains("> 0"));
        let (key, msg) = config_key(RunConfig::from_toml_str(
            "[budget]\nsteps = 1\n[schedule]\ndecay = \"exp\"\n",
            &[],
        ));
        assert_eq!(key, "schedule.decay");
        assert!(msg.contains("cosine"), "{msg}");
        let (key, _) = config_key(RunConfig::from_toml_str(
            "[budget]\nsteps = 1\nepochs = 2\n",
            &[],
        ));
        assert_eq!(key, "budget");
        let (key, _) = config_key(RunConfig::from_toml_str(
            "[budget]\nsteps = 1\n[optimizer]\nbatch_size = 12\nmicro_batch_size = 5\n",
            &[],
        ));
        assert_eq!(key, "optimizer.micro_batch_size");
        let (key, _) = config_key(RunConfig::from_toml_str("", &[]));
        assert_eq!(key, "budget");
    }

    #[test]
    fn overrides_apply_before_validation() {
        let sets = vec![
            "optimizer.lr=0.25".to_string(),
            "run.output_dir=out/x".to_string(),
            "model.attention={ kind = \"causal\" }".to_string(),
        ];
        let c = RunConfig::from_toml_str(MINIMAL, &sets).unwrap();
        assert_eq!(c.optimizer.lr, 0.25);
        assert_eq!(c.run.output_dir, PathBuf::from("out/x"));
        assert_eq!(
            c.model.attention,
            crate::attention::AttentionMaskSpec::Causal
        );
        let (key, _) = config_key(RunConfig::from_toml_str(
            MINIMAL,
            &["optimizer.nope=1".to_string()],
        ));
        assert_eq!(key, "optimizer.nope");
        let (key, _) = config_key(RunConfig::from_toml_str(
            MINIMAL,
            &["optimizer.lr".to_string()],
        ));
        assert_eq!(key, "optimizer.lr");
        let (key, _) = config_key(RunConfig::from_toml_str(
            MINIMAL,
            &["budget.steps.x=1".to_string()],
        ));
        assert_eq!(key, "budget.steps");
    }

    #[test]
    fn round_trips_through_toml() {
        let c = RunConfig::from_toml_str(
            "[budget]\nepochs = 1.5\n[schedule]\ndecay = \"cosine\"\nwarmup_steps = 7\n",
            &[],
        )
        .unwrap();
        let text = c.to_toml_string().unwrap();
        assert_eq!(RunConfig::from_toml_str(&text, &[]).unwrap(), c);
    }

    /// Guards the example configs in `configs/`: each must parse and validate.
    #[test]
    fn example_configs_parse() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs");
        let mut n = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            // compare*.toml are comparison configs, guarded by `experiment::config`'s tests.
            let comparison = path
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("compare"));
            if path.extension().is_some_and(|e| e == "toml") && !comparison {
                RunConfig::load(&path, &[]).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                n += 1;
            }
        }
        assert!(n >= 3, "expected the MLM, CLM and translation examples");
    }

    #[test]
    fn budget_resolves_to_steps() {
        let b = BudgetConfig {
            epochs: Some(2.0),
            ..Default::default()
        };
        assert_eq!(b.total_steps(100, 32, 128), 7); // ceil(200 / 32)
        let b = BudgetConfig {
            tokens: Some(10_000),
            ..Default::default()
        };
        assert_eq!(b.total_steps(100, 8, 128), 10); // ceil(10000 / 1024)
        let b = BudgetConfig {
            steps: Some(5),
            ..Default::default()
        };
        assert_eq!(b.total_steps(1, 1, 1), 5);
    }
}
