//! `Loader`: opens a prepared directory for one split and builds batches; implements
//! [`crate::BatchSource`].
//!
//! B = rows per batch, T = seq_len. Global sample index g → epoch e = g / N and position g mod N in
//! that epoch's keyed permutation (training split; the validation split keeps its order), giving the
//! row r. Every random decision of row r in epoch e is keyed by (seed, purpose, e, r), so a batch is a
//! pure function of its global indices (plus, for adaptive masking, the feedback received): any batch
//! size, thread count or resume point gives the same rows and masks.
//! - static: row r of stored copy e mod K (which equals the dynamic mask of epoch e mod K);
//! - dynamic: masked when the batch is built;
//! - adaptive: masked when the batch is built, with weights from the running per-token loss;
//! - evaluation ([`Loader::eval_batches`]): keyed with the fixed epoch [`EVAL_EPOCH`], at the final rate
//!   of the schedule, never adaptive: the same masks at every evaluation.

use std::path::{Path, PathBuf};

use remask_kernels::rng::{KeyedRng, Purpose};

use super::packer::{Packer, RowOut};
use super::prepare::Meta;
use super::shard::ShardSet;
use super::static_masks::StaticMasks;
use super::tokenizer::{SpecialTokens, TextTokenizer};
use crate::batch::{DecoderBatch, IGNORE_INDEX, PAD_DOC};
use crate::masking::{AdaptiveStats, MaskScratch, Masker, MaskingConfig, When};
use crate::{Batch, BatchSource, Error, Result};

/// The epoch key of evaluation masks.
pub const EVAL_EPOCH: u64 = u64::MAX;

/// Which split of a prepared directory.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Split {
    Train,
    Validation,
}

impl Split {
    pub fn name(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Validation => "validation",
        }
    }
}

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

/// One row's buffers, `[T]` each.
#[derive(Clone, Debug, Default)]
pub struct RowBuffers {
    pub ids: Vec<u32>,
    pub word_starts: Vec<bool>,
    pub doc_ids: Vec<u32>,
    pub positions: Vec<u32>,
    pub input: Vec<u32>,
    pub labels: Vec<i32>,
    pub weights: Vec<f32>,
    pub length: usize,
}

