//! The comparison's configuration: one model, one data set, one token budget, several masking
//! strategies and seeds. Every section has defaults that make up the embedded default experiment, so
//! `remask compare` with no file runs it.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::data::DataConfig;
use crate::masking::{MaskingConfig, ScheduleKind, StrategyKind, When};
use crate::model::{Arch, ModelConfig, NormPlacement};
use crate::train::config::{BudgetConfig, OptimizerConfig, ScheduleConfig};
use crate::{Error, Result};

/// The `[compare]` section.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CompareSection {
    /// Strategies to run, by name: built-ins (`static`, `dynamic`, `wwm`, `span`, `schedule`,
    /// `adaptive`) or the name of a `[strategies.NAME]` table. The first one is the baseline the
    /// verdicts compare against.
    pub strategies: Vec<String>,
    /// Seeds per strategy (runs use seeds 1..=seeds).
    pub seeds: u64,
    /// Dupe factor K of the built-in `static` strategy (BERT's K differently masked copies).
    pub dupe_factor: u32,
    /// Where the data, the runs and the report go.
    pub output_dir: PathBuf,
    /// Worker threads (0 = all cores).
    pub threads: usize,
    /// Use only the first this many documents (lines) of the corpus; 0 = all. A smaller corpus seen
    /// for more epochs is what separates static from dynamic masking (RoBERTa trained 40 epochs on
    /// K = 10 copies, so each static mask was seen 4 times).
    pub max_documents: usize,
    /// Evaluate on the fixed validation masks every this many steps.
    pub eval_every_steps: u64,
    /// Validation batches (fixed masks, the same for every run).
    pub eval_batches: usize,
    /// Rows per evaluation batch.
    pub eval_batch_size: usize,
}

