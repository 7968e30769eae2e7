//! `remask translate`: encoder-decoder translation, greedy or with beam search.

use std::path::PathBuf;

use anyhow::Context;
use remask::infer::{self, TranslateOptions};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// A remask encoder-decoder checkpoint, a run directory (its newest checkpoint that verifies) or a
    /// Hugging Face BART directory; the kind is detected.
    #[arg(long = "model", visible_alias = "checkpoint", value_name = "DIR")]
    pub model: PathBuf,
    /// The source text. Also accepted as `--text TEXT`.
    #[arg(value_name = "TEXT", required_unless_present = "text_flag")]
    pub text: Option<String>,
    #[arg(
        long = "text",
        value_name = "TEXT",
        conflicts_with = "text",
        hide = true
    )]
    pub text_flag: Option<String>,
    /// Beam width (1 = greedy).
    #[arg(long, default_value_t = 1)]
    pub beams: usize,
    #[arg(long, default_value_t = 64)]
    pub max_tokens: usize,
    /// Beam scores are log-probability sums divided by length^this.
    #[arg(long, default_value_t = 1.0)]
    pub length_penalty: f32,
    /// The tokenizer.json to use instead of the model's.
    #[arg(long, value_name = "FILE")]
    pub tokenizer: Option<PathBuf>,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let mut l = infer::load(&args.model, args.tokenizer.as_deref())?;
    super::warn_skipped(&l.skipped);
    let tok = l.tokenizer()?.clone();
    let src = tok.encode(
        args.text
            .as_deref()
            .or(args.text_flag.as_deref())
            .unwrap_or_default(),
    )?;
    let start = l
        .specials
        .decoder_start
        .context("the model has no decoder start token (decoder_start_token_id / [CLS] / <s>)")?;
    let opts = TranslateOptions {
        beams: args.beams,
        max_new_tokens: args.max_tokens,
        length_penalty: args.length_penalty,
    };
    let out = infer::translate(&mut l.model, &src, start, l.specials.eos, &opts)?;
    println!("{}", tok.decode(&out, true));
    Ok(())
}
