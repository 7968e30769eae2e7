//! Mutation fuzzing through the binary, as a user would meet it: mutated run configs (`train`),
//! corpora (`prepare`) and safetensors files (`forward`). Every run must end in time with exit 0 or
//! with exit 1 and a one-line `error:` as its last line: never a panic (exit 101, "panicked" on
//! stderr), never a signal. The library targets (`crates/remask/tests/fuzz.rs`) go deeper and
//! faster; this checks the CLI's own paths around them. `REMASK_FUZZ_CLI_RUNS` sets the runs per kind.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use remask::fuzz::{seeds, Mutator};

const BIN: &str = env!("CARGO_BIN_EXE_remask");

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn runs_per_kind() -> usize {
    std::env::var("REMASK_FUZZ_CLI_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(25)
}

/// Runs the binary with a time limit and checks how it ended.
fn check(args: &[&str], what: &str) -> bool {
    let mut child = Command::new(BIN)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if start.elapsed() > Duration::from_secs(120) {
            child.kill().unwrap();
            panic!("{what}: `remask {}` hangs (> 120 s)", args.join(" "));
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert!(!stderr.contains("panicked"), "{what}: a panic: {stderr}");
    match status.code() {
        Some(0) => true,
        Some(1) => {
            let last = stderr.lines().last().unwrap_or_default();
            assert!(
                last.starts_with("error: ") && last.len() > 8,
                "{what}: exit 1 without an error line: {stderr}"
            );
            false
        }
        other => panic!("{what}: exit status {other:?} ({status}): {stderr}"),
    }
}

fn mutants(kind: &str, salt: u64) -> Vec<Vec<u8>> {
    let corpus = seeds(&repo_root(), kind);
    (0..runs_per_kind() as u64)
        .map(|i| {
            let mut m = Mutator::new(salt ^ i.wrapping_mul(0x9e37_79b9));
            let base = corpus[m.below(corpus.len())].clone();
            m.mutate(&base, &corpus)
        })
        .collect()
}

#[test]
fn mutated_run_configs_through_train() {
    let tmp = tempfile::tempdir().unwrap();
    let corpus = tmp.path().join("corpus.txt");
    std::fs::write(
        &corpus,
        std::fs::read(repo_root().join("fuzz/corpus/text/mixed.txt"))
            .unwrap()
            .repeat(30),
    )
    .unwrap();
    let mut ok = 0;
    for (i, m) in mutants("run_config", 1).into_iter().enumerate() {
        let path = tmp.path().join(format!("c{i}.toml"));
        std::fs::write(&path, m).unwrap();
        let out = tmp.path().join(format!("run{i}"));
        // Small and short whatever the mutation says, on a small corpus (data.inputs may be mutated away).
        let sets = [
            format!("run.output_dir={:?}", out.display().to_string()),
            "budget.steps=1".into(),
            "model.d_model=16".into(),
            "model.n_heads=2".into(),
            "model.d_ff=16".into(),
            "model.n_layers=1".into(),
            format!("data.inputs=[{:?}]", corpus.display().to_string()),
            "data.tokenizer.vocab_size=200".into(),
        ];
        let mut args = vec!["train", "--log-lines", "--config", path.to_str().unwrap()];
        for s in &sets {
            args.extend(["--set", s.as_str()]);
        }
        ok += check(&args, &format!("run config {i}")) as usize;
    }
    eprintln!(
        "train: {ok} of {} mutated configs trained, the others were refused with an error line",
        runs_per_kind()
    );
}

#[test]
fn mutated_corpora_through_prepare() {
    let tmp = tempfile::tempdir().unwrap();
    let mut ok = 0;
    for (kind, ext) in [
        ("text", "txt"),
        ("jsonl", "jsonl"),
        ("tsv", "tsv"),
        ("parquet", "parquet"),
    ] {
        for (i, m) in mutants(kind, 2).into_iter().enumerate() {
            let input = tmp.path().join(format!("{kind}{i}.{ext}"));
            std::fs::write(&input, m).unwrap();
            let out = tmp.path().join(format!("p-{kind}{i}"));
            let args = [
                "prepare",
                "--input",
                input.to_str().unwrap(),
                "--out",
                out.to_str().unwrap(),
                "--vocab-size",
                "300",
                "--seq-len",
                "16",
            ];
            ok += check(&args, &format!("{kind} corpus {i}")) as usize;
        }
    }
    eprintln!(
        "prepare: {ok} of {} mutated corpora prepared",
        4 * runs_per_kind()
    );
}

#[test]
fn mutated_safetensors_through_forward() {
    let tmp = tempfile::tempdir().unwrap();
    let fixture = repo_root().join("fixtures/bert");
    let io = std::fs::read(fixture.join("io.safetensors")).unwrap();
    let weights = std::fs::read(fixture.join("model.safetensors")).unwrap();
    let mut ok = 0;
    for i in 0..runs_per_kind() as u64 {
        let mut m = Mutator::new(3 ^ i);
        // Inputs file, then the model's weights.
        let inputs = tmp.path().join(format!("in{i}.safetensors"));
        std::fs::write(&inputs, m.mutate(&io, &[])).unwrap();
        let out = tmp.path().join(format!("out{i}.safetensors"));
        let args = [
            "forward",
            "--model",
            fixture.to_str().unwrap(),
            "--inputs",
            inputs.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ];
        ok += check(&args, &format!("inputs {i}")) as usize;
        let model = tmp.path().join(format!("m{i}"));
        std::fs::create_dir_all(&model).unwrap();
        std::fs::copy(fixture.join("config.json"), model.join("config.json")).unwrap();
        std::fs::write(model.join("model.safetensors"), m.mutate(&weights, &[])).unwrap();
        let good_inputs = fixture.join("io.safetensors");
        let args = [
            "forward",
            "--model",
            model.to_str().unwrap(),
            "--inputs",
            good_inputs.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ];
        ok += check(&args, &format!("weights {i}")) as usize;
    }
    eprintln!(
        "forward: {ok} of {} runs on mutated safetensors succeeded",
        2 * runs_per_kind()
    );
}
