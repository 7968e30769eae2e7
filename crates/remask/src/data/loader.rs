//! `Loader`: opens a prepared directory for one split, reads and packs its rows into batches, and asks
//! the split's [`MaskPlan`] for their MLM masks; implements [`crate::BatchSource`].
//!
//! B = rows per batch, T = seq_len. Global sample index g → epoch e = g / N and position g mod N in
//! that epoch's keyed permutation (training split; the validation split keeps its order), giving the
//! row r. The masks of row r in epoch e are the plan's (keyed by (seed, e, r); static, dynamic or
//! adaptive), so a batch is a pure function of its global indices (plus, for adaptive masking, the
//! feedback received): any batch size, thread count or resume point gives the same rows and masks.
//! Evaluation batches ([`Loader::eval_batches`]) carry the plan's fixed evaluation masks.

use std::path::{Path, PathBuf};

use remask_kernels::rng::{KeyedRng, Purpose};

use super::meta::{Meta, Split};
use super::ngram_pass::read_ngrams;
use super::packer::{Packer, RowOut};
use super::shard::ShardSet;
use super::token_counts::read_counts;
use super::tokenizer::{SpecialTokens, TextTokenizer};
use crate::batch::{DecoderBatch, IGNORE_INDEX};
use crate::masking::{MaskPlan, MaskScratch, MaskedRow, MaskingConfig, TokenRow, Vocab};
use crate::{Batch, BatchSource, Error, Result};

/// What the batches are for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Task {
    /// Masked language modelling: labels at chosen positions.
    Mlm,
    /// Causal language modelling: labels already shifted (label at t = token t + 1 of the same document).
    Clm,
    /// Translation of TSV pairs: encoder = source, `decoder` = target.
    Seq2seq,
}

/// One packed row's buffers, `[T]` each.
#[derive(Clone, Debug, Default)]
pub struct RowBuffers {
    pub ids: Vec<u32>,
    pub word_starts: Vec<bool>,
    pub doc_ids: Vec<u32>,
    pub positions: Vec<u32>,
    /// Real tokens; the rest is padding.
    pub length: usize,
}

impl RowBuffers {
    /// The row as masking sees it.
    pub fn tokens(&self) -> TokenRow<'_> {
        TokenRow {
            ids: &self.ids,
            word_starts: &self.word_starts,
            length: self.length,
        }
    }
}

/// A prepared split, ready to give batches.
pub struct Loader {
    dir: PathBuf,
    meta: Meta,
    split: Split,
    task: Task,
    /// The MLM masks (task `mlm` only).
    masks: Option<MaskPlan>,
    seed: u64,
    seq_len: usize,
    docs: ShardSet,
    targets: Option<ShardSet>,
    packer: Packer,
    /// The last permutations built: (epoch, row order).
    perms: Vec<(u64, Vec<u32>)>,
    scratch: MaskScratch,
    row: RowBuffers,
}

impl Loader {
    /// Opens `split` of the prepared directory `dir` for `task` with `masking` (used for MLM only).
    pub fn open(dir: &Path, split: Split, task: Task, masking: &MaskingConfig) -> Result<Self> {
        masking.validate("masking")?;
        let meta = Meta::read(dir)?;
        let stats = meta.split(split);
        let paths: Vec<PathBuf> = stats.shards.iter().map(|s| dir.join(s)).collect();
        let docs = ShardSet::open(&paths)?;
        let targets = if task == Task::Seq2seq {
            if !meta.pairs {
                return Err(Error::data(
                    dir,
                    "task seq2seq needs TSV sentence pairs; this directory holds plain documents",
                ));
            }
            let tp: Vec<PathBuf> = stats.target_shards.iter().map(|s| dir.join(s)).collect();
            Some(ShardSet::open(&tp)?)
        } else {
            None
        };
        let seq_len = meta.data.seq_len as usize;
        let packer = Packer::new(&docs, seq_len, meta.data.packing);
        let seed = meta.data.seed;
        let masks = if task == Task::Mlm {
            let counts = if masking.needs_token_counts() {
                Some(read_counts(dir, &meta)?)
            } else {
                None
            };
            let ngrams = if masking.needs_ngrams() {
                Some(read_ngrams(dir, &meta, masking)?)
            } else {
                None
            };
            let specials = &meta.special_tokens;
            let vocab = Vocab {
                size: meta.vocab_size,
                mask_id: specials.mask,
                special_ids: &specials.all,
                counts: counts.as_deref(),
                ngrams: ngrams.as_ref(),
            };
            let plan = MaskPlan::new(masking, &vocab, seed)?;
            Some(match split {
                Split::Train => {
                    plan.with_stored_copies(meta.stored_copies(dir, packer.num_rows()))?
                }
                Split::Validation => plan,
            })
        } else {
            None
        };
        Ok(Self {
            dir: dir.to_path_buf(),
            split,
            task,
            masks,
            seed,
            seq_len,
            docs,
            targets,
            packer,
            perms: Vec::new(),
            scratch: MaskScratch::default(),
            row: RowBuffers::default(),
            meta,
        })
    }

