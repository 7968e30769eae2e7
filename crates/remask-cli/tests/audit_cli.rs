//! `remask audit` end to end: verdict lines, exit codes, a planted leak, one-line errors.

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_remask");

fn audit(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(BIN)
        .arg("audit")
        .args(args)
        .output()
        .expect("run remask");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

#[test]
fn every_kind_passes_on_the_tiny_encoder() {
    let (rc, out, err) = audit(&["--seq", "12"]);
    assert_eq!(rc, 0, "{out}{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 5, "{out}");
    for (line, kind) in lines
        .iter()
        .zip(["padding", "causal", "document", "sliding(4)", "prefix"])
    {
        assert_eq!(
            *line,
            format!("PASS {kind}: 24 query positions checked by gradients and perturbation")
        );
    }
}

#[test]
fn the_tiny_encoder_decoder_passes_encoder_decoder_causal_and_cross_padding() {
    let (rc, out, err) = audit(&["--arch", "encoder-decoder", "--seq", "12"]);
    assert_eq!(rc, 0, "{out}{err}");
    // Two rows: 12 source positions each for the encoder, 6 target positions each for the decoder.
    let want = [
        "PASS padding: 24 query positions checked by gradients and perturbation",
        "PASS decoder-causal: 12 query positions checked by gradients and perturbation",
        "PASS cross-padding: 12 query positions checked by gradients and perturbation",
    ];
    assert_eq!(out.lines().collect::<Vec<_>>(), want, "{err}");
    let (rc, out, _) = audit(&["--arch", "encoder-decoder", "--seq", "12", "--json"]);
    assert_eq!(rc, 0);
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    let kinds: Vec<&str> = v["attention"]
        .as_array()
        .expect("reports")
        .iter()
        .filter_map(|r| r["kind"].as_str())
        .collect();
    assert_eq!(kinds, ["padding", "decoder-causal", "cross-padding"]);
    // Row 1 has 3 padded source positions (of 12), forbidden to each of its 6 decoder queries.
    assert_eq!(v["attention"][2]["forbidden_pairs"], 6 * 3);
}

#[test]
fn a_planted_future_token_is_reported_and_exits_1() {
    let (rc, out, err) = audit(&[
        "--arch",
        "decoder",
        "--mask",
        "causal",
        "--seq",
        "10",
        "--plant-leak",
        "3,5",
    ]);
    assert_eq!(rc, 1, "{out}{err}");
    assert_eq!(
        out.trim(),
        "LEAK causal: query 3 reads forbidden key 4 (row 0)",
        "two layers: 3 reads 5, which read 4"
    );
    let (rc, out, _) = audit(&[
        "--arch",
        "decoder",
        "--mask",
        "causal",
        "--seq",
        "10",
        "--plant-leak",
        "3,5",
        "--json",
    ]);
    assert_eq!(rc, 1);
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(v["passed"], false);
    assert_eq!(
        v["attention"][0]["first_violation"]["leaked_keys"],
        serde_json::json!([4, 5])
    );
}

#[test]
fn bad_inputs_are_one_line_errors() {
    for args in [
        &["--seq", "1000"][..],
        &["--config", "/no/such/run.toml"],
        &["--checkpoint", "/no/such/ckpt"],
        &["--window", "0"],
    ] {
        let (rc, out, err) = audit(args);
        assert_ne!(rc, 0, "{args:?}");
        assert!(out.is_empty(), "{args:?}: {out}");
        assert_eq!(err.trim().lines().count(), 1, "{args:?}: {err}");
        assert!(err.starts_with("error: "), "{args:?}: {err}");
    }
}
