//! `--precision` end to end with the real binary: `remask train --precision bf16` trains (finite
//! losses close to the f32 run's, the checkpoint's config says bf16, an f32 checkpoint's config.json
//! does not mention precision at all), `remask bench train --precision bf16` prints its JSON line, and
//! bad values or a CPU without bf16 get a one-line error naming the setting.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_remask");

fn write_config(dir: &Path) -> PathBuf {
    let text = format!(
        r#"
[model]
arch = "encoder"
vocab_size = 32
d_model = 32
n_heads = 2
n_layers = 1
d_ff = 64
dropout = 0.0

[optimizer]
lr = 0.01
batch_size = 8

[budget]
steps = 6

[eval]
every_steps = 6
batches = 1
batch_size = 8

[checkpoint]
every_steps = 6

[run]
seed = 5
log_every = 1
tensorboard = false
output_dir = "{}"
"#,
        dir.join("run").display()
    );
    let path = dir.join("run.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn run(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().expect("run remask")
}

fn bf16_available() -> bool {
    remask_kernels::cpu::bf16_kernel().is_some()
}

/// The training losses of a run directory's metrics.jsonl, in order.
fn losses(run_dir: &Path) -> Vec<f64> {
    let text = std::fs::read_to_string(run_dir.join("metrics.jsonl")).expect("metrics.jsonl");
    text.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["kind"] == "train")
        .map(|v| v["loss"].as_f64().expect("loss"))
        .collect()
}

#[test]
fn train_in_bf16_tracks_fp32_and_records_the_precision() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = write_config(tmp.path());
    let cfg = cfg.to_str().unwrap();
    let fp32_dir = tmp.path().join("fp32");
    let out = run(&[
        "train",
        "--config",
        cfg,
        "--synthetic",
        "--log-lines",
        "--set",
        &format!("run.output_dir=\"{}\"", fp32_dir.display()),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ckpt = fp32_dir.join("checkpoints/step-000006/config.json");
    let text = std::fs::read_to_string(&ckpt).unwrap();
    assert!(
        !text.contains("precision"),
        "an f32 checkpoint is written as before the setting existed: {text}"
    );

    let bf16_dir = tmp.path().join("bf16");
    let out = run(&[
        "train",
        "--config",
        cfg,
        "--synthetic",
        "--log-lines",
        "--precision",
        "bf16",
        "--set",
        &format!("run.output_dir=\"{}\"", bf16_dir.display()),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !bf16_available() {
        assert!(!out.status.success());
        assert!(
            stderr.contains("model.precision") && stderr.contains("AVX-512 BF16"),
            "{stderr}"
        );
        return;
    }
    assert!(out.status.success(), "{stderr}");
    let text =
        std::fs::read_to_string(bf16_dir.join("checkpoints/step-000006/config.json")).unwrap();
    assert!(text.contains("\"precision\": \"bf16\""), "{text}");
    let (a, b) = (losses(&fp32_dir), losses(&bf16_dir));
    assert_eq!(a.len(), 6);
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(&b) {
        assert!(
            y.is_finite() && (x - y).abs() < 0.02 * x.abs(),
            "bf16 loss {y} far from f32 {x}"
        );
    }
    assert_ne!(a, b, "bf16 must round somewhere");
}

#[test]
fn bench_train_prints_the_precision() {
    let out = run(&[
        "bench",
        "train",
        "--precision",
        "bf16",
        "--steps",
        "1",
        "--warmup",
        "0",
        "--layers",
        "1",
        "--vocab",
        "64",
        "--d-model",
        "32",
        "--ffn",
        "64",
        "--seq",
        "16",
        "--batch",
        "2",
        "--threads",
        "1",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !bf16_available() {
        assert!(
            !out.status.success() && stderr.contains("model.precision"),
            "{stderr}"
        );
        return;
    }
    assert!(out.status.success(), "{stderr}");
    let line: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON line");
    assert_eq!(line["precision"], "bf16");
    assert!(line["bf16_kernel"].is_string());
    assert!(
        line["tokens_per_s"].as_f64().unwrap() > 0.0
            && line["final_loss"].as_f64().unwrap().is_finite()
    );
}

#[test]
fn a_bad_precision_is_refused_with_its_name() {
    let out = run(&["bench", "train", "--precision", "fp16", "--steps", "1"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--precision") && stderr.contains("fp32 or bf16"),
        "{stderr}"
    );
    let tmp = tempfile::tempdir().unwrap();
    let cfg = write_config(tmp.path());
    let out = run(&[
        "train",
        "--config",
        cfg.to_str().unwrap(),
        "--set",
        "model.precision=\"half\"",
    ]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("model.precision"), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
}
