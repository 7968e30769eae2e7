//! Static masking storage: K differently masked copies of the training rows, decided at `prepare` time
//! (BERT's dupe factor). Epoch e trains on copy e mod K. One file per copy, so their disk cost is easy
//! to measure (`static/copy-NNN.bin`).
//!
//! Layout (little-endian): magic "RMSKSTAT", version u32, copy u32, rows u64 (R), seq_len u64 (T),
//! 32 reserved bytes; then the corrupted input ids u32 × R·T; then the chosen flags u8 × R·T.

use std::path::{Path, PathBuf};

use memmap2::Mmap;

use super::shard::write_atomic;
use crate::{Error, Result};

pub const STATIC_MAGIC: &[u8; 8] = b"RMSKSTAT";
pub const STATIC_VERSION: u32 = 1;
const HEADER: usize = 64;

/// File name of copy k inside a prepared directory.
pub fn copy_path(dir: &Path, k: u32) -> PathBuf {
    dir.join("static").join(format!("copy-{k:03}.bin"))
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
pub struct StaticMasks {
    copies: Vec<Mmap>,
    rows: usize,
    seq_len: usize,
}

impl StaticMasks {
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

    /// Reads row r of copy `epoch mod K`: corrupted input `[T]` and chosen flags `[T]`.
    pub fn row(&self, epoch: u64, r: usize, input: &mut [u32], chosen: &mut [bool]) {
        let map = &self.copies[(epoch % self.copies.len() as u64) as usize];
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
