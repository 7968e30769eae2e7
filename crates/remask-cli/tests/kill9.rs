//! kill -9 at random moments, then re-run or resume: the output must equal an uninterrupted run's,
//! byte for byte. The moments are drawn from a fixed seed (so a failure reproduces) over the time a
//! run takes, and the writers pause briefly inside every checkpoint write (`--fault-sleep-in-write-ms`,
//! test builds only) so that a good share of the kills land inside one. Each test prints how many
//! kills it survived and how many of them hit a write in progress.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_remask");
/// Kills per command (the issue asks for 20).
const KILLS: usize = 20;

/// A small deterministic generator for the kill moments (xorshift64*).
struct Moments(u64);

impl Moments {
    fn next_ms(&mut self, lo: u64, hi: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        lo + self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % (hi - lo)
    }
}

/// Starts `cmd`, kills it with SIGKILL after `ms` (if it is still running) and says whether it did.
fn run_and_kill(cmd: &mut Command, ms: u64) -> bool {
    let mut child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_millis(ms);
    while Instant::now() < deadline {
        if child.try_wait().unwrap().is_some() {
            return false;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let killed = child.try_wait().unwrap().is_none();
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    killed
}

fn entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|r| {
            r.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Whether a checkpoint write was in progress: a temporary directory, or one renamed without DONE.
fn checkpoint_write_in_progress(run: &Path) -> bool {
    let ck = run.join("checkpoints");
    entries(&ck).iter().any(|n| {
        n.starts_with(".tmp-")
            || n.starts_with(".trash-")
            || (n.starts_with("step-") && !ck.join(n).join("DONE").exists())
    })
}

/// Every complete checkpoint verifies and loads.
fn assert_complete_checkpoints_load(run: &Path) {
    for (step, dir) in remask::train::checkpoint::list_complete(run).unwrap() {
        if let Err(e) = remask::train::checkpoint::load(&dir) {
            panic!("complete checkpoint at step {step} does not load after a kill: {e}");
        }
    }
}

/// metrics.jsonl without the wall-clock field (tokens_per_s), which no two runs share.
fn metrics_without_timing(run: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
            if let Some(o) = v.as_object_mut() {
                o.remove("tokens_per_s");
                // Event messages name the checkpoint directory, which differs between the two runs.
                if o.get("kind")
                    .and_then(|k| k.as_str())
                    .is_some_and(|k| k != "train" && k != "eval")
                {
                    o.remove("message");
                }
            }
            v
        })
        .filter(|v| v["kind"] == "train" || v["kind"] == "eval")
        .collect()
}

fn assert_same_files(a: &Path, b: &Path, files: &[&str]) {
    for f in files {
        let (x, y) = (std::fs::read(a.join(f)), std::fs::read(b.join(f)));
        assert!(
            x.is_ok() && y.is_ok(),
            "{f} is missing in {} or {}",
            a.display(),
            b.display()
        );
        assert!(
            x.unwrap() == y.unwrap(),
            "{f} differs from the uninterrupted run's"
        );
    }
}

fn write_train_config(dir: &Path) -> PathBuf {
    let text = format!(
        "[model]\narch = \"encoder\"\nvocab_size = 40\nd_model = 16\nn_heads = 2\nn_layers = 1\nd_ff = 32\n\
         max_positions = 32\ndropout = 0.1\n[optimizer]\nbatch_size = 8\nmicro_batch_size = 4\nlr = 0.005\n\
         [budget]\nsteps = 240\n[eval]\nevery_steps = 40\nbatches = 1\nbatch_size = 8\n[checkpoint]\nevery_steps = 6\n\
         keep_last = 2\n[run]\nseed = 2\nlog_every = 1\nthreads = 2\ntensorboard = false\noutput_dir = \"{}\"\n",
        dir.join("run").display()
    );
    std::fs::create_dir_all(dir).unwrap();
    let path = dir.join("run.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// `remask train` (a real encoder on synthetic rows, adaptive masking state included) killed at 20
/// random moments, resumed after each, then run to the end: checkpoints, weights, optimizer state
/// and metrics equal an uninterrupted run's.
#[test]
fn train_survives_20_random_kills() {
    let tmp = tempfile::tempdir().unwrap();
    let reference = tmp.path().join("reference");
    let cfg = write_train_config(&reference);
    let t = Instant::now();
    let out = Command::new(BIN)
        .args(["train", "--synthetic", "--log-lines", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Kills are spread over about one uninterrupted run's time (slower with the pauses below).
    let span_ms = (t.elapsed().as_millis() as u64).clamp(300, 5000);

    let faulty = tmp.path().join("faulty");
    let cfg = write_train_config(&faulty);
    let run = faulty.join("run");
    let mut moments = Moments(0x5eed_0001);
    let (mut kills, mut in_write, mut attempts) = (0, 0, 0);
    while kills < KILLS {
        attempts += 1;
        assert!(
            attempts < 200,
            "only {kills} kills landed in {attempts} attempts"
        );
        let mut cmd = Command::new(BIN);
        cmd.args([
            "train",
            "--synthetic",
            "--log-lines",
            "--fault-sleep-in-write-ms",
            "3",
        ]);
        if remask::train::checkpoint::list_complete(&run)
            .unwrap()
            .is_empty()
        {
            // Nothing to resume yet: run the same command again (a killed fresh run leaves metrics
            // and a lock file but no checkpoint; the new run starts them afresh).
            cmd.arg("--config").arg(&cfg);
        } else {
            cmd.arg("--resume").arg(&run);
        }
        let ms = moments.next_ms(10, span_ms);
        if run_and_kill(&mut cmd, ms) {
            kills += 1;
            in_write += checkpoint_write_in_progress(&run) as usize;
            assert_complete_checkpoints_load(&run);
        } else if remask::train::checkpoint::list_complete(&run)
            .unwrap()
            .last()
            .is_some_and(|(s, _)| *s == 240)
        {
            // The run finished before the kill: start it over to place the remaining kills.
            std::fs::remove_dir_all(&run).unwrap();
        }
    }
    let out = Command::new(BIN)
        .args(["train", "--synthetic", "--log-lines", "--resume"])
        .arg(&run)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("train: survived {kills} kills ({in_write} inside a checkpoint write), {attempts} attempts, span {span_ms} ms");
    assert!(
        in_write >= 2,
        "too few kills inside a checkpoint write ({in_write}) to claim coverage"
    );
    let (a, b) = (
        reference.join("run/checkpoints/step-000240"),
        run.join("checkpoints/step-000240"),
    );
    assert_same_files(
        &a,
        &b,
        &[
            "model.safetensors",
            "optimizer.safetensors",
            "trainer_state.json",
            "config.json",
        ],
    );
    assert_eq!(
        metrics_without_timing(&reference.join("run")),
        metrics_without_timing(&run)
    );
    assert_eq!(
        entries(&run.join("checkpoints")),
        vec!["step-000234", "step-000240"],
        "no leftovers"
    );
}

/// Every file under `dir` (relative path → bytes), without the lock file.
fn tree(dir: &Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, out: &mut std::collections::BTreeMap<String, Vec<u8>>) {
        for name in entries(dir) {
            let p = dir.join(&name);
            if p.is_dir() {
                walk(root, &p, out);
            } else if name != ".lock" {
                out.insert(
                    p.strip_prefix(root).unwrap().display().to_string(),
                    std::fs::read(&p).unwrap(),
                );
            }
        }
    }
    let mut out = std::collections::BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

/// A corpus file of the first `n` verses of the embedded one.
fn corpus(dir: &Path, n: usize) -> PathBuf {
    let text: String = remask::data::reader::BUILTIN_WEB
        .lines()
        .take(n)
        .map(|l| format!("{l}\n"))
        .collect();
    let p = dir.join("corpus.txt");
    std::fs::write(&p, text).unwrap();
    p
}

fn prepare_args(input: &Path, out: &Path) -> Vec<String> {
    [
        "prepare",
        "--input",
        input.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--vocab-size",
        "600",
        "--seq-len",
        "32",
        "--dupe-factor",
        "3",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// `remask prepare` (static copies included) killed at 20 random moments, re-run after each (the
/// same command), then run to the end: the directory equals an uninterrupted run's file for file, and
/// after every kill it either holds the earlier complete output or no `meta.json` at all.
#[test]
fn prepare_survives_20_random_kills() {
    let tmp = tempfile::tempdir().unwrap();
    let input = corpus(tmp.path(), 1500);
    let reference = tmp.path().join("reference");
    let t = Instant::now();
    let out = Command::new(BIN)
        .args(prepare_args(&input, &reference))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let span_ms = (t.elapsed().as_millis() as u64).clamp(200, 5000) + 100;
    let want = tree(&reference);
    assert!(want.contains_key("meta.json") && want.contains_key("static/copy-002.bin"));

    let dir = tmp.path().join("faulty");
    let mut moments = Moments(0x5eed_0002);
    let (mut kills, mut while_publishing, mut attempts) = (0, 0, 0);
    while kills < KILLS {
        attempts += 1;
        assert!(
            attempts < 200,
            "only {kills} kills landed in {attempts} attempts"
        );
        let mut cmd = Command::new(BIN);
        cmd.args(prepare_args(&input, &dir))
            .args(["--fault-sleep-in-write-ms", "10"]);
        if run_and_kill(&mut cmd, moments.next_ms(5, span_ms)) {
            kills += 1;
            let got = tree(&dir);
            if got.contains_key("meta.json") {
                // An earlier complete output (a run that finished before) is intact.
                let published: std::collections::BTreeMap<_, _> = got
                    .into_iter()
                    .filter(|(k, _)| !k.starts_with(".staging"))
                    .collect();
                assert_eq!(
                    published, want,
                    "a directory with meta.json must be complete"
                );
            } else {
                while_publishing += dir.join("tokenizer.json").exists() as usize;
                // No meta.json: training refuses it.
                assert!(remask::data::Meta::read(&dir).is_err());
            }
        }
    }
    let out = Command::new(BIN)
        .args(prepare_args(&input, &dir))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("prepare: survived {kills} kills ({while_publishing} while publishing), {attempts} attempts, span {span_ms} ms");
    assert_eq!(
        tree(&dir),
        want,
        "the re-run's output differs from an uninterrupted run's"
    );
}

/// A full disk while preparing over an earlier output leaves that output untouched and nothing
/// partial behind.
#[test]
fn prepare_on_a_full_disk_keeps_the_earlier_output() {
    let tmp = tempfile::tempdir().unwrap();
    let input = corpus(tmp.path(), 300);
    let dir = tmp.path().join("prepared");
    let out = Command::new(BIN)
        .args(prepare_args(&input, &dir))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let before = tree(&dir);
    for limit in ["0", "1000", "100000"] {
        let mut args = prepare_args(&input, &dir);
        args[6] = "700".into(); // another vocabulary: different output
        let out = Command::new(BIN)
            .args(&args)
            .args(["--fault-disk-full-after-bytes", limit])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.lines().last().unwrap().contains("No space left"),
            "{stderr}"
        );
        assert_eq!(
            tree(&dir),
            before,
            "the earlier output changed (limit {limit})"
        );
        assert!(!dir.join(".staging").exists(), "no partial directory left");
    }
}

/// Static (K = 2) vs dynamic, two seeds, in two regimes: E = 1 (static is the dynamic run by
/// construction, copied, not trained) and E = 4 (static rereads its copies): 6 runs trained, with
/// the embedded out-of-domain text and the committed minimal pairs (`PAIRS`, replaced when written).
const TINY_COMPARE: &str = r#"
[compare]
strategies = ["static", "dynamic"]
seeds = 2
dupe_factor = 2
regimes = [1, 4]
minimal_pairs = "PAIRS"
threads = 1
max_documents = 300
eval_every_steps = 4
eval_batches = 2
eval_batch_size = 8

[data]
seq_len = 32
validation_share = 0.2
tokenizer = { vocab_size = 200 }

[model]
arch = "encoder"
d_model = 16
n_heads = 2
n_layers = 1
d_ff = 32
max_positions = 32

[optimizer]
batch_size = 8

[budget]
steps = 24
"#;

/// `report.json` without what depends on the wall clock (durations, throughput, timings, and the
/// throughput sentence of the training-efficiency verdict).
fn report_without_timing(out: &Path) -> serde_json::Value {
    fn strip(v: &mut serde_json::Value) {
        match v {
            serde_json::Value::Object(o) => {
                o.retain(|k, _| {
                    !["seconds", "wall", "per_s", "_ms", "time"]
                        .iter()
                        .any(|t| k.contains(t))
                });
                if let Some(serde_json::Value::String(f)) = o.get_mut("finding") {
                    // "Throughput (tokens/s, median [min–max] over the runs trained): `a` x [y–z], …].
                    if let Some(a) = f.find("Throughput (tokens/s") {
                        let b = f[a..].find("].").map_or(f.len(), |i| a + i + 2);
                        f.replace_range(a..b, "");
                    }
                }
                o.values_mut().for_each(strip);
            }
            serde_json::Value::Array(a) => a.iter_mut().for_each(strip),
            _ => {}
        }
    }
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    strip(&mut v);
    v
}

/// `remask compare` killed at 20 random moments (inside data preparation, training, checkpoint
/// writes, evaluation and the report), continued with `remask compare --resume OUT` after each:
/// finished runs are kept, a partial one continues from its checkpoint, and the final report and
/// every run's weights equal an uninterrupted comparison's (timings aside).
#[test]
fn compare_survives_20_random_kills_with_resume() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("tiny.toml");
    let pairs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/minimal-pairs");
    std::fs::write(
        &cfg,
        TINY_COMPARE.replace("\"PAIRS\"", &format!("{:?}", pairs.to_str().unwrap())),
    )
    .unwrap();
    let reference = tmp.path().join("reference");
    let t = Instant::now();
    let out = Command::new(BIN)
        .args(["compare", "--log-lines", "--config"])
        .arg(&cfg)
        .arg("--out")
        .arg(&reference)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut span_ms = (t.elapsed().as_millis() as u64).clamp(300, 20_000);

    let dir = tmp.path().join("faulty");
    let mut moments = Moments(0x5eed_0003);
    let (mut kills, mut attempts, mut kept_runs) = (0, 0, 0);
    let finished = |d: &Path| {
        entries(&d.join("runs"))
            .iter()
            .filter(|r| d.join("runs").join(r).join("result.json").exists())
            .count()
    };
    while kills < KILLS {
        attempts += 1;
        assert!(
            attempts < 200,
            "only {kills} kills landed in {attempts} attempts"
        );
        let mut cmd = Command::new(BIN);
        cmd.args(["compare", "--log-lines"]);
        if dir.join("compare.json").exists() {
            cmd.arg("--resume").arg(&dir);
        } else {
            cmd.arg("--config").arg(&cfg).arg("--out").arg(&dir);
        }
        let before = finished(&dir);
        let fresh = !dir.join("compare.json").exists();
        let started = Instant::now();
        if run_and_kill(&mut cmd, moments.next_ms(20, span_ms)) {
            kills += 1;
            kept_runs += before.min(finished(&dir));
        } else if dir.join("report.json").exists() {
            // It finished before the kill: start over to place the remaining kills. A whole run
            // that finished sooner than the reference (which a busy machine can slow) is the
            // better measure of the span to place kills in.
            if fresh {
                span_ms = span_ms.min((started.elapsed().as_millis() as u64).max(300));
            }
            std::fs::remove_dir_all(&dir).unwrap();
        }
    }
    let out = Command::new(BIN)
        .args(["compare", "--log-lines", "--resume"])
        .arg(&dir)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    eprintln!("compare: survived {kills} kills ({kept_runs} finished runs kept across them), {attempts} attempts, span {span_ms} ms");
    let (want, got) = (
        report_without_timing(&reference),
        report_without_timing(&dir),
    );
    if want != got {
        let tmp = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
        std::fs::write(
            tmp.join("compare-want.json"),
            serde_json::to_string_pretty(&want).unwrap(),
        )
        .unwrap();
        std::fs::write(
            tmp.join("compare-got.json"),
            serde_json::to_string_pretty(&got).unwrap(),
        )
        .unwrap();
        panic!(
            "the resumed comparison's report differs; both are in {}",
            tmp.display()
        );
    }
    for run in entries(&reference.join("runs")) {
        let (a, b) = (
            reference.join("runs").join(&run),
            dir.join("runs").join(&run),
        );
        assert_same_files(
            &a.join("checkpoints/step-000024"),
            &b.join("checkpoints/step-000024"),
            &["model.safetensors", "optimizer.safetensors"],
        );
    }
}
