//! Readers: plain text (one document per line, or blank-line separated), JSONL (a named field),
//! Parquet (a named string column) and TSV sentence pairs, from files, directories and glob patterns,
//! gzip (`.gz`) or zstd (`.zst`) compressed or not. Everything streams: a file is read line by line
//! (Parquet row by row) and each document handed to a callback, so memory does not grow with the
//! corpus ([`for_each_document`]). Every failure names the file, and where it can the line, field,
//! column or row.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use super::config::{DocumentSplit, InputFormat};
use super::parquet_input::for_each_string;
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

/// How a file is compressed (from its extension: `.gz`, `.zst` / `.zstd`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

/// The compression of `path` and the name that remains without its extension.
pub fn compression_of(path: &Path) -> (Compression, PathBuf) {
    match path
        .extension()
        .and_then(|e| e.to_str())
        .map(|e| e.to_ascii_lowercase())
        .as_deref()
    {
        Some("gz") | Some("gzip") => (Compression::Gzip, path.with_extension("")),
        Some("zst") | Some("zstd") => (Compression::Zstd, path.with_extension("")),
        _ => (Compression::None, path.to_path_buf()),
    }
}

/// True when `s` holds a glob wildcard (`*`, `?` or `[`).
fn is_pattern(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

/// Expands inputs into files: a file stays itself, a directory gives its files recursively (sorted by
/// path, hidden entries skipped), and a path with wildcards (`*`, `?`, `[abc]`; `**` for any number of
/// directories) the files and directories it matches, sorted. A pattern matching nothing is an error.
pub fn expand_inputs(inputs: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for input in inputs {
        let text = input.to_string_lossy();
        if is_pattern(&text) && !input.exists() {
            let matches = glob(input)?;
            if matches.is_empty() {
                return Err(Error::data(input, "the pattern matches no file"));
            }
            for m in matches {
                if m.is_dir() {
                    walk(&m, &mut files)?;
                } else {
                    files.push(m);
                }
            }
            continue;
        }
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
    for p in sorted_entries(dir)? {
        if p.is_dir() {
            walk(&p, files)?;
        } else {
            files.push(p);
        }
    }
    Ok(())
}

/// A directory's entries, sorted, hidden ones skipped.
fn sorted_entries(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| Error::io(dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            !p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with('.'))
        })
        .collect();
    entries.sort();
    Ok(entries)
}

/// The paths matching a glob pattern, sorted.
fn glob(pattern: &Path) -> Result<Vec<PathBuf>> {
    use std::path::Component;
    let mut base = PathBuf::new();
    let mut rest: Vec<String> = Vec::new();
    for c in pattern.components() {
        let s = c.as_os_str().to_string_lossy().into_owned();
        if rest.is_empty() && !is_pattern(&s) {
            base.push(c.as_os_str());
        } else if matches!(c, Component::Normal(_)) {
            rest.push(s);
        }
    }
    if base.as_os_str().is_empty() {
        base = PathBuf::from(".");
    }
    let mut out = Vec::new();
    glob_in(&base, &rest, &mut out)?;
    out.sort();
    out.dedup();
    Ok(out)
}

fn glob_in(dir: &Path, parts: &[String], out: &mut Vec<PathBuf>) -> Result<()> {
    let Some((first, rest)) = parts.split_first() else {
        out.push(dir.to_path_buf());
        return Ok(());
    };
    if !dir.is_dir() {
        return Ok(());
    }
    if first == "**" {
        // Zero directories, or one more and `**` again.
        glob_in(dir, rest, out)?;
        for p in sorted_entries(dir)? {
            if p.is_dir() {
                glob_in(&p, parts, out)?;
            }
        }
        return Ok(());
    }
    for p in sorted_entries(dir)? {
        let name = p
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if wildcard_match(first.as_bytes(), name.as_bytes()) {
            glob_in(&p, rest, out)?;
        }
    }
    Ok(())
}

