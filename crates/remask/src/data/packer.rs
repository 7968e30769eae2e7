//! The packer: turns a split's documents into rows of T tokens.
//!
//! Every document is framed as `[CLS] tokens [SEP]`.
//! - `pack`: framed documents are laid back to back in one stream cut into rows of T; a row holds
//!   several documents (distinct `doc_ids`, positions restarting at 0 for each), and a long document
//!   continues in the next row (its positions restart there too). Only the last row is padded.
//! - `pad`: one document per row, padded at the end; a document longer than T − 2 tokens is cut into
//!   several rows, each framed.
//!
//! Rows are computed, never materialised, so T can change without re-preparing (static masks
//! excepted: they are stored per row). `pack` keeps no per-document table: where a row starts is
//! found by a binary search over the shards' memory-mapped offsets (stream offset of document d =
//! its first token + 2d). `pad` keeps one (document, first token) pair per row (8 bytes a row).
//!
//! [`RowStream`] builds the same rows from documents as they arrive (`prepare` streams the training
//! split through it to write static masks in the same pass).

use super::config::Packing;
use super::shard::ShardSet;
use super::tokenizer::{EncodedDoc, SpecialTokens};
use crate::batch::PAD_DOC;
use crate::masking::TokenRowBuf;

/// One packed row. All slices are `[T]`.
pub struct RowOut<'a> {
    pub ids: &'a mut [u32],
    pub word_starts: &'a mut [bool],
    pub doc_ids: &'a mut [u32],
    pub positions: &'a mut [u32],
}

/// Row layout of one split.
pub struct Packer {
    seq_len: usize,
    packing: Packing,
    /// `pack`: length of the stream of framed documents (tokens + 2 per document).
    total: u64,
    /// `pad`: (document, first content token) of each row.
    pad_rows: Vec<(u32, u32)>,
}

impl Packer {
    pub fn new(docs: &ShardSet, seq_len: usize, packing: Packing) -> Self {
        let n = docs.num_docs();
        let mut total = 0;
        let mut pad_rows = Vec::new();
        match packing {
            Packing::Pack => total = docs.num_tokens() as u64 + 2 * n as u64,
            Packing::Pad => {
                let body = seq_len - 2;
                for d in 0..n {
                    let len = docs.doc_len(d);
                    let mut start = 0;
                    loop {
                        pad_rows.push((d as u32, start as u32));
                        start += body;
                        if start >= len {
                            break;
                        }
                    }
                }
            }
        }
        Self {
            seq_len,
            packing,
            total,
            pad_rows,
        }
    }

    /// Number of rows.
    pub fn num_rows(&self) -> u64 {
        match self.packing {
            Packing::Pack => self.total.div_ceil(self.seq_len as u64),
            Packing::Pad => self.pad_rows.len() as u64,
        }
    }

    /// Real (non-padding) tokens over all rows.
    pub fn real_tokens(&self, docs: &ShardSet) -> u64 {
        match self.packing {
            Packing::Pack => self.total,
            Packing::Pad => self
                .pad_rows
                .iter()
                .map(|&(d, s)| {
                    ((docs.doc_len(d as usize) - s as usize).min(self.seq_len - 2) + 2) as u64
                })
                .sum(),
        }
    }

    pub fn seq_len(&self) -> usize {
        self.seq_len
    }

