//! The comparison's configuration: one model, one data set, one token budget, several strategies,
//! seeds and data-repetition regimes. Every section has defaults that make up the default experiment,
//! so `remask compare` with no file runs it; [`CompareConfig::preset`] gives the other presets.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::attention::AttentionMaskSpec;
use crate::data::DataConfig;
use crate::masking::{MaskingConfig, ScheduleKind, StrategyKind, When};
use crate::model::{Arch, ModelConfig, NormPlacement};
use crate::train::config::{BudgetConfig, OptimizerConfig, ScheduleConfig};
use crate::{Error, Result};

/// What the compared models learn.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CompareTask {
    /// Masked language modelling: strategies are MLM masking strategies (`static`, `dynamic`, ...).
    #[default]
    Mlm,
    /// Causal language modelling on packed rows: strategies are attention masks (`causal` crosses
    /// document boundaries, `document` is causal inside each document).
    Clm,
}

/// The `[compare]` section.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CompareSection {
    /// `mlm` (masking strategies) or `clm` (attention masks of a decoder on packed rows).
    pub task: CompareTask,
    /// Strategies to run, by name. MLM: built-ins `static`, `dynamic`, `wwm`, `span`, `schedule`,
    /// `adaptive`, `pmi`, `adaptive-decay`, `adaptive-token-id` ([`BUILTIN_STRATEGIES`]) or the name of
    /// a `[strategies.NAME]` table; CLM: `causal`, `document`.
    pub strategies: Vec<String>,
    /// The strategy every other one is compared against. Default: `dynamic` for MLM and `document`
    /// for CLM when listed, else the first strategy.
    pub baseline: Option<String>,
    /// Seeds per strategy (runs use seeds 1..=seeds). The same seed gives every strategy the same
    /// initial weights and the same data order (paired runs).
    pub seeds: u64,
    /// Dupe factor K of the built-in `static` strategy (BERT's K differently masked copies).
    pub dupe_factor: u32,
    /// Data-repetition regimes: for each E, every run trains on a corpus subset sized so that the
    /// equal token budget reads each of its rows E times. Empty: one regime, the whole corpus.
    pub regimes: Vec<u32>,
    /// Where the data, the runs and the report go.
    pub output_dir: PathBuf,
    /// Worker threads (0 = all cores).
    pub threads: usize,
    /// Runs trained at once in this process, each with `threads / jobs` worker threads. A run's
    /// results depend on its own thread count only, so they equal, bit for bit, those of a
    /// comparison with `threads = threads / jobs` and `jobs = 1`. A small model's step does not scale
    /// to two threads, so two one-thread runs side by side finish sooner than two two-thread runs in
    /// turn.
    pub jobs: usize,
    /// Use only the first this many documents (lines) of the corpus; 0 = all.
    pub max_documents: usize,
    /// Evaluate on the fixed validation masks every this many steps.
    pub eval_every_steps: u64,
    /// Validation batches (fixed masks, the same for every run); also the out-of-domain batches.
    pub eval_batches: usize,
    /// Rows per evaluation batch.
    pub eval_batch_size: usize,
    /// Text of another domain for the out-of-domain validation (fixed masks, the run's tokenizer):
    /// files or `builtin:us-inaugural`; empty = not measured.
    pub ood_inputs: Vec<PathBuf>,
    /// Zero-shot minimal pairs (BLiMP JSONL file or directory, or `builtin:blimp-sample`); empty =
    /// not measured.
    pub minimal_pairs: PathBuf,
    /// Use at most this many pairs per phenomenon (UID); 0 = all.
    pub minimal_pairs_per_uid: usize,
}

impl Default for CompareSection {
    fn default() -> Self {
        Self {
            task: CompareTask::Mlm,
            strategies: vec!["static".into(), "dynamic".into()],
            baseline: None,
            seeds: 4,
            dupe_factor: 10,
            regimes: vec![1, 4, 16, 64],
            output_dir: PathBuf::from("runs/compare"),
            threads: 2,
            jobs: 1,
            max_documents: 0,
            eval_every_steps: 64,
            eval_batches: 8,
            eval_batch_size: 32,
            ood_inputs: vec![PathBuf::from("builtin:us-inaugural")],
            minimal_pairs: PathBuf::from("builtin:blimp-sample"),
            minimal_pairs_per_uid: 5,
        }
    }
}

