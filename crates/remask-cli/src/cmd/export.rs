//! `remask export`: write a remask checkpoint as a Hugging Face directory (`config.json`,
//! `model.safetensors`, `tokenizer.json` when known) that `transformers` loads with
//! `from_pretrained` (BertForMaskedLM, GPT2LMHeadModel, BartForConditionalGeneration).

use std::path::PathBuf;

use anyhow::Context;
use remask::infer;
use remask::model::hf::export_hf;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// A remask checkpoint or run directory (a Hugging Face directory is re-exported as is).
    #[arg(long = "model", visible_alias = "checkpoint", value_name = "DIR")]
    pub model: PathBuf,
    /// The output directory.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// The tokenizer.json to copy instead of the model's.
    #[arg(long, value_name = "FILE")]
    pub tokenizer: Option<PathBuf>,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let l = infer::load(&args.model, args.tokenizer.as_deref())?;
    super::warn_skipped(&l.skipped);
    export_hf(l.model.as_train(), &args.out)?;
    // Special ids for `generate` in transformers.
    let cfg_path = args.out.join("config.json");
    let mut cfg: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&cfg_path)?)?;
    let s = &l.specials;
    let seq2seq = l.model.config().arch == remask::model::Arch::EncoderDecoder;
    for (k, v) in [
        ("bos_token_id", s.bos),
        ("eos_token_id", s.eos),
        ("decoder_start_token_id", s.decoder_start),
    ] {
        if k == "decoder_start_token_id" && !seq2seq {
            continue;
        }
        // Unknown ids are written as null: transformers' defaults (GPT-2's 50256) may lie outside
        // a small vocabulary.
        if let Some(o) = cfg.as_object_mut() {
            o.insert(k.into(), v.map_or(serde_json::Value::Null, Into::into));
        }
    }
    std::fs::write(&cfg_path, serde_json::to_string_pretty(&cfg)?)
        .with_context(|| format!("writing {}", cfg_path.display()))?;
    match &l.tokenizer_path {
        Some(p) => {
            std::fs::copy(p, args.out.join("tokenizer.json"))
                .with_context(|| format!("copying {}", p.display()))?;
        }
        None => eprintln!(
            "note: no tokenizer.json found for {}; the export has none",
            args.model.display()
        ),
    }
    println!(
        "wrote {} ({} tensors, {:?})",
        args.out.display(),
        l.model.tensors().len(),
        l.model.config().arch
    );
    Ok(())
}
