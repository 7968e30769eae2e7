//! `remask audit`: checks on the real model that no output position depends on an input position its
//! attention mask forbids (by gradients and by perturbation), one verdict line per mask kind; for an
//! encoder-decoder also the decoder's causal self-attention (`decoder-causal`) and its
//! cross-attention over the real source tokens (`cross-padding`); with `--data`, also that MLM
//! batches hide their targets. Exits 1 on any leak.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use remask::attention::{AttentionMaskSpec, MaskFn};
use remask::audit::{
    audit_batch, audit_masking, audit_model, audit_seq2seq, audit_with_mask, kind_name,
    AuditOptions, AuditReport,
};
use remask::infer::ModelDir;
use remask::model::{model_from_params, new_model, Arch, ModelConfig, TrainModel, ATTENTION_TILE};
use remask::train::RunConfig;

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum MaskArg {
    Padding,
    Causal,
    Document,
    Sliding,
    Prefix,
    All,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArchArg {
    Encoder,
    Decoder,
    EncoderDecoder,
}

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Run config (TOML) whose `[model]` is audited (freshly initialised with `run.seed`).
    #[arg(long, value_name = "FILE", conflicts_with = "model")]
    pub config: Option<PathBuf>,
    /// Checkpoint directory, run directory (its newest checkpoint that verifies) or Hugging Face
    /// model directory whose model is audited.
    #[arg(long = "model", visible_alias = "checkpoint", value_name = "DIR")]
    pub model: Option<PathBuf>,
    /// Mask kind(s) to audit the model (the encoder of an encoder-decoder) under (default: the
    /// model's own kind with --config, --checkpoint or --arch encoder-decoder, else all). Decoders
    /// skip the non-causal kinds; document and sliding are causal on decoders and bidirectional on
    /// encoders. An encoder-decoder's decoder is audited once more, as it runs: decoder-causal and
    /// cross-padding.
    #[arg(long, value_enum)]
    pub mask: Option<MaskArg>,
    /// Window of the sliding-window kind.
    #[arg(long, default_value_t = 4)]
    pub window: usize,
    /// Positions per row of the audit batch.
    #[arg(long, default_value_t = 24)]
    pub seq: usize,
    /// Rows of the audit batch (row 0 is full, the others end in padding; an encoder-decoder's
    /// targets have max(2, seq/2) positions, odd rows one padded).
    #[arg(long, default_value_t = 2)]
    pub batch: usize,
    /// Query positions checked per row (evenly spaced, both ends included); 0 = all.
    #[arg(long, default_value_t = 0)]
    pub queries: usize,
    /// Architecture of the tiny model built when neither --config nor --checkpoint is given
    /// (encoder-decoder: BART-like, 2 encoder and 2 decoder layers).
    #[arg(long, value_enum, default_value = "encoder")]
    pub arch: ArchArg,
    /// Seed of the audit batch and of the random output projections.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Prepared data directory: also audit the MLM targets of its validation batches.
    #[arg(long, value_name = "DIR")]
    pub data: Option<PathBuf>,
    /// Validation batches (of 16 rows) read for the MLM-target audit.
    #[arg(long, default_value_t = 8)]
    pub data_batches: usize,
    /// Demonstration and tests: run the model with its mask OR one extra allowed pair `Q,K` (e.g. a
    /// future token) while still auditing against the plain mask, so the audit must report a leak
    /// (the self-attention stack only: an encoder-decoder's encoder).
    #[arg(long, hide = true, value_name = "Q,K", value_parser = parse_pair)]
    pub plant_leak: Option<(usize, usize)>,
    /// Print the reports as JSON.
    #[arg(long)]
    pub json: bool,
}

fn parse_pair(s: &str) -> Result<(usize, usize), String> {
    let (q, k) = s
        .split_once(',')
        .ok_or_else(|| format!("expected Q,K (two positions), got {s:?}"))?;
    let p = |x: &str| x.trim().parse::<usize>().map_err(|e| format!("{x:?}: {e}"));
    Ok((p(q)?, p(k)?))
}

/// The tiny model audited when no config or checkpoint is given.
fn tiny(arch: ArchArg) -> ModelConfig {
    let base = match arch {
        ArchArg::Encoder => ModelConfig::bert_like(),
        ArchArg::Decoder => ModelConfig::gpt2_like(),
        ArchArg::EncoderDecoder => ModelConfig {
            n_decoder_layers: 2,
            ..ModelConfig::bart_like()
        },
    };
    ModelConfig {
        vocab_size: 64,
        d_model: 32,
        n_heads: 4,
        n_layers: 2,
        d_ff: 64,
        max_positions: 128,
        init_std: 0.2,
        ..base
    }
}

/// The spec of a kind for a model of `arch`; None where the architecture cannot run it.
fn spec_for(kind: MaskArg, arch: Arch, window: usize) -> Option<AttentionMaskSpec> {
    let causal = arch == Arch::Decoder;
    Some(match kind {
        MaskArg::Padding if causal => return None,
        MaskArg::Padding => AttentionMaskSpec::Padding,
        MaskArg::Causal => AttentionMaskSpec::Causal,
        MaskArg::Document => AttentionMaskSpec::Document { causal },
        MaskArg::Sliding => AttentionMaskSpec::SlidingWindow { window, causal },
        MaskArg::Prefix => AttentionMaskSpec::PrefixLm,
        MaskArg::All => return None,
    })
}