/// The whole comparison.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompareConfig {
    #[serde(default)]
    pub compare: CompareSection,
    #[serde(default = "default_data")]
    pub data: DataConfig,
    /// The model (its `vocab_size` is taken from the trained tokenizer).
    #[serde(default = "default_model")]
    pub model: ModelConfig,
    #[serde(default = "default_optimizer")]
    pub optimizer: OptimizerConfig,
    #[serde(default = "default_schedule")]
    pub schedule: ScheduleConfig,
    /// The equal budget: the same for every run.
    #[serde(default = "default_budget")]
    pub budget: BudgetConfig,
    /// Extra or overriding MLM strategies: `[strategies.NAME]` is a `[masking]` section.
    #[serde(default)]
    pub strategies: BTreeMap<String, MaskingConfig>,
}

fn default_data() -> DataConfig {
    let mut d = DataConfig {
        seq_len: 64,
        validation_share: 0.05,
        ..DataConfig::default()
    };
    d.tokenizer.vocab_size = 1024;
    d
}

fn default_model() -> ModelConfig {
    ModelConfig {
        arch: Arch::Encoder,
        vocab_size: 1024,
        d_model: 128,
        n_heads: 4,
        n_layers: 2,
        d_ff: 512,
        max_positions: 64,
        // Pre-LN trains fastest at this budget (post-LN, BERT's placement, reached a higher loss).
        norm: NormPlacement::Pre,
        dropout: 0.0,
        ..ModelConfig::default()
    }
}

fn default_optimizer() -> OptimizerConfig {
    // 16 rows per step: at this budget more, smaller steps learn faster than 32-row steps (measured
    // on the whole corpus at 1.5 M tokens: validation loss 5.346 vs 5.394).
    OptimizerConfig {
        lr: 2e-3,
        batch_size: 16,
        micro_batch_size: 0,
        grad_clip: 1.0,
        ..OptimizerConfig::default()
    }
}

fn default_schedule() -> ScheduleConfig {
    ScheduleConfig {
        warmup_steps: 60,
        ..ScheduleConfig::default()
    }
}

fn default_budget() -> BudgetConfig {
    // 512 steps x 16 rows x 64 positions = 524,288 row positions per run.
    BudgetConfig {
        steps: Some(512),
        ..BudgetConfig::default()
    }
}

impl Default for CompareConfig {
    fn default() -> Self {
        Self {
            compare: CompareSection::default(),
            data: default_data(),
            model: default_model(),
            optimizer: default_optimizer(),
            schedule: default_schedule(),
            budget: default_budget(),
            strategies: BTreeMap::new(),
        }
    }
}

/// Names of the built-in MLM strategies.
pub const BUILTIN_STRATEGIES: [&str; 9] = [
    "static",
    "dynamic",
    "wwm",
    "span",
    "schedule",
    "adaptive",
    "pmi",
    "adaptive-decay",
    "adaptive-token-id",
];
/// Names of the built-in CLM strategies (attention masks of a decoder on packed rows).
pub const CLM_STRATEGIES: [&str; 2] = ["causal", "document"];
/// Names of the presets (`remask compare --preset NAME`).
pub const PRESETS: [&str; 4] = ["default", "thorough", "clm", "leaderboard"];

/// One compared strategy, resolved: the MLM masking it trains with and the attention mask of its
/// model.
#[derive(Clone, Debug, PartialEq)]
pub struct Strategy {
    pub name: String,
    /// MLM masking (unused by CLM runs, which train on next-token labels).
    pub masking: MaskingConfig,
    pub attention: AttentionMaskSpec,
}

