//! `remask compare` end to end on tiny configurations: the regime map, paired comparisons in
//! `report.json`, out-of-domain and minimal-pair figures, plots and run directories exist and say
//! what the runs did; the CLM leakage comparison audits a plain-causal model as leaking and a
//! document-causal one as passing; bad input gives one-line errors; an earlier comparison is not
//! overwritten without `--force`.

use std::path::{Path, PathBuf};
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_remask");

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures")
}

/// A tiny MLM comparison: static (K = 2) vs dynamic in two regimes (E = 1: static is dynamic by
/// construction; E = 4: static rereads its two copies), two seeds.
const TINY: &str = r#"
[compare]
strategies = ["static", "dynamic"]
seeds = 2
dupe_factor = 2
regimes = [1, 4]
threads = 1
max_documents = 300
eval_every_steps = 3
eval_batches = 2
eval_batch_size = 8
ood_inputs = ["OOD"]
minimal_pairs = "PAIRS"
minimal_pairs_per_uid = 0

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

/// Another domain's text for the out-of-domain evaluation (written for this test).
const OOD_TEXT: &str = "The committee met on Tuesday to discuss the budget for the coming year.\n\
Members agreed that the new bridge should be finished before the winter.\n\
The report of the treasurer was read and approved without objection.\n\
A motion to adjourn was made, seconded and carried by a large majority.\n";

