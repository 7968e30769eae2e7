//! The n-gram pass of `prepare`: PMI masking's n-gram vocabulary, counted over the training split's
//! documents (two passes over the memory-mapped shards, in bounded memory: see
//! [`crate::masking::pmi_score`]) and stored as `ngrams.bin` ([`crate::masking::ngram_vocab`]).
//! `prepare` runs it only for `strategy = "pmi"` ([`crate::masking::MaskingConfig::needs_ngrams`]):
//! on the embedded 1.1 M-token corpus it adds ~5 s and ~110 MB to a 10 s, 50 MB preparation. A
//! directory prepared without it is prepared again by [`super::ensure_prepared`] when a run asks
//! for PMI masking, and refused by the loader otherwise, naming the key.

use std::path::Path;
use std::sync::Arc;

use super::meta::Meta;
use super::shard::ShardSet;
use crate::masking::{
    build_vocab, MaskingConfig, NgramMeta, NgramVocab, PmiConfig, COUNT_CAP, NGRAMS_FILE,
};
use crate::{Error, Result};

/// Builds the vocabulary of `pmi` over the documents of `train` (`special` ids end words).
pub fn build_ngrams(train: &ShardSet, special: &[u32], pmi: &PmiConfig) -> NgramVocab {
    let (mut ids, mut starts) = (Vec::new(), Vec::new());
    let mut docs = |sink: &mut dyn FnMut(&[u32], &[bool])| {
        for d in 0..train.num_docs() {
            let (shard, range) = train.doc(d);
            ids.resize(range.len(), 0);
            starts.resize(range.len(), false);
            shard.copy(&mut ids, &mut starts, range.start);
            sink(&ids, &starts);
        }
    };
    build_vocab(pmi, special, COUNT_CAP, &mut docs)
}

/// Builds and writes `ngrams.bin` into `out` (the directory being prepared) for `strategy = "pmi"`;
/// `None` for other strategies. A corpus without a single n-gram to keep is an error naming the key.
pub fn write_ngrams(
    out: &Path,
    train: &ShardSet,
    special: &[u32],
    masking: &MaskingConfig,
) -> Result<Option<NgramMeta>> {
    if !masking.needs_ngrams() {
        return Ok(None);
    }
    let vocab = build_ngrams(train, special, &masking.pmi);
    if vocab.is_empty() {
        return Err(Error::config(
            "masking.pmi.min_count",
            format!(
                "strategy \"pmi\" found no n-gram of 2 to 5 words that occurs at least {} times, and more often than chance, in the training split ({} words): use a larger corpus or lower masking.pmi.min_count",
                masking.pmi.min_count, vocab.stats.words
            ),
        ));
    }
    let bytes = vocab.write(out)?;
    Ok(Some(NgramMeta {
        file: NGRAMS_FILE.to_string(),
        entries: vocab.len() as u64,
        bytes,
        pmi: masking.pmi,
        stats: vocab.stats,
    }))
}

/// The n-gram vocabulary of the prepared directory `dir` for `masking` (strategy `pmi`): refused,
/// naming the key, when the directory has none or was built with other `[masking] pmi` settings.
pub fn read_ngrams(dir: &Path, meta: &Meta, masking: &MaskingConfig) -> Result<Arc<NgramVocab>> {
    let Some(stored) = &meta.ngrams else {
        return Err(Error::config(
            "masking.strategy",
            format!(
                "\"pmi\" needs an n-gram vocabulary, and {} has none (prepared for another strategy): run `remask prepare` with masking.strategy = \"pmi\"",
                dir.display()
            ),
        ));
    };
    if stored.pmi != masking.pmi {
        return Err(Error::config(
            "masking.pmi",
            format!(
                "{} holds an n-gram vocabulary of ngrams = {}, min_count = {}, not ngrams = {}, min_count = {}: prepare it again with these settings (or use those)",
                dir.display(),
                stored.pmi.ngrams,
                stored.pmi.min_count,
                masking.pmi.ngrams,
                masking.pmi.min_count
            ),
        ));
    }
    let vocab = NgramVocab::read(dir, meta.vocab_size)?;
    if vocab.len() as u64 != stored.entries {
        return Err(Error::data(
            dir.join(&stored.file),
            format!(
                "holds {} n-grams, meta.json says {}; run `remask prepare` again",
                vocab.len(),
                stored.entries
            ),
        ));
    }
    if vocab.is_empty() {
        return Err(Error::config(
            "masking.pmi.min_count",
            format!(
                "strategy \"pmi\": {} holds no n-gram (none of 2 to 5 words occurs at least {} times, and more often than chance, in its {} training words): use a larger corpus or lower masking.pmi.min_count",
                dir.display(),
                stored.pmi.min_count,
                stored.stats.words
            ),
        ));
    }
    Ok(Arc::new(vocab))
}
