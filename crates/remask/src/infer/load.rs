//! Loading a model directory for inference. The kind is resolved by [`super::model_dir::open`]:
//! - a **remask checkpoint** (`DONE` marker, `config.json` with remask's `ModelConfig`,
//!   `model.safetensors`), or a run directory (its newest checkpoint that verifies is used);
//! - a **Hugging Face directory**: `config.json` with a `model_type` (bert, gpt2, bart) and
//!   `model.safetensors`, optionally `tokenizer.json`.
//!
//! The tokenizer of a remask checkpoint is looked for in the checkpoint directory, the run directory
//! and any directory its `run_config.json` names (the prepared data's `tokenizer.json`).

use std::path::{Path, PathBuf};

use serde_json::Value;

use super::model_dir::{self, ModelDir};
use super::tokenize::InferTokenizer;
use crate::model::hf::load_hf;
use crate::model::{
    Arch, EncoderDecoderModel, LmModel, ModelConfig, Precision, TensorInfo, TrainModel,
};
use crate::train::checkpoint::{LoadedCheckpoint, Skipped};
use crate::{Error, Result};

/// Where a loaded model came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    HuggingFace,
    Checkpoint,
}

/// Token ids generation, translation and tokenisation need (None where the model has none).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SpecialIds {
    pub pad: u32,
    /// Start of a text (`[CLS]`, `<s>`).
    pub bos: Option<u32>,
    /// End of a text (`[SEP]`, `</s>`, GPT-2's `<|endoftext|>`): generation stops there.
    pub eos: Option<u32>,
    /// First decoder input of an encoder-decoder.
    pub decoder_start: Option<u32>,
    pub mask: Option<u32>,
}

/// A concrete model (the hidden states are not part of `TrainModel`). One exists per process, so
/// the size difference of the variants does not matter.
#[allow(clippy::large_enum_variant)]
pub enum InferModel {
    /// Encoder with MLM head, or decoder with next-token head.
    Lm(LmModel),
    /// Encoder-decoder.
    Seq2Seq(EncoderDecoderModel),
}

impl InferModel {
    /// The model of `config` over `params` (remask layout), computing in f32 whatever
    /// `config.precision` says (inference always runs in f32).
    pub fn from_params(config: ModelConfig, params: Vec<f32>) -> Result<Self> {
        let config = ModelConfig {
            precision: Precision::Fp32,
            ..config
        };
        Ok(match config.arch {
            Arch::EncoderDecoder => {
                InferModel::Seq2Seq(EncoderDecoderModel::from_params(config, params)?)
            }
            _ => InferModel::Lm(LmModel::from_params(config, params)?),
        })
    }

    pub fn as_train(&self) -> &dyn TrainModel {
        match self {
            InferModel::Lm(m) => m,
            InferModel::Seq2Seq(m) => m,
        }
    }

    pub fn as_train_mut(&mut self) -> &mut dyn TrainModel {
        match self {
            InferModel::Lm(m) => m,
            InferModel::Seq2Seq(m) => m,
        }
    }

    pub fn config(&self) -> &ModelConfig {
        self.as_train().config()
    }

    pub fn params(&self) -> &[f32] {
        self.as_train().params()
    }

    pub fn tensors(&self) -> &[TensorInfo] {
        self.as_train().tensors()
    }
}

/// A model ready for inference.
pub struct Loaded {
    pub model: InferModel,
    pub tokenizer: Option<InferTokenizer>,
    pub specials: SpecialIds,
    pub source: Source,
    /// The directory the weights came from (the checkpoint itself for a run directory).
    pub dir: PathBuf,
    /// The `tokenizer.json` used, if any.
    pub tokenizer_path: Option<PathBuf>,
    /// Head tensors a bare Hugging Face model (`BertModel`, ...) lacked; they are random, so its
    /// logits mean nothing (hidden states are exact).
    pub missing_head: Vec<String>,
    /// Newer checkpoints of a run directory passed over because they failed verification (for a
    /// warning).
    pub skipped: Vec<Skipped>,
}

