//! `remask prepare`: documents → tokenizer → keyed train/validation split → shards (+ static masks) →
//! `meta.json`. The same inputs and configs always give byte-identical output.
//!
//! A prepared directory holds:
//! - `meta.json`: format version, the configs used, statistics, special token ids, split sizes;
//! - `tokenizer.json`;
//! - `train-000.bin`, `validation-000.bin` (and `*-target-000.bin` for TSV pairs): shards;
//! - `token_counts.bin`: how often each token occurs in the training split ([`super::token_counts`]);
//! - `ngrams.bin`: PMI masking's n-gram vocabulary, counted over the training split (strategy `pmi`
//!   only; [`super::ngram_pass`]);
//! - `static/copy-NNN.bin`: K statically masked copies of the training rows (static masking only;
//!   written by [`crate::masking::MaskPlan::write_static_copies`]).
//!
//! Completion rule: **a directory is prepared exactly when it holds `meta.json`** ([`Meta::read`]
//! refuses anything else). [`prepare`] locks the directory ([`crate::dir_lock`]), builds the whole
//! output in `OUT/.staging/`, and only then publishes it: `meta.json` is removed first, every staged
//! file is renamed into place (files of an earlier run that this one did not make are removed), and
//! the new `meta.json` is renamed in last. A crash, a kill or a full disk while building leaves the
//! earlier output untouched; one while publishing leaves no `meta.json`, which training refuses and
//! the next `prepare` rebuilds. A streaming `prepare` keeps the rule by writing into the staging
//! directory as it goes.

use std::path::{Path, PathBuf};

use remask_kernels::rng::{key, Purpose};

use super::config::DataConfig;
use super::meta::{Meta, Split, SplitStats, FORMAT_VERSION};
use super::packer::{Packer, RowOut};
use super::reader::read_inputs;
use super::shard::{write_shard, ShardSet};
use super::ngram_pass::write_ngrams;
use super::token_counts::{count_tokens, write_counts};
use super::tokenizer::{EncodedDoc, TextTokenizer};
use crate::atomic_write::write_atomic;
use crate::dir_lock::DirLock;
use crate::fault::FaultPlan;
use crate::masking::{MaskPlan, MaskingConfig, NgramVocab, TokenRowBuf, Vocab};
use crate::{Error, Result};

/// The staging directory inside a prepared directory.
pub const STAGING: &str = ".staging";

/// Prepares `out` from `data` (and, for static masking, `masking`). Returns the meta written. See the
/// module docs for the lock and the completion rule.
pub fn prepare(data: &DataConfig, masking: &MaskingConfig, out: &Path) -> Result<Meta> {
    prepare_with(data, masking, out, &FaultPlan::default())
}

/// [`prepare`] with injected write faults (crash tests; [`FaultPlan`] is empty in normal builds).
pub fn prepare_with(data: &DataConfig, masking: &MaskingConfig, out: &Path, faults: &FaultPlan) -> Result<Meta> {
    data.validate("data")?;
    masking.validate("masking")?;
    let _lock = DirLock::acquire(out, "remask prepare")?;
    let staging = out.join(STAGING);
    if staging.exists() {
        std::fs::remove_dir_all(&staging).map_err(|e| Error::io(&staging, e))?;
    }
    std::fs::create_dir_all(&staging).map_err(|e| Error::io(&staging, e))?;
    let meta = match build(data, masking, &staging, faults) {
        Ok(meta) => meta,
        Err(e) => {
            // Nothing of this run is kept; the earlier output was never touched.
            let _ = std::fs::remove_dir_all(&staging);
            return Err(e);
        }
    };
    publish(&staging, out, faults)?;
    Ok(meta)
}

/// Moves a complete staging directory into `out`, `meta.json` last (see the module docs).
fn publish(staging: &Path, out: &Path, faults: &FaultPlan) -> Result<()> {
    let meta = out.join("meta.json");
    match std::fs::remove_file(&meta) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(Error::io(&meta, e)),
        _ => {}
    }
    fsync_dir(out)?;
    faults.pause();
    let staged: Vec<String> = entries(staging)?;
    for name in entries(out)? {
        if name != STAGING && name != crate::dir_lock::LOCK_FILE && !staged.contains(&name) {
            let p = out.join(&name);
            let removed = if p.is_dir() { std::fs::remove_dir_all(&p) } else { std::fs::remove_file(&p) };
            removed.map_err(|e| Error::io(&p, e))?;
        }
    }
    for name in staged.iter().filter(|n| *n != "meta.json") {
        let (from, to) = (staging.join(name), out.join(name));
        if to.is_dir() {
            std::fs::remove_dir_all(&to).map_err(|e| Error::io(&to, e))?;
        }
        std::fs::rename(&from, &to).map_err(|e| Error::io(&to, e))?;
    }
    fsync_dir(out)?;
    faults.pause();
    std::fs::rename(staging.join("meta.json"), &meta).map_err(|e| Error::io(&meta, e))?;
    fsync_dir(out)?;
    std::fs::remove_dir_all(staging).map_err(|e| Error::io(staging, e))
}

