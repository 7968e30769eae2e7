//! `remask prepare --merge PART…`: one prepared directory from several prepared independently, for
//! corpora that outgrow one machine (or one process).
//!
//! Each part is an ordinary prepared directory, made by `remask prepare --input <its share of the
//! files> --tokenizer <one shared tokenizer.json> --out part-I`, on any machine. The merge:
//! - checks that the parts fit together: complete (`meta.json`), byte-identical `tokenizer.json`, and
//!   the same `seq_len`, `packing` and `seed` (they decide the rows and the keyed data order);
//! - links (or copies, across file systems) every part's shards into the output, renumbered in part
//!   order: the merged split is the parts' documents one after another, part 0 first;
//! - sums the token counts, recomputes the split statistics from the shards, and builds what depends
//!   on the whole training split from the merged shards: PMI masking's n-grams and static mask copies
//!   (for the merged directory's `[masking]`, the first part's unless given);
//! - builds everything in `OUT/.staging/` and publishes it as `prepare` does (`meta.json` last, under
//!   the directory lock): an interrupted merge leaves no directory that training accepts, and the
//!   parts are never modified.
//!
//! What is keyed where: each part split its documents into train and validation by its own document
//! numbers (its inputs in order), so a merged directory's split is not the one a single `prepare`
//! over all the inputs would draw, but it is just as deterministic. Everything decided after
//! preparation (the data order, dynamic and static masks) is keyed by the global sample index over
//! the merged rows, exactly as in a directory one process prepared.

use std::path::{Path, PathBuf};

use super::config::DataConfig;
use super::meta::{Meta, Split, SplitStats, FORMAT_VERSION};
use super::ngram_pass::write_ngrams;
use super::packer::Packer;
use super::prepare::{build_staged, write_static_from_shards, Written};
use super::shard::ShardSet;
use super::token_counts::{read_counts, write_counts};
use crate::fault::FaultPlan;
use crate::masking::MaskingConfig;
use crate::{Error, Result};

/// Merges the prepared directories `parts` (in this order) into `out`. `masking` decides the merged
/// directory's static copies and n-grams; `None` takes the first part's.
pub fn merge_prepared(
    parts: &[PathBuf],
    out: &Path,
    masking: Option<&MaskingConfig>,
) -> Result<Meta> {
    let Some(first) = parts.first() else {
        return Err(Error::config(
            "--merge",
            "name at least one prepared directory to merge",
        ));
    };
    let metas: Vec<Meta> = parts.iter().map(|p| Meta::read(p)).collect::<Result<_>>()?;
    let out_abs = std::path::absolute(out).map_err(|e| Error::io(out, e))?;
    for p in parts {
        if std::path::absolute(p).map_err(|e| Error::io(p, e))? == out_abs {
            return Err(Error::config(
                "--out",
                format!(
                    "{} is also one of the parts to merge: write the merged directory elsewhere",
                    p.display()
                ),
            ));
        }
    }
    let tokenizer_of = |p: &Path| {
        let path = p.join("tokenizer.json");
        std::fs::read(&path).map_err(|e| Error::io(&path, e))
    };
    let tokenizer = tokenizer_of(first)?;
    let m0 = &metas[0];
    for (p, m) in parts.iter().zip(&metas).skip(1) {
        if tokenizer_of(p)? != tokenizer {
            return Err(Error::config(
                "data.tokenizer.path",
                format!(
                    "{} has another vocabulary than {}: prepare every part with the same --tokenizer (for example {})",
                    p.display(),
                    first.display(),
                    first.join("tokenizer.json").display()
                ),
            ));
        }
        let differ = |key: &str, a: String, b: String| -> Result<()> {
            if a == b {
                return Ok(());
            }
            Err(Error::config(
                key,
                format!(
                    "{} was prepared with {key} = {b} and {} with {a}: prepare the parts alike",
                    p.display(),
                    first.display()
                ),
            ))
        };
        differ(
            "data.seq_len",
            m0.data.seq_len.to_string(),
            m.data.seq_len.to_string(),
        )?;
        differ(
            "data.packing",
            format!("{:?}", m0.data.packing),
            format!("{:?}", m.data.packing),
        )?;
        differ(
            "data.seed",
            m0.data.seed.to_string(),
            m.data.seed.to_string(),
        )?;
        differ("pairs", m0.pairs.to_string(), m.pairs.to_string())?;
    }
    let masking = masking.unwrap_or(&m0.masking).clone();
    masking.validate("masking")?;

    let faults = FaultPlan::default();
    build_staged(out, "remask prepare --merge", &faults, |staging| {
        build(parts, &metas, &tokenizer, &masking, staging, &faults)
    })
}

