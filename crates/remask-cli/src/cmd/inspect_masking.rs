//! `remask inspect masking`: shows a few rows with the masked tokens marked (colour on a terminal,
//! brackets in a pipe), or with `--json` the statistics over the rows as one JSON object.

use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::Context;
use remask::data::{Loader, Split, Task, TextTokenizer, TokenizerConfig};
use remask::masking::{
    collect_stats, CountRule, Language, MaskPlan, MaskScratch, MaskedRow, MaskingConfig, StrategyKind, TokenRowBuf, Vocab, When,
};

use crate::common::parse;

#[derive(clap::Args)]
pub struct Args {
    /// token | whole-word | span.
    #[arg(long, value_parser = parse::<StrategyKind>, default_value = "token")]
    pub strategy: StrategyKind,
    /// Text to mask (lines are documents). Without --data or --tokenizer, a WordPiece tokenizer is
    /// trained on the embedded corpus first.
    #[arg(long, conflicts_with = "data")]
    pub text: Option<String>,
    /// A prepared directory (its training split).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// tokenizer.json for --text.
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
    /// Epochs to simulate.
    #[arg(long, default_value_t = 2)]
    pub epochs: u64,
    /// Print statistics as one JSON object instead of examples.
    #[arg(long)]
    pub json: bool,
    /// static | dynamic.
    #[arg(long, default_value = "dynamic")]
    pub when: String,
    /// K, the number of static copies (with --when static).
    #[arg(long, default_value_t = 10)]
    pub dupe_factor: u32,
    /// Masking rate.
    #[arg(long, default_value_t = 0.15)]
    pub rate: f32,
    /// exact | bernoulli.
    #[arg(long, value_parser = parse::<CountRule>, default_value = "exact")]
    pub count: CountRule,
    /// Seed of the masks.
    #[arg(long, default_value_t = 1234)]
    pub seed: u64,
    /// Rows shown as examples.
    #[arg(long, default_value_t = 3)]
    pub examples: usize,
    /// At most this many rows for the statistics.
    #[arg(long, default_value_t = 4096)]
    pub max_rows: usize,
    /// Tokens per row for --text.
    #[arg(long, default_value_t = 128)]
    pub seq_len: usize,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let when = match args.when.as_str() {
        "static" => When::Static { dupe_factor: args.dupe_factor },
        "dynamic" => When::Dynamic,
        other => anyhow::bail!("--when {other}: expected static or dynamic"),
    };
    let config = MaskingConfig { strategy: args.strategy, count: args.count, rate: args.rate, when, ..Default::default() };
    config.validate("masking").map_err(|e| anyhow::anyhow!("{e}"))?;
    if args.epochs == 0 {
        anyhow::bail!("--epochs must be at least 1");
    }

    let (tokenizer, rows) = match (&args.data, &args.text) {
        (Some(dir), _) => {
            let dynamic = MaskingConfig { when: When::Dynamic, ..config.clone() };
            let loader = Loader::open(dir, Split::Train, Task::Mlm, &dynamic)?;
            let n = (loader.num_rows() as usize).min(args.max_rows);
            let mut buf = loader.row_buffers();
            let mut rows = Vec::with_capacity(n);
            for r in 0..n {
                loader.fill_row(&mut buf, r as u64);
                rows.push(TokenRowBuf { ids: buf.ids.clone(), word_starts: buf.word_starts.clone(), length: buf.length });
            }
            (loader.tokenizer()?, rows)
        }
        (None, Some(text)) => {
            let tokenizer = match &args.tokenizer {
                Some(p) => TextTokenizer::load(p)?,
                None => {
                    let docs = remask::data::reader::text_documents(remask::data::reader::BUILTIN_WEB, Default::default());
                    let mut texts: Vec<&str> = docs.iter().map(|d| d.text.as_str()).collect();
                    texts.extend(text.lines());
                    TextTokenizer::train(&TokenizerConfig::default(), &texts).context("training a tokenizer")?
                }
            };
            let rows = text_rows(&tokenizer, text, args.seq_len.max(4))?;
            (tokenizer, rows)
        }
        (None, None) => anyhow::bail!("give --text \"...\" or --data DIR"),
    };
    if rows.is_empty() {
        anyhow::bail!("no rows to mask");
    }
    let s = tokenizer.specials();
    let vocab = Vocab { size: tokenizer.vocab_size(), mask_id: s.mask, special_ids: &s.all, counts: None };
    // Static masks are computed here: copy k is the dynamic mask of key epoch k.
    let plan = MaskPlan::new(&config, &vocab, args.seed)?;