    /// Uses `seed` (e.g. the run seed) instead of the data seed for data order and masks.
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        if let Some(m) = &mut self.masks {
            m.set_seed(seed);
        }
        self.perms.clear();
        self
    }

    pub fn meta(&self) -> &Meta {
        &self.meta
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn split(&self) -> Split {
        self.split
    }

    pub fn task(&self) -> Task {
        self.task
    }

    pub fn seq_len(&self) -> usize {
        self.seq_len
    }

    pub fn vocab_size(&self) -> u32 {
        self.meta.vocab_size
    }

    pub fn specials(&self) -> &SpecialTokens {
        &self.meta.special_tokens
    }

    /// The MLM masking plan (task `mlm` only).
    pub fn mask_plan(&self) -> Option<&MaskPlan> {
        self.masks.as_ref()
    }

    /// Loads the directory's tokenizer.
    pub fn tokenizer(&self) -> Result<TextTokenizer> {
        TextTokenizer::load(&self.dir.join("tokenizer.json"))
    }

    /// Rows in one epoch (pairs for seq2seq).
    pub fn num_rows(&self) -> u64 {
        match self.task {
            Task::Seq2seq => self.docs.num_docs() as u64,
            _ => self.packer.num_rows(),
        }
    }

    /// Fresh buffers for one row.
    pub fn row_buffers(&self) -> RowBuffers {
        let t = self.seq_len;
        RowBuffers {
            ids: vec![0; t],
            word_starts: vec![false; t],
            doc_ids: vec![0; t],
            positions: vec![0; t],
            length: 0,
        }
    }

    /// Packs row r into `row` (ids, word starts, doc ids, positions, length).
    pub fn fill_row(&self, row: &mut RowBuffers, r: u64) {
        row.length = self.packer.fill(
            &self.docs,
            &self.meta.special_tokens,
            r,
            RowOut {
                ids: &mut row.ids,
                word_starts: &mut row.word_starts,
                doc_ids: &mut row.doc_ids,
                positions: &mut row.positions,
            },
        );
    }

    /// The row order of an epoch: a keyed Fisher-Yates permutation for training, identity for
    /// validation.
    fn permutation(&mut self, epoch: u64) -> &[u32] {
        if let Some(i) = self.perms.iter().position(|(e, _)| *e == epoch) {
            return &self.perms[i].1;
        }
        let n = self.num_rows() as usize;
        let mut p: Vec<u32> = (0..n as u32).collect();
        if self.split == Split::Train {
            let mut rng = KeyedRng::new(self.seed, Purpose::Shuffle, epoch, 0);
            for i in (1..n).rev() {
                let j = rng.below(i as u64 + 1) as usize;
                p.swap(i, j);
            }
        }
        if self.perms.len() >= 2 {
            self.perms.remove(0);
        }
        self.perms.push((epoch, p));
        &self.perms[self.perms.len() - 1].1
    }

    /// The (epoch, row) of global sample index g.
    pub fn locate(&mut self, g: u64) -> Result<(u64, u64)> {
        let n = self.num_rows();
        if n == 0 {
            return Err(Error::data(
                &self.dir,
                format!("split {} has no rows", self.split.name()),
            ));
        }
        let epoch = g / n;
        let r = self.permutation(epoch)[(g % n) as usize] as u64;
        Ok((epoch, r))
    }

    /// Builds the batch of the given rows: (sample id, epoch, row), at `progress` of training. `eval`
    /// selects the fixed evaluation masks.
    fn build(&mut self, rows: &[(u64, u64, u64)], progress: f32, eval: bool) -> Batch {
        let (b, t) = (rows.len(), self.seq_len);
        let mut batch = Batch::new(b, t);
        batch
            .sample_ids
            .iter_mut()
            .zip(rows)
            .for_each(|(s, x)| *s = x.0);
        if self.task == Task::Seq2seq {
            self.build_pairs(&mut batch, rows);
            return batch;
        }
        if self.row.ids.len() != t {
            self.row = self.row_buffers();
        }
        let mut row = std::mem::take(&mut self.row);
        let mut scratch = std::mem::take(&mut self.scratch);
        for (k, &(_, epoch, r)) in rows.iter().enumerate() {
            self.fill_row(&mut row, r);
            batch.lengths[k] = row.length as u32;
            let out = batch.row_mut(k);
            out.positions.copy_from_slice(&row.positions);
            out.doc_ids.copy_from_slice(&row.doc_ids);
            let (input, labels) = (out.input_ids, out.labels);
            match (&self.masks, self.task) {
                (Some(plan), _) => {
                    let out = MaskedRow { input, labels };
                    if eval {
                        plan.mask_eval(row.tokens(), r, out, &mut scratch);
                    } else {
                        plan.mask_train(row.tokens(), r, epoch, progress, out, &mut scratch);
                    }
                }
                (None, Task::Clm) => {
                    input.copy_from_slice(&row.ids);
                    for i in 0..t {
                        labels[i] = if i + 1 < row.length && row.doc_ids[i + 1] == row.doc_ids[i] {
                            row.ids[i + 1] as i32
                        } else {
                            IGNORE_INDEX
                        };
                    }
                }
                (None, _) => {}
            }
        }
        self.row = row;
        self.scratch = scratch;
        batch
    }

    fn build_pairs(&self, batch: &mut Batch, rows: &[(u64, u64, u64)]) {
        let t = self.seq_len;
        let s = &self.meta.special_tokens;
        let Some(targets) = &self.targets else { return };
        let mut dec = DecoderBatch::new(rows.len(), t).with_input_ids(vec![s.pad; rows.len() * t]);
        for (k, &(_, _, r)) in rows.iter().enumerate() {
            let (shard, range) = self.docs.doc(r as usize);
            let body = range.len().min(t - 2);
            let o = k * t;
            batch.input_ids[o] = s.cls;
            for j in 0..body {
                batch.input_ids[o + 1 + j] = shard.token(range.start + j);
            }
            batch.input_ids[o + 1 + body] = s.sep;
            for j in 0..body + 2 {
                batch.positions[o + j] = j as u32;
                batch.doc_ids[o + j] = r as u32;
            }
            for j in body + 2..t {
                batch.input_ids[o + j] = s.pad;
            }
            batch.lengths[k] = (body + 2) as u32;
            // Decoder: input [CLS] y0 .. y(n-1), labels y0 .. y(n-1) [SEP].
            let (tshard, trange) = targets.doc(r as usize);
            let n = trange.len().min(t - 1);
            dec.input_ids[o] = s.cls;
            for j in 0..n {
                let y = tshard.token(trange.start + j);
                dec.input_ids[o + 1 + j] = y;
                dec.labels[o + j] = y as i32;
            }
            dec.labels[o + n] = s.sep as i32;
            dec.lengths[k] = (n + 1) as u32;
        }
        batch.decoder = Some(dec);
    }

    /// The batch of rows a caller chose itself: (global sample id, epoch, row), masked as that epoch
    /// masks them (stored copy `epoch mod K` for static masking, keyed by (seed, epoch, row)
    /// otherwise) at the rate of training `progress`. The comparison uses it to train on a corpus
    /// subset in its own order (`experiment/subset.rs`).
    pub fn batch_of_rows(&mut self, rows: &[(u64, u64, u64)], progress: f32) -> Result<Batch> {
        let n = self.num_rows();
        if let Some(&(_, _, r)) = rows.iter().find(|x| x.2 >= n) {
            return Err(Error::data(
                &self.dir,
                format!(
                    "row {r} is out of range: split {} has {n} rows",
                    self.split.name()
                ),
            ));
        }
        Ok(self.build(rows, progress, false))
    }

    /// The validation batches with fixed masks: rows in order, the last batch possibly smaller. The
    /// same call always returns the same batches.
    pub fn eval_batches(&mut self, batch_size: usize) -> Result<Vec<Batch>> {
        if batch_size == 0 {
            return Err(Error::config("eval.batch_size", "must be at least 1"));
        }
        let n = self.num_rows();
        let mut out = Vec::new();
        let mut start = 0u64;
        while start < n {
            let end = (start + batch_size as u64).min(n);
            // The epoch is not used: evaluation masks are keyed by the plan's fixed evaluation epoch.
            let rows: Vec<(u64, u64, u64)> = (start..end).map(|r| (r, 0, r)).collect();
            out.push(self.build(&rows, 1.0, true));
            start = end;
        }
        Ok(out)
    }
}

impl BatchSource for Loader {
    fn num_samples(&self) -> u64 {
        self.num_rows()
    }

    fn batch(&mut self, first_sample: u64, batch_size: usize, progress: f32) -> Result<Batch> {
        let mut rows = Vec::with_capacity(batch_size);
        for g in first_sample..first_sample + batch_size as u64 {
            let (epoch, r) = self.locate(g)?;
            rows.push((g, epoch, r));
        }
        Ok(self.build(&rows, progress, false))
    }

    fn feedback(&mut self, batch: &Batch, label_losses: &[f32]) {
        if let Some(m) = &mut self.masks {
            m.feedback(batch, label_losses);
        }
    }

    fn state(&self) -> serde_json::Value {
        self.masks
            .as_ref()
            .map_or(serde_json::Value::Null, MaskPlan::state)
    }

    fn restore(&mut self, state: &serde_json::Value) -> Result<()> {
        match &mut self.masks {
            Some(m) => m.restore(state),
            None => Ok(()),
        }
    }
}
