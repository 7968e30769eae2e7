//! [`DataParallel`]: what a training loop calls, at four points of a step, to run data-parallel.
//!
//! ```text
//! for each micro-batch of the global batch (rows first .. first+M):
//!     (g, rows) = dp.share(first, M)                    this rank's rows, by global sample index
//!     share     = source.batch(g, rows, progress)
//! labels     = dp.global_labels(Σ share labels)          1 all-reduce of 1 u64
//! grad_scale = 1 / labels
//! model.forward_backward(share, grad_scale, key)         for each share
//! dp.reduce_grads(grads)                                 bucketed all-reduce (sum) of the gradients
//! (stats, tokens) = dp.reduce_stats(stats, tokens)       loss sum, labels, correct, tokens
//! clip, optimizer step                                   identical on every rank
//! feedback: dp.gather_batch(share), dp.gather_f32(losses) → source.feedback(whole micro-batch)
//! ```

use std::time::{Duration, Instant};

use super::{gather, shard_range, Collective, Local};
use crate::model::StepStats;
use crate::{Batch, Error, Result};

/// Gradient elements per all-reduce call: 4 MiB of f32, large enough to amortise the latency of a
/// call, small enough that a bucket's buffers stay in cache-friendly sizes and MPI's counts fit i32.
pub const DEFAULT_BUCKET_ELEMS: usize = 1 << 20;

/// A collective plus the data-parallel rules of [`crate::dist`], with a clock on the time spent
/// communicating (for the all-reduce share of a step).
pub struct DataParallel {
    coll: Box<dyn Collective>,
    bucket_elems: usize,
    comm: Duration,
}

impl DataParallel {
    pub fn new(coll: Box<dyn Collective>) -> Self {
        Self {
            coll,
            bucket_elems: DEFAULT_BUCKET_ELEMS,
            comm: Duration::ZERO,
        }
    }

    /// A single-process run (every operation a no-op).
    pub fn local() -> Self {
        Self::new(Box::new(Local))
    }

    /// The collective chosen by [`super::from_env`]: MPI under an MPI launcher, local otherwise.
    pub fn from_env() -> Result<Self> {
        Ok(Self::new(super::from_env()?))
    }

    /// Sets the number of gradient elements per all-reduce call (at least 1).
    pub fn with_bucket_elems(mut self, elems: usize) -> Self {
        self.bucket_elems = elems.max(1);
        self
    }

    pub fn rank(&self) -> usize {
        self.coll.rank()
    }

    pub fn size(&self) -> usize {
        self.coll.size()
    }

    /// Whether this rank writes checkpoints, metrics and progress.
    pub fn is_root(&self) -> bool {
        self.coll.is_root()
    }

    pub fn describe(&self) -> String {
        self.coll.describe()
    }

    /// The underlying collective, for operations not wrapped here.
    pub fn collective(&mut self) -> &mut dyn Collective {
        self.coll.as_mut()
    }

    /// Refuses a (micro-)batch that would leave a rank without rows. `what` names the config key.
    pub fn check_rows(&self, rows: usize, what: &str) -> Result<()> {
        if rows < self.size() {
            return Err(Error::config(
                what,
                format!(
                    "{rows} rows cannot be shared by {} ranks: use at least one row per rank",
                    self.size()
                ),
            ));
        }
        Ok(())
    }

    /// This rank's part of the `rows` rows starting at global sample index `first`: (its first global
    /// sample index, its number of rows). Pass these to [`crate::BatchSource::batch`].
    pub fn share(&self, first: u64, rows: usize) -> (u64, usize) {
        let r = shard_range(rows, self.rank(), self.size());
        (first + r.start as u64, r.len())
    }

    /// Labels in the whole global batch, from this rank's count: the denominator of `grad_scale`.
    pub fn global_labels(&mut self, local: usize) -> Result<usize> {
        let mut n = [local as u64];
        self.timed(|c| c.all_reduce_sum_u64(&mut n))?;
        Ok(n[0] as usize)
    }

    /// Sums the gradients over ranks, in place, in buckets of [`DataParallel::with_bucket_elems`].
    /// Every rank must call it with a buffer of the same length. A no-op on one rank.
    pub fn reduce_grads(&mut self, grads: &mut [f32]) -> Result<()> {
        if self.size() == 1 {
            return Ok(());
        }
        let bucket = self.bucket_elems;
        self.timed(|c| {
            grads
                .chunks_mut(bucket)
                .try_for_each(|b| c.all_reduce_sum_f32(b))
        })
    }

    /// Sums a step's loss statistics and real-token count over ranks.
    pub fn reduce_stats(&mut self, stats: StepStats, tokens: u64) -> Result<(StepStats, u64)> {
        if self.size() == 1 {
            return Ok((stats, tokens));
        }
        let mut f = [stats.loss_sum];
        let mut u = [stats.n_labels as u64, stats.n_correct as u64, tokens];
        self.timed(|c| {
            c.all_reduce_sum_f64(&mut f)?;
            c.all_reduce_sum_u64(&mut u)
        })?;
        Ok((
            StepStats {
                loss_sum: f[0],
                n_labels: u[0] as usize,
                n_correct: u[1] as usize,
            },
            u[2],
        ))
    }

    /// Every rank's share of a micro-batch, in rank order, on every rank: the whole micro-batch.
    pub fn gather_batch(&mut self, share: &Batch) -> Result<Batch> {
        self.timed(|c| gather::gather_batch(c, share))
    }

    /// Every rank's per-label losses, in rank order, on every rank.
    pub fn gather_f32(&mut self, mine: &[f32]) -> Result<Vec<f32>> {
        self.timed(|c| gather::gather_f32(c, mine))
    }

