//! Hugging Face import and export: a directory with `config.json` + `model.safetensors` of
//! `BertForMaskedLM` / `BertModel`, `GPT2LMHeadModel` / `GPT2Model` or
//! `BartForConditionalGeneration` / `BartModel`, to and from the flat layout.
//!
//! Names are HF's already (see `build.rs`). What differs: GPT-2's `Conv1D` weights are stored
//! `[in, out]` (transposed here), tied output matrices are absent from our layout, bare models
//! (`BertModel`, ...) lack the task prefix (`bert.`, `transformer.`, `model.`) and the head, whose
//! tensors are then freshly initialised.

use std::collections::HashMap;
use std::path::Path;

use serde_json::{json, Value};

use super::config::{Arch, GeluForm, ModelConfig, NormPlacement, PositionKind};
use super::{model_from_params, TensorInfo, TrainModel};
use crate::attention::AttentionMaskSpec;
use crate::tensor_file::{Elements, TensorRef};
use crate::{Error, Result};

pub use crate::tensor_file::{read_safetensors, StoredTensor, TensorData};

/// Writes f32 tensors to a safetensors file (atomically, through [`crate::tensor_file::write`]).
pub fn write_safetensors(path: &Path, tensors: &[(String, Vec<usize>, Vec<f32>)]) -> Result<()> {
    let refs: Vec<TensorRef<'_>> = tensors
        .iter()
        .map(|(n, s, d)| (n.as_str(), &s[..], Elements::F32(d)))
        .collect();
    crate::tensor_file::write(path, &refs)
}

fn get<'a>(cfg: &'a Value, path: &Path, key: &str) -> Result<&'a Value> {
    cfg.get(key)
        .ok_or_else(|| Error::data(path, format!("config.json: missing field `{key}`")))
}

fn get_usize(cfg: &Value, path: &Path, key: &str) -> Result<usize> {
    get(cfg, path, key)?
        .as_u64()
        .map(|v| v as usize)
        .ok_or_else(|| {
            Error::data(
                path,
                format!("config.json: field `{key}` is not a non-negative integer"),
            )
        })
}

fn opt_usize(cfg: &Value, key: &str, default: usize) -> usize {
    cfg.get(key)
        .and_then(Value::as_u64)
        .map_or(default, |v| v as usize)
}

fn opt_f32(cfg: &Value, key: &str, default: f32) -> f32 {
    cfg.get(key)
        .and_then(Value::as_f64)
        .map_or(default, |v| v as f32)
}

fn opt_bool(cfg: &Value, key: &str, default: bool) -> bool {
    cfg.get(key).and_then(Value::as_bool).unwrap_or(default)
}

fn gelu_form(cfg: &Value, path: &Path, key: &str, default: &str) -> Result<GeluForm> {
    match cfg.get(key).and_then(Value::as_str).unwrap_or(default) {
        "gelu" => Ok(GeluForm::Erf),
        "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast" => Ok(GeluForm::Tanh),
        other => Err(Error::data(
            path,
            format!("config.json: `{key}` = {other:?} is not supported (gelu, gelu_new)"),
        )),
    }
}

