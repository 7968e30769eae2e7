//! `remask forward`: one forward pass of a remask checkpoint or a Hugging Face directory on inputs
//! from a safetensors file (or texts), outputs written with `transformers`' names.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use remask::infer::{self, ForwardInputs};
use remask::model::hf::read_safetensors;
use safetensors::tensor::{Dtype, TensorView};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// A remask checkpoint (or run directory) or a Hugging Face model directory (config.json +
    /// model.safetensors [+ tokenizer.json]); the kind is detected.
    #[arg(long, value_name = "DIR")]
    pub model: PathBuf,
    /// Inputs: `input_ids` (I64 or I32, [batch, seq]), optional `attention_mask`, `token_type_ids`,
    /// `decoder_input_ids`, `decoder_attention_mask`.
    #[arg(long, value_name = "IN.safetensors", required_unless_present = "text", conflicts_with = "text")]
    pub inputs: Option<PathBuf>,
    /// Tokenize this text with the model's tokenizer instead of reading --inputs (repeatable: one row
    /// each, padded at the end).
    #[arg(long, value_name = "TEXT")]
    pub text: Vec<String>,
    /// The tokenizer.json to use instead of the model's.
    #[arg(long, value_name = "FILE")]
    pub tokenizer: Option<PathBuf>,
    /// Where to write `logits`, `last_hidden_state`, `encoder_last_hidden_state` (F32) and, with
    /// --text, the `input_ids` / `attention_mask` used (I64).
    #[arg(long, value_name = "OUT.safetensors")]
    pub out: PathBuf,
}

fn ids_of(path: &Path, t: &remask::model::hf::StoredTensor, name: &str) -> anyhow::Result<(Vec<u32>, usize, usize)> {
    if t.shape.len() != 2 {
        bail!("{}: tensor `{name}` has shape {:?}; expected [batch, seq]", path.display(), t.shape);
    }
    if matches!(t.data, remask::model::hf::TensorData::F32(_)) {
        bail!("{}: tensor `{name}` is a float tensor; expected I64 or I32 ids", path.display());
    }
    let v = t.to_i64();
    if let Some(bad) = v.iter().find(|&&x| x < 0 || x > u32::MAX as i64) {
        bail!("{}: tensor `{name}` holds {bad}; ids must be non-negative", path.display());
    }
    Ok((v.into_iter().map(|x| x as u32).collect(), t.shape[0], t.shape[1]))
}

/// Writes F32 and I64 tensors to a safetensors file.
pub fn write_mixed(path: &Path, f32s: &[(&str, &[usize], &[f32])], i64s: &[(&str, &[usize], Vec<i64>)]) -> anyhow::Result<()> {
    let mut bufs: Vec<(String, Vec<usize>, Dtype, Vec<u8>)> = Vec::new();
    for (n, s, d) in f32s {
        bufs.push((n.to_string(), s.to_vec(), Dtype::F32, d.iter().flat_map(|x| x.to_le_bytes()).collect()));
    }
    for (n, s, d) in i64s {
        bufs.push((n.to_string(), s.to_vec(), Dtype::I64, d.iter().flat_map(|x| x.to_le_bytes()).collect()));
    }
    let views = bufs
        .iter()
        .map(|(n, s, dt, b)| TensorView::new(*dt, s.clone(), b).map(|v| (n.clone(), v)))
        .collect::<Result<Vec<_>, _>>()
        .context("building safetensors views")?;
    safetensors::serialize_to_file(views, None, path).with_context(|| format!("writing {}", path.display()))
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let mut l = infer::load(&args.model, args.tokenizer.as_deref())?;
    let mut text_ids: Option<(Vec<u32>, Vec<u32>)> = None;
    let inp = if let Some(path) = &args.inputs {
        let st = read_safetensors(path)?;
        let x = st.get("input_ids").with_context(|| format!("{}: missing tensor `input_ids` ([batch, seq], I64 or I32)", path.display()))?;
        let (input_ids, b, t) = ids_of(path, x, "input_ids")?;
        let opt = |name: &str| -> anyhow::Result<Option<(Vec<u32>, usize, usize)>> { st.get(name).map(|x| ids_of(path, x, name)).transpose() };
        let same = |name: &str, v: Option<(Vec<u32>, usize, usize)>, tt: usize| -> anyhow::Result<Option<Vec<u32>>> {
            match v {
                Some((_, bb, ss)) if (bb, ss) != (b, tt) => {
                    bail!("{}: tensor `{name}` has shape [{bb}, {ss}]; expected [{b}, {tt}]", path.display())
                }
                Some((d, _, _)) => Ok(Some(d)),
                None => Ok(None),
            }
        };
        let dec = opt("decoder_input_ids")?;
        let td = dec.as_ref().map_or(t, |d| d.2);
        if let Some((_, bb, _)) = &dec {
            if *bb != b {
                bail!("{}: tensor `decoder_input_ids` has {bb} rows; `input_ids` has {b}", path.display());
            }
        }
        ForwardInputs {
            batch: b,
            seq: t,
            input_ids,
            attention_mask: same("attention_mask", opt("attention_mask")?, t)?,
            token_type_ids: same("token_type_ids", opt("token_type_ids")?, t)?,
            decoder_attention_mask: same("decoder_attention_mask", opt("decoder_attention_mask")?, td)?,
            decoder_input_ids: dec.map(|(d, _, s)| (d, s)),
        }
    } else {
        let tok = l.tokenizer()?;
        let rows = args.text.iter().map(|s| tok.encode(s)).collect::<Result<Vec<_>, _>>()?;
        let t = rows.iter().map(Vec::len).max().unwrap_or(0);
        if t == 0 {
            bail!("--text gave no tokens");
        }
        let b = rows.len();
        let mut ids = vec![l.specials.pad; b * t];
        let mut mask = vec![0u32; b * t];
        for (r, row) in rows.iter().enumerate() {
            ids[r * t..r * t + row.len()].copy_from_slice(row);
            mask[r * t..r * t + row.len()].fill(1);
        }
        text_ids = Some((ids.clone(), mask.clone()));
        ForwardInputs { batch: b, seq: t, input_ids: ids, attention_mask: Some(mask), ..Default::default() }
    };
    let with_logits = l.missing_head.is_empty();
    if !with_logits {
        eprintln!("note: {} is a bare model without an LM head ({} missing): writing hidden states only", args.model.display(), l.missing_head.join(", "));
    }
    let out = infer::forward(&mut l.model, &inp, l.specials.decoder_start, with_logits)?;
    let named = out.named();
    let f32s: Vec<(&str, &[usize], &[f32])> = named.iter().map(|(n, t)| (*n, &t.shape[..], &t.data[..])).collect();
    let shape = [inp.batch, inp.seq];
    let i64s: Vec<(&str, &[usize], Vec<i64>)> = match &text_ids {
        Some((ids, mask)) => vec![
            ("input_ids", &shape[..], ids.iter().map(|&x| x as i64).collect()),
            ("attention_mask", &shape[..], mask.iter().map(|&x| x as i64).collect()),
        ],
        None => Vec::new(),
    };
    write_mixed(&args.out, &f32s, &i64s)?;
    for (n, t) in &named {
        println!("{n} {:?}", t.shape);
    }
    Ok(())
}
