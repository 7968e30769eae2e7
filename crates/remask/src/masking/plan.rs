//! `MaskPlan`: the one owner of *when* MLM masks are decided. Given a row, the epoch it is seen in and
//! its index, it says which positions are masked and how, for every mode of `[masking] when`:
//!
//! - **static**: K copies decided at `prepare` time ([`MaskPlan::write_static_copies`]); epoch e reads
//!   copy e mod K ([`MaskPlan::key_epoch`], the only place that rule is written). With the copies
//!   opened ([`MaskPlan::with_stored_copies`], a training split) rows are read from them; without
//!   (writing them, `inspect masking`, other splits) the same masks are computed, because copy k *is*
//!   the dynamic mask of key epoch k.
//! - **dynamic**: computed when asked, keyed by (seed, epoch, row index).
//! - **adaptive**: computed when asked, keyed the same way and weighted by the running per-token loss
//!   the trainer feeds back ([`MaskPlan::feedback`]; saved in checkpoints through [`MaskPlan::state`]).
//! - **token-id**: the same, with a bounded masking probability per token id drawn from the same
//!   running statistics ([`super::token_id`]).
//! - **evaluation** ([`MaskPlan::mask_eval`]): keyed by the fixed epoch [`EVAL_EPOCH`] at the final
//!   rate of the schedule, never adaptive, never stored: the same masks at every evaluation.
//!
//! Adding a *when* mode: a [`When`] variant in `config.rs` (with its validation) and a `Mode` arm
//! here; nothing outside `masking/` changes.

use std::path::Path;

use rayon::prelude::*;

use super::adaptive::{Adaptive, AdaptiveStats};
use super::config::{MaskingConfig, When};
use super::masker::{MaskScratch, Masker, Vocab};
use super::row::{MaskKey, MaskedRow, TokenRow, TokenRowBuf};
use super::static_store::{
    copy_name, copy_path, StaticCopies, StaticCopyWriter, StaticMeta, StoredCopies,
};
use super::token_id::TokenIdAdaptive;
use crate::{Batch, Result};

/// The key epoch of evaluation masks.
pub const EVAL_EPOCH: u64 = u64::MAX;

/// How a plan decides masks (one arm per [`When`] mode).
enum Mode {
    /// Copy e mod K; read from `copies` when they are open, else computed.
    Static {
        dupe_factor: u32,
        copies: Option<StaticCopies>,
    },
    Dynamic,
    Adaptive(Adaptive),
    TokenId(TokenIdAdaptive),
}

/// Decides the MLM masks of every (row, epoch) of a run. See the module doc.
pub struct MaskPlan {
    config: MaskingConfig,
    masker: Masker,
    seed: u64,
    mode: Mode,
}

impl MaskPlan {
    /// The plan of `config` over `vocab`, keyed by `seed`. Static masks are computed until
    /// [`Self::with_stored_copies`] opens the stored ones.
    pub fn new(config: &MaskingConfig, vocab: &Vocab<'_>, seed: u64) -> Result<Self> {
        let masker = Masker::new(config, vocab)?;
        let mode = match config.when {
            When::Static { dupe_factor } => Mode::Static {
                dupe_factor,
                copies: None,
            },
            When::Dynamic => Mode::Dynamic,
            When::Adaptive {
                temperature,
                decay,
                uniform_mix,
            } => Mode::Adaptive(Adaptive {
                stats: AdaptiveStats::new(vocab.size as usize, decay),
                temperature,
                uniform_mix,
            }),
            When::TokenId {
                decay,
                floor,
                ceiling,
            } => Mode::TokenId(TokenIdAdaptive::new(
                vocab.size as usize,
                decay,
                floor,
                ceiling,
            )),
        };
        Ok(Self {
            config: config.clone(),
            masker,
            seed,
            mode,
        })
    }

    /// For a prepared training split: static masking reads the copies `prepare` stored (and refuses
    /// copies made with another config); other modes store nothing and are returned unchanged.
    pub fn with_stored_copies(mut self, stored: StoredCopies<'_>) -> Result<Self> {
        if let Mode::Static { copies, .. } = &mut self.mode {
            *copies = Some(StaticCopies::open_for(&self.config, stored)?);
        }
        Ok(self)
    }

