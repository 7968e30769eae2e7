//! Test scaffolding of the CLI, compiled only with the `testing` feature (which `cargo test` turns
//! on; a normal build has none of it): `train --toy` (the library's bigram test model on synthetic
//! rows), `train --synthetic` (the configured real model on synthetic rows), the matching
//! `eval --toy / --synthetic`, and the crash tests' fault flags. Faults reach the library as an
//! explicit [`FaultPlan`]; nothing here reads the environment.

use remask::dist::DataParallel;
use remask::eval::{evaluate, fixed_batches, pseudo_perplexity, EvalResult};
use remask::fault::FaultPlan;
use remask::model::TrainModel;
use remask::train::testing::{BigramModel, SyntheticSource, TaskKind};
use remask::train::{LoadedCheckpoint, RunConfig, TrainerOptions};
use remask::Batch;

use crate::common::{drive, Start};

/// Hidden flags of `remask train`.
#[derive(clap::Args, Debug, Default)]
pub struct TrainArgs {
    /// Train the built-in bigram test model on synthetic data (fault-injection tests).
    #[arg(long, hide = true, conflicts_with = "init_from")]
    pub toy: bool,
    /// Train the configured real model on synthetic data instead of the `[data]` section (smoke
    /// tests without a prepared corpus; encoder and decoder only).
    #[arg(long, hide = true, conflicts_with = "toy")]
    pub synthetic: bool,
    /// Sleep this long in every forward/backward of the toy model (lets a test kill between steps).
    #[arg(long, hide = true, value_name = "MS", default_value_t = 0)]
    pub toy_step_delay_ms: u64,
    #[command(flatten)]
    pub faults: FaultArgs,
}

impl TrainArgs {
    /// The faults these flags ask for.
    pub fn faults(&self) -> FaultPlan {
        self.faults.plan()
    }
}

/// Hidden fault flags of `remask train` and `remask prepare`.
#[derive(clap::Args, Debug, Default)]
pub struct FaultArgs {
    /// Pause this long at each pause point of a write (checkpoints: in the weights and between the
    /// rename and DONE; prepare: after each file and while publishing).
    #[arg(long, hide = true, value_name = "MS", default_value_t = 0)]
    pub fault_sleep_in_write_ms: u64,
    /// Fail writes like a full disk after this many bytes.
    #[arg(long, hide = true, value_name = "BYTES")]
    pub fault_disk_full_after_bytes: Option<u64>,
}

impl FaultArgs {
    /// The faults these flags ask for.
    pub fn plan(&self) -> FaultPlan {
        FaultPlan {
            sleep_in_write_ms: self.fault_sleep_in_write_ms,
            disk_full_after_bytes: self.fault_disk_full_after_bytes,
        }
    }
}

/// Runs `train --toy` or `train --synthetic`.
pub fn train(
    args: &TrainArgs,
    start: Start,
    opts: TrainerOptions,
    dp: DataParallel,
) -> anyhow::Result<()> {
    let cfg = start.config().clone();
    if args.toy {
        let mut model = BigramModel::from_config(cfg.model.clone(), cfg.run.seed);
        model.step_delay = std::time::Duration::from_millis(args.toy_step_delay_ms);
        let (source, eval) = synthetic_data(&cfg, true)?;
        return drive(model, source, eval, start, opts, dp);
    }
    let model = remask::model::new_model(cfg.model.clone(), cfg.run.seed)?;
    let (source, eval) = synthetic_data(&cfg, false)?;
    drive(model, source, eval, start, opts, dp)
}

/// Hidden flags of `remask eval`.
#[derive(clap::Args, Debug, Default)]
pub struct EvalArgs {
    /// Evaluate a checkpoint of the built-in bigram test model (`remask train --toy`).
    #[arg(long, hide = true)]
    pub toy: bool,
    /// Evaluate a real-model checkpoint of `remask train --synthetic` on its synthetic validation rows.
    #[arg(long, hide = true, conflicts_with = "toy")]
    pub synthetic: bool,
}

/// `eval --toy / --synthetic`: the checkpoint's weights on the synthetic validation batches its run
/// used; None when neither flag is given.
pub fn eval(
    args: &EvalArgs,
    ckpt: &LoadedCheckpoint,
    pseudo: bool,
) -> anyhow::Result<Option<EvalResult>> {
    if args.toy {
        let mut model =
            BigramModel::from_config(ckpt.model_config.clone(), ckpt.run_config.run.seed);
        return evaluate_checkpoint(&mut model, ckpt, true, pseudo).map(Some);
    }
    if args.synthetic {
        let mut model =
            remask::model::new_model(ckpt.model_config.clone(), ckpt.run_config.run.seed)?;
        return evaluate_checkpoint(&mut model, ckpt, false, pseudo).map(Some);
    }
    Ok(None)
}

fn evaluate_checkpoint<M: TrainModel>(
    model: &mut M,
    ckpt: &LoadedCheckpoint,
    toy: bool,
    pseudo: bool,
) -> anyhow::Result<EvalResult> {
    ckpt.restore_params(model)?;
    let (source, batches) = synthetic_data(&ckpt.run_config, toy)?;
    let mut r = evaluate(model, &batches)?;
    if pseudo {
        r.pseudo_perplexity = Some(pseudo_perplexity(
            model,
            &batches,
            source.mask_token_id(),
            &[],
            64,
        )?);
    }
    Ok(r)
}

/// Synthetic training and validation data (MLM rows for encoders and the toy model, next-token rows
/// for decoders; always MLM for the toy model), 16 tokens per row.
pub fn synthetic_data(cfg: &RunConfig, toy: bool) -> anyhow::Result<(SyntheticSource, Vec<Batch>)> {
    let vocab = cfg.model.vocab_size;
    anyhow::ensure!(vocab >= 3, "synthetic data needs model.vocab_size >= 3");
    let task = match cfg.model.arch {
        _ if toy => TaskKind::Mlm { rate: 0.3 },
        remask::model::Arch::Decoder => TaskKind::Clm,
        remask::model::Arch::Encoder => TaskKind::Mlm { rate: 0.3 },
        remask::model::Arch::EncoderDecoder => {
            anyhow::bail!("synthetic data has no target side: use an encoder or decoder")
        }
    };
    let source = SyntheticSource::new(64, 16, vocab, cfg.run.seed, task, true);
    let mut val = SyntheticSource::new(16, 16, vocab, cfg.run.seed ^ 1, task, false);
    let eval = fixed_batches(
        &mut val,
        cfg.eval.batches.max(1),
        cfg.eval.batch_size.max(1),
    )?;
    Ok((source, eval))
}