/// The names in a directory, sorted.
fn entries(dir: &Path) -> Result<Vec<String>> {
    let mut names = Vec::new();
    for e in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        names.push(e.map_err(|e| Error::io(dir, e))?.file_name().to_string_lossy().into_owned());
    }
    names.sort();
    Ok(names)
}

fn fsync_dir(dir: &Path) -> Result<()> {
    std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(|e| Error::io(dir, e))
}

/// Writes the whole prepared output into `out` (the staging directory).
fn build(data: &DataConfig, masking: &MaskingConfig, out: &Path, faults: &FaultPlan) -> Result<Meta> {
    let mut budget = faults.write_budget();
    let mut written = |path: &Path| -> Result<()> {
        faults.pause();
        let bytes = std::fs::metadata(path).map_err(|e| Error::io(path, e))?.len();
        budget.charge(bytes, path)
    };
    let docs = read_inputs(&data.inputs, data.format, data.documents, &data.text_field)?;
    let pairs = docs.iter().any(|d| d.target.is_some());
    if pairs && docs.iter().any(|d| d.target.is_none()) {
        return Err(Error::config("data.inputs", "mixes TSV sentence pairs with plain documents"));
    }

    // Keyed split: document i goes to validation when its hash falls below the share.
    let threshold = (data.validation_share as f64 * u64::MAX as f64) as u64;
    let mut is_val: Vec<bool> = (0..docs.len()).map(|i| key(data.seed, Purpose::Split, 0, i as u64) < threshold).collect();
    if data.validation_share > 0.0 && docs.len() >= 2 && !is_val.iter().any(|&v| v) {
        if let Some(last) = is_val.last_mut() {
            *last = true;
        }
    }

    // Tokenizer: loaded, or trained on the training documents (both sides for pairs).
    let tokenizer = match &data.tokenizer.path {
        Some(p) => TextTokenizer::load(p)?,
        None => {
            let mut texts: Vec<&str> = Vec::new();
            for (d, &v) in docs.iter().zip(&is_val) {
                if !v {
                    texts.push(&d.text);
                    if let Some(t) = &d.target {
                        texts.push(t);
                    }
                }
            }
            TextTokenizer::train(&data.tokenizer, &texts)?
        }
    };
    let texts: Vec<&str> = docs.iter().map(|d| d.text.as_str()).collect();
    let encoded = tokenizer.encode_all(&texts, masking.language)?;
    let targets: Option<Vec<EncodedDoc>> = if pairs {
        let t: Vec<&str> = docs.iter().map(|d| d.target.as_deref().unwrap_or("")).collect();
        Some(tokenizer.encode_all(&t, masking.language)?)
    } else {
        None
    };

    let mut meta = Meta {
        format_version: FORMAT_VERSION,
        data: DataConfig { dir: None, ..data.clone() },
        masking: masking.clone(),
        vocab_size: tokenizer.vocab_size(),
        special_tokens: tokenizer.specials().clone(),
        pairs,
        train: SplitStats::default(),
        validation: SplitStats::default(),
        static_masks: None,
        ngrams: None,
    };
    for split in [Split::Train, Split::Validation] {
        let want_val = split == Split::Validation;
        let keep: Vec<usize> = (0..docs.len())
            .filter(|&i| is_val[i] == want_val)
            .filter(|&i| !encoded[i].ids.is_empty() && targets.as_ref().is_none_or(|t| !t[i].ids.is_empty()))
            .collect();
        let name = split.name();
        let src: Vec<&EncodedDoc> = keep.iter().map(|&i| &encoded[i]).collect();
        let shard = format!("{name}-000.bin");
        write_shard(&out.join(&shard), &src)?;
        written(&out.join(&shard))?;
        let mut stats = SplitStats {
            documents: keep.len() as u64,
            tokens: src.iter().map(|d| d.ids.len() as u64).sum(),
            shards: vec![shard.clone()],
            ..Default::default()
        };
        if let Some(t) = &targets {
            let tgt: Vec<&EncodedDoc> = keep.iter().map(|&i| &t[i]).collect();
            let tshard = format!("{name}-target-000.bin");
            write_shard(&out.join(&tshard), &tgt)?;
            written(&out.join(&tshard))?;
            stats.target_tokens = tgt.iter().map(|d| d.ids.len() as u64).sum();
            stats.target_shards = vec![tshard];
        }
        let set = ShardSet::open(&[out.join(&shard)])?;
        let packer = Packer::new(&set, data.seq_len as usize, data.packing);
        stats.rows = packer.num_rows();
        let positions = stats.rows * data.seq_len as u64;
        stats.padding_share =
            if positions == 0 { 0.0 } else { 1.0 - packer.real_tokens(&set) as f64 / positions as f64 };
        match split {
            Split::Train => meta.train = stats,
            Split::Validation => meta.validation = stats,
        }
    }
    if meta.train.documents == 0 {
        return Err(Error::config("data.validation_share", "no training documents left; lower the validation share"));
    }
    write_atomic(&out.join("tokenizer.json"), tokenizer.to_json()?.as_bytes())?;
    written(&out.join("tokenizer.json"))?;
    meta.write(out)?;

    let train_shards: Vec<PathBuf> = meta.train.shards.iter().map(|s| out.join(s)).collect();
    let train = ShardSet::open(&train_shards)?;
    let counts = count_tokens(&train, meta.vocab_size);
    write_counts(out, &counts)?;
    written(&super::token_counts::counts_path(out))?;
    if let Some(ngrams) = write_ngrams(out, &train, &meta.special_tokens.all, masking)? {
        written(&out.join(&ngrams.file))?;
        meta.ngrams = Some(ngrams);
        meta.write(out)?;
    }

    // Masks decided now (static masking: the plan writes copy k as its masks of epoch k), if any.
    let specials = &meta.special_tokens;
    let ngrams = if masking.needs_ngrams() { Some(std::sync::Arc::new(NgramVocab::read(out, meta.vocab_size)?)) } else { None };
    let vocab = Vocab {
        size: meta.vocab_size,
        mask_id: specials.mask,
        special_ids: &specials.all,
        counts: Some(&counts),
        ngrams: ngrams.as_ref(),
    };
    let plan = MaskPlan::new(masking, &vocab, data.seed)?;
    let packer = Packer::new(&train, data.seq_len as usize, data.packing);
    let (mut doc_ids, mut positions) = (vec![0u32; data.seq_len as usize], vec![0u32; data.seq_len as usize]);
    let mut fill = |r: u64, row: &mut TokenRowBuf| {
        let out = RowOut { ids: &mut row.ids, word_starts: &mut row.word_starts, doc_ids: &mut doc_ids, positions: &mut positions };
        row.length = packer.fill(&train, specials, r, out);
    };
    let stored = plan.write_static_copies(out, meta.train.rows, data.seq_len as usize, &mut fill)?;
    if let Some(stored) = stored {
        for file in &stored.files {
            written(&out.join(file))?;
        }
        meta.static_masks = Some(stored);
        meta.write(out)?;
    }
    Ok(meta)
}

