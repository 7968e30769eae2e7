//! The storage of static masks: K differently masked copies of a prepared directory's training rows
//! (BERT's dupe factor), written once by `prepare` and memory-mapped by training. Which copy an epoch
//! reads is [`super::MaskPlan`]'s decision; this file only stores and reads rows. One file per copy,
//! so their disk cost is easy to measure (`static/copy-NNN.bin`).
//!
//! Version 2 (written now) stores only what masking changed, streamed row by row:
//!
//! ```text
//! offset 0  magic "RMSKSTAT", version u32 = 2, copy u32, rows u64 (R), seq_len u64 (T),
//!           index_at u64, 24 reserved bytes
//!       64  R records, row after row: chosen bitset ceil(T/8) bytes (bit i of byte i/8 = position
//!           i chosen), then the corrupted input id (u32) of each chosen position, in position order
//! index_at  u64 × ceil(R/64): the file offset of the record of rows 0, 64, 128, …
//! ```
//!
//! A row's input is the original row with the stored ids at its chosen positions (exactly what the
//! masker produced: it changes nothing else). At a 15% rate that is about 0.73 bytes per position
//! and copy (bitset 0.125, ids 0.6, index 1/(8T)), against 5 in version 1 (every input id plus a
//! flag byte), which is still read. The writer keeps one index entry per 64 rows in
//! memory; a reader finds row r from its block's offset and the bitsets of at most 63 rows before it.

use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use memmap2::Mmap;
use serde::{Deserialize, Serialize};

use super::config::MaskingConfig;
use crate::{Error, Result};

pub const STATIC_MAGIC: &[u8; 8] = b"RMSKSTAT";
pub const STATIC_VERSION: u32 = 2;
const HEADER: usize = 64;
/// Rows per index entry of a version-2 file.
const BLOCK: usize = 64;

/// File name of copy k relative to a prepared directory.
pub fn copy_name(k: u32) -> String {
    format!("static/copy-{k:03}.bin")
}

/// File name of copy k inside a prepared directory.
pub fn copy_path(dir: &Path, k: u32) -> PathBuf {
    dir.join(copy_name(k))
}

/// What the static copies of a prepared directory are (a field of its `meta.json`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StaticMeta {
    pub dupe_factor: u32,
    /// File names relative to the directory.
    pub files: Vec<String>,
    /// Their total size in bytes.
    pub bytes: u64,
    /// `bytes` over the training split's row positions (R·T): what storing the K copies costs per
    /// training token (0 in directories prepared before it was recorded).
    #[serde(default)]
    pub bytes_per_training_token: f64,
}

/// What a prepared directory holds for static masking, as its `meta.json` says.
#[derive(Clone, Copy, Debug)]
pub struct StoredCopies<'a> {
    pub dir: &'a Path,
    /// The `[masking]` section `prepare` ran with.
    pub made_with: &'a MaskingConfig,
    /// The copies it wrote, if any.
    pub meta: Option<&'a StaticMeta>,
    /// R and T of the training split.
    pub rows: usize,
    pub seq_len: usize,
}

/// Writes one copy, row by row, through a temporary name (renamed by [`Self::finish`]).
pub struct StaticCopyWriter {
    path: PathBuf,
    tmp: PathBuf,
    file: std::io::BufWriter<std::fs::File>,
    copy: u32,
    seq_len: usize,
    rows: u64,
    /// Bytes written so far (the next record's offset).
    at: u64,
    /// Record offset of every BLOCK-th row.
    index: Vec<u64>,
    record: Vec<u8>,
}

