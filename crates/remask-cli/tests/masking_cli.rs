//! Invalid `[masking]` combinations are refused before anything runs, with one error line naming both
//! keys: static masks follow no rate schedule (they are decided once, at `prepare` time), in a run
//! config (`train`, `prepare`) and in a comparison's `[strategies.NAME]` table (`compare`).

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_remask");

fn remask(args: &[&str]) -> (i32, String) {
    let out = Command::new(BIN).args(args).output().expect("run remask");
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stderr).into())
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
    let (rc, err) = remask(&["train", "--config", cfg.to_str().unwrap(), "--set", &format!("run.output_dir={}", run.display())]);
    assert_eq!(rc, 1, "{err}");
    assert!(err.contains("masking.when") && err.contains("masking.schedule"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(!run.exists(), "nothing was prepared or trained");

    let out = dir.path().join("prepared");
    let (rc, err) = remask(&["prepare", "--config", cfg.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    assert_eq!(rc, 1, "{err}");
    assert!(err.contains("masking.when") && err.contains("masking.schedule"), "{err}");
    assert!(!out.join("meta.json").exists());

    // `--dupe-factor` turns a scheduled config static: refused the same way.
    let sched = dir.path().join("sched.toml");
    std::fs::write(&sched, "[masking]\nfinal_rate = 0.1\nschedule = \"cosine\"\n").unwrap();
    let (rc, err) = remask(&["prepare", "--config", sched.to_str().unwrap(), "--dupe-factor", "2", "--out", out.to_str().unwrap()]);
    assert_eq!(rc, 1, "{err}");
    assert!(err.contains("masking.when") && err.contains("masking.schedule"), "{err}");

    // A final rate without a schedule would be ignored: refused, naming both keys.
    std::fs::write(&sched, "[masking]\nfinal_rate = 0.1\n[budget]\nsteps = 1\n").unwrap();
    let (rc, err) = remask(&["train", "--config", sched.to_str().unwrap(), "--set", &format!("run.output_dir={}", run.display())]);
    assert_eq!(rc, 1, "{err}");
    assert!(err.contains("masking.final_rate") && err.contains("masking.schedule"), "{err}");
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
    let (rc, err) = remask(&["compare", "--config", cfg.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    assert_eq!(rc, 1, "{err}");
    assert!(err.contains("strategies.frozen.when") && err.contains("strategies.frozen.schedule"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(!out.join("data").exists(), "nothing was prepared");
}
