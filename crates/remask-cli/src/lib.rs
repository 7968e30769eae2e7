//! The `remask` command-line tool: parses, validates, calls the library, prints, picks exit codes.
//! `src/main.rs` only calls [`main`]; the code lives in this library target so that the tests can
//! turn on the `testing` feature through a dev-dependency on this package.

use clap::{Parser, Subcommand};

mod cmd;
mod common;
mod signals;
#[cfg(feature = "testing")]
mod testing;

#[derive(Parser)]
#[command(
    name = "remask",
    version,
    about = "Train Transformers with swappable MLM masking and attention masks"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The main job: train the same model with several MLM masking strategies (static vs dynamic, ...)
    /// over paired seeds and data-repetition regimes at an equal token budget, and write a report of
    /// paired differences with intervals, verdicts and plots (`--task clm`: the leakage experiment).
    Compare(cmd::compare::Args),
    /// Print the version.
    Info,
    /// Run a benchmark and print JSON.
    Bench(cmd::bench::Args),
    /// Show what a mask does.
    Inspect(cmd::inspect::Args),
    /// Train a model from a run config, or resume a run.
    Train(cmd::train::Args),
    /// Evaluate a checkpoint on fixed validation batches, or score minimal pairs (--minimal-pairs).
    Eval(cmd::eval::Args),
    /// Tokenize a corpus into memory-mapped shards (and static masks) for training.
    Prepare(cmd::prepare::Args),
    /// Check that n MPI ranks train like one (run under `mpirun -np N`; feature `testing`).
    #[cfg(feature = "testing")]
    #[command(hide = true)]
    DistCheck(cmd::dist_check::Args),
    /// Check that no output depends on an input its attention mask forbids (exit 1 on a leak).
    Audit(cmd::audit::Args),
    /// Run one forward pass (remask checkpoint or Hugging Face directory) and save the outputs.
    Forward(cmd::forward::Args),
    /// Predict the tokens at each [MASK] of a text with an encoder.
    FillMask(cmd::fill_mask::Args),
    /// Continue a prompt with a decoder (greedy or sampled, KV-cached).
    Generate(cmd::generate::Args),
    /// Translate a text with an encoder-decoder (greedy or beam search).
    Translate(cmd::translate::Args),
    /// Write a remask checkpoint as a Hugging Face directory.
    Export(cmd::export::Args),
}

/// Runs the command line and exits with its status.
pub fn main() {
    // Like other Unix tools (`remask inspect … | head`): a closed stdout ends the process quietly,
    // as SIGPIPE's default action does, instead of a panic in `print!`.
    #[cfg(unix)]
    // SAFETY: restores the default disposition of SIGPIPE before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = Cli::parse();
    let result: anyhow::Result<()> = match cli.command {
        Command::Info => {
            println!("remask {}", env!("CARGO_PKG_VERSION"));
            Ok(())
        }
        Command::Compare(a) => cmd::compare::run(a),
        Command::Bench(a) => cmd::bench::run(a),
        Command::Inspect(a) => cmd::inspect::run(a),
        Command::Train(args) => cmd::train::run(args),
        Command::Eval(args) => cmd::eval::run(args),
        Command::Prepare(a) => cmd::prepare::run(a),
        #[cfg(feature = "testing")]
        Command::DistCheck(a) => cmd::dist_check::run(a),
        Command::Audit(a) => cmd::audit::run(a),
        Command::Forward(a) => cmd::forward::run(a),
        Command::FillMask(a) => cmd::fill_mask::run(a),
        Command::Generate(a) => cmd::generate::run(a),
        Command::Translate(a) => cmd::translate::run(a),
        Command::Export(a) => cmd::export::run(a),
    };
    // A run stopped by SIGINT / SIGTERM (after its checkpoint) exits with 128 + the signal's number.
    let signalled = signals::pending_exit_code();
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        std::process::exit(signalled.unwrap_or(1));
    }
    if let Some(code) = signalled {
        std::process::exit(code);
    }
}