impl StaticCopyWriter {
    /// Starts copy `copy` of rows of `seq_len` at `path`.
    pub fn create(path: &Path, copy: u32, seq_len: usize) -> Result<Self> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
        }
        let tmp = path.with_extension("tmp");
        let file = std::fs::File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
        let mut file = std::io::BufWriter::with_capacity(1 << 20, file);
        file.write_all(&[0u8; HEADER])
            .map_err(|e| Error::io(&tmp, e))?;
        Ok(Self {
            path: path.to_path_buf(),
            tmp,
            file,
            copy,
            seq_len,
            rows: 0,
            at: HEADER as u64,
            index: Vec::new(),
            record: Vec::new(),
        })
    }

    /// Appends the next row: corrupted input ids `[T]` and chosen flags `[T]`.
    pub fn push(&mut self, input: &[u32], chosen: &[bool]) -> Result<()> {
        if self.rows % BLOCK as u64 == 0 {
            self.index.push(self.at);
        }
        self.record.clear();
        self.record.resize(self.seq_len.div_ceil(8), 0);
        for (i, &c) in chosen.iter().enumerate().take(self.seq_len) {
            if c {
                self.record[i / 8] |= 1 << (i % 8);
            }
        }
        for (i, &c) in chosen.iter().enumerate().take(self.seq_len) {
            if c {
                self.record.extend_from_slice(&input[i].to_le_bytes());
            }
        }
        self.file
            .write_all(&self.record)
            .map_err(|e| Error::io(&self.tmp, e))?;
        self.at += self.record.len() as u64;
        self.rows += 1;
        Ok(())
    }

    /// Writes the index and the header, fsyncs and renames the file into place; returns its size.
    pub fn finish(mut self) -> Result<u64> {
        let io = |e| Error::io(&self.tmp, e);
        let index_at = self.at;
        let mut bytes = Vec::with_capacity(8 * self.index.len());
        self.index
            .iter()
            .for_each(|o| bytes.extend_from_slice(&o.to_le_bytes()));
        self.file.write_all(&bytes).map_err(io)?;
        let mut header = Vec::with_capacity(HEADER);
        header.extend_from_slice(STATIC_MAGIC);
        header.extend_from_slice(&STATIC_VERSION.to_le_bytes());
        header.extend_from_slice(&self.copy.to_le_bytes());
        header.extend_from_slice(&self.rows.to_le_bytes());
        header.extend_from_slice(&(self.seq_len as u64).to_le_bytes());
        header.extend_from_slice(&index_at.to_le_bytes());
        header.resize(HEADER, 0);
        self.file.seek(SeekFrom::Start(0)).map_err(io)?;
        self.file.write_all(&header).map_err(io)?;
        let file = self
            .file
            .into_inner()
            .map_err(|e| Error::io(&self.tmp, e.into_error()))?;
        file.sync_all().map_err(|e| Error::io(&self.tmp, e))?;
        std::fs::rename(&self.tmp, &self.path).map_err(|e| Error::io(&self.path, e))?;
        Ok(index_at + bytes.len() as u64)
    }
}

/// One mapped copy file.
enum CopyMap {
    /// Version 1: every input id, then every flag.
    Full(Mmap),
    /// Version 2: records with a block index at `index_at`.
    Sparse { map: Mmap, index_at: usize },
}

/// The stored copies of a prepared directory, memory-mapped.
pub struct StaticCopies {
    copies: Vec<CopyMap>,
    rows: usize,
    seq_len: usize,
}

impl StaticCopies {
    /// Opens the copies a run masked by `want` reads: they must exist and have been made with the same
    /// masking config (`when` aside) and dupe factor.
    pub fn open_for(want: &MaskingConfig, stored: StoredCopies<'_>) -> Result<Self> {
        let dir = stored.dir;
        let Some(dupe_factor) = want.dupe_factor() else {
            return Err(Error::config(
                "masking.when",
                "stored copies are read by static masking only",
            ));
        };
        let Some(sm) = stored.meta else {
            return Err(Error::config(
                "masking.when",
                format!("static masking, but {} has no stored copies: run `remask prepare` with this [masking] section", dir.display()),
            ));
        };
        let mut made_with = stored.made_with.clone();
        made_with.when = want.when;
        if sm.dupe_factor != dupe_factor || made_with != *want {
            return Err(Error::config(
                "masking",
                format!(
                    "{} stores static masks for a different masking config (dupe factor {}); run `remask prepare` again with this one",
                    dir.display(),
                    sm.dupe_factor
                ),
            ));
        }
        Self::open(dir, dupe_factor, stored.rows, stored.seq_len)
    }

    /// Opens copies 0..k and checks that each holds `rows` rows of `seq_len`.
    pub fn open(dir: &Path, k: u32, rows: usize, seq_len: usize) -> Result<Self> {
        let mut copies = Vec::new();
        for c in 0..k {
            let path = copy_path(dir, c);
            let file = std::fs::File::open(&path).map_err(|e| Error::io(&path, e))?;
            // SAFETY: read-only map of a file written once through a temporary name.
            let map = unsafe { Mmap::map(&file) }.map_err(|e| Error::io(&path, e))?;
            let bad = |why: String| {
                Error::data(&path, format!("not a static mask copy for {rows} rows of {seq_len} ({why}); run `remask prepare` again"))
            };
            if map.len() < HEADER || &map[..8] != STATIC_MAGIC {
                return Err(bad("bad magic".into()));
            }
            let u64_at = |o: usize| u64::from_le_bytes(map[o..o + 8].try_into().unwrap_or([0; 8]));
            let version = u32::from_le_bytes(map[8..12].try_into().unwrap_or([0; 4]));
            let (r, t) = (u64_at(16) as usize, u64_at(24) as usize);
            if (r, t) != (rows, seq_len) {
                return Err(bad(format!("it holds {r} rows of {t}")));
            }
            match version {
                1 => {
                    let want = HEADER + 5 * rows * seq_len;
                    if map.len() != want {
                        return Err(bad(format!("size {}, expected {want}", map.len())));
                    }
                    copies.push(CopyMap::Full(map));
                }
                2 => {
                    let index_at = u64_at(32) as usize;
                    let want = index_at.checked_add(8 * rows.div_ceil(BLOCK));
                    if index_at < HEADER || want != Some(map.len()) {
                        return Err(bad(format!("size {}, index at {index_at}", map.len())));
                    }
                    copies.push(CopyMap::Sparse { map, index_at });
                }
                v => return Err(bad(format!("format version {v}, this build reads 1 and 2"))),
            }
        }
        Ok(Self {
            copies,
            rows,
            seq_len,
        })
    }

