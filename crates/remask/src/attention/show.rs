//! Text views of attention masks for people (`remask inspect attention`).

use std::fmt::Write;

use remask_kernels::block_mask::{BlockMask, TileKind};

use crate::batch::{Batch, PAD_DOC};
use crate::{Error, Result};

/// A one-row batch of `seq` positions: the row's real length is `length` (padding after), it holds
/// documents of `doc_lengths` back to back (empty = one document over the real tokens), and
/// a prefix-LM prefix of `prefix`.
pub fn one_row_batch(
    seq: usize,
    length: usize,
    doc_lengths: &[usize],
    prefix: usize,
) -> Result<Batch> {
    if seq == 0 {
        return Err(Error::config("seq", "must be at least 1"));
    }
    if length > seq {
        return Err(Error::config(
            "lengths",
            format!("row length {length} exceeds --seq {seq}"),
        ));
    }
    let total: usize = doc_lengths.iter().sum();
    if total > length {
        return Err(Error::config(
            "lengths",
            format!("document lengths sum to {total}, more than the row's {length} real tokens"),
        ));
    }
    if doc_lengths.contains(&0) {
        return Err(Error::config(
            "lengths",
            "document lengths must be at least 1",
        ));
    }
    let mut doc_ids = vec![PAD_DOC; seq];
    let mut positions = vec![0u32; seq];
    let docs: Vec<usize> = if doc_lengths.is_empty() {
        vec![length]
    } else {
        doc_lengths.to_vec()
    };
    let mut at = 0;
    for (d, &l) in docs.iter().enumerate() {
        for p in 0..l {
            doc_ids[at + p] = d as u32;
            positions[at + p] = p as u32;
        }
        at += l;
    }
    // Real tokens after the last listed document form one more document.
    if at < length {
        for p in at..length {
            doc_ids[p] = docs.len() as u32;
            positions[p] = (p - at) as u32;
        }
    }
    Ok(Batch::new(1, seq)
        .with_positions(positions)
        .with_doc_ids(doc_ids)
        .with_lengths(vec![length as u32])
        .with_prefix_lengths(vec![prefix.min(seq) as u32]))
}

/// The mask of row `b`, head `h` as characters: rows = queries, columns = keys, `#` = may attend,
/// `.` = may not; a space separates key tiles and a blank line query tiles. Key indices (mod 10)
/// head the columns, query indices start the rows.
pub fn render_mask(mask: &BlockMask, b: usize, h: usize) -> String {
    let mut s = String::new();
    let w = mask.tq().saturating_sub(1).to_string().len();
    let _ = write!(s, "{:>w$}  ", "");
    for k in 0..mask.tk() {
        if k > 0 && k % mask.tile_k() == 0 {
            s.push(' ');
        }
        let _ = write!(s, "{}", k % 10);
    }
    s.push('\n');
    for q in 0..mask.tq() {
        if q > 0 && q % mask.tile_q() == 0 {
            s.push('\n');
        }
        let _ = write!(s, "{q:>w$}  ");
        for k in 0..mask.tk() {
            if k > 0 && k % mask.tile_k() == 0 {
                s.push(' ');
            }
            s.push(if mask.allows(b, h, q, k) { '#' } else { '.' });
        }
        s.push('\n');
    }
    s
}

/// The tile map of row `b`, head `h`: `#` full, `+` partial, `.` empty (one character per tile).
pub fn render_tiles(mask: &BlockMask, b: usize, h: usize) -> String {
    let mut s = String::new();
    for qt in 0..mask.n_q_tiles() {
        for kt in 0..mask.n_k_tiles() {
            s.push(match mask.kind(b, h, qt, kt) {
                TileKind::Full => '#',
                TileKind::Partial => '+',
                TileKind::Empty => '.',
            });
        }
        s.push('\n');
    }
    s
}
