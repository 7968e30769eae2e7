//! Moving rows between ranks: slicing a batch into shares, concatenating shares, and gathering every
//! rank's share (or per-label losses) on every rank. Adaptive masking needs the latter: its feedback
//! must see the whole global batch on every rank, or the masks of later steps would depend on the
//! number of ranks.

use std::ops::Range;

use super::Collective;
use crate::{Batch, DecoderBatch, Error, Result};

/// Rows `rows` of `batch` as a batch of their own (every per-row and per-position array sliced).
pub fn slice_rows(batch: &Batch, rows: Range<usize>) -> Batch {
    assert!(
        rows.end <= batch.batch_size,
        "rows {rows:?} of a batch of {}",
        batch.batch_size
    );
    let t = batch.seq_len;
    let pos = |v: &Vec<u32>| v[rows.start * t..rows.end * t].to_vec();
    let mut out = Batch::new(rows.len(), t)
        .with_input_ids(pos(&batch.input_ids))
        .with_labels(batch.labels[rows.start * t..rows.end * t].to_vec())
        .with_positions(pos(&batch.positions))
        .with_doc_ids(pos(&batch.doc_ids))
        .with_token_type_ids(pos(&batch.token_type_ids))
        .with_lengths(batch.lengths[rows.clone()].to_vec())
        .with_prefix_lengths(batch.prefix_lengths[rows.clone()].to_vec())
        .with_sample_ids(batch.sample_ids[rows.clone()].to_vec());
    out.decoder = batch.decoder.as_ref().map(|d| {
        let td = d.seq_len;
        DecoderBatch::new(rows.len(), td)
            .with_input_ids(d.input_ids[rows.start * td..rows.end * td].to_vec())
            .with_labels(d.labels[rows.start * td..rows.end * td].to_vec())
            .with_lengths(d.lengths[rows.clone()].to_vec())
    });
    out
}

/// The rows of `parts` one after another. Parts with no rows are skipped; the others must agree on
/// `seq_len` and on having a decoder side (and its `seq_len`).
pub fn concat_rows(parts: &[Batch]) -> Result<Batch> {
    let filled: Vec<&Batch> = parts.iter().filter(|p| p.batch_size > 0).collect();
    let Some(first) = filled.first() else {
        return Ok(parts.first().cloned().unwrap_or_default());
    };
    // No rows yet: every array grows as the parts are appended.
    let mut out = Batch::new(0, first.seq_len);
    out.decoder = first
        .decoder
        .as_ref()
        .map(|d| DecoderBatch::new(0, d.seq_len));
    for p in filled {
        if p.seq_len != out.seq_len {
            return Err(Error::shape(
                "concatenated batch seq_len",
                out.seq_len,
                p.seq_len,
            ));
        }
        out.batch_size += p.batch_size;
        out.input_ids.extend_from_slice(&p.input_ids);
        out.labels.extend_from_slice(&p.labels);
        out.positions.extend_from_slice(&p.positions);
        out.doc_ids.extend_from_slice(&p.doc_ids);
        out.token_type_ids.extend_from_slice(&p.token_type_ids);
        out.lengths.extend_from_slice(&p.lengths);
        out.prefix_lengths.extend_from_slice(&p.prefix_lengths);
        out.sample_ids.extend_from_slice(&p.sample_ids);
        match (&mut out.decoder, &p.decoder) {
            (None, None) => {}
            (Some(o), Some(d)) if o.seq_len == d.seq_len => {
                o.input_ids.extend_from_slice(&d.input_ids);
                o.labels.extend_from_slice(&d.labels);
                o.lengths.extend_from_slice(&d.lengths);
            }
            _ => {
                return Err(Error::Other(
                    "concatenated batches disagree on their decoder side".into(),
                ))
            }
        }
    }
    Ok(out)
}

