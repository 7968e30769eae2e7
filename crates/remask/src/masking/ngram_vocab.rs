//! `NgramVocab`: the n-gram vocabulary of PMI masking: n-grams of 2–5 whole words, each a sequence of
//! token ids with its word boundaries, looked up by a hash of its words. `prepare` builds it
//! (`masking::pmi_score`) and stores it in the prepared directory as `ngrams.bin`.
//!
//! `ngrams.bin` layout (all integers little-endian):
//!
//! ```text
//! offset 0   magic        8 bytes  "RMSKNGRM"
//!        8   version      u32      NGRAMS_VERSION (1)
//!       12   reserved     u32      0
//!       16   entries      u64      E
//!       24   words        u64      words counted in the training split
//!       32   min_count    u32      masking.pmi.min_count it was built with
//!       36   pruned_below u32      counts ≤ this may be undercounted (0: every count exact)
//!       40   entries, highest PMI_n first, each:
//!              n_words   u8         2..=5
//!              word_lens u16 × n    tokens of each word
//!              score     f32        PMI_n (natural log)
//!              count     u64        occurrences in the training split
//!              tokens    u32 × Σ word_lens
//! ```
//!
//! A word is a run of tokens that starts at a word start (the tokenizer's pre-tokenizer words, or
//! jieba's); its hash folds its token ids, and an n-gram's hash folds its words' hashes, so the hash of
//! any n-gram can be extended one word at a time ([`extend`]). Lookups verify the token ids, so a
//! hash collision can never make a wrong n-gram match.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::path::Path;

use crate::atomic_write::write_atomic;
use crate::{Error, Result};

pub const NGRAMS_MAGIC: &[u8; 8] = b"RMSKNGRM";
pub const NGRAMS_VERSION: u32 = 1;
const HEADER: usize = 40;
/// Longest n-gram, in words (Levine et al. use 2–5).
pub const MAX_N: usize = 5;

/// The file's name inside a prepared directory.
pub const NGRAMS_FILE: &str = "ngrams.bin";

/// splitmix64's finalizer: a bijection on u64 that mixes every bit.
#[inline]
fn mix(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// Hash of one word (its token ids).
#[inline]
pub fn word_hash(ids: &[u32]) -> u64 {
    ids.iter()
        .fold(0x9e37_79b9_7f4a_7c15, |h, &id| mix(h ^ (id as u64 + 1)))
}

/// The hash of an n-gram extended by one word: start from [`NGRAM_SEED`], then `extend` by each
/// word's hash in order.
#[inline]
pub fn extend(h: u64, word: u64) -> u64 {
    mix(h.rotate_left(17) ^ word)
}

/// The hash of the empty n-gram.
pub const NGRAM_SEED: u64 = 0x2545_f491_4f6c_dd1d;

/// Hash of an n-gram from its words' hashes.
pub fn ngram_hash(words: &[u64]) -> u64 {
    words.iter().fold(NGRAM_SEED, |h, &w| extend(h, w))
}

/// A hasher for keys that are already hashes (identity), deterministic across runs.
#[derive(Default, Clone, Copy)]
pub struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = mix(self.0 ^ b as u64);
        }
    }
    fn write_u64(&mut self, x: u64) {
        self.0 = x;
    }
}

/// A map keyed by hashes.
pub type HashKeyed<V> = HashMap<u64, V, BuildHasherDefault<IdHasher>>;

/// One n-gram of the vocabulary.
#[derive(Clone, Debug, PartialEq)]
pub struct Ngram {
    /// Token ids of its words, in order.
    pub tokens: Vec<u32>,
    /// Tokens per word (2..=5 words).
    pub word_lens: Vec<u16>,
    /// PMI_n (natural log): the minimum over the n-gram's segmentations of log p(n-gram) / Π p(part).
    pub score: f32,
    /// Occurrences in the training split.
    pub count: u64,
}

impl Ngram {
    /// Its hash ([`ngram_hash`] of its words).
    pub fn hash(&self) -> u64 {
        let mut h = NGRAM_SEED;
        let mut at = 0;
        for &l in &self.word_lens {
            h = extend(h, word_hash(&self.tokens[at..at + l as usize]));
            at += l as usize;
        }
        h
    }
}

