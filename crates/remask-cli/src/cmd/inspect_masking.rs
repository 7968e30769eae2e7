//! `remask inspect masking`: shows a few rows with the masked tokens marked (colour on a terminal,
//! brackets in a pipe), or with `--json` the statistics over the rows as one JSON object. With
//! `--strategy pmi` it also lists the n-gram vocabulary (the prepared directory's, or for `--text` one
//! counted over the text) and marks n-gram units in the examples; `--json` adds their share (`pmi`).

use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::Context;
use std::sync::Arc;

use remask::data::{Loader, Meta, Split, Task, TextTokenizer, TokenizerConfig};
use remask::masking::{
    build_vocab, collect_ngram_stats, collect_stats, CountRule, Language, MaskPlan, MaskScratch,
    MaskedRow, MaskingConfig, NgramVocab, PmiConfig, PmiMasking, RowView, SegmentScratch,
    StrategyKind, TokenRowBuf, Vocab, When, COUNT_CAP,
};

use crate::common::parse;

#[derive(clap::Args)]
pub struct Args {
    /// token | whole-word | span | pmi.
    #[arg(long, value_parser = parse::<StrategyKind>, default_value = "token")]
    pub strategy: StrategyKind,
    /// Text to mask (lines are documents). Without --data or --tokenizer, a WordPiece tokenizer is
    /// trained on the embedded corpus first.
    #[arg(long, conflicts_with_all = ["data", "text_file"])]
    pub text: Option<String>,
    /// A text file to mask, as --text (lines are documents).
    #[arg(long, conflicts_with = "data")]
    pub text_file: Option<PathBuf>,
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
    #[arg(long, default_value_t = 0.15, allow_negative_numbers = true)]
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
    /// PMI masking with --text: size of the n-gram vocabulary counted over the text
    /// (`masking.pmi.ngrams`; with --data the directory's vocabulary is used).
    #[arg(long)]
    pub pmi_ngrams: Option<u32>,
    /// PMI masking with --text: occurrences an n-gram needs (`masking.pmi.min_count`).
    #[arg(long)]
    pub pmi_min_count: Option<u32>,
    /// PMI masking: n-grams of the vocabulary listed (highest PMI first).
    #[arg(long, default_value_t = 20)]
    pub top: usize,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let when = match args.when.as_str() {
        "static" => When::Static {
            dupe_factor: args.dupe_factor,
        },
        "dynamic" => When::Dynamic,
        other => anyhow::bail!("--when {other}: expected static or dynamic"),
    };
    let mut pmi = PmiConfig::default();
    if let Some(n) = args.pmi_ngrams {
        pmi.ngrams = n;
    }
    if let Some(n) = args.pmi_min_count {
        pmi.min_count = n;
    }
    if let (Some(dir), true) = (&args.data, args.strategy == StrategyKind::Pmi) {
        // The directory's vocabulary, whatever settings it was built with.
        if let Some(stored) = Meta::read(dir)?.ngrams {
            pmi = stored.pmi;
        }
    }
    let config = MaskingConfig {
        strategy: args.strategy,
        count: args.count,
        rate: args.rate,
        when,
        pmi,
        ..Default::default()
    };
    config
        .validate("masking")
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    if args.epochs == 0 {
        anyhow::bail!("--epochs must be at least 1");
    }

