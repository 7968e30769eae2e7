//! `MaskingConfig`: the `[masking]` section of a run config. Every field has a documented default, so
//! an empty section gives BERT's recipe: 15% of eligible tokens, chosen one by one, corrupted 80/10/10,
//! masks decided when the batch is built (RoBERTa's dynamic masking).

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// How positions are chosen.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StrategyKind {
    /// Each eligible token on its own (BERT).
    #[default]
    Token,
    /// Whole words: all sub-word pieces of a chosen word (word boundaries from the tokenizer's
    /// pre-tokenizer; for Chinese text, words from jieba).
    WholeWord,
    /// Contiguous spans of whole words with geometric lengths (SpanBERT).
    Span,
    /// PMI masking (Levine et al., ICLR 2021): n-grams of 2–5 words from the prepared directory's
    /// n-gram vocabulary (ranked by PMI_n over the training split) are masked as units, like whole
    /// words; single words fill the rest of the rate. Settings: [`PmiConfig`].
    Pmi,
}

impl StrategyKind {
    /// The name configs use.
    pub fn name(self) -> &'static str {
        match self {
            StrategyKind::Token => "token",
            StrategyKind::WholeWord => "whole-word",
            StrategyKind::Span => "span",
            StrategyKind::Pmi => "pmi",
        }
    }
}

/// How the number of chosen positions per row follows from the rate.
///
/// - `bernoulli`: every unit (token or word) is chosen independently with probability `rate`; the count
///   varies from row to row (binomial). For span masking the token budget is drawn as Binomial(n, rate).
/// - `exact`: the budget is `rate · n` rounded probabilistically (floor, plus one with probability equal
///   to the fractional part), so the expectation is exactly `rate · n` and the spread is at most one.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CountRule {
    Bernoulli,
    #[default]
    Exact,
}

/// How the masking rate moves over training (`progress` in [0, 1]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ScheduleKind {
    /// `rate` throughout.
    #[default]
    Constant,
    /// From `rate` at progress 0 to `final_rate` at progress 1 in a straight line.
    Linear,
    /// From `rate` to `final_rate` along half a cosine (slow at both ends).
    Cosine,
}

impl ScheduleKind {
    /// The name configs use.
    pub fn name(self) -> &'static str {
        match self {
            ScheduleKind::Constant => "constant",
            ScheduleKind::Linear => "linear",
            ScheduleKind::Cosine => "cosine",
        }
    }
}

/// When masks are decided. The decision itself is [`super::MaskPlan`]'s: to add a mode, add a variant
/// here and an arm there.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "kebab-case", deny_unknown_fields)]
pub enum When {
    /// At `prepare` time: `dupe_factor` differently masked copies are stored; epoch e trains on copy
    /// e mod K (BERT's dupe factor; RoBERTa's static baseline uses K = 10).
    Static {
        /// K, the number of stored copies. Default 10.
        #[serde(default = "default_dupe_factor")]
        dupe_factor: u32,
    },
    /// When the batch is built, from an RNG keyed by (seed, epoch, global sample index).
    Dynamic,
    /// When the batch is built, with position weights from the trainer's feedback (a running loss per
    /// token id), mixed with uniform by a temperature; the expected mask budget is unchanged.
    Adaptive {
        /// Softmax temperature over the normalised per-token loss; large → uniform. Default 1.0.
        #[serde(default = "default_temperature")]
        temperature: f32,
        /// Weight of the old value in the running loss per token id (exponential moving average).
        /// Default 0.9.
        #[serde(default = "default_decay")]
        decay: f32,
        /// Share of uniform weight mixed into the loss-driven weights, so no token is starved.
        /// Default 0.5.
        #[serde(default = "default_uniform_mix")]
        uniform_mix: f32,
    },
    /// When the batch is built, with a masking probability per token id (Edman & Fraser, BabyLM 2025):
    /// proportional to the running loss on that id (exponential moving average of the trainer's
    /// feedback), renormalised per row so the expected count is `rate · n`, and kept within
    /// [`floor · rate`, `ceiling · rate`] so no token is never or always masked. Token-level masking
    /// only (`strategy = "token"`). The rule: `docs/strategies.md`, `masking::token_id`.
    TokenId {
        /// Weight of the old value in the running loss per token id. Default 0.9.
        #[serde(default = "default_decay")]
        decay: f32,
        /// Lowest masking probability of a position, as a multiple of the rate; in (0, 1]. Default 0.5.
        #[serde(default = "default_floor")]
        floor: f32,
        /// Highest masking probability of a position, as a multiple of the rate; at least 1, and
        /// `ceiling · rate` below 1. Default 2.0.
        #[serde(default = "default_ceiling")]
        ceiling: f32,
    },
}

