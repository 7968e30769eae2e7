//! The MPI collective (cargo feature `mpi`), through rsmpi over the system's MPI library.
//!
//! One [`Mpi`] per process owns MPI's lifetime: [`Mpi::init`] initialises MPI (requesting
//! `MPI_THREAD_FUNNELED`: only the thread that created it calls MPI; rayon's workers never do) and
//! dropping it finalises MPI. Reductions copy each call's buffer into a scratch buffer and reduce
//! into the caller's buffer (rsmpi has no portable `MPI_IN_PLACE`); the copy costs far less than the
//! transfer. Counts above `i32::MAX` are split into several calls.

use mpi::collective::SystemOperation;
use mpi::environment::Universe;
use mpi::topology::SimpleCommunicator;
use mpi::traits::*;
use mpi::Threading;

use super::local::check_root;
use super::Collective;
use crate::{Error, Result};

/// Elements per MPI call: keeps every count inside MPI's `int`.
const MAX_COUNT: usize = 1 << 30;

/// The world communicator of an MPI job (see the module docs).
pub struct Mpi {
    world: SimpleCommunicator,
    f32s: Vec<f32>,
    f64s: Vec<f64>,
    u64s: Vec<u64>,
    library: String,
    // Dropped last: finalises MPI after the communicator is gone.
    _universe: Universe,
}

impl Mpi {
    /// Initialises MPI for this process. Fails when MPI was already initialised in this process.
    pub fn init() -> Result<Self> {
        let (universe, _provided) = mpi::initialize_with_threading(Threading::Funneled).ok_or_else(|| {
            Error::Other("MPI is already initialised in this process: create one `dist::Mpi` per process".into())
        })?;
        let world = universe.world();
        let library = mpi::environment::library_version()
            .map(|s| s.split([',', '\n']).next().unwrap_or("").trim().to_string())
            .unwrap_or_else(|_| "unknown MPI library".into());
        Ok(Self {
            world,
            f32s: Vec::new(),
            f64s: Vec::new(),
            u64s: Vec::new(),
            library,
            _universe: universe,
        })
    }

    /// The MPI library's version line, e.g. `Open MPI v4.1.4, ...`.
    pub fn library(&self) -> &str {
        &self.library
    }
}

/// `buf = Σ_ranks buf` through `scratch`, in calls of at most [`MAX_COUNT`] elements.
fn all_reduce_sum<T>(world: &SimpleCommunicator, scratch: &mut Vec<T>, buf: &mut [T])
where
    T: Equivalence + Copy + Default,
{
    for chunk in buf.chunks_mut(MAX_COUNT) {
        scratch.clear();
        scratch.extend_from_slice(chunk);
        world.all_reduce_into(&scratch[..], chunk, SystemOperation::sum());
    }
}

impl Collective for Mpi {
    fn rank(&self) -> usize {
        self.world.rank() as usize
    }

    fn size(&self) -> usize {
        self.world.size() as usize
    }

    fn all_reduce_sum_f32(&mut self, buf: &mut [f32]) -> Result<()> {
        all_reduce_sum(&self.world, &mut self.f32s, buf);
        Ok(())
    }

    fn all_reduce_sum_f64(&mut self, buf: &mut [f64]) -> Result<()> {
        all_reduce_sum(&self.world, &mut self.f64s, buf);
        Ok(())
    }

    fn all_reduce_sum_u64(&mut self, buf: &mut [u64]) -> Result<()> {
        all_reduce_sum(&self.world, &mut self.u64s, buf);
        Ok(())
    }

    fn broadcast_bytes(&mut self, root: usize, buf: &mut Vec<u8>) -> Result<()> {
        check_root(root, self.size())?;
        let root_process = self.world.process_at_rank(root as i32);
        let mut len = buf.len() as u64;
        root_process.broadcast_into(&mut len);
        let len = usize::try_from(len)
            .map_err(|_| Error::Other(format!("broadcast of {len} bytes is too large")))?;
        buf.resize(len, 0);
        for chunk in buf.chunks_mut(MAX_COUNT) {
            root_process.broadcast_into(chunk);
        }
        Ok(())
    }

    fn barrier(&mut self) -> Result<()> {
        self.world.barrier();
        Ok(())
    }

    fn describe(&self) -> String {
        format!(
            "mpi ({}) rank {} of {}",
            self.library,
            self.rank(),
            self.size()
        )
    }
}