    /// Keys the masks by `seed` (e.g. a run's seed instead of the data seed).
    pub fn set_seed(&mut self, seed: u64) {
        self.seed = seed;
    }

    pub fn config(&self) -> &MaskingConfig {
        &self.config
    }

    pub fn masker(&self) -> &Masker {
        &self.masker
    }

    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// The running statistics, when masking is adaptive (`adaptive` or `token-id`).
    pub fn adaptive(&self) -> Option<&AdaptiveStats> {
        match &self.mode {
            Mode::Adaptive(a) => Some(&a.stats),
            Mode::TokenId(a) => Some(&a.stats),
            _ => None,
        }
    }

    /// The epoch whose masks training epoch `epoch` sees: static masking repeats copy e mod K.
    pub fn key_epoch(&self, epoch: u64) -> u64 {
        match self.mode {
            Mode::Static { dupe_factor, .. } => epoch % dupe_factor.max(1) as u64,
            _ => epoch,
        }
    }

    /// Masks `row`, row `index` of its split, as training sees it in `epoch` at `progress` ∈ [0, 1] of
    /// training (the rate follows the schedule). Writes `out`; the chosen positions are left in
    /// `scratch.chosen`.
    pub fn mask_train(
        &self,
        row: TokenRow<'_>,
        index: u64,
        epoch: u64,
        progress: f32,
        mut out: MaskedRow<'_>,
        scratch: &mut MaskScratch,
    ) {
        let key = MaskKey {
            seed: self.seed,
            epoch: self.key_epoch(epoch),
            index,
        };
        let rate = self.config.rate_at(progress);
        match &self.mode {
            Mode::Static {
                copies: Some(copies),
                ..
            } => {
                scratch.chosen.resize(row.ids.len(), false);
                copies.row(
                    key.epoch as usize,
                    index as usize,
                    row.ids,
                    out.input,
                    &mut scratch.chosen,
                );
                out.set_labels(row.ids, &scratch.chosen);
            }
            Mode::Static { copies: None, .. } | Mode::Dynamic => {
                self.masker.mask_row(row, out, rate, key, None, scratch)
            }
            Mode::Adaptive(a) => self.masker.mask_row(row, out, rate, key, Some(a), scratch),
            Mode::TokenId(a) => self
                .masker
                .mask_row_token_id(row, out, rate, key, a, scratch),
        }
    }

    /// The evaluation masks of `row`, row `index` of its split: keyed by [`EVAL_EPOCH`] at the
    /// schedule's final rate, in every mode. The chosen positions are left in `scratch.chosen`.
    pub fn mask_eval(
        &self,
        row: TokenRow<'_>,
        index: u64,
        out: MaskedRow<'_>,
        scratch: &mut MaskScratch,
    ) {
        let key = MaskKey {
            seed: self.seed,
            epoch: EVAL_EPOCH,
            index,
        };
        self.masker
            .mask_row(row, out, self.config.rate_at(1.0), key, None, scratch);
    }

    /// What `prepare` stores for this plan in the prepared directory `dir`, given its `rows` training
    /// rows of `seq_len` (`fill(r, row)` packs row r): for static masking the K copies, copy k holding
    /// this plan's masks of key epoch k (computed, whatever copies are open); nothing (`None`) for the
    /// modes that decide masks during training. [`Self::static_writer`] does the same row by row.
    pub fn write_static_copies(
        &self,
        dir: &Path,
        rows: u64,
        seq_len: usize,
        fill: &mut dyn FnMut(u64, &mut TokenRowBuf),
    ) -> Result<Option<StaticMeta>> {
        let Some(mut w) = self.static_writer(dir, seq_len)? else {
            return Ok(None);
        };
        let mut row = TokenRowBuf::new(seq_len);
        for r in 0..rows {
            fill(r, &mut row);
            w.push(&row)?;
        }
        w.finish().map(Some)
    }

