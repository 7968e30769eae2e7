//! Data parallelism across processes: a small collective interface and the rules that make a run on
//! `n` ranks equal to a run on one.
//!
//! remask does not ship its own network layer. Multi-process and multi-machine runs go through MPI
//! (`mpirun`, Slurm's `srun`), behind the cargo feature `mpi`; without it every run is a single
//! process and [`Local`] (size 1, every collective a no-op) stands in.
//!
//! The rules, for a global batch of `B` rows starting at global sample index `g`:
//! - rank `r` of `n` reads rows `[r*B/n, (r+1)*B/n)` of it ([`shard_range`]), i.e. global samples
//!   `g + r*B/n ..`; because a [`crate::BatchSource`] addresses samples by global index and keys
//!   every mask by it, each rank's rows and masks are exactly the rows a 1-rank run has there;
//! - every rank scales its gradients by `1 / (labels in the whole global batch)` (the label count is
//!   all-reduced first, [`DataParallel::global_labels`]), and the gradients are then all-reduced by
//!   summation in buckets ([`DataParallel::reduce_grads`]): the result equals one rank with the whole
//!   batch up to the order of the summation;
//! - every rank applies the same optimizer step to the same parameters, so parameters stay identical
//!   without being broadcast (checked by [`DataParallel::check_in_sync`]);
//! - rank 0 alone writes checkpoints, metrics and the progress bar ([`Collective::is_root`]).
//!
//! Shape legend: B = rows of the global batch, n = ranks, P = parameters.

#[cfg(any(test, feature = "testing"))]
pub mod check;
pub mod gather;
pub mod local;
#[cfg(feature = "mpi")]
pub mod mpi;
pub mod parallel;
#[cfg(any(test, feature = "testing"))]
pub mod threads;

#[cfg(feature = "mpi")]
pub use self::mpi::Mpi;
pub use gather::{concat_rows, gather_batch, gather_f32, slice_rows};
pub use local::Local;
pub use parallel::{DataParallel, DEFAULT_BUCKET_ELEMS};
#[cfg(any(test, feature = "testing"))]
pub use threads::Threads;

use std::ops::Range;

use crate::Result;

/// The collective operations data parallelism needs. Every rank of a group must call the same
/// operations in the same order with buffers of the same length (MPI's rule); the results are then the
/// same on every rank.
pub trait Collective {
    /// This process's rank, in `0..size()`.
    fn rank(&self) -> usize;
    /// Number of ranks in the group.
    fn size(&self) -> usize;
    /// In place: `buf[i] = Σ_ranks buf[i]`. Callers bucket large buffers ([`DataParallel`] does).
    fn all_reduce_sum_f32(&mut self, buf: &mut [f32]) -> Result<()>;
    /// In place sum over ranks, for loss sums.
    fn all_reduce_sum_f64(&mut self, buf: &mut [f64]) -> Result<()>;
    /// In place sum over ranks, for label, token and sample counts.
    fn all_reduce_sum_u64(&mut self, buf: &mut [u64]) -> Result<()>;
    /// Replaces `buf` on every rank with `root`'s `buf` (lengths may differ before the call).
    fn broadcast_bytes(&mut self, root: usize, buf: &mut Vec<u8>) -> Result<()>;
    /// Returns once every rank has called it.
    fn barrier(&mut self) -> Result<()>;
    /// A short description for logs, e.g. `local` or `mpi (Open MPI v4.1.4) rank 1 of 2`.
    fn describe(&self) -> String;

    /// Whether this rank writes checkpoints, metrics and progress (rank 0).
    fn is_root(&self) -> bool {
        self.rank() == 0
    }
}

/// Rows `[rank*B/n, (rank+1)*B/n)` of a global batch of `global_rows` rows: the share of `rank` of
/// `size`. Shares are disjoint, cover every row, and differ in size by at most one; a rank's share
/// may be empty when `global_rows < size`.
pub fn shard_range(global_rows: usize, rank: usize, size: usize) -> Range<usize> {
    assert!(size > 0 && rank < size, "rank {rank} of {size}");
    let at = |r: usize| ((r as u128 * global_rows as u128) / size as u128) as usize;
    at(rank)..at(rank + 1)
}

/// The collective this process should use: [`Mpi`] when built with the `mpi` feature and started by
/// an MPI launcher (`mpirun`, `mpiexec`, `srun`), otherwise [`Local`]. `REMASK_DIST=local` forces
/// [`Local`]; `REMASK_DIST=mpi` requires MPI (an error without the feature).
pub fn from_env() -> Result<Box<dyn Collective>> {
    let wanted = std::env::var("REMASK_DIST").unwrap_or_default();
    match wanted.as_str() {
        "local" => return Ok(Box::new(Local)),
        "" | "auto" | "mpi" => {}
        other => {
            return Err(crate::Error::config(
                "REMASK_DIST",
                format!("unknown value `{other}`: use `local`, `mpi` or `auto`"),
            ))
        }
    }
    let launched = launched_by_mpi();
    #[cfg(feature = "mpi")]
    {
        if launched || wanted == "mpi" {
            return Ok(Box::new(Mpi::init()?));
        }
    }
    #[cfg(not(feature = "mpi"))]
    {
        if wanted == "mpi" || launched_with_several_ranks() {
            return Err(crate::Error::Other(
                "this process was started by an MPI launcher with several ranks (or REMASK_DIST=mpi), but remask was \
                 built without MPI support: rebuild with `cargo build --release --features mpi` (needs an MPI library \
                 and libclang, e.g. Debian's libopenmpi-dev openmpi-bin libclang-dev)"
                    .into(),
            ));
        }
        let _ = launched;
    }
    Ok(Box::new(Local))
}

/// Whether an MPI launcher started this process (Open MPI, MPICH/Hydra, Intel MPI, Slurm's srun).
pub fn launched_by_mpi() -> bool {
    [
        "OMPI_COMM_WORLD_SIZE",
        "PMI_SIZE",
        "PMIX_RANK",
        "MPI_LOCALNRANKS",
        "PMI_RANK",
    ]
    .iter()
    .any(|v| std::env::var_os(v).is_some())
        || (std::env::var_os("SLURM_STEP_ID").is_some()
            && std::env::var_os("SLURM_NTASKS").is_some())
}

/// Whether the launcher says there is more than one rank (used to refuse a silent n-fold duplicate run
/// of a build without MPI).
pub fn launched_with_several_ranks() -> bool {
    ["OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "SLURM_NTASKS"]
        .iter()
        .filter_map(|v| std::env::var(v).ok())
        .any(|s| s.trim().parse::<usize>().map_or(false, |n| n > 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Guards the share rule: disjoint, covering, balanced, and the formula the docs promise.
    #[test]
    fn shards_partition_the_batch() {
        for b in 0..40usize {
            for n in 1..9usize {
                let mut next = 0;
                for r in 0..n {
                    let s = shard_range(b, r, n);
                    assert_eq!(s.start, next, "b={b} n={n} r={r}");
                    assert_eq!(s, (r * b / n)..((r + 1) * b / n));
                    assert!(s.len() == b / n || s.len() == b / n + 1);
                    next = s.end;
                }
                assert_eq!(next, b);
            }
        }
    }
}