/// Reads the `[data]` and `[masking]` sections of a run config (other sections are ignored here; the
/// trainer validates them). Missing sections take their defaults.
pub fn read_sections(path: &Path) -> Result<(DataConfig, MaskingConfig)> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let value: toml::Table =
        toml::from_str(&text).map_err(|e| Error::data(path, format!("not valid TOML: {e}")))?;
    let section = |name: &str| value.get(name).cloned().unwrap_or(toml::Value::Table(Default::default()));
    let data: DataConfig = section("data")
        .try_into()
        .map_err(|e| Error::config("data", format!("{} [data]: {e}", path.display())))?;
    let masking: MaskingConfig = section("masking")
        .try_into()
        .map_err(|e| Error::config("masking", format!("{} [masking]: {e}", path.display())))?;
    data.validate("data")?;
    masking.validate("masking")?;
    Ok((data, masking))
}

/// The prepared directory for a run: `data.dir` when set (it must hold a `meta.json`), otherwise
/// `fallback`, prepared now unless it already holds data prepared from the same `[data]` section (and,
/// for static masking, the same `[masking]` section).
pub fn ensure_prepared(data: &DataConfig, masking: &MaskingConfig, fallback: &Path) -> Result<std::path::PathBuf> {
    if let Some(dir) = &data.dir {
        Meta::read(dir)?;
        return Ok(dir.clone());
    }
    if let Ok(meta) = Meta::read(fallback) {
        let same_data = DataConfig { dir: None, ..meta.data.clone() } == *data;
        let same_static = masking.dupe_factor().is_none() || meta.masking == *masking;
        let same_ngrams = !masking.needs_ngrams() || meta.ngrams.as_ref().is_some_and(|n| n.pmi == masking.pmi);
        if same_data && same_static && same_ngrams {
            return Ok(fallback.to_path_buf());
        }
    }
    prepare(data, masking, fallback)?;
    Ok(fallback.to_path_buf())
}
