//! Invalid `[masking]` combinations are refused before anything runs, with one error line naming both
//! keys: static masks follow no rate schedule (they are decided once, at `prepare` time), in a run
//! config (`train`, `prepare`) and in a comparison's `[strategies.NAME]` table (`compare`);
//! per-token-id masking needs token-level masking and a ceiling that keeps every probability below 1.

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_remask");

fn remask(args: &[&str]) -> (i32, String) {
    let out = Command::new(BIN).args(args).output().expect("run remask");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

const STATIC_WITH_SCHEDULE: &str = r#"
[masking]
rate = 0.3
final_rate = 0.15
schedule = "linear"
when = { mode = "static", dupe_factor = 2 }

[budget]
steps = 1
"#;

#[test]
fn train_and_prepare_refuse_static_masks_with_a_schedule() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("run.toml");
    std::fs::write(&cfg, STATIC_WITH_SCHEDULE).unwrap();
    let run = dir.path().join("run");
    let (rc, err) = remask(&[
        "train",
        "--config",
        cfg.to_str().unwrap(),
        "--set",
        &format!("run.output_dir={}", run.display()),
    ]);
    assert_eq!(rc, 1, "{err}");
    assert!(
        err.contains("masking.when") && err.contains("masking.schedule"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(!run.exists(), "nothing was prepared or trained");

    let out = dir.path().join("prepared");
    let (rc, err) = remask(&[
        "prepare",
        "--config",
        cfg.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(rc, 1, "{err}");
    assert!(
        err.contains("masking.when") && err.contains("masking.schedule"),
        "{err}"
    );
    assert!(!out.join("meta.json").exists());

    // `--dupe-factor` turns a scheduled config static: refused the same way.
    let sched = dir.path().join("sched.toml");
    std::fs::write(
        &sched,
        "[masking]\nfinal_rate = 0.1\nschedule = \"cosine\"\n",
    )
    .unwrap();
    let (rc, err) = remask(&[
        "prepare",
        "--config",
        sched.to_str().unwrap(),
        "--dupe-factor",
        "2",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(rc, 1, "{err}");
    assert!(
        err.contains("masking.when") && err.contains("masking.schedule"),
        "{err}"
    );

    // A final rate without a schedule would be ignored: refused, naming both keys.
    std::fs::write(&sched, "[masking]\nfinal_rate = 0.1\n[budget]\nsteps = 1\n").unwrap();
    let (rc, err) = remask(&[
        "train",
        "--config",
        sched.to_str().unwrap(),
        "--set",
        &format!("run.output_dir={}", run.display()),
    ]);
    assert_eq!(rc, 1, "{err}");
    assert!(
        err.contains("masking.final_rate") && err.contains("masking.schedule"),
        "{err}"
    );
}

/// Per-token-id masking sets a probability per token: another strategy, or a ceiling that would
/// always mask a token, is refused before anything runs, naming the keys.
#[test]
fn train_refuses_token_id_masking_with_words_or_a_ceiling_reaching_one() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    for (text, keys) in [
        (
            "strategy = \"whole-word\"\nwhen = { mode = \"token-id\" }",
            ["masking.when", "masking.strategy"],
        ),
        (
            "rate = 0.5\nwhen = { mode = \"token-id\", ceiling = 2.0 }",
            ["masking.when.ceiling", "masking.rate"],
        ),
    ] {
        let cfg = dir.path().join("run.toml");
        std::fs::write(&cfg, format!("[masking]\n{text}\n[budget]\nsteps = 1\n")).unwrap();
        let (rc, err) = remask(&[
            "train",
            "--config",
            cfg.to_str().unwrap(),
            "--set",
            &format!("run.output_dir={}", run.display()),
        ]);
        assert_eq!(rc, 1, "{err}");
        assert!(keys.iter().all(|k| err.contains(k)), "{keys:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        assert!(!run.exists(), "nothing was prepared or trained");
    }
}

#[test]
fn compare_refuses_a_static_strategy_with_a_schedule() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("cmp.toml");
    std::fs::write(
        &cfg,
        "[compare]\nstrategies = [\"dynamic\", \"frozen\"]\n[strategies.frozen]\nrate = 0.3\nfinal_rate = 0.15\nschedule = \"linear\"\nwhen = { mode = \"static\", dupe_factor = 4 }\n",
    )
    .unwrap();
    let out = dir.path().join("cmp");
    let (rc, err) = remask(&[
        "compare",
        "--config",
        cfg.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(rc, 1, "{err}");
    assert!(
        err.contains("strategies.frozen.when") && err.contains("strategies.frozen.schedule"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(!out.join("data").exists(), "nothing was prepared");
}

/// `inspect masking --strategy pmi --json` on text remask did not train on (the King James New
/// Testament, English side of the embedded pairs): the realised rate is the configured one within
/// 0.01 and no n-gram is split; bad input is one error line naming the key.
#[test]
fn inspect_pmi_masking_on_text_and_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let pairs = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../data/kjv-rv1909.nt.en-es.tsv"
    ))
    .unwrap();
    let text: String = pairs
        .lines()
        .take(3000)
        .filter_map(|l| l.split('\t').next())
        .map(|l| format!("{l}\n"))
        .collect();
    let file = dir.path().join("kjv.txt");
    std::fs::write(&file, text).unwrap();
    let f = file.to_str().unwrap();
    for rate in ["0.15", "0.3"] {
        let out = Command::new(BIN)
            .args([
                "inspect",
                "masking",
                "--strategy",
                "pmi",
                "--text-file",
                f,
                "--json",
                "--rate",
                rate,
                "--seq-len",
                "64",
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let realised = v["mask_rate"].as_f64().unwrap();
        assert!(
            (realised - rate.parse::<f64>().unwrap()).abs() < 0.01,
            "rate {rate}: realised {realised}"
        );
        assert_eq!(v["chosen_ineligible"], 0);
        let pmi = &v["pmi"];
        assert_eq!(pmi["ngrams_split"], 0, "{pmi}");
        assert!(
            pmi["ngram_share"].as_f64().unwrap() > 0.1
                && pmi["ngrams_masked"].as_u64().unwrap() > 100,
            "{pmi}"
        );
        let top = v["top_ngrams"].as_array().unwrap();
        assert!(
            !top.is_empty() && top[0]["words"].as_u64().unwrap() >= 2,
            "{v}"
        );
    }
    let tiny = dir.path().join("tiny.txt");
    std::fs::write(&tiny, "In the beginning was the Word.\n").unwrap();
    let (rc, err) = remask(&[
        "inspect",
        "masking",
        "--strategy",
        "pmi",
        "--text-file",
        tiny.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(rc, 1, "{err}");
    assert!(
        err.contains("masking.pmi.min_count") && err.trim().lines().count() == 1,
        "{err}"
    );
    for rate in ["0", "-0.1"] {
        let (rc, err) = remask(&[
            "inspect",
            "masking",
            "--strategy",
            "pmi",
            "--text-file",
            f,
            "--json",
            "--rate",
            rate,
        ]);
        assert_eq!(rc, 1, "{err}");
        assert!(
            err.contains("masking.rate") && err.trim().lines().count() == 1,
            "{err}"
        );
    }
}
