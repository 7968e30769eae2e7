//! `remask compare` end to end on a tiny configuration: the report, plots and run directories exist
//! and say what the runs did; bad input gives one-line errors; an earlier comparison is not overwritten
//! without `--force`.

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_remask");

const TINY: &str = r#"
[compare]
strategies = ["static", "dynamic"]
seeds = 2
dupe_factor = 2
threads = 1
max_documents = 300
eval_every_steps = 3
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
steps = 6
"#;

fn remask(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(BIN).args(args).output().expect("run remask");
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
}

#[test]
fn tiny_comparison_writes_report_plots_and_runs() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("tiny.toml");
    std::fs::write(&cfg, TINY).unwrap();
    let out = dir.path().join("cmp");
    let (o, c) = (out.to_str().unwrap(), cfg.to_str().unwrap());
    let (rc, stdout, stderr) = remask(&["compare", "--config", c, "--out", o, "--log-lines"]);
    assert_eq!(rc, 0, "{stdout}{stderr}");
    assert!(stdout.contains("Training efficiency:") && stdout.contains("Generalization:"), "{stdout}");

    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    let strategies = report["strategies"].as_array().unwrap();
    assert_eq!(strategies.len(), 2);
    assert_eq!(strategies[0]["strategy"], "static");
    assert_eq!(strategies[0]["seeds"], 2);
    // Static masks are stored (K = 2 copies on disk), dynamic ones are not.
    assert!(strategies[0]["mask_bytes"].as_u64().unwrap() > 0);
    assert_eq!(strategies[1]["mask_bytes"], 0);
    let runs = report["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 4);
    for r in runs {
        // Evaluations at steps 0, 3 and 6; training tokens grow; every run has its checkpoint.
        let evals = r["eval_curve"].as_array().unwrap();
        assert_eq!(evals.len(), 3, "{r}");
        assert_eq!(evals[0]["tokens"], 0);
        assert!(evals[2]["tokens"].as_u64().unwrap() > evals[1]["tokens"].as_u64().unwrap());
        assert!(r["final_val_loss"].as_f64().unwrap().is_finite());
        let run_dir = out.join(r["run_dir"].as_str().unwrap());
        assert!(run_dir.join("metrics.jsonl").is_file(), "{}", run_dir.display());
        assert!(run_dir.join("checkpoints/step-000006/DONE").is_file(), "{}", run_dir.display());
    }
    // Every run of a strategy saw the same fixed validation masks: the step-0 losses of two seeds differ
    // only through the initial weights, and the same seed under both strategies starts identically.
    assert_eq!(runs[0]["eval_curve"][0]["loss"], runs[2]["eval_curve"][0]["loss"]);
    // The audit covered MLM targets and attention of each strategy, and passed.
    let audit = report["audit"].as_array().unwrap();
    assert_eq!(audit.len(), 4);
    assert!(audit.iter().all(|a| a["passed"] == true), "{audit:?}");

    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(md.contains("## Verdicts") && md.contains("| static | 2 |") && md.contains("![val_loss.png](val_loss.png)"));
    for f in ["val_loss.png", "train_loss.png"] {
        assert_eq!(&std::fs::read(out.join(f)).unwrap()[1..4], b"PNG", "{f}");
    }
    assert!(std::fs::read_to_string(out.join("val_loss.svg")).unwrap().contains("dynamic (2 seeds)"));

    // A second run into the same directory refuses without --force.
    let (rc, stdout, stderr) = remask(&["compare", "--config", c, "--out", o]);
    assert_eq!(rc, 1);
    assert!(stdout.is_empty());
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("--force"), "{stderr}");

    // --resume keeps every finished run and renders the same report again.
    let before = std::fs::read_to_string(out.join("report.json")).unwrap();
    let (rc, _, stderr) = remask(&["compare", "--resume", o, "--log-lines"]);
    assert_eq!(rc, 0, "{stderr}");
    assert_eq!(stderr.matches("finished earlier, kept").count(), 4, "{stderr}");
    let after = std::fs::read_to_string(out.join("report.json")).unwrap();
    let runs = |t: &str| serde_json::from_str::<serde_json::Value>(t).unwrap()["runs"].clone();
    assert_eq!(runs(&before), runs(&after), "the kept runs are reported as they were");
    let (rc, _, stderr) = remask(&["compare", "--resume", dir.path().join("nothing").to_str().unwrap()]);
    assert_eq!(rc, 1);
    assert!(stderr.contains("no comparison there"), "{stderr}");
}