/// Shell-style matching of one path component: `*` any run, `?` one character, `[abc]` / `[a-z]` /
/// `[!a]` a class.
pub fn wildcard_match(pattern: &[u8], name: &[u8]) -> bool {
    let (mut p, mut n) = (0usize, 0usize);
    let (mut star, mut mark) = (None::<usize>, 0usize);
    while n < name.len() {
        let step = if p < pattern.len() {
            match pattern[p] {
                b'*' => {
                    star = Some(p);
                    mark = n;
                    p += 1;
                    continue;
                }
                b'?' => Some(p + 1),
                b'[' => class_match(pattern, p, name[n]),
                c => (c == name[n]).then_some(p + 1),
            }
        } else {
            None
        };
        match (step, star) {
            (Some(next), _) => {
                p = next;
                n += 1;
            }
            (None, Some(s)) => {
                p = s + 1;
                mark += 1;
                n = mark;
            }
            (None, None) => return false,
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

/// Matches `c` against the class starting at `pattern[p] == b'['`; returns the index after it.
fn class_match(pattern: &[u8], p: usize, c: u8) -> Option<usize> {
    let mut i = p + 1;
    let negate = i < pattern.len() && (pattern[i] == b'!' || pattern[i] == b'^');
    if negate {
        i += 1;
    }
    let mut hit = false;
    let mut first = true;
    while i < pattern.len() && (first || pattern[i] != b']') {
        first = false;
        if i + 2 < pattern.len() && pattern[i + 1] == b'-' && pattern[i + 2] != b']' {
            hit |= pattern[i] <= c && c <= pattern[i + 2];
            i += 3;
        } else {
            hit |= pattern[i] == c;
            i += 1;
        }
    }
    if i >= pattern.len() {
        // No closing bracket: a literal `[`.
        return (c == b'[').then_some(p + 1);
    }
    (hit != negate).then_some(i + 1)
}

/// The format of one file under `format` (`Auto` decides by extension, a compression extension
/// aside: `x.jsonl.gz` is JSONL).
pub fn format_of(path: &Path, format: InputFormat) -> InputFormat {
    if format != InputFormat::Auto {
        return format;
    }
    let (_, plain) = compression_of(path);
    match plain
        .extension()
        .and_then(|e| e.to_str())
        .map(|e| e.to_ascii_lowercase())
        .as_deref()
    {
        Some("jsonl") | Some("json") | Some("ndjson") => InputFormat::Jsonl,
        Some("parquet") => InputFormat::Parquet,
        Some("tsv") => InputFormat::Tsv,
        _ => InputFormat::Text,
    }
}

/// Total size on disk of the inputs (compressed sizes for compressed files; built-in corpora by
/// their length): what [`for_each_document`] reports progress against. Also checks they exist.
pub fn input_bytes(inputs: &[PathBuf]) -> Result<u64> {
    let (named, files) = split_builtin(inputs);
    let mut total = 0u64;
    for name in &named {
        total += builtin_text(name)?.0.len() as u64;
    }
    for f in expand_inputs(&files)? {
        total += std::fs::metadata(&f).map_err(|e| Error::io(&f, e))?.len();
    }
    Ok(total)
}

/// No inputs means `builtin:web`; built-in names are separated from paths.
fn split_builtin(inputs: &[PathBuf]) -> (Vec<PathBuf>, Vec<PathBuf>) {
    let all: Vec<PathBuf> = if inputs.is_empty() {
        vec![PathBuf::from("builtin:web")]
    } else {
        inputs.to_vec()
    };
    all.into_iter()
        .partition(|p| p.to_str().is_some_and(|s| s.starts_with("builtin:")))
}

/// The text of a built-in corpus and whether it is TSV pairs.
fn builtin_text(name: &Path) -> Result<(&'static str, bool)> {
    match name.to_str().unwrap_or_default() {
        "builtin:web" => Ok((BUILTIN_WEB, false)),
        "builtin:kjv-rv1909" => Ok((BUILTIN_KJV_RV, true)),
        "builtin:us-inaugural" => Ok((BUILTIN_US_INAUGURAL, false)),
        other => Err(Error::data(
            name,
            format!("unknown built-in corpus `{other}` (builtin:web, builtin:kjv-rv1909, builtin:us-inaugural)"),
        )),
    }
}

/// Counts the bytes read from the file underneath a decompressor (progress in on-disk bytes).
struct Counting<'a, R> {
    inner: R,
    done: &'a AtomicU64,
}

impl<R: Read> Read for Counting<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.done.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// Opens a file as a stream of its (decompressed) bytes; bytes read from disk are added to `done`.
fn open_stream<'a>(path: &Path, done: &'a AtomicU64) -> Result<Box<dyn BufRead + 'a>> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let counted = Counting { inner: file, done };
    const BUF: usize = 1 << 20;
    Ok(match compression_of(path).0 {
        Compression::None => Box::new(BufReader::with_capacity(BUF, counted)),
        Compression::Gzip => Box::new(BufReader::with_capacity(
            BUF,
            flate2::read::MultiGzDecoder::new(BufReader::with_capacity(BUF, counted)),
        )),
        Compression::Zstd => {
            let dec =
                zstd::stream::read::Decoder::with_buffer(BufReader::with_capacity(BUF, counted))
                    .map_err(|e| Error::data(path, format!("not a readable zstd file: {e}")))?;
            Box::new(BufReader::with_capacity(BUF, dec))
        }
    })
}

