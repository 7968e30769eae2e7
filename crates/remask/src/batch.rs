//! The batch: what the data pipeline hands the model, after MLM masking.
//!
//! All per-position arrays are row-major `[B, T]` (B = batch_size rows, T = seq_len positions).
//! Padding always sits at the end of a row: positions `lengths[b]..T` of row `b` are padding.

/// Label of positions that carry no loss (PyTorch's `ignore_index`).
pub const IGNORE_INDEX: i32 = -100;

/// Document id of padding positions.
pub const PAD_DOC: u32 = u32::MAX;

/// One training or evaluation batch. Build it with [`Batch::new`] (an all-padding batch) and fill or
/// replace its arrays; [`Batch::validate`] checks the shapes.
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

/// The per-position arrays of one row of a [`Batch`], `[T]` each.
#[derive(Debug)]
pub struct RowMut<'a> {
    pub input_ids: &'a mut [u32],
    pub labels: &'a mut [i32],
    pub positions: &'a mut [u32],
    pub doc_ids: &'a mut [u32],
    pub token_type_ids: &'a mut [u32],
}

impl Batch {
    /// B rows of T positions, all padding: input id 0, no label ([`IGNORE_INDEX`]), position 0,
    /// document [`PAD_DOC`], token type 0, length and prefix length 0, sample ids `0..B`, no decoder
    /// side. Fill it in place ([`Self::row_mut`], the public arrays) or replace arrays with the `with_`
    /// setters.
    pub fn new(batch_size: usize, seq_len: usize) -> Self {
        let (b, n) = (batch_size, batch_size * seq_len);
        Self {
            batch_size,
            seq_len,
            input_ids: vec![0; n],
            labels: vec![IGNORE_INDEX; n],
            positions: vec![0; n],
            doc_ids: vec![PAD_DOC; n],
            token_type_ids: vec![0; n],
            lengths: vec![0; b],
            prefix_lengths: vec![0; b],
            sample_ids: (0..b as u64).collect(),
            decoder: None,
        }
    }

    /// Every row one document from its first position: positions `0..T` in every row (padding
    /// included, numbered as Hugging Face does), document 0 on the first `lengths[b]` positions of row
    /// b and [`PAD_DOC`] after them.
    pub fn with_single_documents(mut self, lengths: Vec<u32>) -> Self {
        let t = self.seq_len;
        self.positions = (0..self.batch_size * t).map(|i| (i % t) as u32).collect();
        let real = |i: usize| lengths.get(i / t).is_some_and(|&l| i % t < l as usize);
        self.doc_ids = (0..self.batch_size * t)
            .map(|i| if real(i) { 0 } else { PAD_DOC })
            .collect();
        self.lengths = lengths;
        self
    }

    /// Replaces `input_ids` (`[B, T]`).
    pub fn with_input_ids(mut self, input_ids: Vec<u32>) -> Self {
        self.input_ids = input_ids;
        self
    }

    /// Replaces `labels` (`[B, T]`).
    pub fn with_labels(mut self, labels: Vec<i32>) -> Self {
        self.labels = labels;
        self
    }

    /// Replaces `positions` (`[B, T]`).
    pub fn with_positions(mut self, positions: Vec<u32>) -> Self {
        self.positions = positions;
        self
    }

    /// Replaces `doc_ids` (`[B, T]`).
    pub fn with_doc_ids(mut self, doc_ids: Vec<u32>) -> Self {
        self.doc_ids = doc_ids;
        self
    }

    /// Replaces `token_type_ids` (`[B, T]`).
    pub fn with_token_type_ids(mut self, token_type_ids: Vec<u32>) -> Self {
        self.token_type_ids = token_type_ids;
        self
    }

    /// Replaces `lengths` (`[B]`).
    pub fn with_lengths(mut self, lengths: Vec<u32>) -> Self {
        self.lengths = lengths;
        self
    }

    /// Replaces `prefix_lengths` (`[B]`).
    pub fn with_prefix_lengths(mut self, prefix_lengths: Vec<u32>) -> Self {
        self.prefix_lengths = prefix_lengths;
        self
    }

    /// Replaces `sample_ids` (`[B]`).
    pub fn with_sample_ids(mut self, sample_ids: Vec<u64>) -> Self {
        self.sample_ids = sample_ids;
        self
    }

    /// Adds the decoder side.
    pub fn with_decoder(mut self, decoder: DecoderBatch) -> Self {
        self.decoder = Some(decoder);
        self
    }

    /// The per-position arrays of row `r`.
    pub fn row_mut(&mut self, r: usize) -> RowMut<'_> {
        let s = r * self.seq_len..(r + 1) * self.seq_len;
        RowMut {
            input_ids: &mut self.input_ids[s.clone()],
            labels: &mut self.labels[s.clone()],
            positions: &mut self.positions[s.clone()],
            doc_ids: &mut self.doc_ids[s.clone()],
            token_type_ids: &mut self.token_type_ids[s],
        }
    }

    /// Number of positions that carry a label.
    pub fn num_labels(&self) -> usize {
        let enc = self.labels.iter().filter(|&&l| l != IGNORE_INDEX).count();
        let dec = self.decoder.as_ref().map_or(0, |d| {
            d.labels.iter().filter(|&&l| l != IGNORE_INDEX).count()
        });
        enc + dec
    }

    /// Checks that every array has the length its shape promises.
    pub fn validate(&self) -> crate::Result<()> {
        let (b, t) = (self.batch_size, self.seq_len);
        let check = |name: &str, got: usize, want: usize| {
            if got == want {
                Ok(())
            } else {
                Err(crate::Error::shape(format!("batch.{name}"), want, got))
            }
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

impl DecoderBatch {
    /// B rows of Td decoder positions, all padding: input id 0, no label, length 0. Fill it in place or
    /// replace arrays with the `with_` setters.
    pub fn new(batch_size: usize, seq_len: usize) -> Self {
        Self {
            seq_len,
            input_ids: vec![0; batch_size * seq_len],
            labels: vec![IGNORE_INDEX; batch_size * seq_len],
            lengths: vec![0; batch_size],
        }
    }

    /// Replaces `input_ids` (`[B, Td]`).
    pub fn with_input_ids(mut self, input_ids: Vec<u32>) -> Self {
        self.input_ids = input_ids;
        self
    }

    /// Replaces `labels` (`[B, Td]`).
    pub fn with_labels(mut self, labels: Vec<i32>) -> Self {
        self.labels = labels;
        self
    }

    /// Replaces `lengths` (`[B]`).
    pub fn with_lengths(mut self, lengths: Vec<u32>) -> Self {
        self.lengths = lengths;
        self
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
    fn batch(
        &mut self,
        first_sample: u64,
        batch_size: usize,
        progress: f32,
    ) -> crate::Result<Batch>;
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
