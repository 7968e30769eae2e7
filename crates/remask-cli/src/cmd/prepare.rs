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
    /// Input files, directories or glob patterns (quote them: `'data/*.jsonl.zst'`); `.gz` / `.zst`
    /// files are decompressed as they are read; `builtin:web` (default) or `builtin:kjv-rv1909` name
    /// the embedded corpora. Repeat the flag for several.
    #[arg(long = "input")]
    pub inputs: Vec<PathBuf>,
    /// Merge these prepared directories (repeat the flag; merged in the order given) into `--out`
    /// instead of reading inputs: parts prepared separately (other processes or machines) with one
    /// shared `--tokenizer` and the same seq_len, packing and seed. `--config`, `--strategy`,
    /// `--rate` and `--dupe-factor` set the merged directory's masking (default: the first part's).
    #[arg(
        long = "merge",
        value_name = "PART_DIR",
        conflicts_with_all = ["inputs", "format", "documents", "text_field", "tokenizer", "tokenizer_kind", "vocab_size", "seq_len", "packing", "validation_share", "seed", "shard_tokens", "vocab_sample_bytes"]
    )]
    pub merge: Vec<PathBuf>,
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
    /// Tokens per shard file (bounds shard size and memory while preparing).
    #[arg(long)]
    pub shard_tokens: Option<u64>,
    /// Bytes of training text sampled to learn the vocabulary from.
    #[arg(long)]
    pub vocab_sample_bytes: Option<u64>,
    /// Worker threads for tokenizing (default: all cores). The output is the same for any count.
    #[arg(long)]
    pub threads: Option<usize>,
    /// No progress display.
    #[arg(long)]
    pub quiet: bool,
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
    set!(data.shard_tokens, args.shard_tokens);
    set!(data.tokenizer.sample_bytes, args.vocab_sample_bytes);
    set!(masking.strategy, args.strategy);
    set!(masking.rate, args.rate);
    if args.tokenizer.is_some() {
        data.tokenizer.path = args.tokenizer.clone();
    }
    if let Some(k) = args.dupe_factor {
        masking.when = When::Static { dupe_factor: k };
    }
    if !args.merge.is_empty() {
        let given = args.config.is_some()
            || args.strategy.is_some()
            || args.rate.is_some()
            || args.dupe_factor.is_some();
        let meta = remask::data::merge_prepared(&args.merge, &args.out, given.then_some(&masking))
            .with_context(|| {
                format!(
                    "merging {} prepared directories into {}",
                    args.merge.len(),
                    args.out.display()
                )
            })?;
        print!("{}", remask::data::describe(&meta));
        println!("wrote {}", args.out.display());
        return Ok(());
    }
    #[cfg(feature = "testing")]
    let faults = args.faults.plan();
    #[cfg(not(feature = "testing"))]
    let faults = remask::fault::FaultPlan::default();
    let bar = Bar::new(args.quiet);
    let work = || {
        remask::data::prepare::prepare_reporting(&data, &masking, &args.out, &faults, &|p| {
            bar.update(p)
        })
    };
    let prepared = match args.threads {
        Some(n) => rayon::ThreadPoolBuilder::new()
            .num_threads(n.max(1))
            .build()
            .context("starting the tokenizer threads")?
            .install(work),
        None => work(),
    }
    .with_context(|| format!("preparing {}", args.out.display()))?;
    bar.finish();
    let t = prepared.timings;
    print!("{}", remask::data::describe(&prepared.meta));
    let mb = t.input_bytes as f64 / 1e6;
    if data.tokenizer.path.is_none() {
        println!("vocabulary learnt in {:.1} s", t.vocabulary_s);
    }
    println!(
        "encoded {mb:.1} MB in {:.1} s ({:.1} MB/s); total {:.1} s",
        t.encode_s,
        mb / t.encode_s.max(1e-9),
        t.total_s
    );
    println!("wrote {}", args.out.display());
    Ok(())
}

/// The progress display: a bar with MB/s and an ETA on a terminal, a line every 10% otherwise.
struct Bar {
    bar: Option<indicatif::ProgressBar>,
    quiet: bool,
    state: std::sync::Mutex<(Option<Stage>, u64, std::time::Instant)>,
}

use remask::data::prepare::{Progress, Stage};

fn stage_name(s: Stage) -> &'static str {
    match s {
        Stage::VocabularySample => "sampling for the vocabulary",
        Stage::VocabularyLearn => "learning the vocabulary",
        Stage::Encode => "tokenizing",
    }
}

impl Bar {
    fn new(quiet: bool) -> Self {
        use std::io::IsTerminal;
        let bar = (!quiet && std::io::stderr().is_terminal()).then(|| {
            let bar = indicatif::ProgressBar::with_draw_target(
                Some(0),
                indicatif::ProgressDrawTarget::stderr(),
            );
            let style = indicatif::ProgressStyle::with_template(
                "{msg:28} {bar:30} {bytes}/{total_bytes}  {binary_bytes_per_sec}  ETA {eta}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
            bar.set_style(style);
            bar
        });
        Self {
            bar,
            quiet,
            state: std::sync::Mutex::new((None, 0, std::time::Instant::now())),
        }
    }

    fn update(&self, p: &Progress) {
        let Ok(mut state) = self.state.lock() else {
            return;
        };
        let new_stage = state.0 != Some(p.stage);
        if new_stage {
            *state = (Some(p.stage), 0, std::time::Instant::now());
        }
        if let Some(bar) = &self.bar {
            if new_stage {
                bar.set_message(stage_name(p.stage));
                bar.set_length(p.bytes_total);
                bar.reset();
            }
            bar.set_position(p.bytes_done);
        } else if !self.quiet && p.bytes_total > 0 {
            let tenth = p.bytes_done * 10 / p.bytes_total;
            if new_stage && p.stage == Stage::VocabularyLearn {
                eprintln!("{}", stage_name(p.stage));
            } else if tenth > state.1 {
                state.1 = tenth;
                let s = state.2.elapsed().as_secs_f64();
                let rate = p.bytes_done as f64 / s.max(1e-9);
                let eta = (p.bytes_total - p.bytes_done.min(p.bytes_total)) as f64 / rate.max(1e-9);
                eprintln!(
                    "{}: {:.0}% ({:.1} MB, {:.1} MB/s, ETA {:.0} s)",
                    stage_name(p.stage),
                    100.0 * p.bytes_done as f64 / p.bytes_total as f64,
                    p.bytes_done as f64 / 1e6,
                    rate / 1e6,
                    eta
                );
            }
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