    /// Fills row `r`; returns its length (real tokens; the rest is padding).
    pub fn fill(
        &self,
        docs: &ShardSet,
        specials: &SpecialTokens,
        r: u64,
        out: RowOut<'_>,
    ) -> usize {
        let t = self.seq_len;
        let RowOut {
            ids,
            word_starts,
            doc_ids,
            positions,
        } = out;
        let mut filled = 0usize;
        // Writes framed positions `from .. from + take` of document d (position 0 is [CLS], len + 1 is
        // [SEP]) into the row at `filled`.
        let mut put = |d: usize, from: usize, take: usize, filled: &mut usize| {
            let (shard, range) = docs.doc(d);
            let len = range.len();
            for j in 0..take {
                let p = from + j;
                let k = *filled + j;
                if p == 0 {
                    ids[k] = specials.cls;
                    word_starts[k] = true;
                } else if p == len + 1 {
                    ids[k] = specials.sep;
                    word_starts[k] = true;
                } else {
                    ids[k] = shard.token(range.start + p - 1);
                    word_starts[k] = shard.word_start(range.start + p - 1);
                }
                doc_ids[k] = d as u32;
                positions[k] = j as u32;
            }
            *filled += take;
        };
        match self.packing {
            Packing::Pack => {
                let stream_start = |d: usize| docs.token_start(d) + 2 * d as u64;
                let mut o = r * t as u64;
                let end = (o + t as u64).min(self.total);
                let mut d = docs.first_doc_after(o, 2).saturating_sub(1);
                while o < end {
                    let start = stream_start(d);
                    let local = (o - start) as usize;
                    let framed = (stream_start(d + 1) - start) as usize;
                    let take = (framed - local).min((end - o) as usize);
                    put(d, local, take, &mut filled);
                    o += take as u64;
                    d += 1;
                }
            }
            Packing::Pad => {
                let (d, start) = self.pad_rows[r as usize];
                let (d, start) = (d as usize, start as usize);
                let len = docs.doc_len(d);
                let body = (len - start).min(t - 2);
                // [CLS] is framed position 0; content starts at framed position start + 1.
                let out = RowOut {
                    ids: &mut *ids,
                    word_starts: &mut *word_starts,
                    doc_ids: &mut *doc_ids,
                    positions: &mut *positions,
                };
                put_range_pad(docs, specials, d, start, body, out);
                filled = body + 2;
            }
        }
        for k in filled..t {
            ids[k] = specials.pad;
            word_starts[k] = true;
            doc_ids[k] = PAD_DOC;
            positions[k] = 0;
        }
        filled
    }
}

/// `pad` packing: `[CLS]`, `body` tokens of document d from its token `start`, `[SEP]`.
fn put_range_pad(
    docs: &ShardSet,
    specials: &SpecialTokens,
    d: usize,
    start: usize,
    body: usize,
    out: RowOut<'_>,
) {
    let RowOut {
        ids,
        word_starts,
        doc_ids,
        positions,
    } = out;
    let (shard, range) = docs.doc(d);
    ids[0] = specials.cls;
    word_starts[0] = true;
    shard.copy(
        &mut ids[1..1 + body],
        &mut word_starts[1..1 + body],
        range.start + start,
    );
    ids[1 + body] = specials.sep;
    word_starts[1 + body] = true;
    for k in 0..body + 2 {
        doc_ids[k] = d as u32;
        positions[k] = k as u32;
    }
}

/// Builds a split's rows from its documents in order, exactly the rows [`Packer::fill`] gives (ids,
/// word starts, length; padding is the pad id with word starts set), and hands each complete row to a
/// callback with its index. Holds one row.
pub struct RowStream {
    packing: Packing,
    cls: u32,
    sep: u32,
    pad: u32,
    row: TokenRowBuf,
    filled: usize,
    rows: u64,
}

impl RowStream {
    pub fn new(seq_len: usize, packing: Packing, specials: &SpecialTokens) -> Self {
        let (cls, sep, pad) = (specials.cls, specials.sep, specials.pad);
        Self {
            packing,
            cls,
            sep,
            pad,
            row: TokenRowBuf::new(seq_len),
            filled: 0,
            rows: 0,
        }
    }

