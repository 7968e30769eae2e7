//! Run directories with the real binary: one process per directory (a second is refused at once,
//! naming the holder, and the first loses nothing), a lock left by a killed process never blocks,
//! resume falls back past a newest checkpoint that fails verification, and the model-directory
//! flags (`--model`, alias `--checkpoint`; text positional or `--text`) mean the same everywhere.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_remask");

fn write_config(dir: &Path, steps: u64, every: u64, keep: usize) -> PathBuf {
    let text = format!(
        "[model]\narch = \"decoder\"\nattention = {{ kind = \"causal\" }}\nvocab_size = 16\nd_model = 16\nn_heads = 1\n\
         n_layers = 1\nd_ff = 16\ndropout = 0.1\n[optimizer]\nlr = 0.05\nbatch_size = 8\nmicro_batch_size = 4\n\
         [budget]\nsteps = {steps}\n[eval]\nevery_steps = 10\nbatches = 1\nbatch_size = 8\n\
         [checkpoint]\nevery_steps = {every}\nkeep_last = {keep}\n[run]\nseed = 3\nlog_every = 1\noutput_dir = \"{}\"\n",
        dir.join("run").display()
    );
    let path = dir.join("run.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn toy(args: &[&str]) -> Command {
    let mut c = Command::new(BIN);
    c.args(["train", "--toy", "--log-lines"])
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    c
}

fn train_records(run: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["kind"] == "train")
        .collect()
}