#[test]
fn the_default_directory_is_never_overwritten() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("tiny.toml");
    std::fs::write(&cfg, TINY.replace("seeds = 2", "seeds = 1")).unwrap();
    for _ in 0..2 {
        let out = Command::new(BIN)
            .current_dir(dir.path())
            .args(["compare", "--config", cfg.to_str().unwrap(), "--log-lines"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    assert!(dir.path().join("runs/compare/report.json").is_file());
    assert!(dir.path().join("runs/compare-2/report.json").is_file());
}

#[test]
fn bad_input_is_a_one_line_error() {
    let dir = tempfile::tempdir().unwrap();
    let o = dir.path().join("x");
    let o = o.to_str().unwrap();
    for args in [
        vec!["compare", "--strategies", "static,bogus", "--out", o],
        vec!["compare", "--seeds", "0", "--out", o],
        vec!["compare", "--config", "/no/such/compare.toml"],
    ] {
        let (rc, stdout, stderr) = remask(&args);
        assert_eq!(rc, 1, "{args:?}");
        assert!(stdout.is_empty(), "{args:?}: {stdout}");
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
        assert!(stderr.starts_with("error: "), "{stderr}");
    }
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[compare]\nseedz = 3\n").unwrap();
    let (rc, _, stderr) = remask(&["compare", "--config", bad.to_str().unwrap()]);
    assert_eq!(rc, 1);
    assert!(stderr.contains("seedz"), "{stderr}");
}

/// `--leaderboard` runs every built-in strategy (PMI included: the shared directory then holds the
/// n-gram vocabulary) against `dynamic`, and `report.json` has a ratio cell for each.
#[test]
fn leaderboard_ranks_every_builtin_strategy_against_dynamic() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("tiny.toml");
    // One seed, few steps: this checks the plumbing, not the figures (Genesis' first 240 verses hold
    // enough n-grams seen 5 times for PMI masking).
    let text = TINY.replace("seeds = 2", "seeds = 1").replace("steps = 6", "steps = 3");
    std::fs::write(&cfg, text).unwrap();
    let out = dir.path().join("lb");
    let (o, c) = (out.to_str().unwrap(), cfg.to_str().unwrap());
    let (rc, stdout, stderr) = remask(&["compare", "--config", c, "--out", o, "--log-lines", "--leaderboard"]);
    assert_eq!(rc, 0, "{stdout}{stderr}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    let rows = report["leaderboard"].as_array().unwrap();
    let names: Vec<&str> = rows.iter().map(|r| r["strategy"].as_str().unwrap()).collect();
    for s in remask::experiment::BUILTIN_STRATEGIES {
        assert!(names.contains(&s), "{s} missing from {names:?}");
    }
    for r in rows {
        assert_eq!(r["seeds"], 1, "{r}");
        assert!(r["never_reached"].is_boolean() && r.get("ratio_ci95").is_some(), "{r}");
        if !r["never_reached"].as_bool().unwrap() {
            assert!(r["ratio"].as_f64().unwrap() > 0.0, "{r}");
        }
    }
    let dynamic = rows.iter().find(|r| r["strategy"] == "dynamic").unwrap();
    assert_eq!(dynamic["never_reached"], false);
    assert!(std::fs::read_to_string(out.join("report.md")).unwrap().contains("## Leaderboard"));
    assert!(out.join("data/shared/ngrams.bin").exists());
}
