//! `remask fill-mask`: the top-k tokens, with probabilities, at each `[MASK]` of a text.

use std::path::PathBuf;

use anyhow::Context;
use remask::infer;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// A remask checkpoint, a run directory (its newest checkpoint that verifies) or a Hugging Face BERT
    /// directory; the kind is detected.
    #[arg(long = "model", visible_alias = "checkpoint", value_name = "DIR")]
    pub model: PathBuf,
    /// The text; write `[MASK]` where a token should be predicted (`<mask>` works too). Also
    /// accepted as `--text TEXT`.
    #[arg(value_name = "TEXT", required_unless_present = "text_flag")]
    pub text: Option<String>,
    #[arg(
        long = "text",
        value_name = "TEXT",
        conflicts_with = "text",
        hide = true
    )]
    pub text_flag: Option<String>,
    /// Candidates per mask.
    #[arg(long, default_value_t = 5)]
    pub top_k: usize,
    /// The tokenizer.json to use instead of the model's.
    #[arg(long, value_name = "FILE")]
    pub tokenizer: Option<PathBuf>,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let mut l = infer::load(&args.model, args.tokenizer.as_deref())?;
    super::warn_skipped(&l.skipped);
    if !l.missing_head.is_empty() {
        anyhow::bail!("{} is a bare encoder without an MLM head ({} missing): fill-mask needs BertForMaskedLM weights", args.model.display(), l.missing_head[0]);
    }
    let tok = l.tokenizer()?.clone();
    let (mask_text, mask_id) = tok
        .mask
        .clone()
        .context("the tokenizer has no mask token ([MASK] or <mask>)")?;
    let text = args
        .text
        .as_deref()
        .or(args.text_flag.as_deref())
        .unwrap_or_default();
    let text = text
        .replace("[MASK]", &mask_text)
        .replace("<mask>", &mask_text);
    let ids = tok.encode(&text)?;
    let preds = infer::fill_mask(&mut l.model, &ids, mask_id, args.top_k.max(1))?;
    if args.json {
        let v: Vec<serde_json::Value> = preds
            .iter()
            .map(|p| {
                serde_json::json!({
                    "position": p.position,
                    "candidates": p.top.iter().map(|&(id, prob)| serde_json::json!({"token": tok.token(id), "id": id, "probability": prob})).collect::<Vec<_>>(),
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    for (i, p) in preds.iter().enumerate() {
        println!("mask {} (token position {}):", i + 1, p.position);
        for &(id, prob) in &p.top {
            // The text with this mask filled (others left as they are).
            let mut filled = ids.clone();
            filled[p.position] = id;
            let s = &l.specials;
            filled.retain(|&t| Some(t) != s.bos && Some(t) != s.eos && t != s.pad);
            println!(
                "  {:<16} {:>7.4}   {}",
                tok.token(id),
                prob,
                tok.decode(&filled, false)
            );
        }
    }
    Ok(())
}