/// Maps a Hugging Face `config.json` (bert, gpt2 or bart) to a [`ModelConfig`].
pub fn config_from_hf(hf: &Value, path: &Path) -> Result<ModelConfig> {
    let model_type = get(hf, path, "model_type")?.as_str().unwrap_or("");
    let d = ModelConfig::default();
    match model_type {
        "bert" => {
            if let Some(p) = hf.get("position_embedding_type").and_then(Value::as_str) {
                if p != "absolute" {
                    return Err(Error::data(path, format!("config.json: position_embedding_type {p:?} is not supported (absolute)")));
                }
            }
            Ok(ModelConfig {
                arch: Arch::Encoder,
                vocab_size: get_usize(hf, path, "vocab_size")?,
                d_model: get_usize(hf, path, "hidden_size")?,
                n_heads: get_usize(hf, path, "num_attention_heads")?,
                n_layers: get_usize(hf, path, "num_hidden_layers")?,
                n_decoder_layers: 0,
                d_ff: get_usize(hf, path, "intermediate_size")?,
                max_positions: get_usize(hf, path, "max_position_embeddings")?,
                type_vocab_size: opt_usize(hf, "type_vocab_size", 2),
                norm: NormPlacement::Post,
                positions: PositionKind::Learned,
                gelu: gelu_form(hf, path, "hidden_act", "gelu")?,
                layer_norm_eps: opt_f32(hf, "layer_norm_eps", 1e-12),
                tie_embeddings: opt_bool(hf, "tie_word_embeddings", true),
                dropout: opt_f32(hf, "hidden_dropout_prob", 0.1),
                attention: AttentionMaskSpec::Padding,
                pad_token_id: opt_usize(hf, "pad_token_id", 0) as u32,
                position_offset: 0,
                embed_scale: 1.0,
                embedding_layer_norm: true,
                init_std: opt_f32(hf, "initializer_range", d.init_std),
                precision: d.precision,
            })
        }
        "gpt2" => {
            let c = get_usize(hf, path, "n_embd")?;
            Ok(ModelConfig {
                arch: Arch::Decoder,
                vocab_size: get_usize(hf, path, "vocab_size")?,
                d_model: c,
                n_heads: get_usize(hf, path, "n_head")?,
                n_layers: get_usize(hf, path, "n_layer")?,
                n_decoder_layers: 0,
                d_ff: opt_usize(hf, "n_inner", c.saturating_mul(4)),
                max_positions: get_usize(hf, path, "n_positions")?,
                type_vocab_size: 0,
                norm: NormPlacement::Pre,
                positions: PositionKind::Learned,
                gelu: gelu_form(hf, path, "activation_function", "gelu_new")?,
                layer_norm_eps: opt_f32(hf, "layer_norm_epsilon", 1e-5),
                tie_embeddings: opt_bool(hf, "tie_word_embeddings", true),
                dropout: opt_f32(hf, "resid_pdrop", 0.1),
                attention: AttentionMaskSpec::Causal,
                pad_token_id: opt_usize(hf, "pad_token_id", 0) as u32,
                position_offset: 0,
                embed_scale: 1.0,
                embedding_layer_norm: false,
                init_std: opt_f32(hf, "initializer_range", d.init_std),
                precision: d.precision,
            })
        }
        "bart" => {
            let c = get_usize(hf, path, "d_model")?;
            let heads = get_usize(hf, path, "encoder_attention_heads")?;
            let ffn = get_usize(hf, path, "encoder_ffn_dim")?;
            if opt_usize(hf, "decoder_attention_heads", heads) != heads
                || opt_usize(hf, "decoder_ffn_dim", ffn) != ffn
            {
                return Err(Error::data(path, "config.json: encoder and decoder must have the same attention heads and FFN width"));
            }
            if opt_bool(hf, "add_final_layer_norm", false)
                || opt_bool(hf, "normalize_before", false)
            {
                return Err(Error::data(path, "config.json: pre-LN BART variants (normalize_before / add_final_layer_norm) are not supported"));
            }
            Ok(ModelConfig {
                arch: Arch::EncoderDecoder,
                vocab_size: get_usize(hf, path, "vocab_size")?,
                d_model: c,
                n_heads: heads,
                n_layers: get_usize(hf, path, "encoder_layers")?,
                n_decoder_layers: get_usize(hf, path, "decoder_layers")?,
                d_ff: ffn,
                max_positions: get_usize(hf, path, "max_position_embeddings")?,
                type_vocab_size: 0,
                norm: NormPlacement::Post,
                positions: PositionKind::Learned,
                gelu: gelu_form(hf, path, "activation_function", "gelu")?,
                layer_norm_eps: 1e-5,
                tie_embeddings: opt_bool(hf, "tie_word_embeddings", true),
                dropout: opt_f32(hf, "dropout", 0.1),
                attention: AttentionMaskSpec::Padding,
                pad_token_id: opt_usize(hf, "pad_token_id", 1) as u32,
                position_offset: 2,
                embed_scale: if opt_bool(hf, "scale_embedding", false) {
                    (c as f32).sqrt()
                } else {
                    1.0
                },
                embedding_layer_norm: true,
                init_std: opt_f32(hf, "init_std", d.init_std),
                precision: d.precision,
            })
        }
        other => Err(Error::data(
            path,
            format!("config.json: model_type {other:?} is not supported (bert, gpt2, bart)"),
        )),
    }
}