impl Default for When {
    fn default() -> Self {
        When::Dynamic
    }
}

/// Word segmentation hint, used where word boundaries are computed (`prepare`, `inspect`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Language {
    /// Documents containing CJK characters are segmented with jieba, others by the tokenizer.
    #[default]
    Auto,
    /// Word boundaries from the tokenizer's pre-tokenizer only.
    Other,
    /// Always segment with jieba (Chinese).
    Zh,
}

/// SpanBERT's span length distribution: geometric in words, capped.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpanConfig {
    /// Success probability p of the geometric length distribution (mean ≈ 1/p before capping).
    /// Default 0.2 (SpanBERT).
    #[serde(default = "default_span_p")]
    pub p: f32,
    /// Longest span, in words. Default 10 (SpanBERT).
    #[serde(default = "default_span_max")]
    pub max_words: u32,
}

/// The n-gram vocabulary of PMI masking (`[masking] pmi = { ... }`). `prepare` builds it from the
/// training split's counts and stores it as `ngrams.bin` (see `masking::ngram_vocab`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PmiConfig {
    /// Size of the vocabulary: at most this many n-grams (the highest PMI_n first). Default 20000.
    #[serde(default = "default_pmi_ngrams")]
    pub ngrams: u32,
    /// An n-gram needs at least this many occurrences in the training split to be scored (PMI of
    /// rare n-grams is noise). Default 5.
    #[serde(default = "default_pmi_min_count")]
    pub min_count: u32,
}

impl Default for PmiConfig {
    fn default() -> Self {
        Self {
            ngrams: default_pmi_ngrams(),
            min_count: default_pmi_min_count(),
        }
    }
}

impl Default for SpanConfig {
    fn default() -> Self {
        Self {
            p: default_span_p(),
            max_words: default_span_max(),
        }
    }
}

/// The `[masking]` section.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MaskingConfig {
    /// Which positions are chosen: `token` (default), `whole-word`, `span`, `pmi`.
    pub strategy: StrategyKind,
    /// How the count follows from the rate: `exact` (default) or `bernoulli`.
    pub count: CountRule,
    /// Share of eligible tokens chosen (at progress 0 for a schedule). Default 0.15.
    pub rate: f32,
    /// Rate schedule over training: `constant` (default), `linear`, `cosine`.
    pub schedule: ScheduleKind,
    /// Rate at the end of training for `linear` / `cosine` schedules. Default: equal to `rate`.
    pub final_rate: Option<f32>,
    /// Share of chosen positions replaced by the mask token. Default 0.8.
    pub mask_share: f32,
    /// Share of chosen positions replaced by a random (non-special) token. Default 0.1.
    pub random_share: f32,
    /// Share of chosen positions left unchanged (still predicted). Default 0.1.
    pub unchanged_share: f32,
    /// Draw random replacements by corpus frequency instead of uniformly over the vocabulary.
    /// Default false.
    pub frequency_weighted_random: bool,
    /// Span length distribution (strategy `span`).
    pub span: SpanConfig,
    /// The n-gram vocabulary of strategy `pmi` (`prepare` builds it then).
    pub pmi: PmiConfig,
    /// When masks are decided: `{ mode = "dynamic" }` (default), `{ mode = "static", dupe_factor = 10 }`,
    /// `{ mode = "adaptive", temperature = 1.0, decay = 0.9, uniform_mix = 0.5 }`,
    /// `{ mode = "token-id", decay = 0.9, floor = 0.5, ceiling = 2.0 }`.
    pub when: When,
    /// Word segmentation hint for whole-word and span masking: `auto` (default), `other`, `zh`.
    pub language: Language,
}

impl Default for MaskingConfig {
    fn default() -> Self {
        Self {
            strategy: StrategyKind::Token,
            count: CountRule::Exact,
            rate: 0.15,
            schedule: ScheduleKind::Constant,
            final_rate: None,
            mask_share: 0.8,
            random_share: 0.1,
            unchanged_share: 0.1,
            frequency_weighted_random: false,
            span: SpanConfig::default(),
            pmi: PmiConfig::default(),
            when: When::Dynamic,
            language: Language::Auto,
        }
    }
}

fn default_dupe_factor() -> u32 {
    10
}
fn default_temperature() -> f32 {
    1.0
}
fn default_decay() -> f32 {
    0.9
}
fn default_uniform_mix() -> f32 {
    0.5
}
fn default_floor() -> f32 {
    0.5
}
fn default_ceiling() -> f32 {
    2.0
}
fn default_pmi_ngrams() -> u32 {
    20_000
}
fn default_pmi_min_count() -> u32 {
    5
}
fn default_span_p() -> f32 {
    0.2
}
fn default_span_max() -> u32 {
    10
}

