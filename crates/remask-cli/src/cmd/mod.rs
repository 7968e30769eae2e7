//! One module per CLI command.

pub mod bench;
pub mod bench_kernels;
pub mod bench_attention;
pub mod bench_train;
pub mod compare;
pub mod inspect;
pub mod inspect_attention;
pub mod eval;
pub mod train;
pub mod bench_masking;
#[cfg(feature = "testing")]
pub mod dist_check;
pub mod inspect_masking;
pub mod prepare;
pub mod audit;
pub mod forward;
pub mod fill_mask;
pub mod generate;
pub mod translate;
pub mod export;

/// Warns about newer checkpoints of a run directory that failed verification and were passed over.
pub fn warn_skipped(skipped: &[remask::train::checkpoint::Skipped]) {
    for s in skipped {
        eprintln!("warning: skipping checkpoint {}: {}", s.dir.display(), s.reason);
    }
}