/// Every rank's `share`, concatenated in rank order, on every rank: with shares taken by
/// [`super::shard_range`] this is the whole global batch, bit for bit.
pub fn gather_batch(coll: &mut dyn Collective, share: &Batch) -> Result<Batch> {
    if coll.size() == 1 {
        return Ok(share.clone());
    }
    let mine = encode(share);
    let mut parts = Vec::with_capacity(coll.size());
    for root in 0..coll.size() {
        let mut buf = if root == coll.rank() {
            mine.clone()
        } else {
            Vec::new()
        };
        coll.broadcast_bytes(root, &mut buf)?;
        parts.push(
            decode(&buf)
                .ok_or_else(|| Error::Other(format!("rank {root} sent a malformed batch")))?,
        );
    }
    concat_rows(&parts)
}

/// Every rank's `mine` (lengths may differ), concatenated in rank order, on every rank. Exact: each
/// element is summed with zeros only.
pub fn gather_f32(coll: &mut dyn Collective, mine: &[f32]) -> Result<Vec<f32>> {
    let (rank, n) = (coll.rank(), coll.size());
    if n == 1 {
        return Ok(mine.to_vec());
    }
    let mut counts = vec![0u64; n];
    counts[rank] = mine.len() as u64;
    coll.all_reduce_sum_u64(&mut counts)?;
    let start: usize = counts[..rank].iter().map(|&c| c as usize).sum();
    let total: usize = counts.iter().map(|&c| c as usize).sum();
    let mut all = vec![0.0f32; total];
    all[start..start + mine.len()].copy_from_slice(mine);
    coll.all_reduce_sum_f32(&mut all)?;
    Ok(all)
}

// A batch on the wire: little-endian u64 header (rows, seq_len, decoder seq_len + 1 or 0), then each
// array as a u64 length and its elements.

fn encode(b: &Batch) -> Vec<u8> {
    let mut out = Vec::new();
    let dec_t = b.decoder.as_ref().map_or(0, |d| d.seq_len as u64 + 1);
    for h in [b.batch_size as u64, b.seq_len as u64, dec_t] {
        out.extend_from_slice(&h.to_le_bytes());
    }
    let mut put = |bytes: Vec<[u8; 4]>| {
        out.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
        bytes.iter().for_each(|x| out.extend_from_slice(x));
    };
    let u = |v: &Vec<u32>| v.iter().map(|x| x.to_le_bytes()).collect::<Vec<_>>();
    let i = |v: &Vec<i32>| v.iter().map(|x| x.to_le_bytes()).collect::<Vec<_>>();
    put(u(&b.input_ids));
    put(i(&b.labels));
    put(u(&b.positions));
    put(u(&b.doc_ids));
    put(u(&b.token_type_ids));
    put(u(&b.lengths));
    put(u(&b.prefix_lengths));
    if let Some(d) = &b.decoder {
        put(u(&d.input_ids));
        put(i(&d.labels));
        put(u(&d.lengths));
    }
    out.extend_from_slice(&(b.sample_ids.len() as u64).to_le_bytes());
    b.sample_ids
        .iter()
        .for_each(|x| out.extend_from_slice(&x.to_le_bytes()));
    out
}

struct Reader<'a> {
    bytes: &'a [u8],
}

impl Reader<'_> {
    fn u64(&mut self) -> Option<u64> {
        let (head, rest) = self.bytes.split_at_checked(8)?;
        self.bytes = rest;
        Some(u64::from_le_bytes(head.try_into().ok()?))
    }

    fn words(&mut self) -> Option<Vec<[u8; 4]>> {
        let n = usize::try_from(self.u64()?).ok()?;
        let (head, rest) = self.bytes.split_at_checked(n.checked_mul(4)?)?;
        self.bytes = rest;
        Some(
            head.chunks_exact(4)
                .map(|c| [c[0], c[1], c[2], c[3]])
                .collect(),
        )
    }

    fn u32s(&mut self) -> Option<Vec<u32>> {
        Some(self.words()?.into_iter().map(u32::from_le_bytes).collect())
    }

    fn i32s(&mut self) -> Option<Vec<i32>> {
        Some(self.words()?.into_iter().map(i32::from_le_bytes).collect())
    }
}