fn wait_for(child: &mut Child, what: &str, cond: impl Fn() -> bool) {
    let start = Instant::now();
    while !cond() {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("the trainer exited ({status}) before {what}");
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The last stderr line of a failed run, which must be its one `error:` line.
fn error_line(out: &std::process::Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr);
    let last = stderr.lines().last().unwrap_or_default().to_string();
    assert!(
        last.starts_with("error: "),
        "the last line is the error: {stderr}"
    );
    last
}

/// The hidden check of the issue: a second `train` (resume or fresh) on a running run's directory
/// exits 1 at once, naming the holder (pid, host, start time); the first finishes with every record.
#[test]
fn a_second_process_is_refused_at_once_and_the_first_loses_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = write_config(tmp.path(), 40, 10, 2);
    let run = tmp.path().join("run");
    let mut first = toy(&[
        "--config",
        cfg.to_str().unwrap(),
        "--toy-step-delay-ms",
        "10",
    ])
    .spawn()
    .unwrap();
    wait_for(&mut first, "step 3", || train_records(&run).len() >= 3);
    for args in [
        vec!["--resume", run.to_str().unwrap()],
        vec!["--config", cfg.to_str().unwrap()],
    ] {
        let start = Instant::now();
        let out = toy(&args).output().unwrap();
        assert_eq!(
            out.status.code(),
            Some(1),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(start.elapsed() < Duration::from_secs(10), "refused at once");
        let e = error_line(&out);
        assert!(e.contains("in use by another remask process"), "{e}");
        assert!(
            e.contains(&format!("pid {}", first.id()))
                && e.contains("on host ")
                && e.contains("started 20"),
            "{e}"
        );
    }
    let out = first.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let steps: Vec<u64> = train_records(&run)
        .iter()
        .map(|r| r["step"].as_u64().unwrap())
        .collect();
    assert_eq!(
        steps,
        (1..=40).collect::<Vec<_>>(),
        "metrics.jsonl complete"
    );
}

/// A lock file left by a process killed with -9 does not block the next one.
#[test]
fn a_killed_holder_never_blocks() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = write_config(tmp.path(), 40, 5, 2);
    let run = tmp.path().join("run");
    let mut first = toy(&[
        "--config",
        cfg.to_str().unwrap(),
        "--toy-step-delay-ms",
        "10",
    ])
    .spawn()
    .unwrap();
    wait_for(&mut first, "step 7", || train_records(&run).len() >= 7);
    first.kill().unwrap();
    first.wait().unwrap();
    let lock = std::fs::read_to_string(run.join(".lock")).unwrap();
    assert!(
        lock.contains(&format!("\"pid\":{}", first.id())),
        "the dead holder's file stays: {lock}"
    );
    let out = toy(&["--resume", run.to_str().unwrap()]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(train_records(&run).len(), 40);
}

/// The second check: the newest checkpoint has a flipped byte; resume warns naming it and why,
/// continues from the newest one that verifies, and ends byte-identical to an uninterrupted run.
#[test]
fn resume_falls_back_past_a_corrupt_newest_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let reference = tmp.path().join("reference");
    std::fs::create_dir_all(&reference).unwrap();
    let cfg = write_config(&reference, 30, 5, 3);
    assert!(toy(&["--config", cfg.to_str().unwrap()])
        .output()
        .unwrap()
        .status
        .success());

    let faulty = tmp.path().join("faulty");
    std::fs::create_dir_all(&faulty).unwrap();
    let cfg = write_config(&faulty, 30, 5, 3);
    let run = faulty.join("run");
    // Stop after the step-20 checkpoint (complete checkpoints 10, 15, 20), as a crash would.
    let mut child = toy(&[
        "--config",
        cfg.to_str().unwrap(),
        "--toy-step-delay-ms",
        "10",
    ])
    .spawn()
    .unwrap();
    let done = |s: &str| run.join("checkpoints").join(s).join("DONE").exists();
    wait_for(&mut child, "the step-20 checkpoint", || done("step-000020"));
    child.kill().unwrap();
    child.wait().unwrap();
    let weights = run.join("checkpoints/step-000020/model.safetensors");
    let mut bytes = std::fs::read(&weights).unwrap();
    let n = bytes.len();
    bytes[n - 5] ^= 0x40;
    std::fs::write(&weights, bytes).unwrap();

    // Readers fall back too (and say so).
    let out = Command::new(BIN)
        .args(["eval", "--toy", "--json", "--model"])
        .arg(&run)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["step"], 15);
    assert!(String::from_utf8_lossy(&out.stderr).contains("warning: skipping checkpoint"));

    let out = toy(&["--resume", run.to_str().unwrap()]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let warning = stderr
        .lines()
        .find(|l| l.starts_with("warning: skipping checkpoint"))
        .unwrap_or_else(|| panic!("{stderr}"));
    assert!(
        warning.contains("step-000020")
            && warning.contains("model.safetensors is corrupt")
            && warning.contains("CRC-32C"),
        "{warning}"
    );
    assert!(
        stderr.contains("resumed from") && stderr.contains("step-000015"),
        "{stderr}"
    );
    // The corrupt checkpoint was redone; everything equals the uninterrupted run (run_config.json
    // differs only in run.output_dir).
    for file in [
        "model.safetensors",
        "optimizer.safetensors",
        "trainer_state.json",
        "config.json",
    ] {
        let a = std::fs::read(reference.join("run/checkpoints/step-000030").join(file)).unwrap();
        let b = std::fs::read(run.join("checkpoints/step-000030").join(file)).unwrap();
        assert_eq!(a, b, "{file} differs from the uninterrupted run's");
    }
    let loss = |r: &Path| -> Vec<(u64, u64)> {
        train_records(r)
            .iter()
            .map(|v| {
                (
                    v["step"].as_u64().unwrap(),
                    v["loss"].as_f64().unwrap().to_bits(),
                )
            })
            .collect()
    };
    assert_eq!(loss(&run), loss(&reference.join("run")));

    // When no checkpoint verifies, resume refuses with every reason.
    for step in ["step-000020", "step-000025", "step-000030"] {
        std::fs::write(run.join("checkpoints").join(step).join("DONE"), "not json").unwrap();
    }
    let out = toy(&["--resume", run.to_str().unwrap()]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let e = error_line(&out);
    assert!(
        e.contains("no complete checkpoint verifies") && e.contains("unreadable DONE marker"),
        "{e}"
    );
}

/// One convention for model directories and texts: `--model` (alias `--checkpoint`), text as an
/// argument or `--text`; both spellings reach the same place.
#[test]
fn model_and_text_flags_have_one_convention() {
    let gpt2 = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/gpt2");
    let gpt2 = gpt2.to_str().unwrap();
    let bert = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/bert");
    let bert = bert.to_str().unwrap();
    let run = |args: &[&str]| Command::new(BIN).args(args).output().unwrap();
    for args in [
        vec!["generate", "--model", gpt2, "hi"],
        vec!["generate", "--checkpoint", gpt2, "--text", "hi"],
        vec!["generate", "--model", gpt2, "--prompt", "hi"],
        vec!["fill-mask", "--model", bert, "a [MASK]"],
        vec!["fill-mask", "--checkpoint", bert, "--text", "a [MASK]"],
        vec!["translate", "--model", gpt2, "--text", "hi"],
        vec![
            "forward",
            "--checkpoint",
            gpt2,
            "hi",
            "ho",
            "--out",
            "/nonexistent/out.safetensors",
        ],
        vec![
            "forward",
            "--model",
            gpt2,
            "--text",
            "hi",
            "--out",
            "/nonexistent/out.safetensors",
        ],
    ] {
        let out = run(&args);
        // The fixtures have no tokenizer.json: every spelling gets as far as looking for it.
        let e = error_line(&out);
        assert!(e.contains("no tokenizer.json"), "{args:?}: {e}");
    }
    for args in [
        vec!["generate", "--model", gpt2],
        vec!["fill-mask", "--model", bert, "a", "--text", "b"],
    ] {
        let out = run(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: a usage error");
    }
    let out = run(&["eval", "--model", bert]);
    let e = error_line(&out);
    assert!(
        e.contains("is a Hugging Face model directory")
            && e.contains("remask checkpoint or run directory"),
        "{e}"
    );
    let out = run(&["audit", "--model", "/no/such/dir"]);
    assert!(error_line(&out).contains("not a directory"));
}