impl Loaded {
    /// The tokenizer, or an error saying where it was looked for.
    pub fn tokenizer(&self) -> Result<&InferTokenizer> {
        self.tokenizer.as_ref().ok_or_else(|| {
            Error::data(
                &self.dir,
                "no tokenizer.json found (looked in the model directory, its run directory, RUN_DIR/data and the directories its run_config.json names); pass --tokenizer FILE",
            )
        })
    }
}

fn read_json(path: &Path) -> Result<Value> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    serde_json::from_str(&text).map_err(|e| Error::data(path, format!("invalid JSON: {e}")))
}

/// Loads `dir` (see the module docs). `tokenizer` overrides the tokenizer lookup.
pub fn load(dir: &Path, tokenizer: Option<&Path>) -> Result<Loaded> {
    let dir = match model_dir::open(dir)? {
        ModelDir::Checkpoint {
            ckpt,
            run_dir,
            skipped,
        } => return load_checkpoint(*ckpt, &run_dir, tokenizer, skipped),
        ModelDir::HuggingFace { dir } => dir,
    };
    let dir = dir.as_path();
    let hf = read_json(&dir.join("config.json"))?;
    let imp = load_hf(dir, 0)?;
    let config = imp.model.config().clone();
    let params = imp.model.params().to_vec();
    let model = InferModel::from_params(config, params)?;
    let tok_path = match tokenizer {
        Some(p) => Some(p.to_path_buf()),
        None => Some(dir.join("tokenizer.json")).filter(|p| p.is_file()),
    };
    let tok = tok_path.as_deref().map(InferTokenizer::load).transpose()?;
    let id = |k: &str| hf.get(k).and_then(Value::as_u64).map(|v| v as u32);
    let tid = |names: &[&str]| {
        tok.as_ref()
            .and_then(|t| names.iter().find_map(|n| t.token_to_id(n)))
    };
    let cls = tid(&["[CLS]", "<s>"]);
    let sep = tid(&["[SEP]", "</s>"]);
    let specials = SpecialIds {
        pad: model.config().pad_token_id,
        bos: id("bos_token_id").or(cls),
        eos: id("eos_token_id").or(sep),
        decoder_start: id("decoder_start_token_id").or(id("eos_token_id")),
        mask: tok.as_ref().and_then(|t| t.mask.as_ref().map(|m| m.1)),
    };
    let loaded = Loaded {
        model,
        tokenizer: tok,
        specials,
        source: Source::HuggingFace,
        dir: dir.to_path_buf(),
        tokenizer_path: tok_path,
        missing_head: imp.initialised,
        skipped: Vec::new(),
    };
    check_vocab(&loaded)?;
    Ok(loaded)
}

/// Every string in `v` (for finding directories a run config names).
fn strings(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::String(s) => out.push(s.clone()),
        Value::Array(a) => a.iter().for_each(|x| strings(x, out)),
        Value::Object(o) => o.values().for_each(|x| strings(x, out)),
        _ => {}
    }
}

fn find_tokenizer(ckpt: &Path, run_dir: &Path) -> Option<PathBuf> {
    // `remask train` prepares its data into RUN_DIR/data when the config names no `data.dir`.
    let mut dirs = vec![
        ckpt.to_path_buf(),
        run_dir.to_path_buf(),
        run_dir.join("data"),
    ];
    if let Ok(rc) = read_json(&ckpt.join("run_config.json")) {
        let mut s = Vec::new();
        strings(&rc, &mut s);
        dirs.extend(s.into_iter().map(PathBuf::from));
    }
    dirs.into_iter()
        .map(|d| d.join("tokenizer.json"))
        .find(|p| p.is_file())
}