    let text = match &args.text_file {
        Some(p) => Some(
            std::fs::read_to_string(p).with_context(|| format!("--text-file {}", p.display()))?,
        ),
        None => args.text.clone(),
    };
    let (tokenizer, rows, ngrams) = match (&args.data, &text) {
        (Some(dir), _) => {
            let dynamic = MaskingConfig {
                when: When::Dynamic,
                ..config.clone()
            };
            let loader = Loader::open(dir, Split::Train, Task::Mlm, &dynamic)?;
            let ngrams = loader
                .mask_plan()
                .and_then(|p| p.masker().ngrams().cloned());
            let n = (loader.num_rows() as usize).min(args.max_rows);
            let mut buf = loader.row_buffers();
            let mut rows = Vec::with_capacity(n);
            for r in 0..n {
                loader.fill_row(&mut buf, r as u64);
                rows.push(TokenRowBuf {
                    ids: buf.ids.clone(),
                    word_starts: buf.word_starts.clone(),
                    length: buf.length,
                });
            }
            (loader.tokenizer()?, rows, ngrams)
        }
        (None, Some(text)) => {
            let tokenizer = match &args.tokenizer {
                Some(p) => TextTokenizer::load(p)?,
                None => {
                    let docs = remask::data::reader::text_documents(
                        remask::data::reader::BUILTIN_WEB,
                        Default::default(),
                    );
                    let mut texts: Vec<&str> = docs.iter().map(|d| d.text.as_str()).collect();
                    texts.extend(text.lines());
                    TextTokenizer::train(&TokenizerConfig::default(), &texts)
                        .context("training a tokenizer")?
                }
            };
            let rows = text_rows(&tokenizer, text, args.seq_len.max(4))?;
            let ngrams = if config.needs_ngrams() {
                Some(text_ngrams(&tokenizer, text, &config.pmi)?)
            } else {
                None
            };
            (tokenizer, rows, ngrams)
        }
        (None, None) => anyhow::bail!("give --text \"...\", --text-file FILE or --data DIR"),
    };
    if rows.is_empty() {
        anyhow::bail!("no rows to mask");
    }
    let s = tokenizer.specials();
    let vocab = Vocab {
        size: tokenizer.vocab_size(),
        mask_id: s.mask,
        special_ids: &s.all,
        counts: None,
        ngrams: ngrams.as_ref(),
    };
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
            if let (Some(g), Some(v)) = (collect_ngram_stats(&plan, &rows, args.epochs), &ngrams) {
                o.insert("pmi".into(), serde_json::to_value(&g)?);
                o.insert(
                    "top_ngrams".into(),
                    serde_json::to_value(top_ngrams(&tokenizer, v, args.top))?,
                );
            }
        }
        println!("{}", serde_json::to_string(&v)?);
        return Ok(());
    }

    let colour = std::io::stdout().is_terminal();
    if let Some(v) = &ngrams {
        println!(
            "PMI masking: {} n-grams of 2-5 words (from {} words, min_count {}); the first {} by PMI:",
            v.len(),
            v.stats.words,
            v.stats.min_count,
            args.top.min(v.len())
        );
        for t in top_ngrams(&tokenizer, v, args.top) {
            println!("  {:>7.3}  {:>6}×  {}", t.pmi, t.count, t.text);
        }
        if let Some(g) = collect_ngram_stats(&plan, &rows, args.epochs) {
            println!(
                "n-gram units cover {:.1}% of the eligible tokens and take {:.1}% of the masked ones ({} hidden whole, {} split)",
                100.0 * g.ngram_coverage,
                100.0 * g.ngram_share,
                g.ngrams_masked,
                g.ngrams_split
            );
        }
    }
    let mut scratch = MaskScratch::default();
    let mut marks = NgramMarks::default();
    for e in 0..args.epochs {
        println!("epoch {e} (masks of key epoch {}):", plan.key_epoch(e));
        for (r, row) in rows.iter().enumerate().take(args.examples) {
            let t = row.ids.len();
            let (mut input, mut labels) = (vec![0u32; t], vec![0i32; t]);
            let out = MaskedRow {
                input: &mut input,
                labels: &mut labels,
            };
            plan.mask_train(row.view(), r as u64, e, 0.0, out, &mut scratch);
            marks.of(&plan, ngrams.as_ref(), row);
            let mut line = String::new();
            for i in 0..row.length {
                let sep = if i > 0 && row.word_starts[i] { " " } else { "" };
                line.push_str(sep);
                if marks.open[i] {
                    line.push('⟨');
                }
                line.push_str(&shown(
                    &tokenizer,
                    row,
                    &input,
                    &scratch.chosen,
                    i,
                    s.mask,
                    colour,
                ));
                if marks.close[i] {
                    line.push('⟩');
                }
            }
            println!("  row {r}: {line}");
        }
    }
    if ngrams.is_some() {
        println!("⟨ ⟩: an n-gram of the vocabulary (masked as one unit)");
    }
    if colour {
        println!(
            "legend: \x1b[41;97mmasked\x1b[0m \x1b[43;30mrandom\x1b[0m \x1b[42;30munchanged\x1b[0m"
        );
    } else {
        println!("legend: [tok] masked, [tok→new] random, [tok=] unchanged; pieces of one word are joined");
    }
    Ok(())
}

