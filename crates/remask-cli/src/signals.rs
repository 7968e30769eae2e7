//! SIGINT (Ctrl-C) and SIGTERM (what `timeout`, Docker, Kubernetes and Slurm send before killing),
//! handled alike: the first sets the library's stop flag, so training finishes the current step,
//! writes a checkpoint and returns; the process then exits with 128 + the signal's number (130,
//! 143). A second signal exits at once with that code, without a checkpoint.
//!
//! Only the CLI installs handlers and prints; the library only reads the flag.

use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::Arc;

/// The first signal received (0: none).
static RECEIVED: AtomicI32 = AtomicI32::new(0);

/// The conventional exit status after `signo`: 128 + its number.
pub fn exit_code_for(signo: i32) -> i32 {
    128 + signo
}

/// The exit status the process owes a signal it received, if any.
pub fn pending_exit_code() -> Option<i32> {
    match RECEIVED.load(Ordering::SeqCst) {
        0 => None,
        s => Some(exit_code_for(s)),
    }
}

fn name(signo: i32) -> &'static str {
    match signo {
        2 => "SIGINT",
        15 => "SIGTERM",
        _ => "signal",
    }
}

/// Records a signal; returns false when it is the second one (the caller exits at once).
fn on_signal(signo: i32, stop: &AtomicBool) -> bool {
    if stop.swap(true, Ordering::SeqCst) {
        eprintln!("second {}: exiting now without a checkpoint", name(signo));
        return false;
    }
    let _ = RECEIVED.compare_exchange(0, signo, Ordering::SeqCst, Ordering::SeqCst);
    eprintln!(
        "{}: finishing the current step and writing a checkpoint (send it again to quit at once)",
        name(signo)
    );
    true
}

/// Installs the handlers and returns the stop flag to hand to the trainer or the comparison.
#[cfg(unix)]
pub fn install() -> anyhow::Result<Arc<AtomicBool>> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let stop = Arc::new(AtomicBool::new(false));
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])
        .map_err(|e| anyhow::anyhow!("cannot install the SIGINT/SIGTERM handlers: {e}"))?;
    let flag = stop.clone();
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            for signo in signals.forever() {
                if !on_signal(signo, &flag) {
                    std::process::exit(exit_code_for(signo));
                }
            }
        })
        .map_err(|e| anyhow::anyhow!("cannot start the signal thread: {e}"))?;
    Ok(stop)
}

/// Installs the handlers and returns the stop flag (Ctrl-C only on this platform).
#[cfg(not(unix))]
pub fn install() -> anyhow::Result<Arc<AtomicBool>> {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    ctrlc::set_handler(move || {
        if !on_signal(2, &flag) {
            std::process::exit(exit_code_for(2));
        }
    })
    .map_err(|e| anyhow::anyhow!("cannot install the Ctrl-C handler: {e}"))?;
    Ok(stop)
}
