//! The data side of a run: the prepared directory for the run's `[data]` section, the training
//! [`Loader`] and the fixed validation batches, checked against the model config.

use std::path::{Path, PathBuf};

use super::config::RunConfig;
use crate::data::{ensure_prepared, Loader, Split, Task};
use crate::model::Arch;
use crate::{Batch, Error, Result};

/// What a run trains and evaluates on.
pub struct RunData {
    /// The training split (implements [`crate::BatchSource`]).
    pub train: Loader,
    /// The first `eval.batches` validation batches of `eval.batch_size` rows, with fixed masks.
    pub eval: Vec<Batch>,
    /// The mask token and every special token id (for pseudo-perplexity).
    pub mask_token_id: u32,
    pub special_token_ids: Vec<u32>,
    /// The prepared directory used.
    pub data_dir: PathBuf,
}

/// The task each architecture trains on.
pub fn task_for(arch: Arch) -> Task {
    match arch {
        Arch::Encoder => Task::Mlm,
        Arch::Decoder => Task::Clm,
        Arch::EncoderDecoder => Task::Seq2seq,
    }
}

/// Where a run keeps the data it prepares itself (when `data.dir` is not set).
pub fn default_data_dir(run_dir: &Path) -> PathBuf {
    run_dir.join("data")
}

/// Prepares (or reuses) the data of `cfg` and opens the training split and the validation batches.
pub fn open_run_data(cfg: &RunConfig, run_dir: &Path) -> Result<RunData> {
    let data_dir = ensure_prepared(&cfg.data, &cfg.masking, &default_data_dir(run_dir))?;
    let task = task_for(cfg.model.arch);
    let train = Loader::open(&data_dir, Split::Train, task, &cfg.masking)?;
    check_vocab(cfg, &train)?;
    if train.num_rows() == 0 {
        return Err(Error::data(
            &data_dir,
            "the training split is empty: add more input text or lower data.validation_share",
        ));
    }
    let (eval, _) = open_validation(cfg, &data_dir)?;
    let specials = train.specials();
    Ok(RunData {
        mask_token_id: specials.mask,
        special_token_ids: specials.all.clone(),
        train,
        eval,
        data_dir,
    })
}

/// The fixed validation batches of a prepared directory for `cfg` (and the loader they came from).
pub fn open_validation(cfg: &RunConfig, data_dir: &Path) -> Result<(Vec<Batch>, Loader)> {
    let mut val = Loader::open(
        data_dir,
        Split::Validation,
        task_for(cfg.model.arch),
        &cfg.masking,
    )?;
    check_vocab(cfg, &val)?;
    let mut eval = val.eval_batches(cfg.eval.batch_size.max(1))?;
    if cfg.eval.batches > 0 {
        eval.truncate(cfg.eval.batches);
    }
    Ok((eval, val))
}

fn check_vocab(cfg: &RunConfig, loader: &Loader) -> Result<()> {
    let data_vocab = loader.vocab_size() as usize;
    if cfg.model.vocab_size < data_vocab {
        return Err(Error::config(
            "model.vocab_size",
            format!(
                "{} is smaller than the vocabulary of the prepared data in {} ({data_vocab}); set model.vocab_size = {data_vocab}",
                cfg.model.vocab_size,
                loader.dir().display()
            ),
        ));
    }
    if loader.seq_len() > cfg.model.max_positions {
        return Err(Error::config(
            "model.max_positions",
            format!(
                "{} is smaller than the data's rows of {} tokens",
                cfg.model.max_positions,
                loader.seq_len()
            ),
        ));
    }
    Ok(())
}
