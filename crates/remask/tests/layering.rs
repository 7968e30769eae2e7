//! The import graph has no circles and no upward arrows (ARCHITECTURE.md, "Layers").
//!
//! Reads the sources of the library and of the CLI, collects every module path each file names
//! (`use crate::…`, `use super::…`, brace groups, and paths in code), leaving out comments and
//! `#[cfg(test)] mod tests` blocks (tests may use anything), and checks:
//! - the library's top-level modules only name modules of a lower layer ([`LAYERS`]);
//! - the files inside each library module, and the CLI's files, name each other without a circle;
//! - CLI command modules never name each other (shared helpers live in `common.rs`), except that a
//!   dispatcher (`bench`, `inspect`) names its own subcommands (`bench_*`, `inspect_*`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The library's top-level modules, lowest layer first; a module may only name modules of lower
/// layers. Root items (`crate::{Batch, Error, Result}`) are below everything.
const LAYERS: &[&[&str]] = &[
    &[
        "error",
        "batch",
        "atomic_write",
        "dir_lock",
        "fault",
        "guard",
        "tensor_file",
        "fuzz",
        "precision",
    ],
    &["attention"],
    &["masking"],
    &["data"],
    &["model"],
    &["eval"],
    &["dist"],
    &["train"],
    &["audit", "infer"],
    &["experiment"],
];

/// Known exceptions, each with its reason. Keep this empty; an entry is a debt with an owner.
const ALLOWED: &[(&str, &str, &str)] = &[(
    "dist::check",
    "train",
    "multi-rank training check (test scaffolding, issue 12 part 2): moves behind the `testing` feature or out of dist/",
)];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// `a/b/mod.rs` → `a::b`, `a/c.rs` → `a::c`, `lib.rs` / `main.rs` → ``.
fn module_of(root: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(root).unwrap().with_extension("");
    let mut parts: Vec<String> = rel
        .iter()
        .map(|s| s.to_string_lossy().into_owned())
        .collect();
    if matches!(
        parts.last().map(String::as_str),
        Some("mod" | "lib" | "main")
    ) {
        parts.pop();
    }
    parts.join("::")
}

/// The source without comments and without a trailing `#[cfg(test)] mod tests { … }`.
fn code_of(text: &str) -> String {
    let text = match text.find("#[cfg(test)]\nmod tests {") {
        Some(i) => &text[..i],
        None => text,
    };
    text.lines()
        .map(|l| l.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every path starting at `crate` or `super`, with brace groups expanded: `use super::{a, b::c}` →
/// `super::a`, `super::b::c`.
fn paths_in(code: &str) -> Vec<Vec<String>> {
    let chars: Vec<char> = code.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let starts_word = i == 0
            || !(chars[i - 1].is_alphanumeric() || chars[i - 1] == '_' || chars[i - 1] == ':');
        let rest: String = chars[i..chars.len().min(i + 7)].iter().collect();
        if starts_word && (rest.starts_with("crate::") || rest.starts_with("super::")) {
            let (paths, end) = parse_tree(&chars, i, Vec::new());
            out.extend(paths);
            i = end;
        } else {
            i += 1;
        }
    }
    out
}

/// Parses `seg::seg::…` or `seg::{tree, tree}` from `i`, prefixed by `prefix`.
fn parse_tree(chars: &[char], mut i: usize, mut prefix: Vec<String>) -> (Vec<Vec<String>>, usize) {
    loop {
        while i < chars.len() && chars[i].is_whitespace() {
            i += 1;
        }
        if i < chars.len() && chars[i] == '{' {
            let mut all = Vec::new();
            i += 1;
            loop {
                while i < chars.len() && (chars[i].is_whitespace() || chars[i] == ',') {
                    i += 1;
                }
                if i >= chars.len() || chars[i] == '}' {
                    return (all, i + 1);
                }
                let (sub, end) = parse_tree(chars, i, prefix.clone());
                all.extend(sub);
                // Past `as name` to the next item.
                i = end.max(i + 1);
                while i < chars.len() && !matches!(chars[i], ',' | '}') {
                    i += 1;
                }
            }
        }
        let start = i;
        while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
            i += 1;
        }
        if i == start {
            return (vec![prefix], i);
        }
        prefix.push(chars[start..i].iter().collect());
        if chars.get(i) == Some(&':') && chars.get(i + 1) == Some(&':') {
            i += 2;
        } else {
            return (vec![prefix], i);
        }
    }
}

/// The longest known module a path from `module` names (None for the crate root or the module itself).
fn target(module: &str, path: &[String], modules: &BTreeSet<String>) -> Option<String> {
    let mut base: Vec<String> = if module.is_empty() {
        Vec::new()
    } else {
        module.split("::").map(String::from).collect()
    };
    let mut rest = path;
    match rest.first().map(String::as_str) {
        Some("crate") => {
            base.clear();
            rest = &rest[1..];
        }
        Some("super") => {
            // A file module's parent: `super` of `a::b` (file a/b.rs) is `a`.
            while rest.first().map(String::as_str) == Some("super") {
                base.pop();
                rest = &rest[1..];
            }
        }
        _ => return None,
    }
    let mut best = None;
    for n in 1..=rest.len() {
        let cand: Vec<String> = base.iter().chain(&rest[..n]).cloned().collect();
        let cand = cand.join("::");
        if modules.contains(&cand) {
            best = Some(cand);
        }
    }
    best.filter(|t| t != module && !module.starts_with(&format!("{t}::")))
}