/// What the vocabulary was built from (recorded in `ngrams.bin` and `meta.json`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NgramStats {
    /// Words counted in the training split.
    pub words: u64,
    /// `masking.pmi.min_count` it was built with.
    pub min_count: u32,
    /// Counts at or below this may be undercounted (the counter's memory cap pruned them); 0 when
    /// every count is exact.
    pub pruned_below: u32,
}

/// What `meta.json` records of a stored vocabulary (written by `data::ngram_pass`).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct NgramMeta {
    /// The file (`ngrams.bin`).
    pub file: String,
    /// N-grams stored.
    pub entries: u64,
    pub bytes: u64,
    /// The `[masking] pmi` settings it was built with.
    pub pmi: super::config::PmiConfig,
    pub stats: NgramStats,
}

/// The n-gram vocabulary, highest PMI_n first.
#[derive(Clone, Debug, Default)]
pub struct NgramVocab {
    entries: Vec<Ngram>,
    index: HashKeyed<u32>,
    pub stats: NgramStats,
}

impl NgramVocab {
    /// A vocabulary of `entries` (kept in the given order).
    pub fn new(entries: Vec<Ngram>, stats: NgramStats) -> Self {
        let mut index = HashKeyed::default();
        for (i, e) in entries.iter().enumerate() {
            index.entry(e.hash()).or_insert(i as u32);
        }
        Self {
            entries,
            index,
            stats,
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn entries(&self) -> &[Ngram] {
        &self.entries
    }

    /// The entry of hash `h` if its tokens are `tokens`, split into words of `word_lens` tokens.
    #[inline]
    pub fn lookup(&self, h: u64, tokens: &[u32], word_lens: &[u16]) -> Option<usize> {
        let &i = self.index.get(&h)?;
        let e = &self.entries[i as usize];
        (e.tokens == tokens && e.word_lens == word_lens).then_some(i as usize)
    }

    /// The file's bytes (layout in the module docs).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(HEADER + self.entries.len() * 40);
        b.extend_from_slice(NGRAMS_MAGIC);
        b.extend_from_slice(&NGRAMS_VERSION.to_le_bytes());
        b.extend_from_slice(&0u32.to_le_bytes());
        b.extend_from_slice(&(self.entries.len() as u64).to_le_bytes());
        b.extend_from_slice(&self.stats.words.to_le_bytes());
        b.extend_from_slice(&self.stats.min_count.to_le_bytes());
        b.extend_from_slice(&self.stats.pruned_below.to_le_bytes());
        for e in &self.entries {
            b.push(e.word_lens.len() as u8);
            for &l in &e.word_lens {
                b.extend_from_slice(&l.to_le_bytes());
            }
            b.extend_from_slice(&e.score.to_le_bytes());
            b.extend_from_slice(&e.count.to_le_bytes());
            for &t in &e.tokens {
                b.extend_from_slice(&t.to_le_bytes());
            }
        }
        b
    }

    /// Parses what [`Self::to_bytes`] wrote; `path` names the file in errors. Token ids must be below
    /// `vocab_size`.
    pub fn from_bytes(b: &[u8], path: &Path, vocab_size: u32) -> Result<Self> {
        let bad = |what: &str| {
            Error::data(
                path,
                format!("not a valid n-gram vocabulary ({what}); run `remask prepare` again"),
            )
        };
        if b.len() < HEADER || &b[..8] != NGRAMS_MAGIC {
            return Err(bad("bad magic"));
        }
        let u32_at = |o: usize| u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
        let u64_at = |o: usize| {
            u64::from_le_bytes([
                b[o],
                b[o + 1],
                b[o + 2],
                b[o + 3],
                b[o + 4],
                b[o + 5],
                b[o + 6],
                b[o + 7],
            ])
        };
        let version = u32_at(8);
        if version != NGRAMS_VERSION {
            return Err(Error::data(path, format!("n-gram vocabulary version {version}, this build reads {NGRAMS_VERSION}; run `remask prepare` again")));
        }
        let n = u64_at(16);
        let stats = NgramStats {
            words: u64_at(24),
            min_count: u32_at(32),
            pruned_below: u32_at(36),
        };
        let mut entries = Vec::with_capacity((n as usize).min(b.len() / 16));
        let mut at = HEADER;
        for _ in 0..n {
            let words = *b.get(at).ok_or_else(|| bad("truncated"))? as usize;
            if !(2..=MAX_N).contains(&words) {
                return Err(bad("an n-gram of other than 2 to 5 words"));
            }
            at += 1;
            if b.len() < at + 2 * words + 12 {
                return Err(bad("truncated"));
            }
            let word_lens: Vec<u16> = (0..words)
                .map(|k| u16::from_le_bytes([b[at + 2 * k], b[at + 2 * k + 1]]))
                .collect();
            at += 2 * words;
            let score = f32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
            let count = u64_at(at + 4);
            at += 12;
            let len: usize = word_lens.iter().map(|&l| l as usize).sum();
            if word_lens.contains(&0) || b.len() < at + 4 * len {
                return Err(bad("truncated or an empty word"));
            }
            let tokens: Vec<u32> = (0..len).map(|k| u32_at(at + 4 * k)).collect();
            at += 4 * len;
            if tokens.iter().any(|&t| t >= vocab_size) {
                return Err(bad(&format!(
                    "a token id outside the vocabulary of {vocab_size}"
                )));
            }
            entries.push(Ngram {
                tokens,
                word_lens,
                score,
                count,
            });
        }
        if at != b.len() {
            return Err(bad("trailing bytes"));
        }
        Ok(Self::new(entries, stats))
    }

    /// Writes `ngrams.bin` into `dir` (temporary name, then renamed). Returns its bytes.
    pub fn write(&self, dir: &Path) -> Result<u64> {
        let bytes = self.to_bytes();
        write_atomic(&dir.join(NGRAMS_FILE), &bytes)?;
        Ok(bytes.len() as u64)
    }

    /// Reads `ngrams.bin` from `dir`.
    pub fn read(dir: &Path, vocab_size: u32) -> Result<Self> {
        let path = dir.join(NGRAMS_FILE);
        let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
        Self::from_bytes(&bytes, &path, vocab_size)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ng(tokens: &[u32], word_lens: &[u16], score: f32, count: u64) -> Ngram {
        Ngram {
            tokens: tokens.to_vec(),
            word_lens: word_lens.to_vec(),
            score,
            count,
        }
    }

    #[test]
    fn round_trip_and_lookup_verify_tokens() {
        let v = NgramVocab::new(
            vec![
                ng(&[10, 11, 12], &[1, 2], 3.5, 40),
                ng(&[7, 8, 9, 10, 11], &[1, 1, 1, 1, 1], 1.25, 6),
            ],
            NgramStats {
                words: 1000,
                min_count: 5,
                pruned_below: 0,
            },
        );
        let path = Path::new("ngrams.bin");
        let back = NgramVocab::from_bytes(&v.to_bytes(), path, 100).unwrap();
        assert_eq!(back.entries(), v.entries());
        assert_eq!(back.stats, v.stats);
        let h = ngram_hash(&[word_hash(&[10]), word_hash(&[11, 12])]);
        assert_eq!(back.lookup(h, &[10, 11, 12], &[1, 2]), Some(0));
        // Same tokens, other word boundaries: another n-gram.
        let other = ngram_hash(&[word_hash(&[10, 11]), word_hash(&[12])]);
        assert_eq!(back.lookup(other, &[10, 11, 12], &[2, 1]), None);
        // A hash that matches but tokens that do not (a collision) never matches.
        assert_eq!(back.lookup(h, &[10, 11, 13], &[1, 2]), None);
        assert_eq!(back.lookup(h, &[10, 11, 12], &[2, 1]), None);
    }

    #[test]
    fn damaged_files_are_refused_with_the_path() {
        let v = NgramVocab::new(vec![ng(&[10, 11], &[1, 1], 2.0, 9)], NgramStats::default());
        let b = v.to_bytes();
        let path = Path::new("dir/ngrams.bin");
        for bad in [
            &b[..b.len() - 1],
            &b[..10],
            &[&b[..], &[0u8][..]].concat()[..],
        ] {
            let e = NgramVocab::from_bytes(bad, path, 100)
                .unwrap_err()
                .to_string();
            assert!(e.contains("dir/ngrams.bin") && e.contains("prepare"), "{e}");
        }
        let e = NgramVocab::from_bytes(&b, path, 11)
            .unwrap_err()
            .to_string();
        assert!(e.contains("outside the vocabulary of 11"), "{e}");
    }
}
