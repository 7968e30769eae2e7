//! `remask fill-mask`: the top-k tokens, with probabilities, at each `[MASK]` of a text.

use std::path::PathBuf;

use anyhow::Context;
use remask::infer;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// A remask checkpoint (or run directory) or a Hugging Face BERT directory.
    #[arg(long, value_name = "DIR")]
    pub checkpoint: PathBuf,
    /// The text; write `[MASK]` where a token should be predicted (`<mask>` works too).
    pub text: String,
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
    let mut l = infer::load(&args.checkpoint, args.tokenizer.as_deref())?;
    if !l.missing_head.is_empty() {
        anyhow::bail!("{} is a bare encoder without an MLM head ({} missing): fill-mask needs BertForMaskedLM weights", args.checkpoint.display(), l.missing_head[0]);
    }
    let tok = l.tokenizer()?.clone();
    let (mask_text, mask_id) = tok.mask.clone().context("the tokenizer has no mask token ([MASK] or <mask>)")?;
    let text = args.text.replace("[MASK]", &mask_text).replace("<mask>", &mask_text);
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
            println!("  {:<16} {:>7.4}   {}", tok.token(id), prob, tok.decode(&filled, false));
        }
    }
    Ok(())
}
