//! `remask forward`: one forward pass of a remask checkpoint or a Hugging Face directory on inputs
//! from a safetensors file (or texts), outputs written with `transformers`' names.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use remask::infer::{self, ForwardInputs};
use remask::tensor_file::{self, read_safetensors, Elements, StoredTensor, TensorData, TensorRef};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// A remask checkpoint, a run directory (its newest checkpoint that verifies) or a Hugging Face
    /// model directory (config.json + model.safetensors [+ tokenizer.json]); the kind is detected.
    #[arg(long = "model", visible_alias = "checkpoint", value_name = "DIR")]
    pub model: PathBuf,
    /// Inputs: `input_ids` (I64 or I32, [batch, seq]), optional `attention_mask`, `token_type_ids`,
    /// `decoder_input_ids`, `decoder_attention_mask`.
    #[arg(long, value_name = "IN.safetensors", required_unless_present_any = ["text", "text_flag"], conflicts_with_all = ["text", "text_flag"])]
    pub inputs: Option<PathBuf>,
    /// Tokenize these texts with the model's tokenizer instead of reading --inputs (one row each,
    /// padded at the end). Also accepted as `--text TEXT` (repeatable).
    #[arg(value_name = "TEXT")]
    pub text: Vec<String>,
    #[arg(long = "text", value_name = "TEXT", hide = true)]
    pub text_flag: Vec<String>,
    /// The tokenizer.json to use instead of the model's.
    #[arg(long, value_name = "FILE")]
    pub tokenizer: Option<PathBuf>,
    /// Where to write `logits`, `last_hidden_state`, `encoder_last_hidden_state` (F32) and, with
    /// --text, the `input_ids` / `attention_mask` used (I64).
    #[arg(long, value_name = "OUT.safetensors")]
    pub out: PathBuf,
}

fn ids_of(path: &Path, t: &StoredTensor, name: &str) -> anyhow::Result<(Vec<u32>, usize, usize)> {
    if t.shape.len() != 2 {
        bail!(
            "{}: tensor `{name}` has shape {:?}; expected [batch, seq]",
            path.display(),
            t.shape
        );
    }
    if matches!(t.data, TensorData::F32(_)) {
        bail!(
            "{}: tensor `{name}` is a float tensor; expected I64 or I32 ids",
            path.display()
        );
    }
    let v = t.to_i64();
    if let Some(bad) = v.iter().find(|&&x| x < 0 || x > u32::MAX as i64) {
        bail!(
            "{}: tensor `{name}` holds {bad}; ids must be non-negative",
            path.display()
        );
    }
    Ok((
        v.into_iter().map(|x| x as u32).collect(),
        t.shape[0],
        t.shape[1],
    ))
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let mut l = infer::load(&args.model, args.tokenizer.as_deref())?;
    super::warn_skipped(&l.skipped);
    let mut text_ids: Option<(Vec<u32>, Vec<u32>)> = None;
    let inp = if let Some(path) = &args.inputs {
        let st = read_safetensors(path)?;
        let x = st.get("input_ids").with_context(|| {
            format!(
                "{}: missing tensor `input_ids` ([batch, seq], I64 or I32)",
                path.display()
            )
        })?;
        let (input_ids, b, t) = ids_of(path, x, "input_ids")?;
        let opt = |name: &str| -> anyhow::Result<Option<(Vec<u32>, usize, usize)>> {
            st.get(name).map(|x| ids_of(path, x, name)).transpose()
        };
        let same = |name: &str,
                    v: Option<(Vec<u32>, usize, usize)>,
                    tt: usize|
         -> anyhow::Result<Option<Vec<u32>>> {
            match v {
                Some((_, bb, ss)) if (bb, ss) != (b, tt) => {
                    bail!(
                        "{}: tensor `{name}` has shape [{bb}, {ss}]; expected [{b}, {tt}]",
                        path.display()
                    )
                }
                Some((d, _, _)) => Ok(Some(d)),
                None => Ok(None),
            }
        };
        let dec = opt("decoder_input_ids")?;
        let td = dec.as_ref().map_or(t, |d| d.2);
        if let Some((_, bb, _)) = &dec {
            if *bb != b {
                bail!(
                    "{}: tensor `decoder_input_ids` has {bb} rows; `input_ids` has {b}",
                    path.display()
                );
            }
        }
        ForwardInputs {
            batch: b,
            seq: t,
            input_ids,
            attention_mask: same("attention_mask", opt("attention_mask")?, t)?,
            token_type_ids: same("token_type_ids", opt("token_type_ids")?, t)?,
            decoder_attention_mask: same(
                "decoder_attention_mask",
                opt("decoder_attention_mask")?,
                td,
            )?,
            decoder_input_ids: dec.map(|(d, _, s)| (d, s)),
        }
    } else {
        let tok = l.tokenizer()?;
        let rows = args
            .text
            .iter()
            .chain(&args.text_flag)
            .map(|s| tok.encode(s))
            .collect::<Result<Vec<_>, _>>()?;
        let t = rows.iter().map(Vec::len).max().unwrap_or(0);
        if t == 0 {
            bail!("the texts gave no tokens");
        }
        let b = rows.len();
        let mut ids = vec![l.specials.pad; b * t];
        let mut mask = vec![0u32; b * t];
        for (r, row) in rows.iter().enumerate() {
            ids[r * t..r * t + row.len()].copy_from_slice(row);
            mask[r * t..r * t + row.len()].fill(1);
        }
        text_ids = Some((ids.clone(), mask.clone()));
        ForwardInputs {
            batch: b,
            seq: t,
            input_ids: ids,
            attention_mask: Some(mask),
            ..Default::default()
        }
    };
    let with_logits = l.missing_head.is_empty();
    if !with_logits {
        eprintln!(
            "note: {} is a bare model without an LM head ({} missing): writing hidden states only",
            args.model.display(),
            l.missing_head.join(", ")
        );
    }
    let out = infer::forward(&mut l.model, &inp, l.specials.decoder_start, with_logits)?;
    let named = out.named();
    let shape = [inp.batch, inp.seq];
    let i64s: Vec<(&str, Vec<i64>)> = match &text_ids {
        Some((ids, mask)) => vec![
            ("input_ids", ids.iter().map(|&x| x as i64).collect()),
            ("attention_mask", mask.iter().map(|&x| x as i64).collect()),
        ],
        None => Vec::new(),
    };
    let mut tensors: Vec<TensorRef<'_>> = named
        .iter()
        .map(|(n, t)| (*n, &t.shape[..], Elements::F32(&t.data)))
        .collect();
    tensors.extend(i64s.iter().map(|(n, v)| (*n, &shape[..], Elements::I64(v))));
    tensor_file::write(&args.out, &tensors)
        .with_context(|| format!("writing {}", args.out.display()))?;
    for (n, t) in &named {
        println!("{n} {:?}", t.shape);
    }
    Ok(())
}