    if args.json {
        let stats = collect_stats(&plan, &rows, args.epochs);
        let mut v = serde_json::to_value(&stats)?;
        if let Some(o) = v.as_object_mut() {
            o.insert("strategy".into(), serde_json::to_value(args.strategy)?);
            o.insert("when".into(), serde_json::to_value(when)?);
            o.insert("count".into(), serde_json::to_value(args.count)?);
            o.insert("rate".into(), args.rate.into());
            o.insert("seed".into(), args.seed.into());
        }
        println!("{}", serde_json::to_string(&v)?);
        return Ok(());
    }

    let colour = std::io::stdout().is_terminal();
    let mut scratch = MaskScratch::default();
    for e in 0..args.epochs {
        println!("epoch {e} (masks of key epoch {}):", plan.key_epoch(e));
        for (r, row) in rows.iter().enumerate().take(args.examples) {
            let t = row.ids.len();
            let (mut input, mut labels) = (vec![0u32; t], vec![0i32; t]);
            let out = MaskedRow { input: &mut input, labels: &mut labels };
            plan.mask_train(row.view(), r as u64, e, 0.0, out, &mut scratch);
            let mut line = String::new();
            for i in 0..row.length {
                let orig = tokenizer.token(row.ids[i]);
                let sep = if i > 0 && row.word_starts[i] { " " } else { "" };
                line.push_str(sep);
                if !scratch.chosen[i] {
                    line.push_str(&orig);
                    continue;
                }
                let shown = if input[i] == s.mask {
                    if colour { format!("\x1b[41;97m{orig}\x1b[0m") } else { format!("[{orig}]") }
                } else if input[i] != row.ids[i] {
                    let new = tokenizer.token(input[i]);
                    if colour { format!("\x1b[43;30m{orig}→{new}\x1b[0m") } else { format!("[{orig}→{new}]") }
                } else if colour {
                    format!("\x1b[42;30m{orig}\x1b[0m")
                } else {
                    format!("[{orig}=]")
                };
                line.push_str(&shown);
            }
            println!("  row {r}: {line}");
        }
    }
    if colour {
        println!("legend: \x1b[41;97mmasked\x1b[0m \x1b[43;30mrandom\x1b[0m \x1b[42;30munchanged\x1b[0m");
    } else {
        println!("legend: [tok] masked, [tok→new] random, [tok=] unchanged; pieces of one word are joined");
    }
    Ok(())
}

/// Lines of `text` as documents, framed `[CLS] … [SEP]` and packed into rows of `t`.
fn text_rows(tokenizer: &TextTokenizer, text: &str, t: usize) -> anyhow::Result<Vec<TokenRowBuf>> {
    let s = tokenizer.specials();
    let mut stream: Vec<(u32, bool)> = Vec::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let enc = tokenizer.encode(line, Language::Auto)?;
        stream.push((s.cls, true));
        stream.extend(enc.ids.iter().copied().zip(enc.word_starts.iter().copied()));
        stream.push((s.sep, true));
    }
    Ok(stream
        .chunks(t)
        .map(|c| {
            let mut ids: Vec<u32> = c.iter().map(|x| x.0).collect();
            let mut word_starts: Vec<bool> = c.iter().map(|x| x.1).collect();
            let length = ids.len();
            ids.resize(t, s.pad);
            word_starts.resize(t, true);
            TokenRowBuf { ids, word_starts, length }
        })
        .collect())
}
