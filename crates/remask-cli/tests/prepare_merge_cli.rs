//! `remask prepare --merge`: parts prepared separately (one shared tokenizer.json) become one prepared
//! directory that training reads like any other; parts that do not fit together are refused with one
//! line naming what to fix, and nothing is written.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_remask");

fn remask(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(BIN).args(args).output().expect("run remask");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

/// `lines` English-like lines of a small vocabulary, different for each `seed`.
fn corpus(path: &Path, seed: u64, lines: usize) {
    const WORDS: &[&str] = &[
        "the", "king", "said", "unto", "people", "and", "they", "went", "into", "city", "of",
        "light", "water", "bread", "house", "before", "after", "many", "days", "spoke", "word",
        "land", "river", "mountain", "children", "great", "small", "night", "morning", "gave",
        "took", "came",
    ];
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let mut text = String::new();
    for _ in 0..lines {
        x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
        let n = 6 + (x >> 60) as usize;
        for w in 0..n {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            if w > 0 {
                text.push(' ');
            }
            text.push_str(WORDS[(x >> 33) as usize % WORDS.len()]);
        }
        text.push_str(".\n");
    }
    std::fs::write(path, text).unwrap();
}

fn meta(dir: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("meta.json")).unwrap()).unwrap()
}

fn counts(dir: &Path) -> Vec<u64> {
    let b = std::fs::read(dir.join("token_counts.bin")).unwrap();
    b[24..]
        .chunks_exact(8)
        .map(|c| u64::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

/// Every file under `dir` (relative path → bytes).
fn files(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.insert(
                    p.strip_prefix(dir).unwrap().to_path_buf(),
                    std::fs::read(&p).unwrap(),
                );
            }
        }
    }
    out.retain(|k, _| !k.to_string_lossy().contains(".lock"));
    out
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Three parts: p0 learns the vocabulary, p1 and p2 load p0's tokenizer.json.
fn three_parts(root: &Path) -> Vec<PathBuf> {
    let mut parts = Vec::new();
    for i in 0..3u64 {
        let input = root.join(format!("in{i}.txt"));
        corpus(&input, i + 1, 400 + 100 * i as usize);
        let out = root.join(format!("p{i}"));
        let tok = root.join("p0").join("tokenizer.json");
        let mut args = vec![
            "prepare",
            "--quiet",
            "--input",
            s(&input),
            "--out",
            s(&out),
            "--seq-len",
            "32",
        ];
        if i == 0 {
            args.extend(["--vocab-size", "300"]);
        } else {
            args.extend(["--tokenizer", s(&tok)]);
        }
        let (rc, _, err) = remask(&args);
        assert_eq!(rc, 0, "{err}");
        parts.push(out);
    }
    parts
}

#[test]
fn merged_parts_hold_every_document_and_train_like_one_directory() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let parts = three_parts(root);
    let before: Vec<_> = parts.iter().map(|p| files(p)).collect();
    let merged = root.join("merged");
    let merge_args = |out: &Path| {
        let mut a: Vec<String> = vec!["prepare".into()];
        for p in &parts {
            a.extend(["--merge".into(), s(p).into()]);
        }
        a.extend([
            "--dupe-factor".into(),
            "2".into(),
            "--out".into(),
            s(out).into(),
        ]);
        a
    };
    let args = merge_args(&merged);
    let (rc, stdout, err) = remask(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(rc, 0, "{err}");
    assert!(stdout.contains("static masks: 2 copies"), "{stdout}");

    // Every document and token of every part, in the split it had there.
    let m = meta(&merged);
    let metas: Vec<_> = parts.iter().map(|p| meta(p)).collect();
    for split in ["train", "validation"] {
        for key in ["documents", "tokens"] {
            let sum: u64 = metas.iter().map(|x| x[split][key].as_u64().unwrap()).sum();
            assert_eq!(m[split][key].as_u64().unwrap(), sum, "{split}.{key}");
        }
        let shards: usize = metas
            .iter()
            .map(|x| x[split]["shards"].as_array().unwrap().len())
            .sum();
        assert_eq!(
            m[split]["shards"].as_array().unwrap().len(),
            shards,
            "{split} shards"
        );
    }
    assert_eq!(m["static_masks"]["dupe_factor"].as_u64(), Some(2));
    assert_eq!(m["data"]["inputs"].as_array().unwrap().len(), 3);
    // Token counts are the parts' counts added up.
    let mut want = counts(&parts[0]);
    for p in &parts[1..] {
        for (w, c) in want.iter_mut().zip(counts(p)) {
            *w += c;
        }
    }
    assert_eq!(counts(&merged), want);

    // The loader reads it: masks drawn over the merged rows at the configured rate.
    let (rc, stdout, err) = remask(&["inspect", "masking", "--data", s(&merged), "--json"]);
    assert_eq!(rc, 0, "{err}");
    let stats: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let rate = stats["mask_rate"].as_f64().unwrap();
    assert!((rate - 0.15).abs() < 0.02, "mask rate {rate}");

    // Deterministic, and the parts are untouched.
    let again = root.join("again");
    let args = merge_args(&again);
    let (rc, _, err) = remask(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(rc, 0, "{err}");
    let (a, b) = (files(&merged), files(&again));
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
    for (k, v) in &a {
        if k != Path::new("meta.json") {
            assert!(v == &b[k], "{} differs between two merges", k.display());
        }
    }
    for (p, was) in parts.iter().zip(&before) {
        assert!(&files(p) == was, "{} changed", p.display());
    }
}

#[test]
fn parts_that_do_not_fit_are_refused_naming_the_fix_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let parts = three_parts(root);
    // Its own vocabulary: another tokenizer.json.
    let other_in = root.join("other.txt");
    corpus(&other_in, 9, 300);
    let other = root.join("other");
    let (rc, _, err) = remask(&[
        "prepare",
        "--quiet",
        "--input",
        s(&other_in),
        "--vocab-size",
        "280",
        "--seq-len",
        "32",
        "--out",
        s(&other),
    ]);
    assert_eq!(rc, 0, "{err}");
    // Another sequence length, same tokenizer.
    let longer = root.join("longer");
    let tok = parts[0].join("tokenizer.json");
    let (rc, _, err) = remask(&[
        "prepare",
        "--quiet",
        "--input",
        s(&other_in),
        "--tokenizer",
        s(&tok),
        "--seq-len",
        "64",
        "--out",
        s(&longer),
    ]);
    assert_eq!(rc, 0, "{err}");

    let out = root.join("out");
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["--merge", s(&parts[0]), "--merge", s(&other)],
            "data.tokenizer.path",
        ),
        (
            vec!["--merge", s(&parts[0]), "--merge", s(&longer)],
            "data.seq_len",
        ),
        (
            vec!["--merge", s(&parts[0]), "--merge", "/nonexistent/part"],
            "/nonexistent/part",
        ),
    ];
    for (mut args, needle) in cases {
        args.splice(0..0, ["prepare"]);
        args.extend(["--out", s(&out)]);
        let (rc, _, err) = remask(&args);
        assert_eq!(rc, 1, "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        assert!(
            !out.join("meta.json").exists(),
            "{args:?} wrote a directory"
        );
    }
    // A part as the output.
    let (rc, _, err) = remask(&[
        "prepare",
        "--merge",
        s(&parts[0]),
        "--merge",
        s(&parts[1]),
        "--out",
        s(&parts[1]),
    ]);
    assert_eq!(rc, 1, "{err}");
    assert!(err.contains("--out"), "{err}");
    assert!(parts[1].join("meta.json").exists());
}
