//! One full forward pass with `transformers`' input and output names, for comparing with other
//! implementations (`remask forward`).
//!
//! B = batch, T = encoder / decoder-only positions, Td = decoder positions, C = channels, V = vocabulary.

use super::load::InferModel;
use crate::model::Arch;
use crate::{Batch, DecoderBatch, Error, Result};

/// Model inputs, row-major.
#[derive(Clone, Debug, Default)]
pub struct ForwardInputs {
    pub batch: usize,
    pub seq: usize,
    /// `[B,T]`.
    pub input_ids: Vec<u32>,
    /// `[B,T]`, 1 = real token; padding must sit at the end of each row. None = all real.
    pub attention_mask: Option<Vec<u32>>,
    /// `[B,T]` (BERT segments). None = all 0.
    pub token_type_ids: Option<Vec<u32>>,
    /// `[B,Td]` and Td (encoder-decoder). None = `input_ids` shifted right after the decoder start
    /// token, as `BartForConditionalGeneration` does.
    pub decoder_input_ids: Option<(Vec<u32>, usize)>,
    /// `[B,Td]`. None = all real.
    pub decoder_attention_mask: Option<Vec<u32>>,
}

/// One output tensor (f32).
#[derive(Clone, Debug, PartialEq)]
pub struct OutTensor {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

/// Outputs named as `transformers` names them. Rows at padded positions hold whatever the model
/// computes there (compare only where the attention mask is 1).
#[derive(Clone, Debug, Default)]
pub struct ForwardOutputs {
    /// `[B,T,V]` (encoder-decoder: `[B,Td,V]`).
    pub logits: Option<OutTensor>,
    /// `[B,T,C]`: the encoder output (BERT), after `ln_f` (GPT-2), the decoder output (BART).
    pub last_hidden_state: Option<OutTensor>,
    /// `[B,T,C]`: the encoder output of an encoder-decoder.
    pub encoder_last_hidden_state: Option<OutTensor>,
}

impl ForwardOutputs {
    /// (name, tensor) pairs of the outputs present.
    pub fn named(&self) -> Vec<(&'static str, &OutTensor)> {
        [
            ("logits", &self.logits),
            ("last_hidden_state", &self.last_hidden_state),
            ("encoder_last_hidden_state", &self.encoder_last_hidden_state),
        ]
        .into_iter()
        .filter_map(|(n, t)| t.as_ref().map(|t| (n, t)))
        .collect()
    }
}

/// Real-token counts of a `[B,T]` attention mask whose padding sits at the end of each row.
pub fn lengths_of(mask: Option<&[u32]>, b: usize, t: usize, name: &str) -> Result<Vec<u32>> {
    let Some(mask) = mask else {
        return Ok(vec![t as u32; b]);
    };
    if mask.len() != b * t {
        return Err(Error::shape(
            name,
            format!("{} elements ([{b}, {t}])", b * t),
            mask.len(),
        ));
    }
    (0..b)
        .map(|r| {
            let row = &mask[r * t..(r + 1) * t];
            let len = row.iter().take_while(|&&m| m != 0).count();
            if row[len..].iter().any(|&m| m != 0) {
                return Err(Error::shape(
                    format!("{name}[{r}]"),
                    "ones then zeros (padding at the end of the row; left padding is not supported)",
                    format!("{row:?}"),
                ));
            }
            Ok(len as u32)
        })
        .collect()
}

/// An inference batch: no labels, positions 0..T per row, padding from `lengths`.
pub fn batch_of(ids: &[u32], types: Option<&[u32]>, lengths: &[u32], b: usize, t: usize) -> Batch {
    let batch = Batch::new(b, t)
        .with_input_ids(ids.to_vec())
        .with_single_documents(lengths.to_vec());
    match types {
        Some(types) => batch.with_token_type_ids(types.to_vec()),
        None => batch,
    }
}

/// Runs `model` on `inp`. `decoder_start` is used only when an encoder-decoder gets no
/// `decoder_input_ids`. `with_logits` = false skips reporting logits (a bare model's random head).
pub fn forward(
    model: &mut InferModel,
    inp: &ForwardInputs,
    decoder_start: Option<u32>,
    with_logits: bool,
) -> Result<ForwardOutputs> {
    let (b, t) = (inp.batch, inp.seq);
    if inp.input_ids.len() != b * t {
        return Err(Error::shape(
            "input_ids",
            format!("{} elements ([{b}, {t}])", b * t),
            inp.input_ids.len(),
        ));
    }
    if let Some(tt) = &inp.token_type_ids {
        if tt.len() != b * t {
            return Err(Error::shape(
                "token_type_ids",
                format!("{} elements ([{b}, {t}])", b * t),
                tt.len(),
            ));
        }
    }
    let cfg = model.config().clone();
    let (v, c) = (cfg.vocab_size, cfg.d_model);
    let lengths = lengths_of(inp.attention_mask.as_deref(), b, t, "attention_mask")?;
    let mut batch = batch_of(
        &inp.input_ids,
        inp.token_type_ids.as_deref(),
        &lengths,
        b,
        t,
    );
    let mut out = ForwardOutputs::default();
    match model {
        InferModel::Lm(m) => {
            if inp.decoder_input_ids.is_some() {
                return Err(Error::config(
                    "decoder_input_ids",
                    format!(
                        "given, but the model is {:?}-only (no decoder side)",
                        cfg.arch
                    ),
                ));
            }
            let logits = m.logits(&batch)?.to_vec();
            if with_logits {
                out.logits = Some(OutTensor {
                    shape: vec![b, t, v],
                    data: logits,
                });
            }
            out.last_hidden_state = Some(OutTensor {
                shape: vec![b, t, c],
                data: m.hidden_states().to_vec(),
            });
        }
        InferModel::Seq2Seq(m) => {
            debug_assert_eq!(cfg.arch, Arch::EncoderDecoder);
            let (dids, td) = match &inp.decoder_input_ids {
                Some((ids, td)) => {
                    if ids.len() != b * td {
                        return Err(Error::shape(
                            "decoder_input_ids",
                            format!("{} elements ([{b}, {td}])", b * td),
                            ids.len(),
                        ));
                    }
                    (ids.clone(), *td)
                }
                None => {
                    let start = decoder_start.ok_or_else(|| {
                        Error::config(
                            "decoder_input_ids",
                            "missing, and the model has no decoder_start_token_id to derive them",
                        )
                    })?;
                    let mut d = Vec::with_capacity(b * t);
                    for r in 0..b {
                        d.push(start);
                        d.extend_from_slice(&inp.input_ids[r * t..(r + 1) * t - 1]);
                    }
                    (d, t)
                }
            };
            let dlen = lengths_of(
                inp.decoder_attention_mask.as_deref(),
                b,
                td,
                "decoder_attention_mask",
            )?;
            batch.decoder = Some(
                DecoderBatch::new(b, td)
                    .with_input_ids(dids)
                    .with_lengths(dlen),
            );
            let logits = m.logits(&batch)?.to_vec();
            if with_logits {
                out.logits = Some(OutTensor {
                    shape: vec![b, td, v],
                    data: logits,
                });
            }
            out.last_hidden_state = Some(OutTensor {
                shape: vec![b, td, c],
                data: m.decoder_hidden_states().to_vec(),
            });
            out.encoder_last_hidden_state = Some(OutTensor {
                shape: vec![b, t, c],
                data: m.encoder_hidden_states().to_vec(),
            });
        }
    }
    Ok(out)
}