fn remask(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(BIN).args(args).output().expect("run remask");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

/// Writes the tiny config (with its out-of-domain text and the committed minimal pairs) into `dir`.
fn tiny_config(dir: &Path, text: &str) -> PathBuf {
    let ood = dir.join("ood.txt");
    std::fs::write(&ood, OOD_TEXT).unwrap();
    let cfg = dir.join("tiny.toml");
    let text = text
        .replace("\"OOD\"", &format!("{:?}", ood.to_str().unwrap()))
        .replace(
            "\"PAIRS\"",
            &format!("{:?}", fixtures().join("minimal-pairs").to_str().unwrap()),
        );
    std::fs::write(&cfg, text).unwrap();
    cfg
}

#[test]
fn tiny_comparison_writes_regime_map_comparisons_and_runs() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = tiny_config(dir.path(), TINY);
    let out = dir.path().join("cmp");
    let (o, c) = (out.to_str().unwrap(), cfg.to_str().unwrap());
    let (rc, stdout, stderr) = remask(&["compare", "--config", c, "--out", o, "--log-lines"]);
    assert_eq!(rc, 0, "{stdout}{stderr}");
    assert!(
        stdout.contains("Training efficiency:") && stdout.contains("Generalization:"),
        "{stdout}"
    );
    assert!(
        stderr.contains("static-E1-seed1: identical to dynamic-E1-seed1 by construction"),
        "{stderr}"
    );

    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    assert_eq!(report["setup"]["baseline"], "dynamic");
    let strategies = report["strategies"].as_array().unwrap();
    assert_eq!(strategies.len(), 4, "two strategies in two regimes");
    // Static masks are stored (K = 2 copies on disk), dynamic ones are not.
    assert!(strategies
        .iter()
        .filter(|s| s["strategy"] == "static")
        .all(|s| s["mask_bytes"].as_u64().unwrap() > 0));
    assert!(strategies
        .iter()
        .filter(|s| s["strategy"] == "dynamic")
        .all(|s| s["mask_bytes"] == 0));
    // Stored compactly: both copies together take under 3 bytes per training token (the earlier
    // layout took 5 per copy).
    for s in strategies.iter().filter(|s| s["strategy"] == "static") {
        let per_token = s["mask_bytes_per_token"].as_f64().unwrap();
        assert!(per_token > 0.5 && per_token < 3.0, "{per_token}");
    }

    // One comparison per measure × (static, dynamic) × regime, with the documented fields.
    let comparisons = report["comparisons"].as_array().unwrap();
    for measure in [
        "val_loss",
        "val_accuracy",
        "ood_loss",
        "minimal_pairs",
        "train_val_gap",
    ] {
        for regime in [1, 4] {
            let c = comparisons
                .iter()
                .find(|c| c["measure"] == measure && c["regime"] == regime)
                .unwrap_or_else(|| {
                    panic!("no {measure} comparison at E = {regime}: {comparisons:?}")
                });
            assert_eq!(
                (&c["a"], &c["b"], &c["seeds"]),
                (&"static".into(), &"dynamic".into(), &2.into()),
                "{c}"
            );
            assert!(
                c["called"].is_boolean() && c["mean_diff"].is_number(),
                "{c}"
            );
            let ci = c["ci95"].as_array().unwrap();
            assert!(ci[0].as_f64().unwrap() <= ci[1].as_f64().unwrap(), "{c}");
            if regime == 1 {
                // E = 1 reads copy 0 only, which is the dynamic mask: the same run, difference 0.
                assert_eq!(
                    (
                        c["identical"].as_bool(),
                        c["mean_diff"].as_f64(),
                        c["called"].as_bool()
                    ),
                    (Some(true), Some(0.0), Some(false)),
                    "{c}"
                );
            }
        }
    }

    let runs = report["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 8);
    for r in runs {
        // Evaluations at steps 0, 3 and 6; training tokens grow; every run has its checkpoint.
        let evals = r["eval_curve"].as_array().unwrap();
        assert_eq!(evals.len(), 3, "{r}");
        assert_eq!(evals[0]["tokens"], 0);
        assert!(evals[2]["tokens"].as_u64().unwrap() > evals[1]["tokens"].as_u64().unwrap());
        assert!(r["final_val_loss"].as_f64().unwrap().is_finite());
        assert!(r["final_ood_loss"].as_f64().unwrap().is_finite(), "{r}");
        let mp = r["minimal_pairs"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&mp));
        let run_dir = out.join(r["run_dir"].as_str().unwrap());
        assert!(
            run_dir.join("checkpoints/step-000006/DONE").is_file(),
            "{}",
            run_dir.display()
        );
        // result.json: the run's record and its audit line, what `compare --resume` keeps.
        let result: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(run_dir.join("result.json")).unwrap())
                .unwrap();
        assert_eq!(
            result[0]["final_val_loss"], r["final_val_loss"],
            "result.json holds the run's record"
        );
        let rows = r["train_rows"].as_u64().unwrap();
        assert_eq!(
            rows,
            if r["regime"] == 1 { 48 } else { 12 },
            "6 steps x 8 rows / E"
        );
    }
    let copies: Vec<&serde_json::Value> = runs.iter().filter(|r| !r["same_as"].is_null()).collect();
    assert_eq!(copies.len(), 2, "static at E = 1 is not trained again");
    assert!(copies
        .iter()
        .all(|r| r["strategy"] == "static" && r["regime"] == 1));
    // Paired: the same seed starts both strategies from the same weights (the same step-0 loss on
    // the same fixed masks), different seeds from different ones.
    let first = |s: &str, e: u64, seed: u64| {
        runs.iter()
            .find(|r| r["strategy"] == s && r["regime"] == e && r["seed"] == seed)
            .unwrap()["eval_curve"][0]["loss"]
            .clone()
    };
    assert_eq!(first("static", 4, 1), first("dynamic", 4, 1));
    assert_ne!(first("dynamic", 4, 1), first("dynamic", 4, 2));
    // The audit covered MLM targets and attention of each strategy, and passed.
    let audit = report["audit"].as_array().unwrap();
    assert_eq!(audit.len(), 4);
    assert!(audit.iter().all(|a| a["passed"] == true), "{audit:?}");

    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(
        md.contains("## Verdicts")
            && md.contains("## Regime map: paired differences")
            && md.contains("| E = 4 | static | 2 |"),
        "{md}"
    );
    assert!(
        md.contains("![regime_map.png](regime_map.png)")
            && md.contains("![val_loss.png](val_loss.png)"),
        "{md}"
    );
    for f in ["val_loss.png", "train_loss.png", "regime_map.png"] {
        assert_eq!(&std::fs::read(out.join(f)).unwrap()[1..4], b"PNG", "{f}");
    }
    assert!(std::fs::read_to_string(out.join("val_loss.svg"))
        .unwrap()
        .contains("dynamic E=4"));

    // `remask eval --minimal-pairs` on a run directory gives the run's own minimal-pair accuracy.
    let run = runs
        .iter()
        .find(|r| r["strategy"] == "dynamic" && r["regime"] == 4)
        .unwrap();
    let (rc, stdout, stderr) = remask(&[
        "eval",
        "--checkpoint",
        out.join(run["run_dir"].as_str().unwrap()).to_str().unwrap(),
        "--minimal-pairs",
        fixtures().join("minimal-pairs").to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(rc, 0, "{stderr}");
    let e: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(e["accuracy"], run["minimal_pairs"], "{stdout}");

    // The report re-renders from its report.json alone, to the same text.
    let before = std::fs::read_to_string(out.join("report.md")).unwrap();
    let (rc, _, stderr) = remask(&["compare", "--rerender", o]);
    assert_eq!(rc, 0, "{stderr}");
    assert_eq!(
        std::fs::read_to_string(out.join("report.md")).unwrap(),
        before
    );

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
    // Six runs were trained (dynamic at E = 1, both strategies at E = 4, two seeds); the two static
    // E = 1 runs are copies of their dynamic twins, made again from the kept ones.
    assert_eq!(
        stderr.matches("finished earlier, kept").count(),
        6,
        "{stderr}"
    );
    assert_eq!(
        stderr.matches("identical to dynamic-E1-seed").count(),
        2,
        "{stderr}"
    );
    let after = std::fs::read_to_string(out.join("report.json")).unwrap();
    let runs = |t: &str| serde_json::from_str::<serde_json::Value>(t).unwrap()["runs"].clone();
    assert_eq!(
        runs(&before),
        runs(&after),
        "the kept runs are reported as they were"
    );
    let (rc, _, stderr) = remask(&[
        "compare",
        "--resume",
        dir.path().join("nothing").to_str().unwrap(),
    ]);
    assert_eq!(rc, 1);
    assert!(stderr.contains("no comparison there"), "{stderr}");
    let nothing = dir.path().join("nothing");
    let (rc, _, stderr) = remask(&["compare", "--rerender", nothing.to_str().unwrap()]);
    assert_eq!((rc, stderr.lines().count()), (1, 1), "{stderr}");
    assert!(stderr.contains("no finished comparison there"), "{stderr}");
    assert!(
        !nothing.exists(),
        "--rerender creates nothing where there is no comparison"
    );
}

#[test]
fn clm_comparison_audits_causal_as_leaking_and_document_as_passing() {
    let dir = tempfile::tempdir().unwrap();
    let text = TINY
        .replace(
            "strategies = [\"static\", \"dynamic\"]",
            "task = \"clm\"\nstrategies = [\"causal\", \"document\"]",
        )
        .replace("regimes = [1, 4]", "regimes = []")
        .replace(
            "arch = \"encoder\"",
            "arch = \"decoder\"\nattention = { kind = \"causal\" }",
        );
    let cfg = tiny_config(dir.path(), &text);
    let out = dir.path().join("clm");
    let (rc, stdout, stderr) = remask(&[
        "compare",
        "--task",
        "clm",
        "--config",
        cfg.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--log-lines",
    ]);
    assert_eq!(rc, 0, "{stdout}{stderr}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    assert_eq!(report["setup"]["baseline"], "document");
    let audit = report["audit"].as_array().unwrap();
    let line = |s: &str| {
        audit
            .iter()
            .find(|a| a["what"].as_str().unwrap().contains(&format!("({s} model")))
            .unwrap_or_else(|| panic!("{audit:?}"))
    };
    assert_eq!(
        line("causal")["passed"],
        false,
        "plain causal attention over packed documents must leak: {audit:?}"
    );
    assert_eq!(line("document")["passed"], true, "{audit:?}");
    assert!(
        stderr.contains("LEAK document(causal): query") && stderr.contains("PASS document(causal)"),
        "{stderr}"
    );
    let comparisons = report["comparisons"].as_array().unwrap();
    for m in ["val_loss", "val_loss_isolated", "ood_loss", "minimal_pairs"] {
        let c = comparisons
            .iter()
            .find(|c| c["measure"] == m)
            .unwrap_or_else(|| panic!("{m}: {comparisons:?}"));
        assert_eq!(
            (&c["a"], &c["b"], &c["regime"]),
            (
                &"causal".into(),
                &"document".into(),
                &serde_json::Value::Null
            )
        );
    }
    // A document-causal model reads each document alone anyway: its two validation losses agree.
    for r in report["runs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["strategy"] == "document")
    {
        assert_eq!(r["final_val_loss"], r["final_val_loss_isolated"], "{r}");
    }
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(
        md.contains("against the document-causal relation") && md.contains("| LEAK |"),
        "{md}"
    );
}

#[test]
fn the_default_directory_is_never_overwritten() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = tiny_config(
        dir.path(),
        &TINY
            .replace("seeds = 2", "seeds = 1")
            .replace("regimes = [1, 4]", "regimes = []"),
    );
    for _ in 0..2 {
        let out = Command::new(BIN)
            .current_dir(dir.path())
            .args([
                "compare",
                "--config",
                cfg.to_str().unwrap(),
                "--minimal-pairs",
                "none",
                "--log-lines",
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
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
        vec!["compare", "--preset", "fast", "--out", o],
        vec!["compare", "--baseline", "span", "--out", o],
        vec!["compare", "--regimes", "16,4", "--out", o],
        vec![
            "compare",
            "--task",
            "clm",
            "--strategies",
            "static",
            "--out",
            o,
        ],
        vec!["compare", "--task", "xlm", "--out", o],
        vec!["compare", "--jobs", "3", "--out", o],
        vec!["compare", "--jobs", "0", "--out", o],
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

/// `--jobs 2` on two threads trains two runs at once, one thread each: every run's figures equal,
/// bit for bit, those of the same comparison run one at a time on one thread, and each run records
/// the one thread it had.
#[test]
fn jobs_train_runs_side_by_side_with_the_figures_of_one_thread() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = tiny_config(dir.path(), TINY);
    let c = cfg.to_str().unwrap();
    let one = dir.path().join("one");
    let two = dir.path().join("two");
    let (rc, stdout, stderr) = remask(&["compare", "--config", c, "--out", one.to_str().unwrap()]);
    assert_eq!(rc, 0, "{stdout}{stderr}");
    let two_cfg = dir.path().join("two.toml");
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("threads = 1", "threads = 2\njobs = 2");
    std::fs::write(&two_cfg, text).unwrap();
    let (rc, stdout, stderr) = remask(&[
        "compare",
        "--config",
        two_cfg.to_str().unwrap(),
        "--out",
        two.to_str().unwrap(),
        "--log-lines",
    ]);
    assert_eq!(rc, 0, "{stdout}{stderr}");
    let runs = |d: &Path| -> Vec<serde_json::Value> {
        let r: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(d.join("report.json")).unwrap()).unwrap();
        r["runs"].as_array().unwrap().clone()
    };
    let (a, b) = (runs(&one), runs(&two));
    assert_eq!(a.len(), b.len());
    assert!(a.len() >= 6, "{}", a.len());
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(x["run_dir"], y["run_dir"]);
        for key in [
            "final_val_loss",
            "final_val_accuracy",
            "final_train_loss",
            "final_ood_loss",
            "minimal_pairs",
            "eval_curve",
            "train_curve",
        ] {
            let strip = |v: &serde_json::Value| -> serde_json::Value {
                // Evaluation points carry the seconds they were taken at; the rest must match.
                match v {
                    serde_json::Value::Array(ps) => ps
                        .iter()
                        .map(|p| {
                            let mut p = p.clone();
                            p.as_object_mut().map(|o| o.remove("seconds"));
                            p
                        })
                        .collect(),
                    other => other.clone(),
                }
            };
            assert_eq!(strip(&x[key]), strip(&y[key]), "{key} of {}", x["run_dir"]);
        }
        let run_cfg = std::fs::read_to_string(
            two.join(y["run_dir"].as_str().unwrap())
                .join("run_config.toml"),
        );
        if y["same_as"].is_null() {
            assert!(run_cfg.unwrap().contains("threads = 1"), "{}", y["run_dir"]);
        }
    }
    // With lanes the trainers' own step lines (which would interleave unnamed) are off.
    assert!(!stderr.contains("step 3/6"), "{stderr}");
}

/// `--leaderboard` runs every built-in strategy (PMI included: the shared directory then holds the
/// n-gram vocabulary) against `dynamic`, and `report.json` has a ratio cell for each.
#[test]
fn leaderboard_ranks_every_builtin_strategy_against_dynamic() {
    let dir = tempfile::tempdir().unwrap();
    // One seed, few steps: this checks the plumbing, not the figures (Genesis' first 240 verses hold
    // enough n-grams seen 5 times for PMI masking). The config's regimes give way to one regime.
    let cfg = tiny_config(
        dir.path(),
        &TINY
            .replace("seeds = 2", "seeds = 1")
            .replace("steps = 6", "steps = 3"),
    );
    let out = dir.path().join("lb");
    let (o, c) = (out.to_str().unwrap(), cfg.to_str().unwrap());
    let (rc, stdout, stderr) = remask(&[
        "compare",
        "--config",
        c,
        "--out",
        o,
        "--log-lines",
        "--leaderboard",
    ]);
    assert_eq!(rc, 0, "{stdout}{stderr}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    let rows = report["leaderboard"].as_array().unwrap();
    let names: Vec<&str> = rows
        .iter()
        .map(|r| r["strategy"].as_str().unwrap())
        .collect();
    for s in remask::experiment::BUILTIN_STRATEGIES {
        assert!(names.contains(&s), "{s} missing from {names:?}");
    }
    for r in rows {
        assert_eq!(r["seeds"], 1, "{r}");
        assert!(
            r["never_reached"].is_boolean() && r.get("ratio_ci95").is_some(),
            "{r}"
        );
        if !r["never_reached"].as_bool().unwrap() {
            assert!(r["ratio"].as_f64().unwrap() > 0.0, "{r}");
        }
    }
    let dynamic = rows.iter().find(|r| r["strategy"] == "dynamic").unwrap();
    assert_eq!(dynamic["never_reached"], false);
    assert!(std::fs::read_to_string(out.join("report.md"))
        .unwrap()
        .contains("## Leaderboard"));
    assert!(out.join("data/shared/ngrams.bin").exists());
}