fn build(
    parts: &[PathBuf],
    metas: &[Meta],
    tokenizer: &[u8],
    masking: &MaskingConfig,
    out: &Path,
    faults: &FaultPlan,
) -> Result<Meta> {
    let m0 = &metas[0];
    let mut written = Written::new(faults);
    let tok_path = out.join("tokenizer.json");
    crate::atomic_write::write_atomic(&tok_path, tokenizer)?;
    written.file(&tok_path)?;
    let data = DataConfig {
        dir: None,
        inputs: metas
            .iter()
            .flat_map(|m| m.data.inputs.iter().cloned())
            .collect(),
        ..m0.data.clone()
    };
    let mut splits = Vec::new();
    for split in [Split::Train, Split::Validation] {
        let name = split.name();
        let mut stats = SplitStats::default();
        for (p, m) in parts.iter().zip(metas) {
            let s = match split {
                Split::Train => &m.train,
                Split::Validation => &m.validation,
            };
            stats.documents += s.documents;
            stats.tokens += s.tokens;
            stats.target_tokens += s.target_tokens;
            for shard in &s.shards {
                let to = format!("{name}-{:03}.bin", stats.shards.len());
                link_or_copy(&p.join(shard), &out.join(&to))?;
                written.file(&out.join(&to))?;
                stats.shards.push(to);
            }
            for shard in &s.target_shards {
                let to = format!("{name}-target-{:03}.bin", stats.target_shards.len());
                link_or_copy(&p.join(shard), &out.join(&to))?;
                written.file(&out.join(&to))?;
                stats.target_shards.push(to);
            }
        }
        // Rows and padding from the merged shards, as the loader will pack them.
        let paths: Vec<PathBuf> = stats.shards.iter().map(|s| out.join(s)).collect();
        let set = ShardSet::open(&paths)?;
        if set.num_docs() as u64 != stats.documents {
            return Err(Error::data(
                out,
                format!("the merged {name} shards hold {} documents, the parts' meta.json files {}: prepare the parts again", set.num_docs(), stats.documents),
            ));
        }
        let packer = Packer::new(&set, data.seq_len as usize, data.packing);
        stats.rows = packer.num_rows();
        let positions = stats.rows * data.seq_len as u64;
        stats.padding_share = if positions == 0 {
            0.0
        } else {
            1.0 - packer.real_tokens(&set) as f64 / positions as f64
        };
        splits.push(stats);
    }
    let validation = splits.pop().unwrap_or_default();
    let train = splits.pop().unwrap_or_default();

    let mut counts = vec![0u64; m0.vocab_size as usize];
    for (p, m) in parts.iter().zip(metas) {
        for (c, x) in counts.iter_mut().zip(read_counts(p, m)?) {
            *c += x;
        }
    }
    write_counts(out, &counts)?;
    written.file(&super::token_counts::counts_path(out))?;
    let ngrams = {
        let paths: Vec<PathBuf> = train.shards.iter().map(|s| out.join(s)).collect();
        write_ngrams(
            out,
            &ShardSet::open(&paths)?,
            &m0.special_tokens.all,
            masking,
        )?
    };
    if let Some(ng) = &ngrams {
        written.file(&out.join(&ng.file))?;
    }
    let static_masks = write_static_from_shards(
        &data,
        masking,
        out,
        &m0.special_tokens,
        m0.vocab_size,
        &counts,
        ngrams.as_ref(),
        &train,
        &mut written,
    )?;
    let meta = Meta {
        format_version: FORMAT_VERSION,
        data,
        masking: masking.clone(),
        vocab_size: m0.vocab_size,
        special_tokens: m0.special_tokens.clone(),
        pairs: m0.pairs,
        train,
        validation,
        static_masks,
        vocabulary: m0.vocabulary.clone(),
        ngrams,
    };
    meta.write(out)?;
    Ok(meta)
}

/// A hard link where the file system allows one (the parts' shards are never written again in
/// place: `prepare` replaces files by renaming), else a copy.
fn link_or_copy(from: &Path, to: &Path) -> Result<()> {
    if std::fs::hard_link(from, to).is_ok() {
        return Ok(());
    }
    std::fs::copy(from, to)
        .map(|_| ())
        .map_err(|e| Error::io(from, e))
}