impl CompareConfig {
    /// A named preset: `default` (the regime map that finishes in about 10 minutes on 2 cores),
    /// `thorough` (larger models that learn from context, more seeds, up to an hour) or `clm` (the
    /// leakage experiment: plain causal vs document-causal decoders on packed rows).
    pub fn preset(name: &str) -> Result<Self> {
        let mut c = CompareConfig::default();
        match name {
            "default" => {}
            "thorough" => {
                // Models that learn from context: 12.5x the default's tokens per run (6.6 M: the
                // validation loss ends about 0.65 nats below the unigram loss, against 0.40 for
                // the default), five paired seeds, three regimes from the least repetition this
                // budget allows (E = 5: 20,480 of the 24,281 training rows) to E = 64, and two runs
                // at a time on one thread each (this model's step does not scale to two threads).
                // About 55 minutes on 2 cores; 2000 steps would take about 63 (projected from their
                // first round of runs), which is why the budget is not larger.
                c.compare.seeds = 5;
                c.compare.regimes = vec![5, 16, 64];
                c.compare.jobs = 2;
                c.compare.output_dir = PathBuf::from("runs/compare-thorough");
                c.compare.eval_every_steps = 100;
                c.compare.eval_batches = 16;
                c.compare.minimal_pairs_per_uid = 20;
                c.optimizer.batch_size = 64;
                c.optimizer.lr = 3e-3;
                c.budget.steps = Some(1600);
            }
            "clm" => {
                c.compare.task = CompareTask::Clm;
                c.compare.strategies = vec!["causal".into(), "document".into()];
                c.compare.seeds = 6;
                c.compare.regimes = Vec::new();
                c.compare.output_dir = PathBuf::from("runs/compare-clm");
                c.compare.eval_every_steps = 100;
                c.compare.minimal_pairs_per_uid = 20;
                c.model.arch = Arch::Decoder;
                c.model.attention = AttentionMaskSpec::Causal;
                c.budget.steps = Some(1200);
            }
            "leaderboard" => {
                // Every built-in MLM strategy against dynamic (listed first) over the whole corpus:
                // the default model, budget and seeds, one regime.
                let mut all = vec!["dynamic".to_string()];
                all.extend(
                    BUILTIN_STRATEGIES
                        .iter()
                        .filter(|s| **s != "dynamic")
                        .map(|s| s.to_string()),
                );
                c.compare.strategies = all;
                c.compare.regimes = Vec::new();
                c.compare.output_dir = PathBuf::from("runs/leaderboard");
            }
            other => {
                return Err(Error::config(
                    "compare.preset",
                    format!(
                        "unknown preset `{other}`: use one of {}",
                        PRESETS.join(", ")
                    ),
                ))
            }
        }
        Ok(c)
    }