pub fn run(args: Args) -> anyhow::Result<()> {
    if args.window == 0 {
        anyhow::bail!("--window must be at least 1");
    }
    let (config, params, seed) = if let Some(path) = &args.config {
        let run = RunConfig::load(path, &[])?;
        (run.model, None, run.run.seed)
    } else if let Some(dir) = &args.model {
        match remask::infer::model_dir::open(dir)? {
            ModelDir::Checkpoint { ckpt, skipped, .. } => {
                super::warn_skipped(&skipped);
                let mut model = new_model(ckpt.model_config.clone(), 0)?;
                ckpt.restore_params(model.as_mut())?;
                (
                    ckpt.model_config.clone(),
                    Some(model.params().to_vec()),
                    ckpt.run_config.run.seed,
                )
            }
            ModelDir::HuggingFace { dir } => {
                let imported = remask::model::hf::load_hf(&dir, 0)?;
                (
                    imported.model.config().clone(),
                    Some(imported.model.params().to_vec()),
                    0,
                )
            }
        }
    } else {
        (tiny(args.arch), None, 0)
    };
    let params = match params {
        Some(p) => p,
        None => new_model(config.clone(), seed)?.params().to_vec(),
    };
    let own = args.config.is_some() || args.model.is_some() || config.arch == Arch::EncoderDecoder;
    let specs: Vec<(String, Option<AttentionMaskSpec>)> = match args.mask {
        None if own => vec![(kind_name(&config.attention), Some(config.attention))],
        Some(MaskArg::All) | None => [
            MaskArg::Padding,
            MaskArg::Causal,
            MaskArg::Document,
            MaskArg::Sliding,
            MaskArg::Prefix,
        ]
        .into_iter()
        .map(|k| {
            (
                format!("{k:?}").to_lowercase(),
                spec_for(k, config.arch, args.window),
            )
        })
        .collect(),
        Some(k) => vec![(
            format!("{k:?}").to_lowercase(),
            spec_for(k, config.arch, args.window),
        )],
    };
    let batch = audit_batch(&config, args.batch, args.seq, args.seed)?;
    let opts = AuditOptions {
        max_queries_per_row: args.queries,
        seed: args.seed,
    };
    let mut reports: Vec<AuditReport> = Vec::new();
    let mut lines = Vec::new();
    for (name, spec) in specs {
        let Some(spec) = spec else {
            lines.push(format!(
                "SKIP {name}: a next-token decoder cannot run a bidirectional mask"
            ));
            continue;
        };
        let cfg = ModelConfig {
            attention: spec,
            ..config.clone()
        };
        let mut model = model_from_params(cfg, params.clone())?;
        let report = match args.plant_leak {
            None => audit_model(model.as_mut(), &spec, &batch, &opts),
            Some((lq, lk)) => {
                let expected = spec.predicate(&batch);
                let leaky = expected.clone() | MaskFn::custom(move |_, _, q, k| q == lq && k == lk);
                let run_mask = leaky.compile(
                    batch.batch_size,
                    1,
                    batch.seq_len,
                    batch.seq_len,
                    ATTENTION_TILE,
                );
                audit_with_mask(
                    model.as_ref(),
                    &run_mask,
                    &expected,
                    &kind_name(&spec),
                    &batch,
                    &opts,
                )
            }
        }
        .with_context(|| format!("auditing the {name} mask"))?;
        lines.push(report.line());
        reports.push(report);
    }
    if config.arch == Arch::EncoderDecoder {
        // The decoder as the model runs it (its own configured encoder mask), whatever --mask asked of
        // the encoder.
        let mut model = model_from_params(config.clone(), params.clone())?;
        let decoder = audit_seq2seq(model.as_mut(), &config.attention, &batch, &opts)
            .context("auditing the decoder and cross-attention")?;
        for report in decoder {
            lines.push(report.line());
            reports.push(report);
        }
    }
    let masking = match &args.data {
        Some(dir) => Some(audit_data(dir, 16, args.data_batches)?),
        None => None,
    };
    if let Some(m) = &masking {
        lines.push(m.line());
    }
    let leak = reports.iter().any(|r| !r.passed) || masking.as_ref().is_some_and(|m| !m.passed);
    let mut out = std::io::stdout().lock();
    if args.json {
        let json =
            serde_json::json!({ "attention": reports, "mlm_targets": masking, "passed": !leak });
        writeln!(out, "{}", serde_json::to_string_pretty(&json)?)?;
    } else {
        for l in &lines {
            writeln!(out, "{l}")?;
        }
    }
    out.flush()?;
    if leak {
        std::process::exit(1);
    }
    Ok(())
}

/// The MLM-target audit of `batches` validation batches of a prepared directory.
fn audit_data(
    dir: &std::path::Path,
    batch_size: usize,
    batches: usize,
) -> anyhow::Result<remask::audit::MaskingAudit> {
    use remask::data::{Loader, Split, Task};
    use remask::masking::MaskingConfig;
    use remask::BatchSource;
    let masking = MaskingConfig::default();
    let mut loader = Loader::open(dir, Split::Validation, Task::Mlm, &masking)?;
    let n = loader.num_samples();
    if n == 0 {
        anyhow::bail!("{}: the validation split is empty", dir.display());
    }
    let mut got = Vec::new();
    for i in 0..batches as u64 {
        got.push(loader.batch((i * batch_size as u64) % n, batch_size, 0.0)?);
    }
    let (mask, vocab) = (loader.specials().mask, loader.vocab_size() as usize);
    Ok(audit_masking(&got, mask, vocab, &masking)?)
}
