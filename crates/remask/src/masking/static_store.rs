//! The storage of static masks: K differently masked copies of a prepared directory's training rows
//! (BERT's dupe factor), written once by `prepare` and memory-mapped by training. Which copy an epoch
//! reads is [`super::MaskPlan`]'s decision; this file only stores and reads rows. One file per copy,
//! so their disk cost is easy to measure (`static/copy-NNN.bin`).
//!
//! Layout (little-endian): magic "RMSKSTAT", version u32, copy u32, rows u64 (R), seq_len u64 (T),
//! 32 reserved bytes; then the corrupted input ids u32 × R·T; then the chosen flags u8 × R·T.

use std::path::{Path, PathBuf};

use memmap2::Mmap;
use serde::{Deserialize, Serialize};

use super::config::MaskingConfig;
use crate::atomic_write::write_atomic;
use crate::{Error, Result};

pub const STATIC_MAGIC: &[u8; 8] = b"RMSKSTAT";
pub const STATIC_VERSION: u32 = 1;
const HEADER: usize = 64;

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

/// Collects one copy's rows before writing it.
pub struct StaticCopyWriter {
    copy: u32,
    seq_len: usize,
    inputs: Vec<u32>,
    chosen: Vec<u8>,
}

impl StaticCopyWriter {
    pub fn new(copy: u32, seq_len: usize, rows: usize) -> Self {
        Self { copy, seq_len, inputs: Vec::with_capacity(rows * seq_len), chosen: Vec::with_capacity(rows * seq_len) }
    }

    /// Appends one row: corrupted input ids `[T]` and chosen flags `[T]`.
    pub fn push(&mut self, input: &[u32], chosen: &[bool]) {
        self.inputs.extend_from_slice(input);
        self.chosen.extend(chosen.iter().map(|&c| u8::from(c)));
    }

    /// Writes the file; returns its size in bytes.
    pub fn write(&self, path: &Path) -> Result<u64> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
        }
        let rows = self.inputs.len() / self.seq_len.max(1);
        let mut buf = Vec::with_capacity(HEADER + 5 * self.inputs.len());
        buf.extend_from_slice(STATIC_MAGIC);
        buf.extend_from_slice(&STATIC_VERSION.to_le_bytes());
        buf.extend_from_slice(&self.copy.to_le_bytes());
        buf.extend_from_slice(&(rows as u64).to_le_bytes());
        buf.extend_from_slice(&(self.seq_len as u64).to_le_bytes());
        buf.resize(HEADER, 0);
        for &id in &self.inputs {
            buf.extend_from_slice(&id.to_le_bytes());
        }
        buf.extend_from_slice(&self.chosen);
        write_atomic(path, &buf)?;
        Ok(buf.len() as u64)
    }
}

/// The stored copies of a prepared directory, memory-mapped.
pub struct StaticCopies {
    copies: Vec<Mmap>,
    rows: usize,
    seq_len: usize,
}

impl StaticCopies {
    /// Opens the copies a run masked by `want` reads: they must exist and have been made with the same
    /// masking config (`when` aside) and dupe factor.
    pub fn open_for(want: &MaskingConfig, stored: StoredCopies<'_>) -> Result<Self> {
        let dir = stored.dir;
        let Some(dupe_factor) = want.dupe_factor() else {
            return Err(Error::config("masking.when", "stored copies are read by static masking only"));
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
            let want = HEADER + 5 * rows * seq_len;
            if map.len() < HEADER || &map[..8] != STATIC_MAGIC || map.len() != want {
                return Err(Error::data(&path, format!("not a static mask copy for {rows} rows of {seq_len} (size {}, expected {want}); run `remask prepare` again", map.len())));
            }
            copies.push(map);
        }
        Ok(Self { copies, rows, seq_len })
    }

    pub fn dupe_factor(&self) -> u32 {
        self.copies.len() as u32
    }

    /// Reads row r of copy `copy` (< K): corrupted input `[T]` and chosen flags `[T]`.
    pub fn row(&self, copy: usize, r: usize, input: &mut [u32], chosen: &mut [bool]) {
        let map = &self.copies[copy];
        let t = self.seq_len;
        let ids = &map[HEADER + 4 * r * t..HEADER + 4 * (r + 1) * t];
        for (x, b) in input.iter_mut().zip(ids.chunks_exact(4)) {
            *x = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        }
        let flags_at = HEADER + 4 * self.rows * t + r * t;
        for (c, &b) in chosen.iter_mut().zip(&map[flags_at..flags_at + t]) {
            *c = b != 0;
        }
    }
}
