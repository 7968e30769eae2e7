//! The shard format: token ids of whole documents, memory-mapped.
//!
//! Layout (all integers little-endian):
//!
//! ```text
//! offset 0   magic      8 bytes  "RMSKSHRD"
//!        8   version    u32      SHARD_VERSION
//!       12   flags      u32      0
//!       16   num_docs   u64      D
//!       24   num_tokens u64      N
//!       32   reserved   32 bytes zero
//!       64   offsets    u64 × (D + 1)   document d is tokens[offsets[d] .. offsets[d + 1]]
//!            tokens     u32 × N
//!            words      u8 × N          1 where the token starts a word, else 0
//! ```
//!
//! Documents carry no special tokens; the packer adds them. A split may span several shards
//! ([`ShardSet`]); document indices then run across them in order. `prepare` writes a split as it
//! streams through [`ShardWriter`], which closes a shard once it holds `data.shard_tokens` tokens, so
//! a shard's size, and the memory it takes to build one, are bounded.

use std::io::Write;
use std::path::{Path, PathBuf};

use memmap2::Mmap;

use super::tokenizer::EncodedDoc;
use crate::atomic_write::write_atomic;
use crate::{Error, Result};

/// File magic of a shard.
pub const SHARD_MAGIC: &[u8; 8] = b"RMSKSHRD";
/// Current shard format version.
pub const SHARD_VERSION: u32 = 1;
const HEADER: usize = 64;

/// Writes documents as one shard file (through a temporary name, then renamed). Returns bytes written.
pub fn write_shard(path: &Path, docs: &[&EncodedDoc]) -> Result<u64> {
    let n: usize = docs.iter().map(|d| d.ids.len()).sum();
    let mut buf = Vec::with_capacity(HEADER + 8 * (docs.len() + 1) + 5 * n);
    buf.extend_from_slice(SHARD_MAGIC);
    buf.extend_from_slice(&SHARD_VERSION.to_le_bytes());
    buf.extend_from_slice(&0u32.to_le_bytes());
    buf.extend_from_slice(&(docs.len() as u64).to_le_bytes());
    buf.extend_from_slice(&(n as u64).to_le_bytes());
    buf.resize(HEADER, 0);
    let mut off = 0u64;
    buf.extend_from_slice(&off.to_le_bytes());
    for d in docs {
        off += d.ids.len() as u64;
        buf.extend_from_slice(&off.to_le_bytes());
    }
    for d in docs {
        for &id in &d.ids {
            buf.extend_from_slice(&id.to_le_bytes());
        }
    }
    for d in docs {
        buf.extend(d.word_starts.iter().map(|&w| u8::from(w)));
    }
    write_atomic(path, &buf)?;
    Ok(buf.len() as u64)
}

/// Writes one shard from its parts: offsets `[D + 1]` (starting at 0), ids `[N]`, word-start bytes
/// `[N]`; through a temporary name, fsynced, then renamed. Returns bytes written.
pub fn write_shard_parts(path: &Path, offsets: &[u64], ids: &[u32], words: &[u8]) -> Result<u64> {
    let tmp = path.with_extension("tmp");
    let io = |e| Error::io(&tmp, e);
    let file = std::fs::File::create(&tmp).map_err(io)?;
    let mut w = std::io::BufWriter::with_capacity(1 << 20, file);
    let mut header = Vec::with_capacity(HEADER);
    header.extend_from_slice(SHARD_MAGIC);
    header.extend_from_slice(&SHARD_VERSION.to_le_bytes());
    header.extend_from_slice(&0u32.to_le_bytes());
    header.extend_from_slice(&(offsets.len().saturating_sub(1) as u64).to_le_bytes());
    header.extend_from_slice(&(ids.len() as u64).to_le_bytes());
    header.resize(HEADER, 0);
    w.write_all(&header).map_err(io)?;
    let mut chunk = Vec::with_capacity(1 << 16);
    for part in offsets.chunks(8192) {
        chunk.clear();
        part.iter()
            .for_each(|o| chunk.extend_from_slice(&o.to_le_bytes()));
        w.write_all(&chunk).map_err(io)?;
    }
    for part in ids.chunks(16384) {
        chunk.clear();
        part.iter()
            .for_each(|id| chunk.extend_from_slice(&id.to_le_bytes()));
        w.write_all(&chunk).map_err(io)?;
    }
    w.write_all(words).map_err(io)?;
    let file = w
        .into_inner()
        .map_err(|e| Error::io(&tmp, e.into_error()))?;
    file.sync_all().map_err(io)?;
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))?;
    Ok((HEADER + 8 * offsets.len() + 5 * ids.len()) as u64)
}

/// Writes a split's documents as they come into shards `{stem}-000.bin`, `{stem}-001.bin`, …: a shard
/// is closed before a document that would take it past `max_tokens` (a longer document gets a shard of
/// its own). At least one shard is written, empty if no document came. Holds one shard in memory.
pub struct ShardWriter {
    dir: PathBuf,
    stem: String,
    max_tokens: usize,
    offsets: Vec<u64>,
    ids: Vec<u32>,
    words: Vec<u8>,
    names: Vec<String>,
}

