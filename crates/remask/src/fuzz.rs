//! Mutation fuzzing on stable Rust (tests and the `testing` feature only): a seeded byte mutator over
//! a committed seed corpus (`fuzz/corpus/<target>/` at the repository root) and a harness that runs
//! a target on each mutated input, catching panics, timing every input (a watchdog aborts the whole
//! process, naming the input, when one hangs) and checking that every rejected input comes with an
//! error message. Used by `crates/remask/tests/fuzz.rs` (library targets) and
//! `crates/remask-cli/tests/fuzz_cli.rs` (the binary).
//!
//! Every input is a pure function of (target name, iteration), so a failure reproduces: the harness
//! writes the input to `$CARGO_TARGET_TMPDIR` (or the temp dir) and names it in the failure.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A seeded mutator (splitmix64 stream).
pub struct Mutator {
    state: u64,
}

/// Byte strings that tend to break parsers: delimiters, extreme and non-finite numbers, huge sizes.
const TOKENS: &[&[u8]] = &[
    b"0",
    b"-1",
    b"1e309",
    b"-0",
    b"nan",
    b"inf",
    b"18446744073709551615",
    b"9223372036854775807",
    b"4294967296",
    b"99999999999",
    b"\"",
    b"\\",
    b"[",
    b"]",
    b"{",
    b"}",
    b"=",
    b",",
    b":",
    b"\n",
    b"\t",
    b"\r\n",
    b"\x00",
    b"\xff",
    b"\xe4\xb8",
    b"[[",
    b"]]",
    b"\"\"\"",
    b"true",
    b"null",
    b"F32",
    b"I64",
    b"BF16",
    b"U8",
    b"\"shape\":[1000000,1000000]",
];

impl Mutator {
    pub fn new(seed: u64) -> Self {
        Self {
            state: seed ^ 0x9e37_79b9_7f4a_7c15,
        }
    }

    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }

    /// `input` with one to four random edits: bit flips, byte or token overwrites and insertions,
    /// chunk deletion, duplication and truncation, digit runs changed, and splices with `others`.
    pub fn mutate(&mut self, input: &[u8], others: &[Vec<u8>]) -> Vec<u8> {
        let mut v = input.to_vec();
        for _ in 0..1 + self.below(4) {
            let at = self.below(v.len() + 1);
            match self.below(9) {
                0 if !v.is_empty() => {
                    let i = self.below(v.len());
                    v[i] ^= 1 << self.below(8);
                }
                1 if !v.is_empty() => {
                    let i = self.below(v.len());
                    v[i] = self.next_u64() as u8;
                }
                2 => {
                    let t = TOKENS[self.below(TOKENS.len())];
                    v.splice(at..at, t.iter().copied());
                }
                3 if !v.is_empty() => {
                    let len = 1 + self.below(16.min(v.len()));
                    let start = self.below(v.len() - len + 1);
                    v.drain(start..start + len);
                }
                4 if !v.is_empty() => {
                    let len = 1 + self.below(64.min(v.len()));
                    let start = self.below(v.len() - len + 1);
                    let chunk = v[start..start + len].to_vec();
                    v.splice(at..at, chunk);
                }
                5 => v.truncate(at),
                6 => {
                    // Replace a run of digits (a size, an offset, a count) with an extreme number.
                    if let Some(start) = (at..v.len()).chain(0..at).find(|&i| v[i].is_ascii_digit())
                    {
                        let end = (start..v.len())
                            .find(|&i| !v[i].is_ascii_digit())
                            .unwrap_or(v.len());
                        let t = [
                            &b"0"[..],
                            b"1",
                            b"4294967297",
                            b"18446744073709551615",
                            b"999999999999",
                        ][self.below(5)];
                        v.splice(start..end, t.iter().copied());
                    }
                }
                7 if !others.is_empty() => {
                    let o = &others[self.below(others.len())];
                    let from = self.below(o.len() + 1);
                    v.truncate(at);
                    v.extend_from_slice(&o[from..]);
                }
                _ => {
                    let t = TOKENS[self.below(TOKENS.len())];
                    let end = (at + t.len()).min(v.len());
                    v.splice(at..end, t.iter().copied());
                }
            }
        }
        v
    }
}

/// The seed corpus of `target`: every file in `fuzz/corpus/<target>/`, sorted by name. Missing or
/// empty is an error (the corpus is committed).
pub fn seeds(repo_root: &Path, target: &str) -> Vec<Vec<u8>> {
    let dir = repo_root.join("fuzz/corpus").join(target);
    let mut names: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e} (the seed corpus is committed)", dir.display()))
        .map(|e| e.expect("corpus entry").path())
        .filter(|p| p.is_file())
        .collect();
    names.sort();
    assert!(!names.is_empty(), "{} holds no seeds", dir.display());
    names
        .iter()
        .map(|p| std::fs::read(p).expect("read seed"))
        .collect()
}

/// What a target made of one input.
pub type Outcome = Result<(), String>;

/// Totals of one fuzzing run.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FuzzReport {
    pub inputs: usize,
    pub accepted: usize,
    pub rejected: usize,
    pub slowest: Duration,
}

/// How long a fuzzing run goes on.
#[derive(Clone, Copy, Debug)]
pub struct Budget {
    /// Mutated inputs at most (the seeds themselves run first, on top).
    pub iterations: usize,
    /// Stop starting new inputs after this long.
    pub time: Duration,
    /// An input still running after this long is a hang: the process aborts.
    pub hang: Duration,
}