impl Default for CompareSection {
    fn default() -> Self {
        Self {
            strategies: vec!["static".into(), "dynamic".into()],
            seeds: 3,
            dupe_factor: 10,
            output_dir: PathBuf::from("runs/compare"),
            threads: 2,
            max_documents: 2000,
            eval_every_steps: 40,
            eval_batches: 8,
            eval_batch_size: 32,
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
    /// Extra or overriding strategies: `[strategies.NAME]` is a `[masking]` section.
    #[serde(default)]
    pub strategies: BTreeMap<String, MaskingConfig>,
}

fn default_data() -> DataConfig {
    let mut d = DataConfig { seq_len: 64, validation_share: 0.2, ..DataConfig::default() };
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
    OptimizerConfig { lr: 3e-3, batch_size: 32, micro_batch_size: 0, grad_clip: 1.0, ..OptimizerConfig::default() }
}

fn default_schedule() -> ScheduleConfig {
    ScheduleConfig { warmup_steps: 50, ..ScheduleConfig::default() }
}

fn default_budget() -> BudgetConfig {
    BudgetConfig { steps: Some(800), ..BudgetConfig::default() }
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

/// Names of the built-in strategies.
pub const BUILTIN_STRATEGIES: [&str; 8] = ["static", "dynamic", "wwm", "span", "schedule", "adaptive", "pmi", "adaptive-decay"];

impl CompareConfig {
    /// Parses TOML text (unknown keys are errors that name their path) and validates.
    pub fn from_toml_str(text: &str) -> Result<Self> {
        let value: toml::Value = text
            .parse::<toml::Table>()
            .map(toml::Value::Table)
            .map_err(|e| Error::data(crate::train::config::CONFIG_TEXT, crate::train::config::toml_syntax_error(text, &e)))?;
        let cfg: CompareConfig = serde_path_to_error::deserialize(value).map_err(|e| {
            let path = e.path().to_string();
            // toml appends "\nin `section`" lines; the key path already says where.
            Error::config(path, e.inner().to_string().lines().next().unwrap_or_default().trim().to_string())
        })?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Checks the comparison's own values and every strategy's masking config.
    pub fn validate(&self) -> Result<()> {
        let c = &self.compare;
        if c.strategies.is_empty() {
            return Err(Error::config("compare.strategies", "name at least one strategy"));
        }
        if c.seeds == 0 || c.seeds > 100 {
            return Err(Error::config("compare.seeds", format!("must be between 1 and 100, got {}", c.seeds)));
        }
        if c.eval_every_steps == 0 || c.eval_batches == 0 || c.eval_batch_size == 0 {
            return Err(Error::config("compare.eval_every_steps", "evaluation cadence, batches and batch size must be at least 1"));
        }
        if self.model.arch != Arch::Encoder {
            return Err(Error::config("model.arch", "the comparison of MLM masking strategies needs `encoder`"));
        }
        if self.budget.steps.is_none() && self.budget.tokens.is_none() && self.budget.epochs.is_none() {
            return Err(Error::config("budget", "set one of steps, tokens or epochs"));
        }
        self.data.validate("data")?;
        for (i, name) in c.strategies.iter().enumerate() {
            if c.strategies[..i].contains(name) {
                return Err(Error::config("compare.strategies", format!("`{name}` is listed twice")));
            }
            self.masking_for(name)?.validate(&format!("strategies.{name}"))?;
        }
        Ok(())
    }

    /// The masking config a strategy name stands for.
    pub fn masking_for(&self, name: &str) -> Result<MaskingConfig> {
        if let Some(m) = self.strategies.get(name) {
            return Ok(m.clone());
        }
        let base = MaskingConfig::default();
        Ok(match name {
            "static" => MaskingConfig { when: When::Static { dupe_factor: self.compare.dupe_factor }, ..base },
            "dynamic" => base,
            "wwm" => MaskingConfig { strategy: StrategyKind::WholeWord, ..base },
            "span" => MaskingConfig { strategy: StrategyKind::Span, ..base },
            "schedule" => MaskingConfig {
                rate: 0.30,
                final_rate: Some(0.15),
                schedule: ScheduleKind::Linear,
                ..base
            },
            "adaptive" => MaskingConfig {
                when: When::Adaptive { temperature: 1.0, decay: 0.9, uniform_mix: 0.5 },
                ..base
            },
            // PMI masking (Levine et al. 2021) over the prepared directory's n-gram vocabulary.
            "pmi" => MaskingConfig { strategy: StrategyKind::Pmi, ..base },
            // Rate decay 30% → 15% (Ankner et al. 2023) with loss-weighted positions (Yang et al.
            // 2023 combine the two).
            "adaptive-decay" => MaskingConfig {
                rate: 0.30,
                final_rate: Some(0.15),
                schedule: ScheduleKind::Linear,
                when: When::Adaptive { temperature: 1.0, decay: 0.9, uniform_mix: 0.5 },
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
        assert_eq!(c.compare.strategies, vec!["static", "dynamic"]);
        assert_eq!(c.masking_for("static").unwrap().dupe_factor(), Some(10));
    }

    #[test]
    fn the_example_config_spells_out_the_default() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../configs/compare.toml");
        let mut c = CompareConfig::from_toml_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        assert!(c.strategies.remove("hot-span").is_some());
        assert_eq!(c, CompareConfig::default());
    }

    #[test]
    fn unknown_keys_and_strategies_name_the_path() {
        let e = CompareConfig::from_toml_str("[compare]\nseedz = 2").unwrap_err().to_string();
        assert!(e.contains("compare") && e.contains("seedz"), "{e}");
        let e = CompareConfig::from_toml_str("[compare]\nstrategies = [\"bogus\"]").unwrap_err().to_string();
        assert!(e.contains("unknown strategy `bogus`"), "{e}");
        let e = CompareConfig::from_toml_str("[strategies.hot]\nrate = 1.5\n[compare]\nstrategies = [\"hot\"]")
            .unwrap_err()
            .to_string();
        assert!(e.contains("strategies.hot.rate"), "{e}");
    }

    #[test]
    fn every_builtin_strategy_is_valid_and_distinct() {
        let c = CompareConfig::default();
        let all: Vec<MaskingConfig> = BUILTIN_STRATEGIES.iter().map(|n| c.masking_for(n).unwrap()).collect();
        for (i, m) in all.iter().enumerate() {
            m.validate("x").unwrap();
            assert!(all[..i].iter().all(|o| o != m), "{} duplicates another", BUILTIN_STRATEGIES[i]);
        }
    }
}
