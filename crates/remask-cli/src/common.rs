//! Helpers shared by several commands. Command modules never import each other: what two of them
//! need lives here.

use remask::eval::fixed_batches;
use remask::train::testing::{SyntheticSource, TaskKind};
use remask::train::RunConfig;
use remask::Batch;

/// Parses a kebab-case enum value the way the TOML config spells it.
pub fn parse<T: serde::de::DeserializeOwned>(s: &str) -> Result<T, String> {
    serde_json::from_value(serde_json::Value::String(s.to_string())).map_err(|e| format!("{s}: {e}"))
}

/// Synthetic training and validation data (MLM rows for encoders and the toy model, next-token rows
/// for decoders; always MLM for the toy model), 16 tokens per row.
pub fn synthetic_data(cfg: &RunConfig, toy: bool) -> anyhow::Result<(SyntheticSource, Vec<Batch>)> {
    let vocab = cfg.model.vocab_size;
    anyhow::ensure!(vocab >= 3, "synthetic data needs model.vocab_size >= 3");
    let task = match cfg.model.arch {
        _ if toy => TaskKind::Mlm { rate: 0.3 },
        remask::model::Arch::Decoder => TaskKind::Clm,
        remask::model::Arch::Encoder => TaskKind::Mlm { rate: 0.3 },
        remask::model::Arch::EncoderDecoder => anyhow::bail!("synthetic data has no target side: use an encoder or decoder"),
    };
    let source = SyntheticSource::new(64, 16, vocab, cfg.run.seed, task, true);
    let mut val = SyntheticSource::new(16, 16, vocab, cfg.run.seed ^ 1, task, false);
    let eval = fixed_batches(&mut val, cfg.eval.batches.max(1), cfg.eval.batch_size.max(1))?;
    Ok((source, eval))
}