/// Reads the lines of a UTF-8 stream, refusing binary data (a NUL byte in the first 64 KiB) and invalid
/// UTF-8 (naming the byte offset and line). Calls `f(line number from 1, line without its end)`.
fn for_each_line(
    path: &Path,
    mut stream: impl BufRead,
    mut f: impl FnMut(usize, &str) -> Result<()>,
) -> Result<()> {
    let mut buf = Vec::new();
    let (mut offset, mut n) = (0usize, 0usize);
    loop {
        buf.clear();
        let got = stream
            .read_until(b'\n', &mut buf)
            .map_err(|e| Error::data(path, format!("line {}: cannot read: {e}", n + 1)))?;
        if got == 0 {
            return Ok(());
        }
        n += 1;
        if offset < 1 << 16 && buf.iter().take((1 << 16) - offset).any(|&b| b == 0) {
            return Err(Error::data(
                path,
                "looks binary (contains NUL bytes); expected UTF-8 text",
            ));
        }
        let line = std::str::from_utf8(&buf).map_err(|e| {
            Error::data(
                path,
                format!(
                    "not valid UTF-8 at byte {} (line {n}); convert it to UTF-8 first",
                    offset + e.valid_up_to()
                ),
            )
        })?;
        offset += got;
        let line = line.strip_suffix('\n').unwrap_or(line);
        f(n, line.strip_suffix('\r').unwrap_or(line))?;
    }
}

/// Splits a stream of lines into documents (`DocumentSplit`) as they come.
struct TextSplitter {
    split: DocumentSplit,
    cur: Vec<String>,
}

impl TextSplitter {
    fn line(&mut self, line: &str, f: &mut dyn FnMut(Document) -> Result<()>) -> Result<()> {
        let l = line.trim();
        match self.split {
            DocumentSplit::Line => {
                if !l.is_empty() {
                    f(Document {
                        text: l.to_string(),
                        target: None,
                    })?;
                }
            }
            DocumentSplit::BlankLine => {
                if l.is_empty() {
                    self.end(f)?;
                } else {
                    self.cur.push(l.to_string());
                }
            }
        }
        Ok(())
    }

    fn end(&mut self, f: &mut dyn FnMut(Document) -> Result<()>) -> Result<()> {
        if !self.cur.is_empty() {
            let text = self.cur.join("\n");
            self.cur.clear();
            f(Document { text, target: None })?;
        }
        Ok(())
    }
}

fn jsonl_document(path: &Path, n: usize, line: &str, field: &str) -> Result<Option<Document>> {
    if line.trim().is_empty() {
        return Ok(None);
    }
    let v: serde_json::Value = serde_json::from_str(line)
        .map_err(|e| Error::data(path, format!("line {n}: invalid JSON: {e}")))?;
    match v.get(field) {
        Some(serde_json::Value::String(s)) => Ok((!s.trim().is_empty()).then(|| Document {
            text: s.clone(),
            target: None,
        })),
        Some(_) => Err(Error::data(
            path,
            format!("line {n}: field `{field}` is not a string"),
        )),
        None => {
            let keys: Vec<&String> = v
                .as_object()
                .map(|o| o.keys().collect())
                .unwrap_or_default();
            Err(Error::data(
                path,
                format!("line {n}: no field `{field}` (fields: {keys:?}); set data.text_field"),
            ))
        }
    }
}

