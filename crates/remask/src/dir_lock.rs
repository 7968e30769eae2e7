//! Exclusive advisory locks on the directories a command writes (run directories of `train` and
//! `compare`, prepared-data directories of `prepare`).
//!
//! The lock is `flock(LOCK_EX | LOCK_NB)` (through `std::fs::File::try_lock`) on `DIR/.lock`. The OS
//! drops it when the holding process exits or is killed, so a lock file left behind by a dead
//! process never blocks anyone: only a live holder does. The holder writes who it is (pid, host,
//! start time, command) into the file, so a refused process can name it. The file itself is never
//! deleted (deleting it would let two processes lock two different files of the same name).
//!
//! Readers (`eval`, `inspect`, `forward`, ...) take no lock: writers publish files atomically
//! (temporary name, fsync, rename, completion marker last), so a reader sees a complete file or none.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// The lock file's name inside a locked directory.
pub const LOCK_FILE: &str = ".lock";

/// Who holds a lock: what the lock file says.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holder {
    pub pid: u32,
    pub host: String,
    /// Start of the holding process's lock, UTC, RFC 3339.
    pub started: String,
    /// What it is doing, e.g. `remask train`.
    pub command: String,
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "pid {} on host {}, `{}` started {}",
            self.pid, self.host, self.command, self.started
        )
    }
}

/// An exclusive lock on a directory, held until dropped (or the process ends).
#[derive(Debug)]
pub struct DirLock {
    dir: PathBuf,
    // Kept open: closing the file releases the lock.
    _file: File,
}

impl DirLock {
    /// Locks `dir` (created if missing) for `command` (e.g. "remask train"), or fails at once with
    /// an error naming the live holder.
    pub fn acquire(dir: &Path, command: &str) -> Result<DirLock> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let path = dir.join(LOCK_FILE);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| Error::io(&path, e))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut text = String::new();
                let _ = file.read_to_string(&mut text);
                let holder = match serde_json::from_str::<Holder>(&text) {
                    Ok(h) => h.to_string(),
                    // It has just locked and not yet written its name.
                    Err(_) => "another process that is just starting".to_string(),
                };
                return Err(Error::Locked {
                    dir: dir.to_path_buf(),
                    holder,
                });
            }
            Err(TryLockError::Error(e)) => return Err(Error::io(&path, e)),
        }
        let holder = Holder {
            pid: std::process::id(),
            host: host_name(),
            started: utc_now(),
            command: command.to_string(),
        };
        let text = serde_json::to_string(&holder).map_err(|e| Error::Other(e.to_string()))?;
        file.set_len(0)
            .and_then(|_| file.seek(SeekFrom::Start(0)))
            .and_then(|_| file.write_all(text.as_bytes()))
            .and_then(|_| file.flush())
            .map_err(|e| Error::io(&path, e))?;
        Ok(DirLock {
            dir: dir.to_path_buf(),
            _file: file,
        })
    }

    /// The locked directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// The holder named in `dir`'s lock file while a live process holds the lock; None when the
/// directory is free (also when a dead process left its lock file behind).
pub fn holder(dir: &Path) -> Result<Option<Holder>> {
    let path = dir.join(LOCK_FILE);
    let file = match File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(&path, e)),
    };
    match file.try_lock_shared() {
        Ok(()) => Ok(None),
        Err(TryLockError::WouldBlock) => {
            let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
            Ok(serde_json::from_str(&text).ok())
        }
        Err(TryLockError::Error(e)) => Err(Error::io(&path, e)),
    }
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .or_else(|| std::env::var("COMPUTERNAME").ok())
        .unwrap_or_else(|| "unknown".into())
}

/// The current time, UTC, as `YYYY-MM-DDTHH:MM:SSZ`.
fn utc_now() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    rfc3339(secs)
}

/// Seconds since the Unix epoch as RFC 3339 UTC (civil-from-days, proleptic Gregorian).
fn rfc3339(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_of_known_instants() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_767_225_599), "2025-12-31T23:59:59Z");
    }

    /// A second lock on a held directory fails at once and names the holder; once the first is
    /// dropped (as when its process dies) the directory is free again, although the file remains.
    #[test]
    fn a_held_directory_is_refused_and_freed_on_drop() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("run");
        let first = DirLock::acquire(&dir, "remask train").unwrap();
        assert_eq!(first.dir(), dir);
        let e = DirLock::acquire(&dir, "remask train")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(&format!("pid {}", std::process::id()))
                && e.contains("remask train")
                && e.contains("started"),
            "{e}"
        );
        let h = holder(&dir).unwrap().unwrap();
        assert_eq!(h.pid, std::process::id());
        drop(first);
        assert!(dir.join(LOCK_FILE).exists());
        assert_eq!(holder(&dir).unwrap(), None);
        let again = DirLock::acquire(&dir, "remask compare").unwrap();
        let text = std::fs::read_to_string(dir.join(LOCK_FILE)).unwrap();
        assert!(
            text.contains("remask compare") && !text.contains("remask train"),
            "rewritten: {text}"
        );
        drop(again);
    }
}