/// The HF `config.json` for a [`ModelConfig`]; errors when the config has no HF equivalent.
pub fn config_to_hf(cfg: &ModelConfig) -> Result<Value> {
    let act = |g: GeluForm| match g {
        GeluForm::Erf => "gelu",
        GeluForm::Tanh => "gelu_new",
    };
    let need = |ok: bool, what: &str| {
        if ok {
            Ok(())
        } else {
            Err(Error::config(
                format!("model.{what}"),
                "has no Hugging Face equivalent for this architecture",
            ))
        }
    };
    need(cfg.positions == PositionKind::Learned, "positions")?;
    match cfg.arch {
        Arch::Encoder => {
            need(cfg.norm == NormPlacement::Post, "norm")?;
            need(cfg.embedding_layer_norm, "embedding_layer_norm")?;
            need(
                cfg.position_offset == 0 && cfg.embed_scale == 1.0,
                "position_offset",
            )?;
            Ok(json!({
                "architectures": ["BertForMaskedLM"], "model_type": "bert",
                "vocab_size": cfg.vocab_size, "hidden_size": cfg.d_model, "num_attention_heads": cfg.n_heads,
                "num_hidden_layers": cfg.n_layers, "intermediate_size": cfg.d_ff,
                "max_position_embeddings": cfg.max_positions, "type_vocab_size": cfg.type_vocab_size.max(1),
                "hidden_act": act(cfg.gelu), "layer_norm_eps": cfg.layer_norm_eps,
                "hidden_dropout_prob": cfg.dropout, "attention_probs_dropout_prob": 0.0,
                "pad_token_id": cfg.pad_token_id, "tie_word_embeddings": cfg.tie_embeddings,
                "initializer_range": cfg.init_std, "position_embedding_type": "absolute",
            }))
        }
        Arch::Decoder => {
            need(cfg.norm == NormPlacement::Pre, "norm")?;
            need(!cfg.embedding_layer_norm, "embedding_layer_norm")?;
            need(cfg.type_vocab_size == 0, "type_vocab_size")?;
            need(
                cfg.position_offset == 0 && cfg.embed_scale == 1.0,
                "position_offset",
            )?;
            Ok(json!({
                "architectures": ["GPT2LMHeadModel"], "model_type": "gpt2",
                "vocab_size": cfg.vocab_size, "n_embd": cfg.d_model, "n_head": cfg.n_heads, "n_layer": cfg.n_layers,
                "n_inner": cfg.d_ff, "n_positions": cfg.max_positions, "n_ctx": cfg.max_positions,
                "activation_function": act(cfg.gelu), "layer_norm_epsilon": cfg.layer_norm_eps,
                "resid_pdrop": cfg.dropout, "embd_pdrop": cfg.dropout, "attn_pdrop": 0.0,
                "tie_word_embeddings": cfg.tie_embeddings, "initializer_range": cfg.init_std,
            }))
        }
        Arch::EncoderDecoder => {
            need(cfg.norm == NormPlacement::Post, "norm")?;
            need(cfg.embedding_layer_norm, "embedding_layer_norm")?;
            need(cfg.type_vocab_size == 0, "type_vocab_size")?;
            need(cfg.position_offset == 2, "position_offset")?;
            need(
                cfg.embed_scale == 1.0 || cfg.embed_scale == (cfg.d_model as f32).sqrt(),
                "embed_scale",
            )?;
            Ok(json!({
                "architectures": ["BartForConditionalGeneration"], "model_type": "bart",
                "vocab_size": cfg.vocab_size, "d_model": cfg.d_model,
                "encoder_attention_heads": cfg.n_heads, "decoder_attention_heads": cfg.n_heads,
                "encoder_layers": cfg.n_layers, "decoder_layers": cfg.n_decoder_layers,
                "encoder_ffn_dim": cfg.d_ff, "decoder_ffn_dim": cfg.d_ff,
                "max_position_embeddings": cfg.max_positions, "activation_function": act(cfg.gelu),
                "dropout": cfg.dropout, "attention_dropout": 0.0, "activation_dropout": 0.0,
                "scale_embedding": cfg.embed_scale != 1.0, "pad_token_id": cfg.pad_token_id,
                "tie_word_embeddings": cfg.tie_embeddings, "init_std": cfg.init_std,
            }))
        }
    }
}