/// Position i of a masked row as text.
fn shown(
    tokenizer: &TextTokenizer,
    row: &TokenRowBuf,
    input: &[u32],
    chosen: &[bool],
    i: usize,
    mask: u32,
    colour: bool,
) -> String {
    let orig = tokenizer.token(row.ids[i]);
    if !chosen[i] {
        return orig;
    }
    if input[i] == mask {
        if colour {
            format!("\x1b[41;97m{orig}\x1b[0m")
        } else {
            format!("[{orig}]")
        }
    } else if input[i] != row.ids[i] {
        let new = tokenizer.token(input[i]);
        if colour {
            format!("\x1b[43;30m{orig}→{new}\x1b[0m")
        } else {
            format!("[{orig}→{new}]")
        }
    } else if colour {
        format!("\x1b[42;30m{orig}\x1b[0m")
    } else {
        format!("[{orig}=]")
    }
}

/// Where n-gram units open and close in a row (PMI masking), for the examples.
#[derive(Default)]
struct NgramMarks {
    open: Vec<bool>,
    close: Vec<bool>,
    eligible: Vec<bool>,
    units: Vec<(u32, u32)>,
    is_ngram: Vec<bool>,
    seg: SegmentScratch,
}

impl NgramMarks {
    fn of(&mut self, plan: &MaskPlan, ngrams: Option<&Arc<NgramVocab>>, row: &TokenRowBuf) {
        let t = row.ids.len();
        self.open.clear();
        self.open.resize(t, false);
        self.close.clear();
        self.close.resize(t, false);
        let Some(vocab) = ngrams else { return };
        plan.masker().eligible(row.view(), &mut self.eligible);
        let view = RowView {
            ids: &row.ids,
            eligible: &self.eligible,
            word_starts: &row.word_starts,
            weights: None,
        };
        let pmi = PmiMasking {
            count: plan.config().count,
            vocab: vocab.clone(),
        };
        pmi.segment(
            &view,
            &mut self.units,
            Some(&mut self.is_ngram),
            &mut self.seg,
        );
        for (&(a, l), &g) in self.units.iter().zip(&self.is_ngram) {
            if g {
                self.open[a as usize] = true;
                self.close[(a + l - 1) as usize] = true;
            }
        }
    }
}

/// One n-gram of the vocabulary, for people.
#[derive(serde::Serialize)]
struct TopNgram {
    text: String,
    words: usize,
    pmi: f32,
    count: u64,
}

/// The first `n` n-grams of the vocabulary (highest PMI first), as text.
fn top_ngrams(tokenizer: &TextTokenizer, v: &NgramVocab, n: usize) -> Vec<TopNgram> {
    v.entries()
        .iter()
        .take(n)
        .map(|e| {
            let mut at = 0;
            let words: Vec<String> = e
                .word_lens
                .iter()
                .map(|&l| {
                    let w = tokenizer.decode(&e.tokens[at..at + l as usize]);
                    at += l as usize;
                    w
                })
                .collect();
            TopNgram {
                text: words.join(" "),
                words: e.word_lens.len(),
                pmi: e.score,
                count: e.count,
            }
        })
        .collect()
}

/// PMI masking over `--text`: the n-gram vocabulary counted over the text's lines (documents).
fn text_ngrams(
    tokenizer: &TextTokenizer,
    text: &str,
    pmi: &PmiConfig,
) -> anyhow::Result<Arc<NgramVocab>> {
    let docs: Vec<_> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(|l| tokenizer.encode(l, Language::Auto))
        .collect::<Result<_, _>>()?;
    let mut feed = |sink: &mut dyn FnMut(&[u32], &[bool])| {
        for d in &docs {
            sink(&d.ids, &d.word_starts);
        }
    };
    let v = build_vocab(pmi, &tokenizer.specials().all, COUNT_CAP, &mut feed);
    if v.is_empty() {
        anyhow::bail!(
            "config `masking.pmi.min_count`: strategy \"pmi\" found no n-gram of 2 to 5 words that occurs at least {} times, and more often than chance, in the text ({} words): give more text, lower --pmi-min-count, or use --data with a prepared directory",
            pmi.min_count,
            v.stats.words
        );
    }
    Ok(Arc::new(v))
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
            TokenRowBuf {
                ids,
                word_starts,
                length,
            }
        })
        .collect())
}