impl MaskingConfig {
    /// Checks every value; errors name the dotted key under `prefix` (e.g. `masking`).
    pub fn validate(&self, prefix: &str) -> Result<()> {
        let key = |k: &str| {
            if prefix.is_empty() {
                k.to_string()
            } else {
                format!("{prefix}.{k}")
            }
        };
        let open_unit = |k: &str, v: f32| {
            if v.is_finite() && v > 0.0 && v < 1.0 {
                Ok(())
            } else {
                Err(Error::config(
                    key(k),
                    format!("must lie strictly between 0 and 1, got {v}"),
                ))
            }
        };
        open_unit("rate", self.rate)?;
        if let Some(r) = self.final_rate {
            open_unit("final_rate", r)?;
        }
        for (k, v) in [
            ("mask_share", self.mask_share),
            ("random_share", self.random_share),
            ("unchanged_share", self.unchanged_share),
        ] {
            if !(v.is_finite() && (0.0..=1.0).contains(&v)) {
                return Err(Error::config(
                    key(k),
                    format!("must lie in [0, 1], got {v}"),
                ));
            }
        }
        let sum = self.mask_share + self.random_share + self.unchanged_share;
        if (sum - 1.0).abs() > 1e-4 {
            return Err(Error::config(
                key("mask_share"),
                format!("mask_share + random_share + unchanged_share must be 1, got {sum}"),
            ));
        }
        open_unit("span.p", self.span.p)?;
        if self.span.max_words == 0 {
            return Err(Error::config(key("span.max_words"), "must be at least 1"));
        }
        if self.pmi.ngrams == 0 || self.pmi.ngrams > 10_000_000 {
            return Err(Error::config(
                key("pmi.ngrams"),
                format!("must be between 1 and 10000000, got {}", self.pmi.ngrams),
            ));
        }
        if self.pmi.min_count < 2 {
            return Err(Error::config(
                key("pmi.min_count"),
                format!("must be at least 2 (an n-gram seen once has no measurable collocation), got {}", self.pmi.min_count),
            ));
        }
        if self.final_rate.is_some() && self.schedule == ScheduleKind::Constant {
            return Err(Error::config(
                key("final_rate"),
                format!(
                    "only a \"linear\" or \"cosine\" `{}` moves the rate to final_rate; with \"constant\" it would be ignored: remove final_rate or choose a schedule",
                    key("schedule")
                ),
            ));
        }
        match self.when {
            When::Static { .. } if self.schedule != ScheduleKind::Constant => {
                return Err(Error::config(
                    key("when"),
                    format!(
                        "static masks are decided once, at `prepare` time and at one rate, so they cannot follow `{}` = \"{}\": set it to \"constant\", or use when = {{ mode = \"dynamic\" }} to keep the schedule",
                        key("schedule"),
                        self.schedule.name()
                    ),
                ));
            }
            When::Static { dupe_factor } => {
                if dupe_factor == 0 || dupe_factor > 1000 {
                    return Err(Error::config(
                        key("when.dupe_factor"),
                        format!("must be between 1 and 1000, got {dupe_factor}"),
                    ));
                }
            }
            When::Dynamic => {}
            When::Adaptive {
                temperature,
                decay,
                uniform_mix,
            } => {
                if !(temperature.is_finite() && temperature > 0.0) {
                    return Err(Error::config(
                        key("when.temperature"),
                        format!("must be > 0, got {temperature}"),
                    ));
                }
                if !(decay.is_finite() && (0.0..1.0).contains(&decay)) {
                    return Err(Error::config(
                        key("when.decay"),
                        format!("must lie in [0, 1), got {decay}"),
                    ));
                }
                if !(uniform_mix.is_finite() && (0.0..=1.0).contains(&uniform_mix)) {
                    return Err(Error::config(
                        key("when.uniform_mix"),
                        format!("must lie in [0, 1], got {uniform_mix}"),
                    ));
                }
            }
            When::TokenId {
                decay,
                floor,
                ceiling,
            } => {
                if !(decay.is_finite() && (0.0..1.0).contains(&decay)) {
                    return Err(Error::config(
                        key("when.decay"),
                        format!("must lie in [0, 1), got {decay}"),
                    ));
                }
                if !(floor.is_finite() && floor > 0.0 && floor <= 1.0) {
                    return Err(Error::config(
                        key("when.floor"),
                        format!("must lie in (0, 1] (a multiple of the rate; 0 would let a token never be masked), got {floor}"),
                    ));
                }
                if !(ceiling.is_finite() && ceiling >= 1.0) {
                    return Err(Error::config(
                        key("when.ceiling"),
                        format!("must be at least 1 (a multiple of the rate), got {ceiling}"),
                    ));
                }
                let top = self.rate.max(self.final_rate.unwrap_or(self.rate));
                if ceiling * top >= 1.0 {
                    return Err(Error::config(
                        key("when.ceiling"),
                        format!(
                            "{ceiling} × the highest rate {top} (`{}` / `{}`) reaches 1, so a token could always be masked: lower one of them",
                            key("rate"),
                            key("final_rate")
                        ),
                    ));
                }
                if self.strategy != StrategyKind::Token {
                    return Err(Error::config(
                        key("when"),
                        format!(
                            "mode \"token-id\" sets a masking probability per token id, so it needs `{}` = \"token\", got \"{}\"",
                            key("strategy"),
                            self.strategy.name()
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    /// The masking rate at `progress` ∈ [0, 1] of training.
    pub fn rate_at(&self, progress: f32) -> f32 {
        let p = if progress.is_finite() {
            progress.clamp(0.0, 1.0)
        } else {
            0.0
        };
        let end = self.final_rate.unwrap_or(self.rate);
        match self.schedule {
            ScheduleKind::Constant => self.rate,
            ScheduleKind::Linear => self.rate + (end - self.rate) * p,
            ScheduleKind::Cosine => {
                end + (self.rate - end) * 0.5 * (1.0 + (std::f32::consts::PI * p).cos())
            }
        }
    }

    /// True when masking needs the training split's token frequencies (frequency-weighted random
    /// replacement), so that callers read them only then.
    pub fn needs_token_counts(&self) -> bool {
        self.frequency_weighted_random
    }

    /// True when masking needs the prepared directory's n-gram vocabulary (strategy `pmi`), so that
    /// callers read it only then.
    pub fn needs_ngrams(&self) -> bool {
        self.strategy == StrategyKind::Pmi
    }

    /// The number of stored static copies, or `None` when masks are decided at batch time.
    pub fn dupe_factor(&self) -> Option<u32> {
        match self.when {
            When::Static { dupe_factor } => Some(dupe_factor),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_section_gives_bert_defaults() {
        let c: MaskingConfig = toml::from_str("").unwrap();
        assert_eq!(c, MaskingConfig::default());
        c.validate("masking").unwrap();
        assert_eq!(c.rate, 0.15);
        assert_eq!(c.when, When::Dynamic);
    }

    #[test]
    fn parses_tagged_when_and_rejects_unknown_keys() {
        let c: MaskingConfig =
            toml::from_str("strategy = \"span\"\nwhen = { mode = \"static\", dupe_factor = 4 }")
                .unwrap();
        assert_eq!(c.strategy, StrategyKind::Span);
        assert_eq!(c.dupe_factor(), Some(4));
        let c: MaskingConfig =
            toml::from_str("when = { mode = \"adaptive\", temperature = 2.0 }").unwrap();
        assert!(
            matches!(c.when, When::Adaptive { temperature, decay, .. } if temperature == 2.0 && decay == 0.9)
        );
        assert!(toml::from_str::<MaskingConfig>("rat = 0.2").is_err());
        assert!(toml::from_str::<MaskingConfig>("when = { mode = \"static\", dupe = 2 }").is_err());
    }

    #[test]
    fn validation_names_the_dotted_key() {
        let c = MaskingConfig {
            rate: 1.5,
            ..Default::default()
        };
        let e = c.validate("masking").unwrap_err().to_string();
        assert!(e.contains("masking.rate") && e.contains("1.5"), "{e}");
        let c = MaskingConfig {
            random_share: 0.3,
            ..Default::default()
        };
        assert!(c
            .validate("masking")
            .unwrap_err()
            .to_string()
            .contains("masking.mask_share"));
        let c = MaskingConfig {
            when: When::Static { dupe_factor: 0 },
            ..Default::default()
        };
        assert!(c
            .validate("masking")
            .unwrap_err()
            .to_string()
            .contains("masking.when.dupe_factor"));
    }

    #[test]
    fn invalid_combinations_name_both_keys() {
        // Static copies are made once, at one rate: a schedule would be silently ignored.
        for schedule in [ScheduleKind::Linear, ScheduleKind::Cosine] {
            let c = MaskingConfig {
                schedule,
                final_rate: Some(0.1),
                when: When::Static { dupe_factor: 2 },
                ..Default::default()
            };
            let e = c.validate("strategies.x").unwrap_err().to_string();
            assert!(
                e.contains("strategies.x.when") && e.contains("strategies.x.schedule"),
                "{e}"
            );
            assert!(c
                .validate("masking")
                .unwrap_err()
                .to_string()
                .contains("`masking.when`"));
        }
        // The same schedule with dynamic or adaptive masks is fine.
        for when in [
            When::Dynamic,
            When::Adaptive {
                temperature: 1.0,
                decay: 0.9,
                uniform_mix: 0.5,
            },
        ] {
            let c = MaskingConfig {
                schedule: ScheduleKind::Linear,
                final_rate: Some(0.1),
                when,
                ..Default::default()
            };
            c.validate("masking").unwrap();
        }
        // A final rate without a schedule would be ignored.
        let c = MaskingConfig {
            final_rate: Some(0.1),
            ..Default::default()
        };
        let e = c.validate("masking").unwrap_err().to_string();
        assert!(
            e.contains("masking.final_rate") && e.contains("masking.schedule"),
            "{e}"
        );
        // Adaptive-only keys under a static `when` are refused when parsed, naming the key.
        let e = toml::from_str::<MaskingConfig>("when = { mode = \"static\", temperature = 2.0 }")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("temperature") && e.contains("dupe_factor"),
            "{e}"
        );
    }

    #[test]
    fn token_id_parses_with_defaults_and_refuses_bad_bounds_naming_the_key() {
        let c: MaskingConfig = toml::from_str("when = { mode = \"token-id\" }").unwrap();
        assert_eq!(
            c.when,
            When::TokenId {
                decay: 0.9,
                floor: 0.5,
                ceiling: 2.0
            }
        );
        c.validate("masking").unwrap();
        // With a decaying rate the ceiling applies to the highest rate: 2 × 0.3 = 0.6 is fine.
        let c = MaskingConfig {
            rate: 0.3,
            final_rate: Some(0.15),
            schedule: ScheduleKind::Linear,
            ..c
        };
        c.validate("masking").unwrap();
        let when = |decay, floor, ceiling| MaskingConfig {
            when: When::TokenId {
                decay,
                floor,
                ceiling,
            },
            ..Default::default()
        };
        for (c, k) in [
            (when(1.0, 0.5, 2.0), "masking.when.decay"),
            (when(0.9, 0.0, 2.0), "masking.when.floor"),
            (when(0.9, 1.5, 2.0), "masking.when.floor"),
            (when(0.9, 0.5, 0.9), "masking.when.ceiling"),
            (when(0.9, 0.5, f32::NAN), "masking.when.ceiling"),
        ] {
            let e = c.validate("masking").unwrap_err().to_string();
            assert!(e.contains(k), "{k}: {e}");
        }
        // A ceiling that lets a token be masked always is refused, naming the rate too.
        let c = MaskingConfig {
            rate: 0.6,
            ..when(0.9, 0.5, 2.0)
        };
        let e = c.validate("masking").unwrap_err().to_string();
        assert!(
            e.contains("masking.when.ceiling") && e.contains("masking.rate"),
            "{e}"
        );
        // Probabilities are per token: other strategies are refused, naming both keys.
        let c = MaskingConfig {
            strategy: StrategyKind::WholeWord,
            ..when(0.9, 0.5, 2.0)
        };
        let e = c.validate("strategies.x").unwrap_err().to_string();
        assert!(
            e.contains("strategies.x.when")
                && e.contains("strategies.x.strategy")
                && e.contains("whole-word"),
            "{e}"
        );
        // Keys of other modes are refused when parsed.
        assert!(toml::from_str::<MaskingConfig>(
            "when = { mode = \"token-id\", temperature = 2.0 }"
        )
        .is_err());
    }

    #[test]
    fn schedules_hit_both_ends() {
        for schedule in [ScheduleKind::Linear, ScheduleKind::Cosine] {
            let c = MaskingConfig {
                rate: 0.3,
                final_rate: Some(0.15),
                schedule,
                ..Default::default()
            };
            assert!((c.rate_at(0.0) - 0.3).abs() < 1e-6);
            assert!((c.rate_at(1.0) - 0.15).abs() < 1e-6);
            assert!((c.rate_at(0.5) - 0.225).abs() < 1e-5);
            assert!(c.rate_at(0.25) > c.rate_at(0.75));
        }
        let c = MaskingConfig {
            rate: 0.3,
            final_rate: Some(0.15),
            ..Default::default()
        };
        assert_eq!(c.rate_at(0.7), 0.3);
    }
}