/// GPT-2's `Conv1D` layers store their weight `[in, out]`; ours are `[out, in]`.
fn is_conv1d(cfg: &ModelConfig, name: &str) -> bool {
    cfg.arch == Arch::Decoder
        && [
            "attn.c_attn.weight",
            "attn.c_proj.weight",
            "mlp.c_fc.weight",
            "mlp.c_proj.weight",
        ]
        .iter()
        .any(|s| name.ends_with(s))
}

/// `[rows, cols]` row-major → `[cols, rows]`.
fn transpose(data: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut out = vec![0.0; data.len()];
    for r in 0..rows {
        for c in 0..cols {
            out[c * rows + r] = data[r * cols + c];
        }
    }
    out
}

/// Names a tensor may have in a file: ours, then without the task prefix (bare `BertModel`, ...),
/// then the per-stack copies of BART's shared embedding.
fn candidates(name: &str) -> Vec<String> {
    let mut c = vec![name.to_string()];
    for prefix in ["bert.", "transformer.", "model."] {
        if let Some(rest) = name.strip_prefix(prefix) {
            c.push(rest.to_string());
        }
    }
    if name == "model.shared.weight" {
        c.extend(
            [
                "model.encoder.embed_tokens.weight",
                "model.decoder.embed_tokens.weight",
                "encoder.embed_tokens.weight",
            ]
            .map(String::from),
        );
    }
    c
}

/// Head tensors a bare HF model (`BertModel`, `GPT2Model`, `BartModel`) does not have.
fn is_head(name: &str) -> bool {
    name.starts_with("cls.") || name == "lm_head.weight" || name == "final_logits_bias"
}

/// A model loaded from Hugging Face files.
pub struct HfImport {
    pub model: Box<dyn TrainModel>,
    /// Tensors the files did not hold (the head of a bare model), freshly initialised with `seed`.
    pub initialised: Vec<String>,
}

/// Parameters read from Hugging Face files, in the flat layout of `config`.
pub struct HfWeights {
    pub config: ModelConfig,
    pub params: Vec<f32>,
    /// Tensors the files did not hold (the head of a bare model), freshly initialised.
    pub initialised: Vec<String>,
}

/// Loads `dir/config.json` + `dir/model.safetensors`. Head tensors missing from a bare model are
/// initialised keyed by `seed` and listed in [`HfImport::initialised`].
pub fn load_hf(dir: &Path, seed: u64) -> Result<HfImport> {
    let w = read_hf(dir, seed)?;
    Ok(HfImport {
        model: model_from_params(w.config, w.params)?,
        initialised: w.initialised,
    })
}

/// Like [`load_hf`], but returns the config and flat parameters (e.g. for
/// [`LmModel::from_params`](super::LmModel::from_params)).
pub fn read_hf(dir: &Path, seed: u64) -> Result<HfWeights> {
    let cfg_path = dir.join("config.json");
    let text = std::fs::read_to_string(&cfg_path).map_err(|e| Error::io(&cfg_path, e))?;
    let hf: Value = serde_json::from_str(&text)
        .map_err(|e| Error::data(&cfg_path, format!("invalid JSON: {e}")))?;
    let config = config_from_hf(&hf, &cfg_path)?;
    let st_path = dir.join("model.safetensors");
    let stored = read_safetensors(&st_path)?;
    weights_from_tensors(config, &stored, &st_path, seed)
}

