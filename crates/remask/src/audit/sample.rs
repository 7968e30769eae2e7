//! A small synthetic batch that exercises every attention-mask kind: rows of different lengths
//! (padding at the end), three packed documents per row (positions restart), a prefix per row.

use remask_kernels::rng::{KeyedRng, Purpose};

use crate::model::{Arch, ModelConfig};
use crate::{Batch, DecoderBatch, Error, Result};

/// A batch of `batch_size` rows of `seq_len` positions for a model of `config`: row 0 is full, the
/// others end in padding; each row holds three documents; the prefix covers half of the real tokens.
/// Encoder-decoder configs also get a decoder side of `max(2, seq_len / 2)` positions.
pub fn audit_batch(
    config: &ModelConfig,
    batch_size: usize,
    seq_len: usize,
    seed: u64,
) -> Result<Batch> {
    let t = seq_len;
    if batch_size == 0 || t < 2 {
        return Err(Error::config(
            "audit",
            format!("needs at least 1 row and 2 positions, got --batch {batch_size} --seq {t}"),
        ));
    }
    if t > config.max_positions {
        return Err(Error::config(
            "audit --seq",
            format!(
                "{t} is more than model.max_positions = {}",
                config.max_positions
            ),
        ));
    }
    let v = config.vocab_size as u64;
    let mut rng = KeyedRng::new(seed, Purpose::Other, 0, 0xa0d17);
    let mut b = Batch::new(batch_size, t);
    for r in 0..batch_size {
        let len = match r {
            0 => t,
            _ if r % 2 == 1 => t - (t / 4).max(1),
            _ => t - (t / 6).max(1),
        };
        b.lengths[r] = len as u32;
        b.prefix_lengths[r] = (len / 2) as u32;
        let cuts = [len / 3, 2 * len / 3];
        let row = b.row_mut(r);
        for k in 0..t {
            let real = k < len;
            let doc = cuts.iter().filter(|&&c| k >= c).count();
            let start = if doc == 0 { 0 } else { cuts[doc - 1] };
            let mut id = rng.below(v) as u32;
            if real && id == config.pad_token_id && v > 1 {
                id = ((id as u64 + 1) % v) as u32;
            }
            row.input_ids[k] = if real { id } else { config.pad_token_id };
            if real {
                row.positions[k] = (k - start) as u32;
                row.doc_ids[k] = (r * 3 + doc) as u32;
            }
        }
    }
    if config.arch == Arch::EncoderDecoder {
        let td = (t / 2).max(2);
        let mut d = DecoderBatch::new(batch_size, td);
        for r in 0..batch_size {
            let len = td - (r % 2);
            for k in 0..td {
                d.input_ids[r * td + k] = if k < len {
                    rng.below(v) as u32
                } else {
                    config.pad_token_id
                };
            }
            d.lengths[r] = len as u32;
        }
        b.decoder = Some(d);
    }
    Ok(b)
}