fn load_checkpoint(
    loaded: LoadedCheckpoint,
    run_dir: &Path,
    tokenizer: Option<&Path>,
    skipped: Vec<Skipped>,
) -> Result<Loaded> {
    let ckpt = loaded.dir.as_path();
    // Inference computes in f32 whatever precision the run trained in (its master weights are
    // f32), so a bf16-trained model also runs on CPUs without bf16 and the KV cache matches it.
    let config = ModelConfig {
        precision: Precision::Fp32,
        ..loaded.model_config.clone()
    };
    config.validate()?;
    let mut params = vec![
        0.0f32;
        crate::model::layout_of(&config)?
            .iter()
            .map(TensorInfo::numel)
            .sum()
    ];
    for t in crate::model::layout_of(&config)? {
        let (shape, data) = loaded
            .weights
            .get(&t.name)
            .ok_or_else(|| Error::Checkpoint {
                path: ckpt.to_path_buf(),
                message: format!(
                    "model.safetensors lacks tensor `{}` (expected shape {:?})",
                    t.name, t.shape
                ),
            })?;
        if *shape != t.shape {
            return Err(Error::shape(
                format!("{}: tensor `{}`", ckpt.display(), t.name),
                format!("{:?}", t.shape),
                format!("{shape:?}"),
            ));
        }
        params[t.offset..t.offset + t.numel()].copy_from_slice(data);
    }
    let model = InferModel::from_params(config, params)?;
    let tok_path = tokenizer
        .map(Path::to_path_buf)
        .or_else(|| find_tokenizer(ckpt, run_dir));
    let tok = tok_path.as_deref().map(InferTokenizer::load).transpose()?;
    let tid = |names: &[&str]| {
        tok.as_ref()
            .and_then(|t| names.iter().find_map(|n| t.token_to_id(n)))
    };
    let bos = tid(&["[CLS]", "<s>"]);
    let specials = SpecialIds {
        pad: model.config().pad_token_id,
        bos,
        eos: tid(&["[SEP]", "</s>"]),
        // The data pipeline starts decoder inputs with the cls / bos token.
        decoder_start: bos,
        mask: tok.as_ref().and_then(|t| t.mask.as_ref().map(|m| m.1)),
    };
    let l = Loaded {
        model,
        tokenizer: tok,
        specials,
        source: Source::Checkpoint,
        dir: ckpt.to_path_buf(),
        tokenizer_path: tok_path,
        missing_head: Vec::new(),
        skipped,
    };
    check_vocab(&l)?;
    Ok(l)
}

/// A tokenizer with more ids than the model's embedding rows would index out of the table.
fn check_vocab(l: &Loaded) -> Result<()> {
    if let (Some(t), Some(p)) = (&l.tokenizer, &l.tokenizer_path) {
        let (tv, mv) = (t.vocab_size(), l.model.config().vocab_size);
        if tv > mv {
            return Err(Error::data(p, format!("tokenizer has {tv} tokens but the model's vocab_size is {mv} (config.json): they do not belong together")));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tokenizer_lookup_tests {
    use super::find_tokenizer;

    /// A run trained by `remask train` without `data.dir` keeps its tokenizer in RUN_DIR/data; a
    /// tokenizer in the checkpoint itself or the run directory wins over it, and a directory named
    /// in the checkpoint's run config is searched last.
    #[test]
    fn tokenizer_is_found_in_checkpoint_run_dir_and_run_data_in_that_order() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let run = tmp.path().join("run");
        let ckpt = run.join("checkpoints").join("step-00000002");
        let named = tmp.path().join("prepared");
        for d in [&ckpt, &run.join("data"), &named] {
            std::fs::create_dir_all(d).expect("mkdir");
        }
        assert_eq!(find_tokenizer(&ckpt, &run), None);
        let cfg = serde_json::json!({ "data": { "dir": named.to_string_lossy() } });
        std::fs::write(ckpt.join("run_config.json"), cfg.to_string()).expect("write run config");
        std::fs::write(named.join("tokenizer.json"), "{}").expect("write");
        assert_eq!(
            find_tokenizer(&ckpt, &run),
            Some(named.join("tokenizer.json"))
        );
        std::fs::write(run.join("data").join("tokenizer.json"), "{}").expect("write");
        assert_eq!(
            find_tokenizer(&ckpt, &run),
            Some(run.join("data").join("tokenizer.json"))
        );
        std::fs::write(run.join("tokenizer.json"), "{}").expect("write");
        assert_eq!(
            find_tokenizer(&ckpt, &run),
            Some(run.join("tokenizer.json"))
        );
        std::fs::write(ckpt.join("tokenizer.json"), "{}").expect("write");
        assert_eq!(
            find_tokenizer(&ckpt, &run),
            Some(ckpt.join("tokenizer.json"))
        );
    }
}