/// Builds a model of `config` from named tensors (HF names and HF storage conventions).
pub fn load_params(
    config: ModelConfig,
    stored: &HashMap<String, StoredTensor>,
    path: &Path,
    seed: u64,
) -> Result<HfImport> {
    let w = weights_from_tensors(config, stored, path, seed)?;
    Ok(HfImport {
        model: model_from_params(w.config, w.params)?,
        initialised: w.initialised,
    })
}

/// The flat parameters of `config` from named tensors; errors name the missing or mis-shaped one.
pub fn weights_from_tensors(
    config: ModelConfig,
    stored: &HashMap<String, StoredTensor>,
    path: &Path,
    seed: u64,
) -> Result<HfWeights> {
    config.validate()?;
    let layout = super::build::build(&config).layout;
    let mut params = layout.init(seed);
    let tensors: Vec<TensorInfo> = layout.into_tensors();
    let mut initialised = Vec::new();
    for t in &tensors {
        let found = candidates(&t.name)
            .into_iter()
            .find_map(|n| stored.get(&n).map(|s| (n, s)));
        let Some((file_name, s)) = found else {
            if is_head(&t.name) {
                initialised.push(t.name.clone());
                continue;
            }
            return Err(Error::data(
                path,
                format!("missing tensor `{}` (expected shape {:?})", t.name, t.shape),
            ));
        };
        let conv = is_conv1d(&config, &t.name);
        let want: Vec<usize> = if conv {
            vec![t.shape[1], t.shape[0]]
        } else {
            t.shape.clone()
        };
        if s.shape != want {
            return Err(Error::shape(
                format!("{}: tensor `{file_name}`", path.display()),
                format!("{want:?}"),
                format!("{:?}", s.shape),
            ));
        }
        let data = s.to_f32();
        let data = if conv {
            transpose(&data, want[0], want[1])
        } else {
            data
        };
        params[t.offset..t.offset + t.numel()].copy_from_slice(&data);
    }
    // A layer-count mismatch shows up as extra per-layer tensors: refuse rather than silently drop them.
    let known: std::collections::HashSet<String> =
        tensors.iter().flat_map(|t| candidates(&t.name)).collect();
    let mut extra: Vec<&String> = stored
        .keys()
        .filter(|k| {
            !known.contains(*k)
                && (k.contains(".layer.") || k.contains(".layers.") || k.contains(".h."))
        })
        .filter(|k| !k.ends_with(".attn.bias") && !k.ends_with(".attn.masked_bias"))
        .collect();
    extra.sort();
    if let Some(first) = extra.first() {
        return Err(Error::data(
            path,
            format!(
                "tensor `{first}` (and {} more) does not fit config.json's layer counts",
                extra.len() - 1
            ),
        ));
    }
    Ok(HfWeights {
        config,
        params,
        initialised,
    })
}

/// Writes `dir/config.json` and `dir/model.safetensors` in HF's layout (tied matrices omitted, as
/// `save_pretrained` does).
pub fn export_hf(model: &dyn TrainModel, dir: &Path) -> Result<()> {
    let cfg = model.config();
    let hf = config_to_hf(cfg)?;
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let params = model.params();
    let tensors: Vec<(String, Vec<usize>, Vec<f32>)> = model
        .tensors()
        .iter()
        .map(|t| {
            let data = params[t.offset..t.offset + t.numel()].to_vec();
            if is_conv1d(cfg, &t.name) {
                (
                    t.name.clone(),
                    vec![t.shape[1], t.shape[0]],
                    transpose(&data, t.shape[0], t.shape[1]),
                )
            } else {
                (t.name.clone(), t.shape.clone(), data)
            }
        })
        .collect();
    write_safetensors(&dir.join("model.safetensors"), &tensors)?;
    let cfg_path = dir.join("config.json");
    let text = serde_json::to_string_pretty(&hf).map_err(|e| Error::Other(e.to_string()))?;
    std::fs::write(&cfg_path, text).map_err(|e| Error::io(&cfg_path, e))
}