impl ShardWriter {
    pub fn new(dir: &Path, stem: &str, max_tokens: u64) -> Self {
        let max_tokens = max_tokens.max(1) as usize;
        Self {
            dir: dir.to_path_buf(),
            stem: stem.to_string(),
            max_tokens,
            offsets: vec![0],
            ids: Vec::new(),
            words: Vec::new(),
            names: Vec::new(),
        }
    }

    /// Appends one document; `on_written(path)` is called for every shard file completed.
    pub fn push(
        &mut self,
        doc: &EncodedDoc,
        on_written: &mut dyn FnMut(&Path) -> Result<()>,
    ) -> Result<()> {
        if !self.ids.is_empty() && self.ids.len() + doc.ids.len() > self.max_tokens {
            self.flush(on_written)?;
        }
        self.ids.extend_from_slice(&doc.ids);
        self.words
            .extend(doc.word_starts.iter().map(|&w| u8::from(w)));
        self.offsets.push(self.ids.len() as u64);
        Ok(())
    }

    fn flush(&mut self, on_written: &mut dyn FnMut(&Path) -> Result<()>) -> Result<()> {
        let name = format!("{}-{:03}.bin", self.stem, self.names.len());
        let path = self.dir.join(&name);
        write_shard_parts(&path, &self.offsets, &self.ids, &self.words)?;
        on_written(&path)?;
        self.names.push(name);
        self.offsets.clear();
        self.offsets.push(0);
        self.ids.clear();
        self.words.clear();
        Ok(())
    }

    /// Writes the last shard; returns the file names in order.
    pub fn finish(
        mut self,
        on_written: &mut dyn FnMut(&Path) -> Result<()>,
    ) -> Result<Vec<String>> {
        if self.offsets.len() > 1 || self.names.is_empty() {
            self.flush(on_written)?;
        }
        Ok(self.names)
    }
}

/// One memory-mapped shard.
pub struct Shard {
    path: PathBuf,
    map: Mmap,
    num_docs: usize,
    num_tokens: usize,
    tokens_at: usize,
    words_at: usize,
}

impl Shard {
    /// Maps a shard file and checks its header and size.
    pub fn open(path: &Path) -> Result<Self> {
        let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
        // SAFETY: the file is opened read-only and prepared directories are never modified in place
        // (they are written through temporary names); a concurrent truncation would be a user error.
        let map = unsafe { Mmap::map(&file) }.map_err(|e| Error::io(path, e))?;
        // Training reads rows in a keyed random order: without this hint every page fault reads (and
        // maps) a large window around the row, and the resident size grows by megabytes a row.
        #[cfg(unix)]
        let _ = map.advise(memmap2::Advice::Random);
        if map.len() < HEADER || &map[..8] != SHARD_MAGIC {
            return Err(Error::data(
                path,
                "not a remask shard (bad magic); run `remask prepare` again",
            ));
        }
        let u32_at = |o: usize| u32::from_le_bytes(map[o..o + 4].try_into().unwrap_or([0; 4]));
        let u64_at = |o: usize| u64::from_le_bytes(map[o..o + 8].try_into().unwrap_or([0; 8]));
        let version = u32_at(8);
        if version != SHARD_VERSION {
            return Err(Error::data(
                path,
                format!("shard format version {version}, this build reads {SHARD_VERSION}"),
            ));
        }
        let (num_docs, num_tokens) = (u64_at(16) as usize, u64_at(24) as usize);
        let tokens_at = HEADER + 8 * (num_docs + 1);
        let words_at = tokens_at + 4 * num_tokens;
        if map.len() != words_at + num_tokens {
            return Err(Error::data(
                path,
                format!(
                    "truncated shard: {} bytes, expected {}",
                    map.len(),
                    words_at + num_tokens
                ),
            ));
        }
        let shard = Self {
            path: path.to_path_buf(),
            map,
            num_docs,
            num_tokens,
            tokens_at,
            words_at,
        };
        if shard.offset(num_docs) as usize != num_tokens {
            return Err(Error::data(
                path,
                "corrupt shard: document offsets do not add up",
            ));
        }
        Ok(shard)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn num_docs(&self) -> usize {
        self.num_docs
    }

    pub fn num_tokens(&self) -> usize {
        self.num_tokens
    }

    #[inline]
    fn offset(&self, d: usize) -> u64 {
        let o = HEADER + 8 * d;
        u64::from_le_bytes(self.map[o..o + 8].try_into().unwrap_or([0; 8]))
    }

    /// Token range of document `d` within this shard.
    #[inline]
    pub fn doc_range(&self, d: usize) -> std::ops::Range<usize> {
        self.offset(d) as usize..self.offset(d + 1) as usize
    }

    /// Token `i` of this shard.
    #[inline]
    pub fn token(&self, i: usize) -> u32 {
        let o = self.tokens_at + 4 * i;
        u32::from_le_bytes([
            self.map[o],
            self.map[o + 1],
            self.map[o + 2],
            self.map[o + 3],
        ])
    }

    /// Whether token `i` starts a word.
    #[inline]
    pub fn word_start(&self, i: usize) -> bool {
        self.map[self.words_at + i] != 0
    }

    /// Copies tokens `start .. start + ids.len()` and their word starts.
    #[inline]
    pub fn copy(&self, ids: &mut [u32], words: &mut [bool], start: usize) {
        let bytes = &self.map[self.tokens_at + 4 * start..self.tokens_at + 4 * (start + ids.len())];
        for (id, b) in ids.iter_mut().zip(bytes.chunks_exact(4)) {
            *id = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        }
        let w = &self.map[self.words_at + start..self.words_at + start + words.len()];
        for (x, &b) in words.iter_mut().zip(w) {
            *x = b != 0;
        }
    }
}

/// The shards of one split, with documents numbered across them.
pub struct ShardSet {
    shards: Vec<Shard>,
    /// `first_doc[s]`: global index of shard s's first document; one extra entry at the end.
    first_doc: Vec<usize>,
    /// `first_token[s]`: tokens in the shards before s; one extra entry at the end.
    first_token: Vec<u64>,
}

impl ShardSet {
    pub fn open(paths: &[PathBuf]) -> Result<Self> {
        let shards = paths
            .iter()
            .map(|p| Shard::open(p))
            .collect::<Result<Vec<_>>>()?;
        let (mut first_doc, mut first_token) = (vec![0], vec![0]);
        for s in &shards {
            first_doc.push(first_doc.last().copied().unwrap_or(0) + s.num_docs());
            first_token.push(first_token.last().copied().unwrap_or(0) + s.num_tokens() as u64);
        }
        Ok(Self {
            shards,
            first_doc,
            first_token,
        })
    }