    /// Replaces `buf` on every rank with `root`'s (e.g. parameters loaded by one rank).
    pub fn broadcast_f32(&mut self, root: usize, buf: &mut [f32]) -> Result<()> {
        if self.size() == 1 {
            return Ok(());
        }
        let mut bytes: Vec<u8> = if self.rank() == root {
            buf.iter().flat_map(|x| x.to_le_bytes()).collect()
        } else {
            Vec::new()
        };
        self.timed(|c| c.broadcast_bytes(root, &mut bytes))?;
        if bytes.len() != buf.len() * 4 {
            return Err(Error::shape(
                "broadcast f32 buffer",
                buf.len(),
                bytes.len() / 4,
            ));
        }
        for (x, c) in buf.iter_mut().zip(bytes.chunks_exact(4)) {
            *x = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        }
        Ok(())
    }

    /// An error on every rank unless `params` is bit-identical on all ranks (compares a 64-bit hash).
    /// Cheap next to a step; call it after resume and before each checkpoint.
    pub fn check_in_sync(&mut self, params: &[f32]) -> Result<()> {
        if self.size() == 1 {
            return Ok(());
        }
        let h = hash_f32(params);
        let mut root_hash = h.to_le_bytes().to_vec();
        self.timed(|c| c.broadcast_bytes(0, &mut root_hash))?;
        let mut differ = [u64::from(root_hash != h.to_le_bytes())];
        self.timed(|c| c.all_reduce_sum_u64(&mut differ))?;
        if differ[0] > 0 {
            return Err(Error::Other(format!(
                "the parameters of {} of {} ranks differ from rank 0's: the ranks ran different configs, data or \
                 checkpoints (all ranks must see the same run directory and data)",
                differ[0],
                self.size()
            )));
        }
        Ok(())
    }

    /// Whether `flag` is set on any rank (e.g. a stop request seen by some ranks only), the same
    /// answer on every rank.
    pub fn any(&mut self, flag: bool) -> Result<bool> {
        if self.size() == 1 {
            return Ok(flag);
        }
        let mut n = [u64::from(flag)];
        self.timed(|c| c.all_reduce_sum_u64(&mut n))?;
        Ok(n[0] > 0)
    }

    pub fn barrier(&mut self) -> Result<()> {
        self.timed(|c| c.barrier())
    }

    /// Time spent in collectives since creation or the last [`DataParallel::take_comm_time`].
    pub fn comm_time(&self) -> Duration {
        self.comm
    }

    /// Returns the time spent in collectives and restarts the clock.
    pub fn take_comm_time(&mut self) -> Duration {
        std::mem::take(&mut self.comm)
    }

    fn timed<T>(&mut self, f: impl FnOnce(&mut dyn Collective) -> Result<T>) -> Result<T> {
        let t0 = Instant::now();
        let out = f(self.coll.as_mut());
        self.comm += t0.elapsed();
        out
    }
}

/// FNV-1a over the bit patterns: equal buffers hash equal, and any flipped bit changes the hash.
fn hash_f32(xs: &[f32]) -> u64 {
    xs.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, x| {
        (h ^ x.to_bits() as u64).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dist::Threads;

    fn on_ranks<R: Send + 'static>(
        n: usize,
        f: impl Fn(DataParallel) -> R + Send + Sync + 'static,
    ) -> Vec<R> {
        let f = std::sync::Arc::new(f);
        let hs: Vec<_> = Threads::group(n)
            .into_iter()
            .map(|t| {
                let f = f.clone();
                std::thread::spawn(move || f(DataParallel::new(Box::new(t)).with_bucket_elems(3)))
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    }

    #[test]
    fn bucketed_reduction_sums_every_element() {
        let out = on_ranks(2, |mut dp| {
            let r = dp.rank() as f32;
            let mut g: Vec<f32> = (0..10).map(|i| i as f32 + 100.0 * r).collect();
            dp.reduce_grads(&mut g).unwrap();
            let (s, tok) = dp
                .reduce_stats(
                    StepStats {
                        loss_sum: 1.5 + r as f64,
                        n_labels: 3,
                        n_correct: 1,
                    },
                    7,
                )
                .unwrap();
            (g, s, tok, dp.global_labels(4 + dp.rank()).unwrap())
        });
        let want: Vec<f32> = (0..10).map(|i| 2.0 * i as f32 + 100.0).collect();
        for (g, s, tok, labels) in out {
            assert_eq!(g, want);
            assert_eq!(
                s,
                StepStats {
                    loss_sum: 4.0,
                    n_labels: 6,
                    n_correct: 2
                }
            );
            assert_eq!((tok, labels), (14, 9));
        }
    }

    #[test]
    fn shares_follow_the_global_index_and_sync_check_catches_drift() {
        let out = on_ranks(2, |mut dp| {
            let share = dp.share(40, 5);
            let mut p = vec![1.0f32, 2.0, 3.0];
            let in_sync = dp.check_in_sync(&p).is_ok();
            if dp.rank() == 1 {
                p[2] = f32::from_bits(p[2].to_bits() ^ 1);
            }
            let drift_caught = dp.check_in_sync(&p).is_err();
            dp.broadcast_f32(0, &mut p).unwrap();
            (share, in_sync, drift_caught, p)
        });
        assert_eq!(out[0].0, (40, 2));
        assert_eq!(out[1].0, (42, 3));
        for (_, in_sync, caught, p) in out {
            assert!(in_sync && caught);
            assert_eq!(p, vec![1.0, 2.0, 3.0]);
        }
        assert!(DataParallel::local()
            .check_rows(1, "optimizer.batch_size")
            .is_ok());
    }
}
