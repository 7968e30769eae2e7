//! Fault injection for the crash tests: pauses inside file writes (so a test can kill the process
//! while a checkpoint or a shard is half-written) and a simulated full disk.
//!
//! A [`FaultPlan`] is passed explicitly to the writers that honour it (checkpoints through
//! [`crate::train::TrainerOptions::faults`], prepared data through [`crate::data::prepare::prepare_with`]). Its fields exist only in tests and with the `testing`
//! cargo feature; in every other build it is an empty type whose hooks do nothing, so a release
//! binary writes files the same way whatever its environment holds.

use std::fs::File;
use std::io::Write;
use std::path::Path;

use crate::{Error, Result};

/// Faults to inject while writing (see the module docs). `FaultPlan::default()` injects none.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FaultPlan {
    /// Sleep this long at each pause point of a write (inside a checkpoint's weights, between its
    /// rename and its `DONE` marker, inside a shard).
    #[cfg(any(test, feature = "testing"))]
    pub sleep_in_write_ms: u64,
    /// Fail like a full disk (ENOSPC) once this many bytes of a checkpoint (or of a prepared
    /// directory) were written.
    #[cfg(any(test, feature = "testing"))]
    pub disk_full_after_bytes: Option<u64>,
}

impl FaultPlan {
    /// Waits at a pause point of a write (a no-op unless a test asked for a pause).
    pub fn pause(&self) {
        #[cfg(any(test, feature = "testing"))]
        if self.sleep_in_write_ms > 0 {
            std::thread::sleep(std::time::Duration::from_millis(self.sleep_in_write_ms));
        }
    }

    /// The byte budget of one checkpoint write (unlimited unless a test simulates a full disk).
    pub fn write_budget(&self) -> WriteBudget {
        #[cfg(any(test, feature = "testing"))]
        return WriteBudget {
            left: self.disk_full_after_bytes,
        };
        #[cfg(not(any(test, feature = "testing")))]
        WriteBudget { left: None }
    }
}

/// Bytes a writer may still write before the simulated disk is full (`None`: no limit).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WriteBudget {
    left: Option<u64>,
}

impl WriteBudget {
    /// No limit.
    pub fn unlimited() -> Self {
        Self { left: None }
    }

    /// Counts `bytes` already written to `path`; fails like a full disk once the budget is exceeded
    /// (for writers that write whole files and check afterwards, e.g. `prepare`).
    pub fn charge(&mut self, bytes: u64, path: &Path) -> Result<()> {
        if let Some(left) = self.left {
            if bytes > left {
                self.left = Some(0);
                return Err(Error::io(path, std::io::Error::from_raw_os_error(28)));
            }
            self.left = Some(left - bytes);
        }
        Ok(())
    }

    /// Writes `bytes` to `f`, or as much as the budget allows and then fails with ENOSPC, exactly
    /// what a full disk reports.
    pub fn write(&mut self, f: &mut File, bytes: &[u8], path: &Path) -> Result<()> {
        if let Some(left) = self.left {
            if (bytes.len() as u64) > left {
                let _ = f.write_all(&bytes[..left as usize]);
                self.left = Some(0);
                return Err(Error::io(path, std::io::Error::from_raw_os_error(28)));
            }
            self.left = Some(left - bytes.len() as u64);
        }
        f.write_all(bytes).map_err(|e| Error::io(path, e))
    }
}