impl Budget {
    /// `REMASK_FUZZ_ITERS` / `REMASK_FUZZ_SECS` override the defaults (CI keeps them small).
    pub fn from_env(iterations: usize, secs: u64) -> Self {
        let num = |k: &str| std::env::var(k).ok().and_then(|v| v.parse::<u64>().ok());
        Budget {
            iterations: num("REMASK_FUZZ_ITERS").map_or(iterations, |n| n as usize),
            time: Duration::from_secs(num("REMASK_FUZZ_SECS").unwrap_or(secs)),
            hang: Duration::from_secs(60),
        }
    }
}

/// Runs `target` on every seed and then on mutated seeds until the budget is used. Panics (failing
/// the calling test) on the first input that panics the target or is rejected without a message;
/// the input is written to a file named in the failure.
pub fn run(
    name: &str,
    seeds: &[Vec<u8>],
    budget: Budget,
    target: impl Fn(&[u8]) -> Outcome,
) -> FuzzReport {
    let started = Instant::now();
    let current = Arc::new(AtomicU64::new(u64::MAX));
    let since = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let watchdog = {
        let (current, since, done, name) = (
            current.clone(),
            since.clone(),
            done.clone(),
            name.to_string(),
        );
        std::thread::spawn(move || {
            while !done.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(100));
                let i = current.load(Ordering::SeqCst);
                let t0 = since.load(Ordering::SeqCst);
                let now = started.elapsed().as_millis() as u64;
                if i != u64::MAX && now.saturating_sub(t0) > budget.hang.as_millis() as u64 {
                    eprintln!("fuzz {name}: input {i} hangs (> {:?}); reproduce with REMASK_FUZZ_ONLY={name}:{i}", budget.hang);
                    std::process::abort();
                }
            }
        })
    };
    let only = std::env::var("REMASK_FUZZ_ONLY").ok().and_then(|s| {
        let (t, i) = s.split_once(':')?;
        (t == name).then(|| i.parse::<usize>().ok()).flatten()
    });
    let mut report = FuzzReport::default();
    let total = seeds.len() + budget.iterations;
    for i in 0..total {
        if only.is_some_and(|o| o != i)
            || (only.is_none() && i >= seeds.len() && started.elapsed() > budget.time)
        {
            continue;
        }
        let input = if i < seeds.len() {
            seeds[i].clone()
        } else {
            let mut m = Mutator::new(fnv(name) ^ (i as u64).wrapping_mul(0x100_0000_01b3));
            let base = &seeds[m.below(seeds.len())];
            m.mutate(base, seeds)
        };
        since.store(started.elapsed().as_millis() as u64, Ordering::SeqCst);
        current.store(i as u64, Ordering::SeqCst);
        let t = Instant::now();
        let outcome = catch_unwind(AssertUnwindSafe(|| target(&input)));
        report.slowest = report.slowest.max(t.elapsed());
        current.store(u64::MAX, Ordering::SeqCst);
        report.inputs += 1;
        let fail = |what: String| -> ! {
            let dir = std::env::var_os("CARGO_TARGET_TMPDIR")
                .map(PathBuf::from)
                .unwrap_or_else(std::env::temp_dir);
            let path = dir.join(format!("fuzz-{name}-{i}.bin"));
            let _ = std::fs::write(&path, &input);
            done.store(true, Ordering::SeqCst);
            panic!("fuzz {name}: input {i} {what}; input written to {} (reproduce with REMASK_FUZZ_ONLY={name}:{i})", path.display());
        };
        match outcome {
            Err(p) => {
                let msg = p
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()));
                fail(format!("panicked: {}", msg.unwrap_or_default()));
            }
            Ok(Ok(())) => report.accepted += 1,
            Ok(Err(e)) if e.trim().is_empty() => {
                fail("was rejected without an error message".into())
            }
            Ok(Err(_)) => report.rejected += 1,
        }
    }
    done.store(true, Ordering::SeqCst);
    let _ = watchdog.join();
    report
}

/// FNV-1a of a name (stable across runs and platforms).
fn fnv(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mutations_are_deterministic_and_change_the_input() {
        let seed = b"[model]\nd_model = 128\n".to_vec();
        let a: Vec<Vec<u8>> = (0..50)
            .map(|i| Mutator::new(i).mutate(&seed, &[seed.clone()]))
            .collect();
        let b: Vec<Vec<u8>> = (0..50)
            .map(|i| Mutator::new(i).mutate(&seed, &[seed.clone()]))
            .collect();
        assert_eq!(a, b);
        assert!(a.iter().filter(|m| **m != seed).count() > 40);
    }

    #[test]
    fn the_harness_reports_panics_and_silent_rejections() {
        let seeds = vec![b"ok".to_vec(), b"boom".to_vec()];
        let budget = Budget {
            iterations: 0,
            time: Duration::from_secs(5),
            hang: Duration::from_secs(5),
        };
        let r = catch_unwind(|| {
            run("t", &seeds, budget, |b| {
                if b == b"boom" {
                    panic!("bad")
                } else {
                    Ok(())
                }
            })
        });
        assert!(r.is_err());
        let r = catch_unwind(|| run("t", &seeds, budget, |_| Err(String::new())));
        assert!(r.is_err());
        let r = run("t", &seeds, budget, |b| {
            if b == b"ok" {
                Ok(())
            } else {
                Err("no".into())
            }
        });
        assert_eq!((r.inputs, r.accepted, r.rejected), (2, 1, 1));
    }
}