    /// Rows emitted so far.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    fn put(&mut self, id: u32, word_start: bool) {
        self.row.ids[self.filled] = id;
        self.row.word_starts[self.filled] = word_start;
        self.filled += 1;
    }

    fn emit<E>(&mut self, f: &mut dyn FnMut(u64, &TokenRowBuf) -> Result<(), E>) -> Result<(), E> {
        let t = self.row.ids.len();
        for k in self.filled..t {
            self.row.ids[k] = self.pad;
            self.row.word_starts[k] = true;
        }
        self.row.length = self.filled;
        self.filled = 0;
        let r = self.rows;
        self.rows += 1;
        f(r, &self.row)
    }

    /// Adds the next document of the split (framed as `[CLS] tokens [SEP]`); emits the rows it
    /// completes.
    pub fn push<E>(
        &mut self,
        doc: &EncodedDoc,
        f: &mut dyn FnMut(u64, &TokenRowBuf) -> Result<(), E>,
    ) -> Result<(), E> {
        let t = self.row.ids.len();
        match self.packing {
            Packing::Pack => {
                let n = doc.ids.len();
                for p in 0..n + 2 {
                    let (id, w) = match p {
                        0 => (self.cls, true),
                        p if p == n + 1 => (self.sep, true),
                        p => (doc.ids[p - 1], doc.word_starts[p - 1]),
                    };
                    self.put(id, w);
                    if self.filled == t {
                        self.emit(f)?;
                    }
                }
            }
            Packing::Pad => {
                let body = t - 2;
                let mut start = 0;
                loop {
                    let take = (doc.ids.len() - start.min(doc.ids.len())).min(body);
                    self.put(self.cls, true);
                    for j in start..start + take {
                        self.put(doc.ids[j], doc.word_starts[j]);
                    }
                    self.put(self.sep, true);
                    self.emit(f)?;
                    start += body;
                    if start >= doc.ids.len() {
                        break;
                    }
                }
            }
        }
        Ok(())
    }

    /// Emits the last, partly filled row (`pack`), if any.
    pub fn finish<E>(
        &mut self,
        f: &mut dyn FnMut(u64, &TokenRowBuf) -> Result<(), E>,
    ) -> Result<(), E> {
        if self.filled > 0 {
            self.emit(f)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::shard::{write_shard, ShardSet};

    #[test]
    fn row_stream_gives_the_packers_rows_and_pack_rows_come_from_the_mapped_offsets() {
        let dir = std::env::temp_dir().join(format!("remask-packer-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let specials = SpecialTokens {
            pad: 0,
            unk: Some(1),
            cls: 2,
            sep: 3,
            mask: 4,
            all: vec![0, 1, 2, 3, 4],
        };
        let mut rng =
            remask_kernels::rng::KeyedRng::new(7, remask_kernels::rng::Purpose::Shuffle, 0, 0);
        let docs: Vec<EncodedDoc> = (0..60)
            .map(|_| {
                let n = 1 + rng.below(40) as usize;
                EncodedDoc {
                    ids: (0..n).map(|_| 5 + rng.below(100) as u32).collect(),
                    word_starts: (0..n).map(|_| rng.below(2) == 0).collect(),
                }
            })
            .collect();
        // Three shards of 20 documents, so rows cross shard boundaries.
        let paths: Vec<std::path::PathBuf> =
            (0..3).map(|k| dir.join(format!("s{k}.bin"))).collect();
        for (k, p) in paths.iter().enumerate() {
            let part: Vec<&EncodedDoc> = docs[20 * k..20 * (k + 1)].iter().collect();
            write_shard(p, &part).unwrap();
        }
        let set = ShardSet::open(&paths).unwrap();
        for packing in [Packing::Pack, Packing::Pad] {
            for t in [4usize, 7, 16, 128] {
                let packer = Packer::new(&set, t, packing);
                let mut stream = RowStream::new(t, packing, &specials);
                let mut rows: Vec<TokenRowBuf> = Vec::new();
                let mut keep = |r: u64, row: &TokenRowBuf| -> Result<(), ()> {
                    assert_eq!(r as usize, rows.len());
                    rows.push(row.clone());
                    Ok(())
                };
                for d in &docs {
                    stream.push(d, &mut keep).unwrap();
                }
                stream.finish(&mut keep).unwrap();
                assert_eq!(rows.len() as u64, packer.num_rows(), "{packing:?} T={t}");
                let (mut ids, mut w, mut di, mut pos) =
                    (vec![0; t], vec![false; t], vec![0; t], vec![0; t]);
                for (r, want) in rows.iter().enumerate() {
                    let out = RowOut {
                        ids: &mut ids,
                        word_starts: &mut w,
                        doc_ids: &mut di,
                        positions: &mut pos,
                    };
                    let len = packer.fill(&set, &specials, r as u64, out);
                    assert_eq!(
                        (&ids, &w, len),
                        (&want.ids, &want.word_starts, want.length),
                        "{packing:?} T={t} row {r}"
                    );
                }
            }
        }
        std::fs::remove_dir_all(&dir).ok();
    }
}
