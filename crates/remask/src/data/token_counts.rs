//! `token_counts.bin`: how often each token id occurs in the training split, counted once by `prepare`
//! (frequency-weighted random replacement draws by these counts).
//!
//! Layout (little-endian): magic "RMSKCNTS", version u32, 4 zero bytes, V u64, then V counts u64.
//! A directory prepared before this file existed has none: the counts are then taken from the training
//! shards when they are needed.

use std::path::{Path, PathBuf};

use super::meta::Meta;
use super::shard::ShardSet;
use crate::atomic_write::write_atomic;
use crate::{Error, Result};

pub const COUNTS_MAGIC: &[u8; 8] = b"RMSKCNTS";
pub const COUNTS_VERSION: u32 = 1;
const HEADER: usize = 24;

/// The file's path inside a prepared directory.
pub fn counts_path(dir: &Path) -> PathBuf {
    dir.join("token_counts.bin")
}

/// What `prepare` counts over the training split while it streams: every training document is
/// observed once, in corpus order, right after it is written to its shard (`prepare.rs`,
/// `Sink::place`). This is the hook for another prepare-time corpus statistic (n-gram counts for PMI
/// masking, say): a field here, its counting in [`Self::observe`], its file in [`Self::write`], and
/// its reader next to [`read_counts`]. Whatever it keeps must stay bounded in memory.
pub struct TrainingCounts {
    /// Occurrences per token id.
    pub tokens: Vec<u64>,
}

impl TrainingCounts {
    pub fn new(vocab_size: u32) -> Self {
        Self {
            tokens: vec![0; vocab_size as usize],
        }
    }

    /// Counts one training document's ids (ids ≥ the vocabulary size are not counted).
    pub fn observe(&mut self, ids: &[u32]) {
        for &id in ids {
            if let Some(c) = self.tokens.get_mut(id as usize) {
                *c += 1;
            }
        }
    }

    /// Writes the statistics into the prepared directory `dir`; returns the files written.
    pub fn write(&self, dir: &Path) -> Result<Vec<PathBuf>> {
        write_counts(dir, &self.tokens)?;
        Ok(vec![counts_path(dir)])
    }
}

/// Counts every token of `shards` by id (ids ≥ `vocab_size` are not counted).
pub fn count_tokens(shards: &ShardSet, vocab_size: u32) -> Vec<u64> {
    let mut c = vec![0u64; vocab_size as usize];
    for s in shards.shards() {
        for i in 0..s.num_tokens() {
            if let Some(x) = c.get_mut(s.token(i) as usize) {
                *x += 1;
            }
        }
    }
    c
}

/// Writes `counts` as the directory's `token_counts.bin`.
pub fn write_counts(dir: &Path, counts: &[u64]) -> Result<()> {
    let mut buf = Vec::with_capacity(HEADER + 8 * counts.len());
    buf.extend_from_slice(COUNTS_MAGIC);
    buf.extend_from_slice(&COUNTS_VERSION.to_le_bytes());
    buf.extend_from_slice(&0u32.to_le_bytes());
    buf.extend_from_slice(&(counts.len() as u64).to_le_bytes());
    for &c in counts {
        buf.extend_from_slice(&c.to_le_bytes());
    }
    write_atomic(&counts_path(dir), &buf)
}

/// The training split's token counts of the prepared directory `dir`: its `token_counts.bin` (checked
/// against `meta.json`), or, for a directory prepared without one, counted from the training shards.
pub fn read_counts(dir: &Path, meta: &Meta) -> Result<Vec<u64>> {
    let path = counts_path(dir);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let paths: Vec<PathBuf> = meta.train.shards.iter().map(|s| dir.join(s)).collect();
            return Ok(count_tokens(&ShardSet::open(&paths)?, meta.vocab_size));
        }
        Err(e) => return Err(Error::io(&path, e)),
    };
    let v = meta.vocab_size as usize;
    let ok = bytes.len() == HEADER + 8 * v
        && &bytes[..8] == COUNTS_MAGIC
        && bytes[8..12] == COUNTS_VERSION.to_le_bytes()
        && bytes[16..24] == (v as u64).to_le_bytes();
    if !ok {
        return Err(Error::data(
            &path,
            format!("not a token count file for a vocabulary of {v} (size {}); run `remask prepare` again", bytes.len()),
        ));
    }
    let counts: Vec<u64> = bytes[HEADER..]
        .chunks_exact(8)
        .map(|b| u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]))
        .collect();
    // Every training token is counted once: a file left from another preparation shows here.
    let total: u64 = counts.iter().sum();
    if total != meta.train.tokens {
        return Err(Error::data(
            &path,
            format!("counts {total} tokens, but meta.json says the training split has {}; run `remask prepare` again", meta.train.tokens),
        ));
    }
    Ok(counts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::meta::{SplitStats, FORMAT_VERSION};
    use crate::data::tokenizer::SpecialTokens;

    fn meta(vocab_size: u32) -> Meta {
        Meta {
            format_version: FORMAT_VERSION,
            data: Default::default(),
            masking: Default::default(),
            vocab_size,
            special_tokens: SpecialTokens {
                pad: 0,
                unk: Some(1),
                cls: 2,
                sep: 3,
                mask: 4,
                all: vec![0, 1, 2, 3, 4],
            },
            pairs: false,
            train: SplitStats::default(),
            validation: SplitStats::default(),
            static_masks: None,
            vocabulary: None,
            ngrams: None,
        }
    }

    #[test]
    fn counts_round_trip_and_a_bad_file_is_named() {
        let dir = std::env::temp_dir().join(format!("remask-counts-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let counts: Vec<u64> = (0..300u64).map(|i| i * i + 1).collect();
        write_counts(&dir, &counts).unwrap();
        let bytes = std::fs::read(counts_path(&dir)).unwrap();
        assert_eq!(bytes.len(), HEADER + 8 * 300);
        let mut m = meta(300);
        m.train.tokens = counts.iter().sum();
        assert_eq!(read_counts(&dir, &m).unwrap(), counts);
        let e = read_counts(&dir, &meta(301)).unwrap_err().to_string();
        assert!(
            e.contains("token_counts.bin") && e.contains("301") && e.contains("prepare"),
            "{e}"
        );
        // Counts of another preparation (same vocabulary, other corpus) are refused.
        m.train.tokens += 1;
        let e = read_counts(&dir, &m).unwrap_err().to_string();
        assert!(
            e.contains("token_counts.bin") && e.contains("training split") && e.contains("prepare"),
            "{e}"
        );
        std::fs::remove_dir_all(&dir).ok();
    }
}