/// Module → the modules it names.
fn graph(root: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut files = Vec::new();
    rust_files(root, &mut files);
    let sources: Vec<(String, String)> = files
        .iter()
        .filter(|f| f.file_name().is_some_and(|n| n != "tests.rs"))
        .map(|f| {
            (
                module_of(root, f),
                code_of(&std::fs::read_to_string(f).unwrap()),
            )
        })
        .collect();
    let modules: BTreeSet<String> = sources.iter().map(|(m, _)| m.clone()).collect();
    let mut g = BTreeMap::new();
    for (m, code) in &sources {
        let targets: BTreeSet<String> = paths_in(code)
            .iter()
            .filter_map(|p| target(m, p, &modules))
            .collect();
        g.insert(m.clone(), targets);
    }
    g
}

/// Every cycle (strongly connected component of more than one node) of `g`, as sorted node lists.
fn cycles(g: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    // Two nodes are in one component when each reaches the other.
    let reach = |from: &String| -> BTreeSet<String> {
        let mut seen = BTreeSet::new();
        let mut stack = vec![from.clone()];
        while let Some(n) = stack.pop() {
            for t in g.get(&n).into_iter().flatten() {
                if seen.insert(t.clone()) {
                    stack.push(t.clone());
                }
            }
        }
        seen
    };
    let reaches: BTreeMap<&String, BTreeSet<String>> = g.keys().map(|k| (k, reach(k))).collect();
    let mut out: Vec<Vec<String>> = Vec::new();
    for (k, r) in &reaches {
        let mut comp: Vec<String> = r
            .iter()
            .filter(|o| reaches.get(o).is_some_and(|back| back.contains(*k)))
            .cloned()
            .collect();
        comp.sort();
        if comp.len() > 1 && !out.contains(&comp) {
            out.push(comp);
        }
    }
    out
}

fn top(module: &str) -> &str {
    module.split("::").next().unwrap_or("")
}

fn layer(module: &str) -> Option<usize> {
    LAYERS.iter().position(|l| l.contains(&top(module)))
}

#[test]
fn the_library_has_no_upward_arrows_and_no_circles() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let g = graph(&root);
    let mut problems = Vec::new();
    for (m, targets) in &g {
        if m.is_empty() {
            continue;
        }
        let Some(lm) = layer(m) else {
            problems.push(format!(
                "{m}: top-level module `{}` is not in LAYERS (tests/layering.rs)",
                top(m)
            ));
            continue;
        };
        for t in targets {
            if top(t) == top(m) {
                continue;
            }
            let allowed = ALLOWED.iter().any(|(a, b, _)| a == m && top(t) == *b);
            match layer(t) {
                Some(lt) if lt < lm || allowed => {}
                _ => problems.push(format!(
                    "{m} names {t}: `{}` is not below `{}`",
                    top(t),
                    top(m)
                )),
            }
        }
    }
    // Inside each top-level module, files name each other without a circle.
    let inner: BTreeMap<String, BTreeSet<String>> = g
        .iter()
        .map(|(m, ts)| {
            (
                m.clone(),
                ts.iter().filter(|t| top(t) == top(m)).cloned().collect(),
            )
        })
        .collect();
    for c in cycles(&inner) {
        problems.push(format!("circle: {}", c.join(" → ")));
    }
    assert!(
        problems.is_empty(),
        "import graph:\n{}",
        problems.join("\n")
    );
}

#[test]
fn cli_commands_do_not_import_each_other() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../remask-cli/src");
    let g = graph(&root);
    assert!(
        g.contains_key("cmd::train") && g.contains_key("common"),
        "{:?}",
        g.keys().collect::<Vec<_>>()
    );
    let mut problems = Vec::new();
    for (m, targets) in &g {
        let Some(cmd) = m.strip_prefix("cmd::") else {
            continue;
        };
        for t in targets {
            let Some(other) = t.strip_prefix("cmd::") else {
                continue;
            };
            let dispatch =
                (cmd == "bench" || cmd == "inspect") && other.starts_with(&format!("{cmd}_"));
            if !dispatch {
                problems.push(format!("{m} names {t}: move what both need to common.rs"));
            }
        }
    }
    for c in cycles(&g) {
        problems.push(format!("circle: {}", c.join(" → ")));
    }
    assert!(
        problems.is_empty(),
        "CLI import graph:\n{}",
        problems.join("\n")
    );
}

#[test]
fn the_checker_sees_paths_in_braces_and_code() {
    let code = code_of("use super::{a, b::{c, d as e}};\nuse crate::x::Y; // crate::z\nfn f() { crate::w::g(); }\n#[cfg(test)]\nmod tests {\n use crate::q;\n}\n");
    let paths: Vec<String> = paths_in(&code).iter().map(|p| p.join("::")).collect();
    assert_eq!(
        paths,
        [
            "super::a",
            "super::b::c",
            "super::b::d",
            "crate::x::Y",
            "crate::w::g"
        ]
    );
    let modules: BTreeSet<String> = ["m", "m::a", "m::b", "x"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(
        target("m::c", &["super".into(), "a".into(), "T".into()], &modules),
        Some("m::a".into())
    );
    assert_eq!(
        target("m::c", &["crate".into(), "x".into(), "Y".into()], &modules),
        Some("x".into())
    );
    assert_eq!(
        target("m::a", &["super".into(), "T".into()], &modules),
        None,
        "the parent itself is not an edge"
    );
    let g: BTreeMap<String, BTreeSet<String>> =
        [("a", vec!["b"]), ("b", vec!["a"]), ("c", vec!["a"])]
            .iter()
            .map(|(k, v)| (k.to_string(), v.iter().map(|s| s.to_string()).collect()))
            .collect();
    assert_eq!(cycles(&g), vec![vec!["a".to_string(), "b".to_string()]]);
}
