//! `remask translate`: encoder-decoder translation, greedy or with beam search.

use std::path::PathBuf;

use anyhow::Context;
use remask::infer::{self, TranslateOptions};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// A remask encoder-decoder checkpoint (or run directory) or a Hugging Face BART directory.
    #[arg(long, value_name = "DIR")]
    pub checkpoint: PathBuf,
    /// The source text.
    pub text: String,
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
    let mut l = infer::load(&args.checkpoint, args.tokenizer.as_deref())?;
    let tok = l.tokenizer()?.clone();
    let src = tok.encode(&args.text)?;
    let start = l.specials.decoder_start.context("the model has no decoder start token (decoder_start_token_id / [CLS] / <s>)")?;
    let opts = TranslateOptions { beams: args.beams, max_new_tokens: args.max_tokens, length_penalty: args.length_penalty };
    let out = infer::translate(&mut l.model, &src, start, l.specials.eos, &opts)?;
    println!("{}", tok.decode(&out, true));
    Ok(())
}