fn tsv_document(path: &Path, n: usize, line: &str) -> Result<Option<Document>> {
    if line.trim().is_empty() {
        return Ok(None);
    }
    let Some((src, tgt)) = line.split_once('\t') else {
        return Err(Error::data(
            path,
            format!("line {n}: expected `source<TAB>target`"),
        ));
    };
    let (src, tgt) = (src.trim(), tgt.trim());
    if src.is_empty() || tgt.is_empty() {
        return Ok(None);
    }
    Ok(Some(Document {
        text: src.to_string(),
        target: Some(tgt.to_string()),
    }))
}

/// Streams the documents of one file to `f`. `done` counts the bytes read from disk.
pub fn for_each_in_file(
    path: &Path,
    format: InputFormat,
    split: DocumentSplit,
    field: &str,
    done: &AtomicU64,
    f: &mut dyn FnMut(Document) -> Result<()>,
) -> Result<()> {
    let mut count = 0u64;
    let mut f = |d: Document| {
        count += 1;
        f(d)
    };
    match format_of(path, format) {
        InputFormat::Parquet => {
            if compression_of(path).0 != Compression::None {
                return Err(Error::data(path, "a compressed Parquet file: Parquet compresses its pages itself; decompress the file"));
            }
            let before = done.load(Ordering::Relaxed);
            for_each_string(path, field, &mut |text| f(Document { text, target: None }))?;
            let size = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
            done.store(before + size, Ordering::Relaxed);
        }
        InputFormat::Auto | InputFormat::Text => {
            let mut s = TextSplitter {
                split,
                cur: Vec::new(),
            };
            for_each_line(path, open_stream(path, done)?, |_, line| {
                s.line(line, &mut f)
            })?;
            s.end(&mut f)?;
        }
        InputFormat::Jsonl => {
            for_each_line(
                path,
                open_stream(path, done)?,
                |n, line| match jsonl_document(path, n, line, field)? {
                    Some(d) => f(d),
                    None => Ok(()),
                },
            )?
        }
        InputFormat::Tsv => {
            for_each_line(
                path,
                open_stream(path, done)?,
                |n, line| match tsv_document(path, n, line)? {
                    Some(d) => f(d),
                    None => Ok(()),
                },
            )?
        }
    }
    if count == 0 {
        return Err(Error::data(path, "is empty: no documents found"));
    }
    Ok(())
}

/// Streams every document of every input, in order, to `f`: built-in corpora (`builtin:web`,
/// `builtin:kjv-rv1909`, `builtin:us-inaugural`) first, then files. No inputs means `builtin:web`. `done` counts the bytes
/// read (on disk) so far, for progress.
pub fn for_each_document(
    inputs: &[PathBuf],
    format: InputFormat,
    split: DocumentSplit,
    field: &str,
    done: &AtomicU64,
    f: &mut dyn FnMut(Document) -> Result<()>,
) -> Result<()> {
    let (named, files) = split_builtin(inputs);
    for name in &named {
        let (text, pairs) = builtin_text(name)?;
        // The built-in text corpus has one document per line.
        let mut s = TextSplitter {
            split: DocumentSplit::Line,
            cur: Vec::new(),
        };
        for (i, line) in text.lines().enumerate() {
            if pairs {
                if let Some(d) = tsv_document(name, i + 1, line)? {
                    f(d)?;
                }
            } else {
                s.line(line, f)?;
            }
        }
        s.end(f)?;
        done.fetch_add(text.len() as u64, Ordering::Relaxed);
    }
    for file in expand_inputs(&files)? {
        for_each_in_file(&file, format, split, field, done, f)?;
    }
    Ok(())
}