fn decode(bytes: &[u8]) -> Option<Batch> {
    let mut r = Reader { bytes };
    let (batch_size, seq_len, dec_t) = (r.u64()? as usize, r.u64()? as usize, r.u64()?);
    // Built from no rows, so a corrupt header cannot ask for a large allocation: the arrays come whole
    // from the message.
    let mut b = Batch::new(0, seq_len)
        .with_input_ids(r.u32s()?)
        .with_labels(r.i32s()?)
        .with_positions(r.u32s()?)
        .with_doc_ids(r.u32s()?)
        .with_token_type_ids(r.u32s()?)
        .with_lengths(r.u32s()?)
        .with_prefix_lengths(r.u32s()?);
    b.batch_size = batch_size;
    if dec_t > 0 {
        let d = DecoderBatch::new(0, dec_t as usize - 1)
            .with_input_ids(r.u32s()?)
            .with_labels(r.i32s()?)
            .with_lengths(r.u32s()?);
        b.decoder = Some(d);
    }
    let n = r.u64()? as usize;
    b.sample_ids = (0..n).map(|_| r.u64()).collect::<Option<Vec<u64>>>()?;
    r.bytes.is_empty().then_some(b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dist::{shard_range, Threads};

    /// A batch whose every entry is distinct, so a misplaced row or array shows.
    pub(crate) fn numbered_batch(rows: usize, t: usize, decoder: bool) -> Batch {
        let n = (rows * t) as u32;
        let seq = |k: u32| (0..n).map(|i| i * 7 + k).collect::<Vec<u32>>();
        let mut b = Batch::new(rows, t)
            .with_input_ids(seq(1))
            .with_labels(
                (0..n as i32)
                    .map(|i| if i % 3 == 0 { crate::IGNORE_INDEX } else { i })
                    .collect(),
            )
            .with_positions(seq(2))
            .with_doc_ids(seq(3))
            .with_token_type_ids(seq(4))
            .with_lengths((0..rows as u32).map(|r| r % (t as u32 + 1)).collect())
            .with_prefix_lengths((0..rows as u32).map(|r| r + 100).collect())
            .with_sample_ids((0..rows as u64).map(|r| 1000 + r).collect());
        b.decoder = decoder.then(|| {
            DecoderBatch::new(rows, 2)
                .with_input_ids((0..rows as u32 * 2).collect())
                .with_labels((0..rows as i32 * 2).map(|i| -i).collect())
        });
        b
    }

    #[test]
    fn slices_concatenate_back_and_survive_the_wire() {
        for decoder in [false, true] {
            let b = numbered_batch(7, 3, decoder);
            let parts: Vec<Batch> = (0..3)
                .map(|r| slice_rows(&b, shard_range(7, r, 3)))
                .collect();
            parts.iter().for_each(|p| p.validate().unwrap());
            assert_eq!(concat_rows(&parts).unwrap(), b);
            for p in &parts {
                assert_eq!(decode(&encode(p)).as_ref(), Some(p));
            }
            let bytes = encode(&b);
            assert!(
                decode(&bytes[..bytes.len() - 1]).is_none(),
                "a truncated message is refused"
            );
        }
    }

    #[test]
    fn gathering_shares_rebuilds_the_global_batch_on_every_rank() {
        let b = numbered_batch(5, 4, true);
        let losses: Vec<f32> = (0..11).map(|i| i as f32 * 0.5 - 1.0).collect();
        let handles: Vec<_> = Threads::group(3)
            .into_iter()
            .map(|mut t| {
                let (b, losses) = (b.clone(), losses.clone());
                std::thread::spawn(move || {
                    let share = slice_rows(&b, shard_range(5, t.rank(), 3));
                    let l = shard_range(11, t.rank(), 3);
                    (
                        gather_batch(&mut t, &share).unwrap(),
                        gather_f32(&mut t, &losses[l]).unwrap(),
                    )
                })
            })
            .collect();
        for h in handles {
            let (gb, gl) = h.join().unwrap();
            assert_eq!(gb, b);
            assert_eq!(gl, losses);
        }
    }
}
