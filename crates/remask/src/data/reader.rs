//! Readers: plain text (one document per line, or blank-line separated), directories of files, JSONL (a
//! named field), Parquet (a named string column) and TSV sentence pairs. Every failure names the file,
//! and where it can the line, field or column.

use std::path::{Path, PathBuf};

use super::config::{DocumentSplit, InputFormat};
use super::parquet_input::column_strings;
use crate::{Error, Result};

/// The embedded World English Bible (public domain), one verse or heading per line: `builtin:web`.
pub const BUILTIN_WEB: &str = include_str!("../../../../data/web.en.txt");
/// The embedded KJV–Reina-Valera 1909 New Testament verse pairs (public domain): `builtin:kjv-rv1909`.
pub const BUILTIN_KJV_RV: &str = include_str!("../../../../data/kjv-rv1909.nt.en-es.tsv");
/// The embedded US presidents' inaugural addresses 1789–2021 (public domain), one paragraph per line,
/// a blank line between addresses: `builtin:us-inaugural`, the comparison's out-of-domain text.
pub const BUILTIN_US_INAUGURAL: &str = include_str!("../../../../data/us-inaugural.en.txt");

/// One input document: a text, or a (source, target) pair for translation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Document {
    pub text: String,
    /// The target side of a TSV sentence pair.
    pub target: Option<String>,
}

/// Expands inputs into files: a file stays itself, a directory gives its files recursively (sorted by
/// path, hidden entries skipped).
pub fn expand_inputs(inputs: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for input in inputs {
        let meta = std::fs::metadata(input).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => Error::data(input, "no such file or directory"),
            _ => Error::data(input, e.to_string()),
        })?;
        if meta.is_dir() {
            let before = files.len();
            walk(input, &mut files)?;
            if files.len() == before {
                return Err(Error::data(input, "directory holds no input files"));
            }
        } else {
            files.push(input.clone());
        }
    }
    Ok(files)
}

fn walk(dir: &Path, files: &mut Vec<PathBuf>) -> Result<()> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| Error::io(dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| !p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with('.')))
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            walk(&p, files)?;
        } else {
            files.push(p);
        }
    }
    Ok(())
}

/// The format of one file under `format` (`Auto` decides by extension).
pub fn format_of(path: &Path, format: InputFormat) -> InputFormat {
    if format != InputFormat::Auto {
        return format;
    }
    match path.extension().and_then(|e| e.to_str()).map(|e| e.to_ascii_lowercase()).as_deref() {
        Some("jsonl") | Some("json") | Some("ndjson") => InputFormat::Jsonl,
        Some("parquet") => InputFormat::Parquet,
        Some("tsv") => InputFormat::Tsv,
        _ => InputFormat::Text,
    }
}

/// Reads a file as UTF-8 text, refusing binary files (NUL bytes) and invalid UTF-8 with the offset.
pub fn read_utf8(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    if bytes.iter().take(1 << 16).any(|&b| b == 0) {
        return Err(Error::data(path, "looks binary (contains NUL bytes); expected UTF-8 text"));
    }
    String::from_utf8(bytes).map_err(|e| {
        Error::data(path, format!("not valid UTF-8 at byte {}; convert it to UTF-8 first", e.utf8_error().valid_up_to()))
    })
}

/// Reads all documents of one file.
pub fn read_file(path: &Path, format: InputFormat, split: DocumentSplit, field: &str) -> Result<Vec<Document>> {
    let docs = match format_of(path, format) {
        InputFormat::Auto | InputFormat::Text => text_documents(&read_utf8(path)?, split),
        InputFormat::Jsonl => jsonl_documents(path, &read_utf8(path)?, field)?,
        InputFormat::Parquet => {
            column_strings(path, field)?.into_iter().map(|text| Document { text, target: None }).collect()
        }
        InputFormat::Tsv => tsv_documents(path, &read_utf8(path)?)?,
    };
    if docs.is_empty() {
        return Err(Error::data(path, "is empty: no documents found"));
    }
    Ok(docs)
}

/// Reads all documents of all inputs, in order: built-in corpora (`builtin:web`, `builtin:kjv-rv1909`,
/// `builtin:us-inaugural`) first, then files. No inputs means `builtin:web`.
pub fn read_inputs(inputs: &[PathBuf], format: InputFormat, split: DocumentSplit, field: &str) -> Result<Vec<Document>> {
    let mut docs = Vec::new();
    let builtin: Vec<PathBuf> = if inputs.is_empty() { vec![PathBuf::from("builtin:web")] } else { inputs.to_vec() };
    let (named, files): (Vec<PathBuf>, Vec<PathBuf>) =
        builtin.into_iter().partition(|p| p.to_str().is_some_and(|s| s.starts_with("builtin:")));
    for name in &named {
        match name.to_str().unwrap_or_default() {
            "builtin:web" => docs.extend(text_documents(BUILTIN_WEB, DocumentSplit::Line)),
            "builtin:kjv-rv1909" => docs.extend(tsv_documents(name, BUILTIN_KJV_RV)?),
            "builtin:us-inaugural" => docs.extend(text_documents(BUILTIN_US_INAUGURAL, DocumentSplit::Line)),
            other => {
                return Err(Error::data(
                    name,
                    format!("unknown built-in corpus `{other}` (builtin:web, builtin:kjv-rv1909, builtin:us-inaugural)"),
                ))
            }
        }
    }
    for file in expand_inputs(&files)? {
        docs.extend(read_file(&file, format, split, field)?);
    }
    Ok(docs)
}

