//! One module per CLI command.

pub mod audit;
pub mod bench;
pub mod bench_attention;
pub mod bench_kernels;
pub mod bench_masking;
pub mod bench_train;
pub mod compare;
#[cfg(feature = "testing")]
pub mod dist_check;
pub mod eval;
pub mod export;
pub mod fill_mask;
pub mod forward;
pub mod generate;
pub mod inspect;
pub mod inspect_attention;
pub mod inspect_masking;
pub mod prepare;
pub mod train;
pub mod translate;

/// Warns about newer checkpoints of a run directory that failed verification and were passed over.
pub fn warn_skipped(skipped: &[remask::train::checkpoint::Skipped]) {
    for s in skipped {
        eprintln!(
            "warning: skipping checkpoint {}: {}",
            s.dir.display(),
            s.reason
        );
    }
}
