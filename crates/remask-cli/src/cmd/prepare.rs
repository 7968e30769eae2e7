//! `remask prepare`: tokenizes a corpus into memory-mapped shards (and static masks) and prints the
//! statistics. Flags override the `[data]` / `[masking]` sections of `--config`.

use std::path::PathBuf;

use anyhow::Context;
use remask::data::{DataConfig, DocumentSplit, InputFormat, Packing, TokenizerKind};
use remask::masking::{MaskingConfig, StrategyKind, When};

use crate::common::parse;

#[derive(clap::Args)]
pub struct Args {
    /// Output directory (created; locked while preparing; built aside and published complete, so
    /// an interrupted run leaves the earlier output untouched or no `meta.json` at all).
    #[arg(long)]
    pub out: PathBuf,
    /// A run config whose [data] and [masking] sections are used.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Input files or directories; `builtin:web` (default) or `builtin:kjv-rv1909` name the embedded corpora.
    #[arg(long = "input")]
    pub inputs: Vec<PathBuf>,
    /// auto | text | jsonl | parquet | tsv.
    #[arg(long, value_parser = parse::<InputFormat>)]
    pub format: Option<InputFormat>,
    /// line | blank-line: where documents end in text files.
    #[arg(long, value_parser = parse::<DocumentSplit>)]
    pub documents: Option<DocumentSplit>,
    /// JSON field / Parquet column with the text.
    #[arg(long)]
    pub text_field: Option<String>,
    /// Load this tokenizer.json instead of training one.
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
    /// wordpiece | bpe (when training).
    #[arg(long, value_parser = parse::<TokenizerKind>)]
    pub tokenizer_kind: Option<TokenizerKind>,
    /// Vocabulary size to train.
    #[arg(long)]
    pub vocab_size: Option<u32>,
    /// Tokens per row.
    #[arg(long)]
    pub seq_len: Option<u32>,
    /// pack | pad.
    #[arg(long, value_parser = parse::<Packing>)]
    pub packing: Option<Packing>,
    /// Share of documents held out for validation.
    #[arg(long)]
    pub validation_share: Option<f32>,
    /// Seed of the split, the data order and the masks.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Masking strategy for static masks: token | whole-word | span.
    #[arg(long, value_parser = parse::<StrategyKind>)]
    pub strategy: Option<StrategyKind>,
    /// Store K statically masked copies (implies static masking).
    #[arg(long)]
    pub dupe_factor: Option<u32>,
    /// Masking rate for static masks.
    #[arg(long)]
    pub rate: Option<f32>,
    /// Test scaffolding (feature `testing` only): injected write faults.
    #[cfg(feature = "testing")]
    #[command(flatten)]
    pub faults: crate::testing::FaultArgs,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let (mut data, mut masking) = match &args.config {
        Some(p) => remask::data::read_sections(p)?,
        None => (DataConfig::default(), MaskingConfig::default()),
    };
    if !args.inputs.is_empty() {
        data.inputs = args.inputs.clone();
    }
    macro_rules! set {
        ($field:expr, $value:expr) => {
            if let Some(v) = $value {
                $field = v;
            }
        };
    }
    set!(data.format, args.format);
    set!(data.documents, args.documents);
    set!(data.text_field, args.text_field.clone());
    set!(data.tokenizer.kind, args.tokenizer_kind);
    set!(data.tokenizer.vocab_size, args.vocab_size);
    set!(data.seq_len, args.seq_len);
    set!(data.packing, args.packing);
    set!(data.validation_share, args.validation_share);
    set!(data.seed, args.seed);
    set!(masking.strategy, args.strategy);
    set!(masking.rate, args.rate);
    if args.tokenizer.is_some() {
        data.tokenizer.path = args.tokenizer.clone();
    }
    if let Some(k) = args.dupe_factor {
        masking.when = When::Static { dupe_factor: k };
    }
    #[cfg(feature = "testing")]
    let faults = args.faults.plan();
    #[cfg(not(feature = "testing"))]
    let faults = remask::fault::FaultPlan::default();
    let meta = remask::data::prepare::prepare_with(&data, &masking, &args.out, &faults)
        .with_context(|| format!("preparing {}", args.out.display()))?;
    print!("{}", remask::data::describe(&meta));
    println!("wrote {}", args.out.display());
    Ok(())
}
