//! `remask eval --minimal-pairs` with the real binary: on a Hugging Face BERT directory with a
//! WordPiece tokenizer (fixtures/bert-pll, made by scripts/gen_minimal_pairs_fixture.py) every
//! sentence's pseudo-log-likelihood matches transformers' within 1e-3 and the accuracy matches
//! exactly; bad pair files get a one-line error naming the file and line.

use std::path::{Path, PathBuf};
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_remask");

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures")
}

fn remask(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(BIN).args(args).output().expect("run remask");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

#[test]
fn pll_of_a_hugging_face_bert_matches_transformers() {
    let model = fixtures().join("bert-pll");
    let pairs = fixtures().join("minimal-pairs");
    let expected: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(model.join("expected.json")).unwrap())
            .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let scores = tmp.path().join("scores.jsonl");
    // `--model` (the name every model command takes); the other calls use its alias `--checkpoint`.
    let (rc, stdout, stderr) = remask(&[
        "eval",
        "--model",
        model.to_str().unwrap(),
        "--minimal-pairs",
        pairs.to_str().unwrap(),
        "--json",
        "--scores",
        scores.to_str().unwrap(),
        "--rows-per-pass",
        "7",
    ]);
    assert_eq!(rc, 0, "{stderr}");
    let got: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(
        got["accuracy"], expected["accuracy"],
        "accuracy must match exactly"
    );
    assert_eq!(got["pairs"], expected["pairs"]);
    assert_eq!(got["by_uid"], expected["by_uid"]);
    assert_eq!(got["scoring"], "pseudo-log-likelihood");
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&scores)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let want = expected["scores"].as_array().unwrap();
    assert_eq!(lines.len(), want.len());
    for (g, w) in lines.iter().zip(want) {
        assert!(
            g["file"]
                .as_str()
                .unwrap()
                .ends_with(w["file"].as_str().unwrap()),
            "{g} vs {w}"
        );
        assert_eq!(
            (&g["line"], &g["uid"], &g["correct"]),
            (&w["line"], &w["uid"], &w["correct"]),
            "{g}"
        );
        for k in ["score_good", "score_bad"] {
            let (a, b) = (g[k].as_f64().unwrap(), w[k].as_f64().unwrap());
            assert!(
                (a - b).abs() < 1e-3,
                "{k} of {}:{}: remask {a} vs transformers {b}",
                w["file"],
                w["line"]
            );
        }
    }

    // The plain-text form names the scoring and every UID.
    let (rc, stdout, _) = remask(&[
        "eval",
        "--checkpoint",
        model.to_str().unwrap(),
        "--minimal-pairs",
        pairs.to_str().unwrap(),
    ]);
    assert_eq!(rc, 0);
    assert!(
        stdout.contains("pseudo-log-likelihood")
            && stdout.contains("word_order")
            && stdout.contains("subject_verb_agreement"),
        "{stdout}"
    );
}

#[test]
fn bad_pair_files_name_the_line() {
    let model = fixtures().join("bert-pll");
    let tmp = tempfile::tempdir().unwrap();
    let good = r#"{"sentence_good": "The dog runs.", "sentence_bad": "The dog run."}"#;
    let long = format!(
        r#"{{"sentence_good": "{}", "sentence_bad": "The dog run."}}"#,
        "the dog runs to the house ".repeat(8)
    );
    for (text, want) in [
        (
            format!("{good}\n{{\"sentence_good\": \"The dog runs.\"}}\n"),
            "bad.jsonl:2: missing field `sentence_bad`",
        ),
        (
            format!("{good}\n\n{{\"sentence_good\": \"\", \"sentence_bad\": \"x\"}}\n"),
            "bad.jsonl:3: `sentence_good` is empty",
        ),
        (
            format!("{good}\nnot json\n"),
            "bad.jsonl:2: not a JSON object",
        ),
        (
            format!("{good}\n{long}\n"),
            "bad.jsonl:2: `sentence_good` is",
        ),
    ] {
        let f = tmp.path().join("bad.jsonl");
        std::fs::write(&f, &text).unwrap();
        let (rc, stdout, stderr) = remask(&[
            "eval",
            "--checkpoint",
            model.to_str().unwrap(),
            "--minimal-pairs",
            f.to_str().unwrap(),
        ]);
        assert_eq!(rc, 1, "{text}");
        assert!(stdout.is_empty(), "{stdout}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(
            stderr.starts_with("error: ") && stderr.contains(want),
            "{stderr}"
        );
    }
    // Too long for the model: the error says how long and the limit.
    let f = tmp.path().join("bad.jsonl");
    std::fs::write(&f, format!("{good}\n{long}\n")).unwrap();
    let (_, _, stderr) = remask(&[
        "eval",
        "--checkpoint",
        model.to_str().unwrap(),
        "--minimal-pairs",
        f.to_str().unwrap(),
    ]);
    assert!(
        stderr.contains("more than the model's 32 positions"),
        "{stderr}"
    );
    // An empty directory is a one-line error too.
    let empty = tmp.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let (rc, _, stderr) = remask(&[
        "eval",
        "--checkpoint",
        model.to_str().unwrap(),
        "--minimal-pairs",
        empty.to_str().unwrap(),
    ]);
    assert_eq!((rc, stderr.lines().count()), (1, 1), "{stderr}");
    assert!(stderr.contains("no *.jsonl files"), "{stderr}");
}
