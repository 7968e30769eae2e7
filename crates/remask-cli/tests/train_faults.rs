//! Fault tests of `remask train` with the real binary (on the built-in test model, `--toy`):
//! kill -9 at several moments (between steps, in the middle of writing a checkpoint's weights, after
//! the rename but before the DONE marker), Ctrl-C, and bad input. Every time, resuming continues from
//! the last complete checkpoint, nothing complete on disk is corrupt, and the resumed loss sequence
//! equals the uninterrupted run's.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_remask");

fn write_config(dir: &Path, steps: u64) -> PathBuf {
    let text = format!(
        r#"
[model]
arch = "decoder"
attention = {{ kind = "causal" }}
vocab_size = 16
d_model = 16
n_heads = 1
n_layers = 1
d_ff = 16
dropout = 0.1

[optimizer]
lr = 0.05
batch_size = 8
micro_batch_size = 4

[schedule]
warmup_steps = 4
decay = "cosine"

[budget]
steps = {steps}

[eval]
every_steps = 10
batches = 2
batch_size = 8

[checkpoint]
every_steps = 5
keep_last = 2

[run]
seed = 11
log_every = 1
output_dir = "{}"
"#,
        dir.join("run").display()
    );
    let path = dir.join("run.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// `remask train --toy` with `args` and the hidden test flags `faults` (flag, value).
fn train(args: &[&str], faults: &[(&str, &str)]) -> Command {
    let mut c = Command::new(BIN);
    c.arg("train").arg("--toy").arg("--log-lines").args(args);
    for (flag, v) in faults {
        c.arg(flag).arg(v);
    }
    c.stdout(Stdio::null()).stderr(Stdio::piped());
    c
}

fn finish(c: &mut Command) -> Output {
    let out = c.output().unwrap();
    assert!(
        out.status.success(),
        "remask failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// (step, loss bits) of every train record.
fn losses(run: &Path) -> Vec<(u64, u64)> {
    let text = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    text.lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["kind"] == "train")
        .map(|v| {
            (
                v["step"].as_u64().unwrap(),
                v["loss"].as_f64().unwrap().to_bits(),
            )
        })
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

fn kill9(child: &mut Child) {
    child.kill().unwrap(); // SIGKILL on Unix
    child.wait().unwrap();
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

fn complete_steps(run: &Path) -> Vec<String> {
    entries(&run.join("checkpoints"))
        .into_iter()
        .filter(|n| run.join("checkpoints").join(n).join("DONE").exists())
        .collect()
}

/// Every complete checkpoint loads (sizes and CRCs verified) through `remask eval`.
fn assert_checkpoints_intact(run: &Path) {
    let complete = complete_steps(run);
    assert!(
        !complete.is_empty(),
        "no complete checkpoint in {}",
        run.display()
    );
    for name in complete {
        let dir = run.join("checkpoints").join(&name);
        let out = Command::new(BIN)
            .args(["eval", "--toy", "--json", "--checkpoint"])
            .arg(&dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{name} does not load: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert!(v["loss"].as_f64().unwrap().is_finite());
    }
}

fn latest_step(run: &Path) -> u64 {
    complete_steps(run)
        .last()
        .unwrap()
        .trim_start_matches("step-")
        .parse()
        .unwrap()
}

#[test]
fn kill_9_at_several_moments_then_resume_exactly() {
    let tmp = tempfile::tempdir().unwrap();
    let reference_dir = tmp.path().join("reference");
    std::fs::create_dir_all(&reference_dir).unwrap();
    let cfg = write_config(&reference_dir, 30);
    finish(&mut train(&["--config", cfg.to_str().unwrap()], &[]));
    let reference = losses(&reference_dir.join("run"));
    assert_eq!(reference.len(), 30);

    let faulty_dir = tmp.path().join("faulty");
    std::fs::create_dir_all(&faulty_dir).unwrap();
    let cfg = write_config(&faulty_dir, 30);
    let run = faulty_dir.join("run");
    let ck = run.join("checkpoints");
    let slow = [
        ("--toy-step-delay-ms", "15"),
        ("--fault-sleep-in-write-ms", "400"),
    ];

    // 1. Between steps, after the checkpoint at step 5 is complete.
    let mut child = train(&["--config", cfg.to_str().unwrap()], &slow)
        .spawn()
        .unwrap();
    wait_for(&mut child, "step 7", || losses_len(&run) >= 7);
    kill9(&mut child);
    assert_eq!(latest_step(&run), 5);
    assert_checkpoints_intact(&run);

    // 2. In the middle of writing model.safetensors of the next checkpoint.
    let resume = ["--resume", run.to_str().unwrap()];
    let mut child = train(&resume, &slow).spawn().unwrap();
    let half_written = || {
        entries(&ck).iter().any(|n| {
            n.starts_with(".tmp-step-")
                && std::fs::metadata(ck.join(n).join("model.safetensors"))
                    .is_ok_and(|m| m.len() > 0)
        })
    };
    // The first half of the weights is on disk; the writer now pauses (--fault-sleep-in-write-ms).
    wait_for(&mut child, "a half-written checkpoint", half_written);
    kill9(&mut child);
    let tmp_dirs: Vec<String> = entries(&ck)
        .into_iter()
        .filter(|n| n.starts_with(".tmp-"))
        .collect();
    assert!(
        !tmp_dirs.is_empty(),
        "the kill should have left a temporary directory"
    );
    let weights = ck.join(&tmp_dirs[0]).join("model.safetensors");
    assert!(
        safetensors::SafeTensors::deserialize(&std::fs::read(&weights).unwrap()).is_err(),
        "weights are half-written"
    );
    assert_eq!(latest_step(&run), 5);
    assert_checkpoints_intact(&run);

    // 3. After the rename, before the DONE marker.
    let mut child = train(&resume, &slow).spawn().unwrap();
    let renamed_without_done = || {
        entries(&ck).iter().any(|n| {
            n.starts_with("step-")
                && !ck.join(n).join("DONE").exists()
                && ck.join(n).join("trainer_state.json").exists()
        })
    };
    wait_for(
        &mut child,
        "a renamed checkpoint without DONE",
        renamed_without_done,
    );
    kill9(&mut child);
    assert!(renamed_without_done());
    let last = latest_step(&run);
    assert_checkpoints_intact(&run);

    // 4. A few kills at arbitrary moments.
    for delay_ms in [150u64, 420, 700] {
        let mut child = train(&resume, &slow).spawn().unwrap();
        std::thread::sleep(Duration::from_millis(delay_ms));
        if child.try_wait().unwrap().is_none() {
            kill9(&mut child);
        }
        assert!(latest_step(&run) >= last);
        assert_checkpoints_intact(&run);
    }

    // Finally run to the end: the loss sequence equals the uninterrupted run's, bit for bit.
    if latest_step(&run) < 30 {
        finish(&mut train(&resume, &[]));
    }
    assert_eq!(losses(&run), reference);
    let a =
        std::fs::read(reference_dir.join("run/checkpoints/step-000030/model.safetensors")).unwrap();
    let b = std::fs::read(run.join("checkpoints/step-000030/model.safetensors")).unwrap();
    assert_eq!(a, b, "final weights differ");
    assert!(
        entries(&ck).iter().all(|n| !n.starts_with('.')),
        "leftover temporary directories: {:?}",
        entries(&ck)
    );
    assert_eq!(
        complete_steps(&run),
        vec!["step-000025", "step-000030"],
        "keep_last = 2"
    );
}

fn losses_len(run: &Path) -> usize {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .map(|t| t.lines().filter(|l| l.contains("\"train\"")).count())
        .unwrap_or(0)
}

/// SIGINT (Ctrl-C) and SIGTERM (`timeout`, Docker, Kubernetes, Slurm) alike: the run finishes its
/// step, writes a checkpoint whose metrics end there, says how to continue, and exits with 128 + the
/// signal's number.
#[test]
fn sigint_and_sigterm_checkpoint_and_exit_with_128_plus_signo() {
    for (signal, code) in [("-INT", 130), ("-TERM", 143)] {
        let tmp = tempfile::tempdir().unwrap();
        let cfg = write_config(tmp.path(), 400);
        let run = tmp.path().join("run");
        let mut child = train(
            &["--config", cfg.to_str().unwrap()],
            &[("--toy-step-delay-ms", "10")],
        )
        .spawn()
        .unwrap();
        wait_for(&mut child, "step 3", || losses_len(&run) >= 3);
        let st = Command::new("kill")
            .args([signal, &child.id().to_string()])
            .status()
            .unwrap();
        assert!(st.success());
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(code),
            "{signal}: exit status {:?}: {stderr}",
            out.status
        );
        assert!(
            stderr.contains("--resume"),
            "tells how to continue: {stderr}"
        );
        let step = latest_step(&run);
        assert!(
            (3..400).contains(&step),
            "interrupted checkpoint at step {step}"
        );
        let state: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(
                run.join(format!("checkpoints/step-{step:06}/trainer_state.json")),
            )
            .unwrap(),
        )
        .unwrap();
        assert_eq!(state["stop_reason"], "interrupted");
        assert_eq!(
            losses_len(&run) as u64,
            step,
            "metrics end at the checkpoint"
        );
    }
}

/// A second signal while the first is being honoured exits at once, with the same code and without
/// the interrupted checkpoint.
#[test]
fn a_second_signal_exits_at_once() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = write_config(tmp.path(), 400);
    let run = tmp.path().join("run");
    // Slow steps: the first signal is seen only at the end of the current one.
    let mut child = train(
        &["--config", cfg.to_str().unwrap()],
        &[("--toy-step-delay-ms", "400")],
    )
    .spawn()
    .unwrap();
    wait_for(&mut child, "step 1", || losses_len(&run) >= 1);
    let pid = child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    std::thread::sleep(Duration::from_millis(50));
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let start = Instant::now();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(143), "{stderr}");
    assert!(stderr.contains("second SIGTERM"), "{stderr}");
    assert!(start.elapsed() < Duration::from_secs(5));
    assert!(
        complete_steps(&run).is_empty(),
        "no interrupted checkpoint: {:?}",
        complete_steps(&run)
    );
}

#[test]
fn bad_input_fails_with_a_clear_error_and_leaves_checkpoints_intact() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = write_config(tmp.path(), 5);
    let run = tmp.path().join("run");
    let fail = |c: &mut Command| -> String {
        let out = c.output().unwrap();
        assert!(!out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        let e = stderr.lines().last().unwrap_or_default().to_string();
        assert!(
            e.starts_with("error: "),
            "the last line is the error: {stderr}"
        );
        e
    };
    let e = fail(&mut train(
        &[
            "--config",
            cfg.to_str().unwrap(),
            "--set",
            "optimizer.lrr=1",
        ],
        &[],
    ));
    assert!(
        e.contains("optimizer.lrr") && e.contains("unknown field"),
        "{e}"
    );
    let e = fail(&mut train(
        &[
            "--config",
            cfg.to_str().unwrap(),
            "--set",
            "schedule.decay=exponential",
        ],
        &[],
    ));
    assert!(e.contains("schedule.decay") && e.contains("cosine"), "{e}");
    let e = fail(&mut train(&["--resume", tmp.path().to_str().unwrap()], &[]));
    assert!(e.contains("no complete checkpoint"), "{e}");

    // Stop a run after its first checkpoint (step 5) with kill -9.
    let cfg = write_config(tmp.path(), 30);
    let mut child = train(
        &["--config", cfg.to_str().unwrap()],
        &[("--toy-step-delay-ms", "15")],
    )
    .spawn()
    .unwrap();
    wait_for(&mut child, "step 7", || losses_len(&run) >= 7);
    kill9(&mut child);
    let before = complete_steps(&run);
    assert_eq!(before, vec!["step-000005"]);
    let e = fail(&mut train(&["--config", cfg.to_str().unwrap()], &[]));
    assert!(
        e.contains("--resume"),
        "a second fresh run in the same directory is refused: {e}"
    );
    // A full disk while writing the next checkpoint: the run fails, the earlier one stays intact.
    let e = fail(&mut train(
        &["--resume", run.to_str().unwrap()],
        &[("--fault-disk-full-after-bytes", "100")],
    ));
    assert!(e.contains("No space left"), "{e}");
    assert_eq!(complete_steps(&run), before);
    assert!(
        entries(&run.join("checkpoints"))
            .iter()
            .all(|n| !n.starts_with('.')),
        "no temporary leftovers"
    );
    assert_checkpoints_intact(&run);
    // A corrupt complete checkpoint is reported, not loaded.
    let weights = run
        .join("checkpoints")
        .join(before.last().unwrap())
        .join("model.safetensors");
    let mut bytes = std::fs::read(&weights).unwrap();
    let n = bytes.len();
    bytes[n - 3] ^= 0x10;
    std::fs::write(&weights, bytes).unwrap();
    let e = fail(&mut train(&["--resume", run.to_str().unwrap()], &[]));
    assert!(e.contains("corrupt"), "{e}");
}

/// The same guarantee for a real model (a tiny encoder from `model::new_model`, `--synthetic` rows):
/// kill -9 in the middle of a checkpoint write, resume, and the losses and final weights equal an
/// uninterrupted run's.
#[test]
fn real_encoder_killed_mid_checkpoint_resumes_exactly() {
    let tmp = tempfile::tempdir().unwrap();
    let write = |name: &str| -> (PathBuf, PathBuf) {
        let dir = tmp.path().join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let text = format!(
            "[model]\narch = \"encoder\"\nvocab_size = 40\nd_model = 16\nn_heads = 2\nn_layers = 2\nd_ff = 32\n\
             max_positions = 32\ndropout = 0.1\n[optimizer]\nbatch_size = 8\nmicro_batch_size = 4\nlr = 0.005\n\
             [budget]\nsteps = 12\n[eval]\nevery_steps = 6\nbatches = 1\nbatch_size = 8\n[checkpoint]\nevery_steps = 4\n\
             [run]\nseed = 2\nlog_every = 1\nthreads = 2\noutput_dir = \"{}\"\n",
            dir.join("run").display()
        );
        std::fs::write(dir.join("run.toml"), text).unwrap();
        (dir.join("run.toml"), dir.join("run"))
    };
    let synthetic = |args: &[&str], faults: &[(&str, &str)]| {
        let mut c = Command::new(BIN);
        c.args(["train", "--synthetic", "--log-lines"])
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (flag, v) in faults {
            c.arg(flag).arg(v);
        }
        c
    };
    let (cfg, reference) = write("reference");
    finish(&mut synthetic(&["--config", cfg.to_str().unwrap()], &[]));
    let (cfg, run) = write("faulty");
    let ck = run.join("checkpoints");
    let mut child = synthetic(
        &["--config", cfg.to_str().unwrap()],
        &[("--fault-sleep-in-write-ms", "600")],
    )
    .spawn()
    .unwrap();
    wait_for(&mut child, "the step-8 checkpoint write", || {
        ck.join(".tmp-step-000008").exists()
    });
    std::thread::sleep(Duration::from_millis(100));
    kill9(&mut child);
    assert_eq!(complete_steps(&run), vec!["step-000004"]);
    finish(&mut synthetic(&["--resume", run.to_str().unwrap()], &[]));
    assert_eq!(losses(&run), losses(&reference));
    let a = std::fs::read(reference.join("checkpoints/step-000012/model.safetensors")).unwrap();
    let b = std::fs::read(run.join("checkpoints/step-000012/model.safetensors")).unwrap();
    assert_eq!(a, b, "final weights differ");
}

/// The whole real chain: `remask train` prepares a small corpus itself, trains a real encoder with
/// adaptive masking (whose statistics are part of the checkpoint), is killed with -9 while writing a
/// checkpoint, resumes, and matches an uninterrupted run bit for bit; `remask eval` then reproduces
/// the trainer's last evaluation from the checkpoint.
#[test]
fn real_data_adaptive_masking_resumes_exactly_and_eval_matches() {
    let tmp = tempfile::tempdir().unwrap();
    let words = [
        "the", "light", "shone", "in", "darkness", "and", "water", "was", "over", "land", "river",
        "morning", "evening", "day",
    ];
    let corpus: String = (0..400usize)
        .map(|i| {
            (0..8 + i % 7)
                .map(|j| words[(i * 7 + j * j * 3 + j) % words.len()])
                .collect::<Vec<_>>()
                .join(" ")
                + ".\n"
        })
        .collect();
    let corpus_path = tmp.path().join("corpus.txt");
    std::fs::write(&corpus_path, corpus).unwrap();
    let write = |name: &str| -> (PathBuf, PathBuf) {
        let dir = tmp.path().join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let text = format!(
            "[model]\narch = \"encoder\"\nvocab_size = 128\nd_model = 16\nn_heads = 2\nn_layers = 1\nd_ff = 32\n\
             max_positions = 32\ndropout = 0.1\n[data]\ninputs = [\"{}\"]\nseq_len = 32\nvalidation_share = 0.1\n\
             tokenizer = {{ vocab_size = 128 }}\n[masking]\nwhen = {{ mode = \"adaptive\" }}\n\
             [optimizer]\nbatch_size = 8\nmicro_batch_size = 4\nlr = 0.01\n[budget]\nsteps = 12\n\
             [eval]\nevery_steps = 6\nbatches = 2\nbatch_size = 8\n[checkpoint]\nevery_steps = 4\n\
             [run]\nseed = 9\nlog_every = 1\noutput_dir = \"{}\"\n",
            corpus_path.display(),
            dir.join("run").display()
        );
        std::fs::write(dir.join("run.toml"), text).unwrap();
        (dir.join("run.toml"), dir.join("run"))
    };
    let real = |args: &[&str], faults: &[(&str, &str)]| {
        let mut c = Command::new(BIN);
        c.args(["train", "--log-lines"])
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (flag, v) in faults {
            c.arg(flag).arg(v);
        }
        c
    };
    let (cfg, reference) = write("reference");
    finish(&mut real(&["--config", cfg.to_str().unwrap()], &[]));
    let (cfg, run) = write("faulty");
    let ck = run.join("checkpoints");
    let mut child = real(
        &["--config", cfg.to_str().unwrap()],
        &[("--fault-sleep-in-write-ms", "600")],
    )
    .spawn()
    .unwrap();
    wait_for(&mut child, "the step-8 checkpoint write", || {
        ck.join(".tmp-step-000008").exists()
    });
    kill9(&mut child);
    assert_eq!(complete_steps(&run), vec!["step-000004"]);
    let state = std::fs::read_to_string(ck.join("step-000004/trainer_state.json")).unwrap();
    assert!(
        state.contains("adaptive"),
        "the adaptive masking statistics are checkpointed"
    );
    finish(&mut real(&["--resume", run.to_str().unwrap()], &[]));
    assert_eq!(losses(&run), losses(&reference));

    let out = Command::new(BIN)
        .args(["eval", "--json", "--checkpoint"])
        .arg(&run)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let last_eval = std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["kind"] == "eval")
        .last()
        .unwrap();
    assert_eq!(v["step"], 12);
    assert_eq!(
        v["loss"], last_eval["loss"],
        "remask eval reproduces the trainer's evaluation"
    );
    assert_eq!(v["accuracy"], last_eval["accuracy"]);
}
