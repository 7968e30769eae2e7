//! An in-process group of ranks on threads, for tests and simulations of data parallelism without
//! MPI: `Threads::group(n)` returns one handle per rank; each handle goes to its own thread.
//!
//! Reductions sum the ranks' buffers in rank order on every rank, so every rank gets the same bits,
//! as with MPI.

use std::sync::{Arc, Barrier, Mutex};

use super::local::check_root;
use super::Collective;
use crate::{Error, Result};

/// One rank of an in-process group (see the module docs).
pub struct Threads {
    rank: usize,
    shared: Arc<Shared>,
}

struct Shared {
    size: usize,
    barrier: Barrier,
    /// One slot per rank: the bytes each rank contributes to the current operation.
    slots: Mutex<Vec<Vec<u8>>>,
}

impl Threads {
    /// A group of `size` ranks; element `r` of the result is rank `r`.
    pub fn group(size: usize) -> Vec<Threads> {
        assert!(size > 0, "a group needs at least one rank");
        let shared = Arc::new(Shared {
            size,
            barrier: Barrier::new(size),
            slots: Mutex::new(vec![Vec::new(); size]),
        });
        (0..size)
            .map(|rank| Threads {
                rank,
                shared: shared.clone(),
            })
            .collect()
    }

    fn slots(&self) -> Result<std::sync::MutexGuard<'_, Vec<Vec<u8>>>> {
        self.shared
            .slots
            .lock()
            .map_err(|_| Error::Other("a rank of the thread group panicked".into()))
    }

    /// Element-wise sum of every rank's `buf` in rank order, written back into `buf`.
    fn all_reduce<T: Copy, const W: usize>(
        &mut self,
        buf: &mut [T],
        to: fn(T) -> [u8; W],
        from: fn([u8; W]) -> T,
        add: fn(T, T) -> T,
    ) -> Result<()> {
        let mine: Vec<u8> = buf.iter().flat_map(|&x| to(x)).collect();
        self.slots()?[self.rank] = mine;
        self.shared.barrier.wait();
        {
            let slots = self.slots()?;
            if let Some(bad) = slots.iter().position(|s| s.len() != buf.len() * W) {
                return Err(Error::shape(
                    format!("all-reduce buffer of rank {bad}"),
                    buf.len(),
                    slots[bad].len() / W,
                ));
            }
            for (i, out) in buf.iter_mut().enumerate() {
                let at = |r: usize| from(slots[r][i * W..(i + 1) * W].try_into().unwrap_or([0; W]));
                let mut acc = at(0);
                for r in 1..self.shared.size {
                    acc = add(acc, at(r));
                }
                *out = acc;
            }
        }
        self.shared.barrier.wait();
        Ok(())
    }
}

impl Collective for Threads {
    fn rank(&self) -> usize {
        self.rank
    }

    fn size(&self) -> usize {
        self.shared.size
    }

    fn all_reduce_sum_f32(&mut self, buf: &mut [f32]) -> Result<()> {
        self.all_reduce(buf, f32::to_le_bytes, f32::from_le_bytes, |a, b| a + b)
    }

    fn all_reduce_sum_f64(&mut self, buf: &mut [f64]) -> Result<()> {
        self.all_reduce(buf, f64::to_le_bytes, f64::from_le_bytes, |a, b| a + b)
    }

    fn all_reduce_sum_u64(&mut self, buf: &mut [u64]) -> Result<()> {
        self.all_reduce(buf, u64::to_le_bytes, u64::from_le_bytes, u64::wrapping_add)
    }

    fn broadcast_bytes(&mut self, root: usize, buf: &mut Vec<u8>) -> Result<()> {
        check_root(root, self.shared.size)?;
        if self.rank == root {
            self.slots()?[root] = buf.clone();
        }
        self.shared.barrier.wait();
        if self.rank != root {
            *buf = self.slots()?[root].clone();
        }
        self.shared.barrier.wait();
        Ok(())
    }

    fn barrier(&mut self) -> Result<()> {
        self.shared.barrier.wait();
        Ok(())
    }

    fn describe(&self) -> String {
        format!("threads rank {} of {}", self.rank, self.shared.size)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn on_group<R: Send + 'static>(
        n: usize,
        f: impl Fn(Threads) -> R + Send + Sync + 'static,
    ) -> Vec<R> {
        let f = Arc::new(f);
        let handles: Vec<_> = Threads::group(n)
            .into_iter()
            .map(|t| {
                let f = f.clone();
                std::thread::spawn(move || f(t))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    }

    #[test]
    fn reductions_and_broadcast_agree_on_every_rank() {
        let out = on_group(3, |mut t| {
            let r = t.rank();
            let mut f = vec![r as f32, 1.5, -(r as f32) * 2.0];
            t.all_reduce_sum_f32(&mut f).unwrap();
            let mut d = vec![0.25 * r as f64];
            t.all_reduce_sum_f64(&mut d).unwrap();
            let mut u = vec![r as u64 + 1, 10];
            t.all_reduce_sum_u64(&mut u).unwrap();
            let mut b = if r == 1 {
                b"from one".to_vec()
            } else {
                vec![9; r]
            };
            t.broadcast_bytes(1, &mut b).unwrap();
            (f, d, u, b)
        });
        for (f, d, u, b) in out {
            assert_eq!(f, vec![3.0, 4.5, -6.0]);
            assert_eq!(d, vec![0.75]);
            assert_eq!(u, vec![6, 30]);
            assert_eq!(b, b"from one".to_vec());
        }
    }

    #[test]
    fn mismatched_lengths_are_an_error() {
        let out = on_group(2, |mut t| {
            let mut f = vec![0.0f32; 2 + t.rank()];
            t.all_reduce_sum_f32(&mut f).is_err()
        });
        assert_eq!(out, vec![true, true]);
    }
}