    /// Tokens before global document `d` (d may equal [`Self::num_docs`]: then all tokens). Read from
    /// the shards' mapped offset tables: no per-document table in memory.
    #[inline]
    pub fn token_start(&self, d: usize) -> u64 {
        let s = (self.first_doc.partition_point(|&f| f <= d) - 1)
            .min(self.shards.len().saturating_sub(1));
        match self.shards.get(s) {
            Some(shard) => self.first_token[s] + shard.offset(d - self.first_doc[s]),
            None => 0,
        }
    }

    /// The first global document `d` with `key(d) > x`, for a key that grows with d, where
    /// `key(d) = token_start(d) + per_doc · d` (binary search over the mapped offsets).
    pub fn first_doc_after(&self, x: u64, per_doc: u64) -> usize {
        let key = |d: usize| self.token_start(d) + per_doc * d as u64;
        let (mut lo, mut hi) = (0usize, self.num_docs() + 1);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if mid <= self.num_docs() && key(mid) <= x {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        lo
    }

    pub fn num_docs(&self) -> usize {
        self.first_doc.last().copied().unwrap_or(0)
    }

    pub fn num_tokens(&self) -> usize {
        self.shards.iter().map(Shard::num_tokens).sum()
    }

    /// (shard, token range in it) of global document `d`.
    #[inline]
    pub fn doc(&self, d: usize) -> (&Shard, std::ops::Range<usize>) {
        let s = self.first_doc.partition_point(|&f| f <= d) - 1;
        let shard = &self.shards[s];
        (shard, shard.doc_range(d - self.first_doc[s]))
    }

    /// Length in tokens of document `d`.
    pub fn doc_len(&self, d: usize) -> usize {
        self.doc(d).1.len()
    }

    pub fn shards(&self) -> &[Shard] {
        &self.shards
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_rejects_corruption() {
        let dir = std::env::temp_dir().join(format!("remask-shard-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let a = EncodedDoc {
            ids: vec![5, 6, 7],
            word_starts: vec![true, false, true],
        };
        let b = EncodedDoc {
            ids: vec![],
            word_starts: vec![],
        };
        let c = EncodedDoc {
            ids: vec![u32::MAX - 1],
            word_starts: vec![true],
        };
        let p = dir.join("s.bin");
        write_shard(&p, &[&a, &b, &c]).unwrap();
        let set = ShardSet::open(&[p.clone(), p.clone()]).unwrap();
        assert_eq!(set.num_docs(), 6);
        assert_eq!(set.num_tokens(), 8);
        let (s, r) = set.doc(5);
        assert_eq!((s.token(r.start), r.len()), (u32::MAX - 1, 1));
        let (s, r) = set.doc(3);
        let mut ids = vec![0; 3];
        let mut w = vec![false; 3];
        s.copy(&mut ids, &mut w, r.start);
        assert_eq!((ids, w), (a.ids.clone(), a.word_starts.clone()));
        assert_eq!(set.doc_len(4), 0);
        let mut bytes = std::fs::read(&p).unwrap();
        bytes.pop();
        std::fs::write(&p, &bytes).unwrap();
        assert!(Shard::open(&p)
            .err()
            .unwrap()
            .to_string()
            .contains("truncated"));
        std::fs::write(
            &p,
            b"hello world, not a shard at all; padding padding padding padding!",
        )
        .unwrap();
        assert!(Shard::open(&p).err().unwrap().to_string().contains("magic"));
        std::fs::remove_dir_all(&dir).ok();
    }
}