    pub fn dupe_factor(&self) -> u32 {
        self.copies.len() as u32
    }

    /// Reads row r of copy `copy` (< K) of the row whose ids are `original` `[T]`: corrupted input
    /// `[T]` and chosen flags `[T]`.
    pub fn row(
        &self,
        copy: usize,
        r: usize,
        original: &[u32],
        input: &mut [u32],
        chosen: &mut [bool],
    ) {
        let t = self.seq_len;
        match &self.copies[copy] {
            CopyMap::Full(map) => {
                let ids = &map[HEADER + 4 * r * t..HEADER + 4 * (r + 1) * t];
                for (x, b) in input.iter_mut().zip(ids.chunks_exact(4)) {
                    *x = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
                }
                let flags_at = HEADER + 4 * self.rows * t + r * t;
                for (c, &b) in chosen.iter_mut().zip(&map[flags_at..flags_at + t]) {
                    *c = b != 0;
                }
            }
            CopyMap::Sparse { map, index_at } => {
                let bits = t.div_ceil(8);
                let block = r / BLOCK;
                let o = index_at + 8 * block;
                let mut at =
                    u64::from_le_bytes(map[o..o + 8].try_into().unwrap_or([0; 8])) as usize;
                for _ in block * BLOCK..r {
                    let ones: usize = map[at..at + bits]
                        .iter()
                        .map(|b| b.count_ones() as usize)
                        .sum();
                    at += bits + 4 * ones;
                }
                let set = &map[at..at + bits];
                let mut ids = at + bits;
                input.copy_from_slice(original);
                for i in 0..t {
                    let c = set[i / 8] >> (i % 8) & 1 != 0;
                    chosen[i] = c;
                    if c {
                        input[i] = u32::from_le_bytes([
                            map[ids],
                            map[ids + 1],
                            map[ids + 2],
                            map[ids + 3],
                        ]);
                        ids += 4;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A version-2 file and a version-1 file (the earlier layout, still read) of the same rows read
    /// back the same inputs and flags, for every row (blocks of 64 rows, rows with no chosen position).
    #[test]
    fn compact_copies_read_back_what_was_written_and_version_1_still_reads() {
        let dir = std::env::temp_dir().join(format!("remask-static-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (rows, t) = (150usize, 13usize);
        let original: Vec<Vec<u32>> = (0..rows)
            .map(|r| (0..t).map(|i| (r * 31 + i * 7) as u32 % 1000 + 5).collect())
            .collect();
        let chosen: Vec<Vec<bool>> = (0..rows)
            .map(|r| {
                (0..t)
                    .map(|i| r % 10 != 3 && (r * 5 + i * 3) % 7 == 0)
                    .collect()
            })
            .collect();
        let input: Vec<Vec<u32>> = (0..rows)
            .map(|r| {
                (0..t)
                    .map(|i| {
                        if chosen[r][i] {
                            (r + i) as u32 % 4
                        } else {
                            original[r][i]
                        }
                    })
                    .collect()
            })
            .collect();
        let mut w = StaticCopyWriter::create(&copy_path(&dir, 0), 0, t).unwrap();
        for r in 0..rows {
            w.push(&input[r], &chosen[r]).unwrap();
        }
        let bytes = w.finish().unwrap();
        assert_eq!(bytes, std::fs::metadata(copy_path(&dir, 0)).unwrap().len());
        assert!(bytes < (5 * rows * t) as u64 / 2, "{bytes}");
        // Version 1, by hand.
        let mut v1 = Vec::new();
        v1.extend_from_slice(STATIC_MAGIC);
        v1.extend_from_slice(&1u32.to_le_bytes());
        v1.extend_from_slice(&1u32.to_le_bytes());
        v1.extend_from_slice(&(rows as u64).to_le_bytes());
        v1.extend_from_slice(&(t as u64).to_le_bytes());
        v1.resize(HEADER, 0);
        input
            .iter()
            .flatten()
            .for_each(|id| v1.extend_from_slice(&id.to_le_bytes()));
        chosen.iter().flatten().for_each(|&c| v1.push(u8::from(c)));
        std::fs::write(copy_path(&dir, 1), &v1).unwrap();
        let copies = StaticCopies::open(&dir, 2, rows, t).unwrap();
        let (mut got, mut flags) = (vec![0u32; t], vec![false; t]);
        for c in 0..2 {
            for r in (0..rows).rev() {
                copies.row(c, r, &original[r], &mut got, &mut flags);
                assert_eq!((&got, &flags), (&input[r], &chosen[r]), "copy {c} row {r}");
            }
        }
        // A copy made for another number of rows is refused, naming what to do.
        let e = StaticCopies::open(&dir, 1, rows + 1, t)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("copy-000.bin") && e.contains("prepare"), "{e}");
        std::fs::remove_dir_all(&dir).ok();
    }
}