/// Splits text into documents: non-empty lines, or blank-line separated blocks.
pub fn text_documents(text: &str, split: DocumentSplit) -> Vec<Document> {
    let doc = |t: String| Document { text: t, target: None };
    match split {
        DocumentSplit::Line => {
            text.lines().map(str::trim).filter(|l| !l.is_empty()).map(|l| doc(l.to_string())).collect()
        }
        DocumentSplit::BlankLine => {
            let mut out = Vec::new();
            let mut cur: Vec<&str> = Vec::new();
            for line in text.lines() {
                let l = line.trim();
                if l.is_empty() {
                    if !cur.is_empty() {
                        out.push(doc(cur.join("\n")));
                        cur.clear();
                    }
                } else {
                    cur.push(l);
                }
            }
            if !cur.is_empty() {
                out.push(doc(cur.join("\n")));
            }
            out
        }
    }
}

fn jsonl_documents(path: &Path, text: &str, field: &str) -> Result<Vec<Document>> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let v: serde_json::Value = serde_json::from_str(line)
            .map_err(|e| Error::data(path, format!("line {}: invalid JSON: {e}", n + 1)))?;
        match v.get(field) {
            Some(serde_json::Value::String(s)) => {
                if !s.trim().is_empty() {
                    out.push(Document { text: s.clone(), target: None });
                }
            }
            Some(_) => return Err(Error::data(path, format!("line {}: field `{field}` is not a string", n + 1))),
            None => {
                let keys: Vec<&String> = v.as_object().map(|o| o.keys().collect()).unwrap_or_default();
                return Err(Error::data(
                    path,
                    format!("line {}: no field `{field}` (fields: {keys:?}); set data.text_field", n + 1),
                ));
            }
        }
    }
    Ok(out)
}

fn tsv_documents(path: &Path, text: &str) -> Result<Vec<Document>> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let Some((src, tgt)) = line.split_once('\t') else {
            return Err(Error::data(path, format!("line {}: expected `source<TAB>target`", n + 1)));
        };
        let (src, tgt) = (src.trim(), tgt.trim());
        if src.is_empty() || tgt.is_empty() {
            continue;
        }
        out.push(Document { text: src.to_string(), target: Some(tgt.to_string()) });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_splits_by_line_or_blank_line() {
        let t = "a b\n\n c \nd\n\n\ne";
        assert_eq!(text_documents(t, DocumentSplit::Line).len(), 4);
        let blocks = text_documents(t, DocumentSplit::BlankLine);
        assert_eq!(blocks.iter().map(|d| d.text.as_str()).collect::<Vec<_>>(), ["a b", "c\nd", "e"]);
    }

    #[test]
    fn bad_inputs_name_file_and_what() {
        let dir = std::env::temp_dir().join(format!("remask-reader-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let bin = dir.join("x.txt");
        std::fs::write(&bin, [0u8, 1, 2, 3]).unwrap();
        let e = read_file(&bin, InputFormat::Auto, DocumentSplit::Line, "text").unwrap_err().to_string();
        assert!(e.contains("x.txt") && e.contains("binary"), "{e}");
        std::fs::write(&bin, [b'a', 0xff, b'b']).unwrap();
        let e = read_file(&bin, InputFormat::Auto, DocumentSplit::Line, "text").unwrap_err().to_string();
        assert!(e.contains("UTF-8") && e.contains("byte 1"), "{e}");
        std::fs::write(&bin, "\n \n").unwrap();
        assert!(read_file(&bin, InputFormat::Auto, DocumentSplit::Line, "text").unwrap_err().to_string().contains("empty"));
        let j = dir.join("y.jsonl");
        std::fs::write(&j, "{\"text\": \"hi\"}\n{\"body\": \"x\"}\n").unwrap();
        let e = read_file(&j, InputFormat::Auto, DocumentSplit::Line, "text").unwrap_err().to_string();
        assert!(e.contains("y.jsonl") && e.contains("line 2") && e.contains("`text`"), "{e}");
        let tsv = dir.join("z.tsv");
        std::fs::write(&tsv, "a\tb\nno tab here\n").unwrap();
        assert!(read_file(&tsv, InputFormat::Auto, DocumentSplit::Line, "text").unwrap_err().to_string().contains("line 2"));
        let missing = dir.join("missing.txt");
        assert!(read_inputs(&[missing], InputFormat::Auto, DocumentSplit::Line, "text").unwrap_err().to_string().contains("missing.txt"));
        std::fs::remove_dir_all(&dir).ok();
    }
}
