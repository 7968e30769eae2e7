//! The single-process collective: one rank, every operation a no-op.

use super::Collective;
use crate::Result;

/// A group of one: `rank() == 0`, `size() == 1`, reductions and broadcasts leave buffers unchanged.
/// The default whenever remask is not started by an MPI launcher.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Local;

impl Collective for Local {
    fn rank(&self) -> usize {
        0
    }

    fn size(&self) -> usize {
        1
    }

    fn all_reduce_sum_f32(&mut self, _buf: &mut [f32]) -> Result<()> {
        Ok(())
    }

    fn all_reduce_sum_f64(&mut self, _buf: &mut [f64]) -> Result<()> {
        Ok(())
    }

    fn all_reduce_sum_u64(&mut self, _buf: &mut [u64]) -> Result<()> {
        Ok(())
    }

    fn broadcast_bytes(&mut self, root: usize, _buf: &mut Vec<u8>) -> Result<()> {
        check_root(root, 1)
    }

    fn barrier(&mut self) -> Result<()> {
        Ok(())
    }

    fn describe(&self) -> String {
        "local (1 process)".into()
    }
}

/// An error unless `root` is a rank of a group of `size`.
pub(crate) fn check_root(root: usize, size: usize) -> Result<()> {
    if root < size {
        Ok(())
    } else {
        Err(crate::Error::Other(format!(
            "broadcast root {root} is not a rank of this group of {size}"
        )))
    }
}