/// Reads all documents of one file into memory (tests, fuzzing and small inputs; `prepare` streams).
pub fn read_file(
    path: &Path,
    format: InputFormat,
    split: DocumentSplit,
    field: &str,
) -> Result<Vec<Document>> {
    let mut docs = Vec::new();
    for_each_in_file(path, format, split, field, &AtomicU64::new(0), &mut |d| {
        docs.push(d);
        Ok(())
    })?;
    Ok(docs)
}

/// Reads all documents of all inputs into memory (see [`for_each_document`]).
pub fn read_inputs(
    inputs: &[PathBuf],
    format: InputFormat,
    split: DocumentSplit,
    field: &str,
) -> Result<Vec<Document>> {
    let mut docs = Vec::new();
    for_each_document(inputs, format, split, field, &AtomicU64::new(0), &mut |d| {
        docs.push(d);
        Ok(())
    })?;
    Ok(docs)
}

/// Splits text into documents: non-empty lines, or blank-line separated blocks.
pub fn text_documents(text: &str, split: DocumentSplit) -> Vec<Document> {
    let mut out = Vec::new();
    let mut s = TextSplitter {
        split,
        cur: Vec::new(),
    };
    let mut push = |d: Document| {
        out.push(d);
        Ok(())
    };
    for line in text.lines() {
        let _ = s.line(line, &mut push);
    }
    let _ = s.end(&mut push);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_splits_by_line_or_blank_line() {
        let t = "a b\n\n c \nd\n\n\ne";
        assert_eq!(text_documents(t, DocumentSplit::Line).len(), 4);
        let blocks = text_documents(t, DocumentSplit::BlankLine);
        assert_eq!(
            blocks.iter().map(|d| d.text.as_str()).collect::<Vec<_>>(),
            ["a b", "c\nd", "e"]
        );
    }

    #[test]
    fn bad_inputs_name_file_and_what() {
        let dir = std::env::temp_dir().join(format!("remask-reader-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let bin = dir.join("x.txt");
        std::fs::write(&bin, [0u8, 1, 2, 3]).unwrap();
        let e = read_file(&bin, InputFormat::Auto, DocumentSplit::Line, "text")
            .unwrap_err()
            .to_string();
        assert!(e.contains("x.txt") && e.contains("binary"), "{e}");
        std::fs::write(&bin, [b'a', 0xff, b'b']).unwrap();
        let e = read_file(&bin, InputFormat::Auto, DocumentSplit::Line, "text")
            .unwrap_err()
            .to_string();
        assert!(e.contains("UTF-8") && e.contains("byte 1"), "{e}");
        std::fs::write(&bin, b"ok line\nsecond\nt\xffx\n").unwrap();
        let e = read_file(&bin, InputFormat::Auto, DocumentSplit::Line, "text")
            .unwrap_err()
            .to_string();
        assert!(e.contains("byte 16") && e.contains("line 3"), "{e}");
        std::fs::write(&bin, "\n \n").unwrap();
        assert!(
            read_file(&bin, InputFormat::Auto, DocumentSplit::Line, "text")
                .unwrap_err()
                .to_string()
                .contains("empty")
        );
        let j = dir.join("y.jsonl");
        std::fs::write(&j, "{\"text\": \"hi\"}\n{\"body\": \"x\"}\n").unwrap();
        let e = read_file(&j, InputFormat::Auto, DocumentSplit::Line, "text")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("y.jsonl") && e.contains("line 2") && e.contains("`text`"),
            "{e}"
        );
        let tsv = dir.join("z.tsv");
        std::fs::write(&tsv, "a\tb\nno tab here\n").unwrap();
        assert!(
            read_file(&tsv, InputFormat::Auto, DocumentSplit::Line, "text")
                .unwrap_err()
                .to_string()
                .contains("line 2")
        );
        let missing = dir.join("missing.txt");
        assert!(
            read_inputs(&[missing], InputFormat::Auto, DocumentSplit::Line, "text")
                .unwrap_err()
                .to_string()
                .contains("missing.txt")
        );
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn compressed_files_read_like_plain_ones_and_a_corrupt_one_is_named() {
        use std::io::Write;
        let dir = std::env::temp_dir().join(format!("remask-reader-z-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let text = "first document\nsecond one\n\nthird \u{e9}t\u{e9}\n";
        let jsonl = "{\"text\": \"a b c\"}\n{\"text\": \"d e\"}\n";
        let plain = dir.join("p.txt");
        std::fs::write(&plain, text).unwrap();
        let gz = dir.join("p.txt.gz");
        let mut enc = flate2::write::GzEncoder::new(
            std::fs::File::create(&gz).unwrap(),
            flate2::Compression::default(),
        );
        enc.write_all(text.as_bytes()).unwrap();
        enc.finish().unwrap();
        let zst = dir.join("q.jsonl.zst");
        std::fs::write(&zst, zstd::encode_all(jsonl.as_bytes(), 3).unwrap()).unwrap();
        let want = read_file(&plain, InputFormat::Auto, DocumentSplit::Line, "text").unwrap();
        assert_eq!(want.len(), 3);
        assert_eq!(
            read_file(&gz, InputFormat::Auto, DocumentSplit::Line, "text").unwrap(),
            want
        );
        let docs = read_file(&zst, InputFormat::Auto, DocumentSplit::Line, "text").unwrap();
        assert_eq!(
            docs.iter().map(|d| d.text.as_str()).collect::<Vec<_>>(),
            ["a b c", "d e"]
        );
        // A truncated gzip file: the error names the file and the line it reached.
        let bytes = std::fs::read(&gz).unwrap();
        let bad = dir.join("bad.txt.gz");
        std::fs::write(&bad, &bytes[..bytes.len() - 12]).unwrap();
        let e = read_file(&bad, InputFormat::Auto, DocumentSplit::Line, "text")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("bad.txt.gz") && e.contains("line") && !e.contains('\n'),
            "{e}"
        );
        let bad = dir.join("bad.jsonl.zst");
        std::fs::write(&bad, b"not zstd at all").unwrap();
        let e = read_file(&bad, InputFormat::Auto, DocumentSplit::Line, "text")
            .unwrap_err()
            .to_string();
        assert!(e.contains("bad.jsonl.zst"), "{e}");
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn globs_expand_sorted_and_a_pattern_matching_nothing_is_named() {
        let dir = std::env::temp_dir().join(format!("remask-reader-g-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("sub/deeper")).unwrap();
        for f in [
            "b.txt",
            "a.txt",
            "c.jsonl",
            "sub/d.txt",
            "sub/deeper/e.txt",
            ".hidden.txt",
        ] {
            std::fs::write(dir.join(f), "x\n").unwrap();
        }
        let names = |v: Vec<PathBuf>| -> Vec<String> {
            v.iter()
                .map(|p| p.strip_prefix(&dir).unwrap().to_string_lossy().into_owned())
                .collect()
        };
        assert_eq!(
            names(expand_inputs(&[dir.join("*.txt")]).unwrap()),
            ["a.txt", "b.txt"]
        );
        assert_eq!(
            names(expand_inputs(&[dir.join("[ab].*")]).unwrap()),
            ["a.txt", "b.txt"]
        );
        assert_eq!(
            names(expand_inputs(&[dir.join("**/*.txt")]).unwrap()),
            ["a.txt", "b.txt", "sub/d.txt", "sub/deeper/e.txt"]
        );
        assert_eq!(
            names(expand_inputs(&[dir.join("s?b")]).unwrap()),
            ["sub/d.txt", "sub/deeper/e.txt"]
        );
        let e = expand_inputs(&[dir.join("*.parquet")])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("*.parquet") && e.contains("matches no file"),
            "{e}"
        );
        assert!(wildcard_match(b"part-*.jsonl.gz", b"part-00012.jsonl.gz"));
        assert!(!wildcard_match(b"part-?.txt", b"part-12.txt"));
        assert!(wildcard_match(b"[!x]*", b"abc") && !wildcard_match(b"[!a]*", b"abc"));
        std::fs::remove_dir_all(&dir).ok();
    }
}