    /// A writer of what `prepare` stores for this plan (static masking: the K copies), fed the
    /// training rows in order as they are packed; `None` for the modes that store nothing.
    pub fn static_writer(&self, dir: &Path, seq_len: usize) -> Result<Option<StaticWriter<'_>>> {
        let Mode::Static { dupe_factor, .. } = self.mode else {
            return Ok(None);
        };
        let files = (0..dupe_factor)
            .map(|c| StaticCopyWriter::create(&copy_path(dir, c), c, seq_len))
            .collect::<Result<_>>()?;
        // About a million positions are masked at a time, in parallel.
        let batch = ((1usize << 20) / seq_len.max(1)).max(1);
        Ok(Some(StaticWriter {
            plan: self,
            seq_len,
            files,
            pending: Vec::new(),
            batch,
            rows: 0,
        }))
    }

    /// Takes the per-label losses of `batch` (adaptive and token-id masking; a no-op otherwise).
    pub fn feedback(&mut self, batch: &Batch, label_losses: &[f32]) {
        match &mut self.mode {
            Mode::Adaptive(a) => a.stats.feedback(batch, label_losses),
            Mode::TokenId(a) => a.stats.feedback(batch, label_losses),
            _ => {}
        }
    }

    /// What a checkpoint must keep to continue exactly: the running statistics (under `adaptive` or
    /// `token_id`, after the mode), or `null`.
    pub fn state(&self) -> serde_json::Value {
        match &self.mode {
            Mode::Adaptive(a) => serde_json::json!({ "adaptive": a.stats.to_json() }),
            Mode::TokenId(a) => serde_json::json!({ "token_id": a.stats.to_json() }),
            _ => serde_json::Value::Null,
        }
    }

    /// Restores what [`Self::state`] returned.
    pub fn restore(&mut self, state: &serde_json::Value) -> Result<()> {
        let stats = match &mut self.mode {
            Mode::Adaptive(a) => state.get("adaptive").map(|v| (&mut a.stats, v)),
            Mode::TokenId(a) => state.get("token_id").map(|v| (&mut a.stats, v)),
            _ => None,
        };
        if let Some((stats, v)) = stats {
            let vocab = stats.loss.len();
            *stats = AdaptiveStats::from_json(v, vocab)?;
        }
        Ok(())
    }
}

/// Writes the static copies of a training split from its rows, given in order (see
/// [`MaskPlan::static_writer`]): row r of copy k is the plan's mask of key epoch k for row index r.
/// Rows are masked in parallel in batches; the files are the same for any thread count.
pub struct StaticWriter<'a> {
    plan: &'a MaskPlan,
    seq_len: usize,
    files: Vec<StaticCopyWriter>,
    pending: Vec<TokenRowBuf>,
    batch: usize,
    rows: u64,
}

impl StaticWriter<'_> {
    /// Adds the next row.
    pub fn push(&mut self, row: &TokenRowBuf) -> Result<()> {
        self.pending.push(row.clone());
        if self.pending.len() >= self.batch {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        let (plan, first, t) = (self.plan, self.rows, self.seq_len);
        let rate = plan.config.rate_at(0.0);
        for (c, file) in self.files.iter_mut().enumerate() {
            let masked: Vec<(Vec<u32>, Vec<bool>)> = self
                .pending
                .par_iter()
                .enumerate()
                .map_init(
                    || (MaskScratch::default(), vec![0i32; t]),
                    |(scratch, labels), (i, row)| {
                        let mut input = vec![0u32; t];
                        let key = MaskKey {
                            seed: plan.seed,
                            epoch: c as u64,
                            index: first + i as u64,
                        };
                        let out = MaskedRow {
                            input: &mut input,
                            labels,
                        };
                        plan.masker
                            .mask_row(row.view(), out, rate, key, None, scratch);
                        (input, scratch.chosen.clone())
                    },
                )
                .collect();
            for (input, chosen) in &masked {
                file.push(input, chosen)?;
            }
        }
        self.rows += self.pending.len() as u64;
        self.pending.clear();
        Ok(())
    }

    /// Writes the last rows and closes the files; returns what `meta.json` records.
    pub fn finish(mut self) -> Result<StaticMeta> {
        self.flush()?;
        let dupe_factor = self.files.len() as u32;
        let mut bytes = 0;
        let mut files = Vec::new();
        for (c, f) in self.files.into_iter().enumerate() {
            bytes += f.finish()?;
            files.push(copy_name(c as u32));
        }
        let positions = (self.rows * self.seq_len as u64).max(1);
        Ok(StaticMeta {
            dupe_factor,
            files,
            bytes,
            bytes_per_training_token: bytes as f64 / positions as f64,
        })
    }
}
