//! The batch: what the data pipeline hands the model, after MLM masking.
//!
//! All per-position arrays are row-major `[B, T]` (B = batch_size rows, T = seq_len positions).
//! Padding always sits at the end of a row: positions `lengths[b]..T` of row `b` are padding.

/// Label of positions that carry no loss (PyTorch's `ignore_index`).
pub const IGNORE_INDEX: i32 = -100;

/// Document id of padding positions.
pub const PAD_DOC: u32 = u32::MAX;

/// One training or evaluation batch.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Batch {
    /// B: number of rows.
    pub batch_size: usize,
    /// T: positions per row.
    pub seq_len: usize,
    /// Model input token ids, after MLM corruption where there is any. `[B, T]`
    pub input_ids: Vec<u32>,
    /// Target token id where a loss is taken, [`IGNORE_INDEX`] elsewhere. For MLM the original token
    /// at chosen positions; for CLM the next token. `[B, T]`
    pub labels: Vec<i32>,
    /// Position of each token inside its document; restarts at 0 for each packed document. `[B, T]`
    pub positions: Vec<u32>,
    /// Document id of each token (distinct documents in a row have distinct ids); [`PAD_DOC`] on
    /// padding. `[B, T]`
    pub doc_ids: Vec<u32>,
    /// Segment (token type) ids; all 0 when unused. `[B, T]`
    pub token_type_ids: Vec<u32>,
    /// Real (non-padding) tokens per row. `[B]`
    pub lengths: Vec<u32>,
    /// Length of the bidirectional prefix per row for prefix-LM attention; 0 when unused. `[B]`
    pub prefix_lengths: Vec<u32>,
    /// Global sample index of each row: the key for per-sample random decisions and for adaptive
    /// masking feedback. `[B]`
    pub sample_ids: Vec<u64>,
    /// The target side, for encoder-decoder models only.
    pub decoder: Option<DecoderBatch>,
}

/// The decoder side of an encoder-decoder batch. Arrays are `[B, Td]`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DecoderBatch {
    /// Td: decoder positions per row.
    pub seq_len: usize,
    /// Decoder input ids (the target shifted right, starting with the decoder start token). `[B, Td]`
    pub input_ids: Vec<u32>,
    /// Next-token targets, [`IGNORE_INDEX`] on padding. `[B, Td]`
    pub labels: Vec<i32>,
    /// Real decoder tokens per row. `[B]`
    pub lengths: Vec<u32>,
}

impl Batch {
    /// Number of positions that carry a label.
    pub fn num_labels(&self) -> usize {
        let enc = self.labels.iter().filter(|&&l| l != IGNORE_INDEX).count();
        let dec = self
            .decoder
            .as_ref()
            .map_or(0, |d| d.labels.iter().filter(|&&l| l != IGNORE_INDEX).count());
        enc + dec
    }

    /// Checks that every array has the length its shape promises.
    pub fn validate(&self) -> crate::Result<()> {
        let (b, t) = (self.batch_size, self.seq_len);
        let check = |name: &str, got: usize, want: usize| {
            if got == want { Ok(()) } else { Err(crate::Error::shape(format!("batch.{name}"), want, got)) }
        };
        check("input_ids", self.input_ids.len(), b * t)?;
        check("labels", self.labels.len(), b * t)?;
        check("positions", self.positions.len(), b * t)?;
        check("doc_ids", self.doc_ids.len(), b * t)?;
        check("token_type_ids", self.token_type_ids.len(), b * t)?;
        check("lengths", self.lengths.len(), b)?;
        check("prefix_lengths", self.prefix_lengths.len(), b)?;
        check("sample_ids", self.sample_ids.len(), b)?;
        if let Some(d) = &self.decoder {
            check("decoder.input_ids", d.input_ids.len(), b * d.seq_len)?;
            check("decoder.labels", d.labels.len(), b * d.seq_len)?;
            check("decoder.lengths", d.lengths.len(), b)?;
        }
        if let Some(&l) = self.lengths.iter().find(|&&l| l as usize > t) {
            return Err(crate::Error::shape("batch.lengths", format!("<= {t}"), l));
        }
        Ok(())
    }
}

/// Where the trainer gets its batches from. Implemented by the data pipeline's loader (and by small
/// synthetic sources in tests and benchmarks).
///
/// Samples are addressed by a *global sample index* `g` that counts every row the run has consumed:
/// epoch `g / num_samples()`, and within the epoch a keyed permutation picks the row. Because the batch
/// for a range of global indices is a pure function of the run's seed and that range (plus, for
/// adaptive masking, the feedback received so far), resume and any batch size give the same rows and
/// the same masks.
pub trait BatchSource: Send {
    /// Rows in one epoch of this split.
    fn num_samples(&self) -> u64;
    /// The batch of rows `first_sample .. first_sample + batch_size` (global indices). `progress` is
    /// the fraction of training done, in [0, 1], for masking-rate schedules.
    fn batch(&mut self, first_sample: u64, batch_size: usize, progress: f32) -> crate::Result<Batch>;
    /// Feedback from the model for adaptive masking: the per-label losses of `batch`, in row-major order
    /// of its labelled positions. Sources that do not adapt ignore it.
    fn feedback(&mut self, _batch: &Batch, _label_losses: &[f32]) {}
    /// Serializable state needed for exact resume (e.g. adaptive masking statistics). Empty by default.
    fn state(&self) -> serde_json::Value {
        serde_json::Value::Null
    }
    /// Restores what `state` returned.
    fn restore(&mut self, _state: &serde_json::Value) -> crate::Result<()> {
        Ok(())
    }
}