/// A prepared split, ready to give batches.
pub struct Loader {
    dir: PathBuf,
    meta: Meta,
    split: Split,
    task: Task,
    masking: MaskingConfig,
    masker: Masker,
    seed: u64,
    seq_len: usize,
    docs: ShardSet,
    targets: Option<ShardSet>,
    packer: Packer,
    statics: Option<StaticMasks>,
    adaptive: Option<AdaptiveStats>,
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
                return Err(Error::data(dir, "task seq2seq needs TSV sentence pairs; this directory holds plain documents"));
            }
            let tp: Vec<PathBuf> = stats.target_shards.iter().map(|s| dir.join(s)).collect();
            Some(ShardSet::open(&tp)?)
        } else {
            None
        };
        let seq_len = meta.data.seq_len as usize;
        let packer = Packer::new(&docs, seq_len, meta.data.packing);
        let specials = &meta.special_tokens;
        let counts = if masking.frequency_weighted_random {
            let tp: Vec<PathBuf> = meta.train.shards.iter().map(|s| dir.join(s)).collect();
            let train = ShardSet::open(&tp)?;
            let mut c = vec![0u64; meta.vocab_size as usize];
            for s in train.shards() {
                for i in 0..s.num_tokens() {
                    if let Some(x) = c.get_mut(s.token(i) as usize) {
                        *x += 1;
                    }
                }
            }
            Some(c)
        } else {
            None
        };
        let masker = Masker::new(masking, specials.mask, meta.vocab_size, &specials.all, counts.as_deref())?;
        let mut statics = None;
        if task == Task::Mlm && split == Split::Train {
            if let When::Static { dupe_factor } = masking.when {
                let Some(sm) = &meta.static_masks else {
                    return Err(Error::config(
                        "masking.when",
                        format!("static masking, but {} has no stored copies: run `remask prepare` with this [masking] section", dir.display()),
                    ));
                };
                let mut stored = meta.masking.clone();
                stored.when = masking.when;
                if sm.dupe_factor != dupe_factor || stored != *masking {
                    return Err(Error::config(
                        "masking",
                        format!(
                            "{} stores static masks for a different masking config (dupe factor {}); run `remask prepare` again with this one",
                            dir.display(),
                            sm.dupe_factor
                        ),
                    ));
                }
                statics = Some(StaticMasks::open(dir, dupe_factor, packer.num_rows() as usize, seq_len)?);
            }
        }
        let adaptive = match masking.when {
            When::Adaptive { decay, .. } => Some(AdaptiveStats::new(meta.vocab_size as usize, decay)),
            _ => None,
        };
        let seed = meta.data.seed;
        Ok(Self {
            dir: dir.to_path_buf(),
            split,
            task,
            masking: masking.clone(),
            masker,
            seed,
            seq_len,
            docs,
            targets,
            packer,
            statics,
            adaptive,
            perms: Vec::new(),
            scratch: MaskScratch::default(),
            row: RowBuffers::default(),
            meta,
        })
    }

    /// Uses `seed` (e.g. the run seed) instead of the data seed for data order and masks.
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed = seed;
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

    pub fn masker(&self) -> &Masker {
        &self.masker
    }

    /// The adaptive masking statistics, when masking is adaptive.
    pub fn adaptive(&self) -> Option<&AdaptiveStats> {
        self.adaptive.as_ref()
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
            input: vec![0; t],
            labels: vec![0; t],
            weights: vec![0.0; t],
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

    /// Packs row r and masks it dynamically, keyed by (seed, epoch, r), at `rate`; chosen positions are
    /// left in `scratch.chosen`.
    pub fn mask_row_dynamic(&self, row: &mut RowBuffers, r: u64, epoch: u64, rate: f32, scratch: &mut MaskScratch) {
        self.fill_row(row, r);
        self.masker.mask_row(
            &mut row.input,
            &mut row.labels,
            &row.ids,
            row.length,
            &row.word_starts,
            None,
            rate,
            (self.seed, epoch, r),
            scratch,
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
            return Err(Error::data(&self.dir, format!("split {} has no rows", self.split.name())));
        }
        let epoch = g / n;
        let r = self.permutation(epoch)[(g % n) as usize] as u64;
        Ok((epoch, r))
    }

    /// Builds the batch of the given rows: (sample id, epoch, row). `eval` selects fixed evaluation masks.
    fn build(&mut self, rows: &[(u64, u64, u64)], rate: f32, eval: bool) -> Batch {
        let (b, t) = (rows.len(), self.seq_len);
        let mut batch = Batch {
            batch_size: b,
            seq_len: t,
            input_ids: vec![0; b * t],
            labels: vec![IGNORE_INDEX; b * t],
            positions: vec![0; b * t],
            doc_ids: vec![PAD_DOC; b * t],
            token_type_ids: vec![0; b * t],
            lengths: vec![0; b],
            prefix_lengths: vec![0; b],
            sample_ids: rows.iter().map(|x| x.0).collect(),
            decoder: None,
        };
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
            let span = k * t..(k + 1) * t;
            batch.positions[span.clone()].copy_from_slice(&row.positions);
            batch.doc_ids[span.clone()].copy_from_slice(&row.doc_ids);
            batch.lengths[k] = row.length as u32;
            let input = &mut batch.input_ids[span.clone()];
            let labels = &mut batch.labels[span.clone()];
            match self.task {
                Task::Clm => {
                    input.copy_from_slice(&row.ids);
                    for i in 0..t {
                        labels[i] = if i + 1 < row.length && row.doc_ids[i + 1] == row.doc_ids[i] {
                            row.ids[i + 1] as i32
                        } else {
                            IGNORE_INDEX
                        };
                    }
                }
                Task::Mlm => {
                    if let (Some(st), false) = (&self.statics, eval) {
                        scratch.chosen.resize(t, false);
                        st.row(epoch, r as usize, input, &mut scratch.chosen);
                        for i in 0..t {
                            labels[i] = if scratch.chosen[i] { row.ids[i] as i32 } else { IGNORE_INDEX };
                        }
                    } else {
                        let weights = match (&self.adaptive, &self.masking.when, eval) {
                            (Some(a), When::Adaptive { temperature, uniform_mix, .. }, false) => {
                                let eligible: Vec<bool> = (0..t)
                                    .map(|i| i < row.length && !self.masker.is_special(row.ids[i]))
                                    .collect();
                                a.row_weights(&mut row.weights, &row.ids, &eligible, *temperature, *uniform_mix);
                                Some(&row.weights[..])
                            }
                            _ => None,
                        };
                        let key_epoch = if eval { EVAL_EPOCH } else { epoch };
                        self.masker.mask_row(
                            input,
                            labels,
                            &row.ids,
                            row.length,
                            &row.word_starts,
                            weights,
                            rate,
                            (self.seed, key_epoch, r),
                            &mut scratch,
                        );
                    }
                }
                Task::Seq2seq => {}
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
        let mut dec = DecoderBatch {
            seq_len: t,
            input_ids: vec![s.pad; rows.len() * t],
            labels: vec![IGNORE_INDEX; rows.len() * t],
            lengths: vec![0; rows.len()],
        };
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
            return Err(Error::data(&self.dir, format!("row {r} is out of range: split {} has {n} rows", self.split.name())));
        }
        let rate = self.masking.rate_at(progress);
        Ok(self.build(rows, rate, false))
    }

    /// The validation batches with fixed masks: rows in order, the last batch possibly smaller. The
    /// same call always returns the same batches.
    pub fn eval_batches(&mut self, batch_size: usize) -> Result<Vec<Batch>> {
        if batch_size == 0 {
            return Err(Error::config("eval.batch_size", "must be at least 1"));
        }
        let n = self.num_rows();
        let rate = self.masking.rate_at(1.0);
        let mut out = Vec::new();
        let mut start = 0u64;
        while start < n {
            let end = (start + batch_size as u64).min(n);
            let rows: Vec<(u64, u64, u64)> = (start..end).map(|r| (r, EVAL_EPOCH, r)).collect();
            out.push(self.build(&rows, rate, true));
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
        let rate = self.masking.rate_at(progress);
        Ok(self.build(&rows, rate, false))
    }

    fn feedback(&mut self, batch: &Batch, label_losses: &[f32]) {
        if let Some(a) = &mut self.adaptive {
            a.feedback(batch, label_losses);
        }
    }

    fn state(&self) -> serde_json::Value {
        match &self.adaptive {
            Some(a) => serde_json::json!({ "adaptive": a.to_json() }),
            None => serde_json::Value::Null,
        }
    }

    fn restore(&mut self, state: &serde_json::Value) -> Result<()> {
        if let (Some(a), Some(v)) = (&mut self.adaptive, state.get("adaptive")) {
            *a = AdaptiveStats::from_json(v, self.meta.vocab_size as usize)?;
        }
        Ok(())
    }
}
