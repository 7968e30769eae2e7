//! The packer: turns a split's documents into rows of T tokens.
//!
//! Every document is framed as `[CLS] tokens [SEP]`.
//! - `pack`: framed documents are laid back to back in one stream cut into rows of T; a row holds
//!   several documents (distinct `doc_ids`, positions restarting at 0 for each), and a long document
//!   continues in the next row (its positions restart there too). Only the last row is padded.
//! - `pad`: one document per row, padded at the end; a document longer than T − 2 tokens is cut into
//!   several rows, each framed.
//!
//! Rows are computed from two small index tables, never materialised, so T can change without
//! re-preparing (static masks excepted: they are stored per row).

use super::config::Packing;
use super::shard::ShardSet;
use super::tokenizer::SpecialTokens;
use crate::batch::PAD_DOC;

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
    /// `pack`: stream offset where each framed document starts, plus the total at the end.
    stream_start: Vec<u64>,
    /// `pad`: (document, first content token) of each row.
    pad_rows: Vec<(u32, u32)>,
}

impl Packer {
    pub fn new(docs: &ShardSet, seq_len: usize, packing: Packing) -> Self {
        let n = docs.num_docs();
        let mut stream_start = Vec::new();
        let mut pad_rows = Vec::new();
        match packing {
            Packing::Pack => {
                stream_start.reserve(n + 1);
                let mut s = 0u64;
                for d in 0..n {
                    stream_start.push(s);
                    s += docs.doc_len(d) as u64 + 2;
                }
                stream_start.push(s);
            }
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
        Self { seq_len, packing, stream_start, pad_rows }
    }

    /// Number of rows.
    pub fn num_rows(&self) -> u64 {
        match self.packing {
            Packing::Pack => {
                let total = self.stream_start.last().copied().unwrap_or(0);
                total.div_ceil(self.seq_len as u64)
            }
            Packing::Pad => self.pad_rows.len() as u64,
        }
    }

    /// Real (non-padding) tokens over all rows.
    pub fn real_tokens(&self, docs: &ShardSet) -> u64 {
        match self.packing {
            Packing::Pack => self.stream_start.last().copied().unwrap_or(0),
            Packing::Pad => self
                .pad_rows
                .iter()
                .map(|&(d, s)| ((docs.doc_len(d as usize) - s as usize).min(self.seq_len - 2) + 2) as u64)
                .sum(),
        }
    }

    pub fn seq_len(&self) -> usize {
        self.seq_len
    }

    /// Fills row `r`; returns its length (real tokens; the rest is padding).
    pub fn fill(&self, docs: &ShardSet, specials: &SpecialTokens, r: u64, out: RowOut<'_>) -> usize {
        let t = self.seq_len;
        let RowOut { ids, word_starts, doc_ids, positions } = out;
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
                let total = self.stream_start.last().copied().unwrap_or(0);
                let mut o = r * t as u64;
                let end = (o + t as u64).min(total);
                let mut d = self.stream_start.partition_point(|&s| s <= o).saturating_sub(1);
                while o < end {
                    let local = (o - self.stream_start[d]) as usize;
                    let framed = (self.stream_start[d + 1] - self.stream_start[d]) as usize;
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
                let out = RowOut { ids: &mut *ids, word_starts: &mut *word_starts, doc_ids: &mut *doc_ids, positions: &mut *positions };
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
fn put_range_pad(docs: &ShardSet, specials: &SpecialTokens, d: usize, start: usize, body: usize, out: RowOut<'_>) {
    let RowOut { ids, word_starts, doc_ids, positions } = out;
    let (shard, range) = docs.doc(d);
    ids[0] = specials.cls;
    word_starts[0] = true;
    shard.copy(&mut ids[1..1 + body], &mut word_starts[1..1 + body], range.start + start);
    ids[1 + body] = specials.sep;
    word_starts[1 + body] = true;
    for k in 0..body + 2 {
        doc_ids[k] = d as u32;
        positions[k] = k as u32;
    }
}