    /// Parses TOML text (unknown keys are errors that name their path) and validates.
    pub fn from_toml_str(text: &str) -> Result<Self> {
        let value: toml::Value = text
            .parse::<toml::Table>()
            .map(toml::Value::Table)
            .map_err(|e| {
                Error::data(
                    crate::train::config::CONFIG_TEXT,
                    crate::train::config::toml_syntax_error(text, &e),
                )
            })?;
        let cfg: CompareConfig = serde_path_to_error::deserialize(value).map_err(|e| {
            let path = e.path().to_string();
            // toml appends "\nin `section`" lines; the key path already says where.
            Error::config(
                path,
                e.inner()
                    .to_string()
                    .lines()
                    .next()
                    .unwrap_or_default()
                    .trim()
                    .to_string(),
            )
        })?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// The baseline strategy's name (see [`CompareSection::baseline`]).
    pub fn baseline(&self) -> String {
        let c = &self.compare;
        if let Some(b) = &c.baseline {
            return b.clone();
        }
        let preferred = match c.task {
            CompareTask::Mlm => "dynamic",
            CompareTask::Clm => "document",
        };
        if c.strategies.iter().any(|s| s == preferred) {
            preferred.to_string()
        } else {
            c.strategies.first().cloned().unwrap_or_default()
        }
    }

    /// Training steps of every run (the equal budget): `budget.steps`, or `budget.tokens` in steps of
    /// `optimizer.batch_size` full rows. `None` for an epoch budget.
    pub fn budget_steps(&self) -> Option<u64> {
        let rows_per_step = (self.optimizer.batch_size as u64).max(1);
        match (self.budget.steps, self.budget.tokens) {
            (Some(s), _) => Some(s),
            (None, Some(t)) => Some(t.div_ceil(rows_per_step * self.data.seq_len as u64)),
            (None, None) => None,
        }
    }

    /// Checks the comparison's own values and every strategy.
    pub fn validate(&self) -> Result<()> {
        let c = &self.compare;
        if c.strategies.is_empty() {
            return Err(Error::config(
                "compare.strategies",
                "name at least one strategy",
            ));
        }
        if c.seeds == 0 || c.seeds > 100 {
            return Err(Error::config(
                "compare.seeds",
                format!("must be between 1 and 100, got {}", c.seeds),
            ));
        }
        if c.jobs == 0 || (c.threads > 0 && c.jobs > c.threads) {
            return Err(Error::config(
                "compare.jobs",
                format!(
                    "runs trained at once must be at least 1 and at most compare.threads ({}), got {}",
                    c.threads, c.jobs
                ),
            ));
        }
        if c.eval_every_steps == 0 || c.eval_batches == 0 || c.eval_batch_size == 0 {
            return Err(Error::config(
                "compare.eval_every_steps",
                "evaluation cadence, batches and batch size must be at least 1",
            ));
        }
        let want_arch = match c.task {
            CompareTask::Mlm => Arch::Encoder,
            CompareTask::Clm => Arch::Decoder,
        };
        if self.model.arch != want_arch {
            return Err(Error::config(
                "model.arch",
                format!(
                    "compare.task = {:?} needs model.arch = {want_arch:?}, got {:?}",
                    c.task, self.model.arch
                )
                .to_lowercase(),
            ));
        }
        if self.budget.steps.is_none()
            && self.budget.tokens.is_none()
            && self.budget.epochs.is_none()
        {
            return Err(Error::config(
                "budget",
                "set one of steps, tokens or epochs",
            ));
        }
        if !c.regimes.is_empty() {
            if self.budget_steps().is_none() {
                return Err(Error::config("budget", "with compare.regimes the equal budget is steps or tokens (each regime's epochs follow from it)"));
            }
            if c.regimes.contains(&0) || c.regimes.windows(2).any(|w| w[0] >= w[1]) {
                return Err(Error::config(
                    "compare.regimes",
                    format!(
                        "epochs per regime must be increasing and at least 1, got {:?}",
                        c.regimes
                    ),
                ));
            }
        }
        self.data.validate("data")?;
        for (i, name) in c.strategies.iter().enumerate() {
            if c.strategies[..i].contains(name) {
                return Err(Error::config(
                    "compare.strategies",
                    format!("`{name}` is listed twice"),
                ));
            }
            let s = self.strategy(name)?;
            s.masking.validate(&format!("strategies.{name}"))?;
        }
        let base = self.baseline();
        if !c.strategies.contains(&base) {
            return Err(Error::config(
                "compare.baseline",
                format!(
                    "`{base}` is not one of the compared strategies ({})",
                    c.strategies.join(", ")
                ),
            ));
        }
        Ok(())
    }

    /// The strategy a name stands for.
    pub fn strategy(&self, name: &str) -> Result<Strategy> {
        match self.compare.task {
            CompareTask::Mlm => Ok(Strategy {
                name: name.to_string(),
                masking: self.masking_for(name)?,
                attention: self.model.attention,
            }),
            CompareTask::Clm => {
                let attention = match name {
                    "causal" => AttentionMaskSpec::Causal,
                    "document" => AttentionMaskSpec::Document { causal: true },
                    other => {
                        return Err(Error::config(
                            "compare.strategies",
                            format!("unknown CLM strategy `{other}`: use {} (attention masks of the decoder)", CLM_STRATEGIES.join(", ")),
                        ))
                    }
                };
                Ok(Strategy {
                    name: name.to_string(),
                    masking: MaskingConfig::default(),
                    attention,
                })
            }
        }
    }

    /// The MLM masking config a strategy name stands for.
    pub fn masking_for(&self, name: &str) -> Result<MaskingConfig> {
        if let Some(m) = self.strategies.get(name) {
            return Ok(m.clone());
        }
        let base = MaskingConfig::default();
        Ok(match name {
            "static" => MaskingConfig {
                when: When::Static {
                    dupe_factor: self.compare.dupe_factor,
                },
                ..base
            },
            "dynamic" => base,
            "wwm" => MaskingConfig {
                strategy: StrategyKind::WholeWord,
                ..base
            },
            "span" => MaskingConfig {
                strategy: StrategyKind::Span,
                ..base
            },
            "schedule" => MaskingConfig {
                rate: 0.30,
                final_rate: Some(0.15),
                schedule: ScheduleKind::Linear,
                ..base
            },
            "adaptive" => MaskingConfig {
                when: When::Adaptive {
                    temperature: 1.0,
                    decay: 0.9,
                    uniform_mix: 0.5,
                },
                ..base
            },
            // PMI masking (Levine et al. 2021) over the prepared directory's n-gram vocabulary.
            "pmi" => MaskingConfig {
                strategy: StrategyKind::Pmi,
                ..base
            },
            // Rate decay 30% → 15% (Ankner et al. 2023) with loss-weighted positions (Yang et al.
            // 2023 combine the two).
            "adaptive-decay" => MaskingConfig {
                rate: 0.30,
                final_rate: Some(0.15),
                schedule: ScheduleKind::Linear,
                when: When::Adaptive {
                    temperature: 1.0,
                    decay: 0.9,
                    uniform_mix: 0.5,
                },
                ..base
            },
            // A bounded masking probability per token id from its running loss (Edman & Fraser,
            // BabyLM 2025): p in [0.5, 2] × 15%, renormalised per row.
            "adaptive-token-id" => MaskingConfig {
                when: When::TokenId {
                    decay: 0.9,
                    floor: 0.5,
                    ceiling: 2.0,
                },
                ..base
            },
            other => {
                return Err(Error::config(
                    "compare.strategies",
                    format!(
                        "unknown strategy `{other}`: use one of {} or define [strategies.{other}]",
                        BUILTIN_STRATEGIES.join(", ")
                    ),
                ))
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_is_the_default_experiment() {
        let c = CompareConfig::from_toml_str("").unwrap();
        assert_eq!(c, CompareConfig::default());
        assert_eq!(c, CompareConfig::preset("default").unwrap());
        assert_eq!(c.compare.strategies, vec!["static", "dynamic"]);
        assert_eq!(c.baseline(), "dynamic");
        assert_eq!(c.masking_for("static").unwrap().dupe_factor(), Some(10));
    }

    /// The committed example configs are the presets spelled out.
    #[test]
    fn the_example_configs_spell_out_the_presets() {
        for (file, preset) in [
            ("compare.toml", "default"),
            ("compare-thorough.toml", "thorough"),
            ("compare-clm.toml", "clm"),
        ] {
            let path = format!("{}/../../configs/{file}", env!("CARGO_MANIFEST_DIR"));
            let mut c =
                CompareConfig::from_toml_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
            c.strategies.remove("hot-span");
            assert_eq!(c, CompareConfig::preset(preset).unwrap(), "{file}");
        }
    }

    #[test]
    fn unknown_keys_strategies_and_presets_name_the_path() {
        let e = CompareConfig::from_toml_str("[compare]\nseedz = 2")
            .unwrap_err()
            .to_string();
        assert!(e.contains("compare") && e.contains("seedz"), "{e}");
        let e = CompareConfig::from_toml_str("[compare]\nstrategies = [\"bogus\"]")
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown strategy `bogus`"), "{e}");
        let e = CompareConfig::from_toml_str(
            "[strategies.hot]\nrate = 1.5\n[compare]\nstrategies = [\"hot\"]\nbaseline = \"hot\"",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("strategies.hot.rate"), "{e}");
        let e = CompareConfig::preset("fast").unwrap_err().to_string();
        assert!(
            e.contains("compare.preset") && e.contains("thorough"),
            "{e}"
        );
    }

    #[test]
    fn baseline_regimes_and_task_are_checked() {
        let e = CompareConfig::from_toml_str("[compare]\nbaseline = \"span\"")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("compare.baseline") && e.contains("`span`"),
            "{e}"
        );
        let c =
            CompareConfig::from_toml_str("[compare]\nstrategies = [\"static\", \"wwm\"]").unwrap();
        assert_eq!(c.baseline(), "static");
        let e = CompareConfig::from_toml_str("[compare]\nregimes = [4, 1]")
            .unwrap_err()
            .to_string();
        assert!(e.contains("compare.regimes"), "{e}");
        let e = CompareConfig::from_toml_str("[budget]\nepochs = 2.0")
            .unwrap_err()
            .to_string();
        assert!(e.contains("`budget`") && e.contains("regimes"), "{e}");
        let e =
            CompareConfig::from_toml_str("[compare]\ntask = \"clm\"\nstrategies = [\"causal\"]")
                .unwrap_err()
                .to_string();
        assert!(e.contains("model.arch") && e.contains("decoder"), "{e}");
        let c = CompareConfig::preset("clm").unwrap();
        c.validate().unwrap();
        assert_eq!(c.baseline(), "document");
        assert_eq!(
            c.strategy("document").unwrap().attention,
            AttentionMaskSpec::Document { causal: true }
        );
        let mut bad = c.clone();
        bad.compare.strategies = vec!["static".into()];
        assert!(bad
            .validate()
            .unwrap_err()
            .to_string()
            .contains("unknown CLM strategy `static`"));
        CompareConfig::preset("thorough")
            .unwrap()
            .validate()
            .unwrap();
    }

    #[test]
    fn budget_in_tokens_gives_whole_steps() {
        let mut c = CompareConfig::default();
        c.optimizer.batch_size = 32;
        c.budget = BudgetConfig {
            tokens: Some(32 * 64 * 10 + 1),
            ..BudgetConfig::default()
        };
        assert_eq!(c.budget_steps(), Some(11));
    }

    #[test]
    fn every_builtin_strategy_is_valid_and_distinct() {
        let c = CompareConfig::default();
        let all: Vec<MaskingConfig> = BUILTIN_STRATEGIES
            .iter()
            .map(|n| c.masking_for(n).unwrap())
            .collect();
        for (i, m) in all.iter().enumerate() {
            m.validate("x").unwrap();
            assert!(
                all[..i].iter().all(|o| o != m),
                "{} duplicates another",
                BUILTIN_STRATEGIES[i]
            );
        }
    }
}
