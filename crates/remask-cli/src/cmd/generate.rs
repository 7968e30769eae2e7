//! `remask generate`: continue a prompt with a decoder-only model (greedy or sampled), one cached
//! position per new token.

use std::path::PathBuf;

use remask::infer::{self, SamplingOptions, Source};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// A remask checkpoint, a run directory (its newest checkpoint that verifies) or a Hugging Face GPT-2
    /// directory; the kind is detected.
    #[arg(long = "model", visible_alias = "checkpoint", value_name = "DIR")]
    pub model: PathBuf,
    /// The prompt to continue. Also accepted as `--text TEXT` or `--prompt TEXT`.
    #[arg(value_name = "TEXT", required_unless_present = "text_flag")]
    pub text: Option<String>,
    #[arg(
        long = "text",
        alias = "prompt",
        value_name = "TEXT",
        conflicts_with = "text",
        hide = true
    )]
    pub text_flag: Option<String>,
    /// New tokens at most (generation also stops at the end-of-text token).
    #[arg(long, default_value_t = 40)]
    pub max_tokens: usize,
    /// 0 = greedy.
    #[arg(long, default_value_t = 0.0)]
    pub temperature: f32,
    /// Sample from the k most likely tokens only (0 = all).
    #[arg(long, default_value_t = 0)]
    pub top_k: usize,
    /// Nucleus sampling: the smallest set of tokens with this much probability (1 = all).
    #[arg(long, default_value_t = 1.0)]
    pub top_p: f32,
    /// Penalise tokens already in the text (1 = off; 1.2 is common).
    #[arg(long, default_value_t = 1.0)]
    pub repetition_penalty: f32,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// The tokenizer.json to use instead of the model's.
    #[arg(long, value_name = "FILE")]
    pub tokenizer: Option<PathBuf>,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let l = infer::load(&args.model, args.tokenizer.as_deref())?;
    super::warn_skipped(&l.skipped);
    let tok = l.tokenizer()?;
    let mut ids = tok.encode_plain(
        args.text
            .as_deref()
            .or(args.text_flag.as_deref())
            .unwrap_or_default(),
    )?;
    // remask's data pipeline starts each document with the cls / bos token.
    if let (Source::Checkpoint, Some(bos)) = (l.source, l.specials.bos) {
        ids.insert(0, bos);
    }
    let opts = SamplingOptions {
        temperature: args.temperature,
        top_k: args.top_k,
        top_p: args.top_p,
        repetition_penalty: args.repetition_penalty,
        max_new_tokens: args.max_tokens,
        seed: args.seed,
    };
    let start = std::time::Instant::now();
    let new = infer::generate(&l.model, &ids, &opts, l.specials.eos)?;
    let secs = start.elapsed().as_secs_f64();
    let mut all = ids.clone();
    all.extend_from_slice(&new);
    println!("{}", tok.decode(&all, true));
    eprintln!(
        "{} prompt + {} new tokens in {secs:.2} s",
        ids.len(),
        new.len()
    );
    Ok(())
}
