//! `remask prepare`: documents → tokenizer → keyed train/validation split → shards (+ static masks) →
//! `meta.json`, in one streaming pass. The same inputs and configs always give byte-identical output,
//! for any thread count.
//!
//! A prepared directory holds:
//! - `meta.json`: format version, the configs used, statistics, special token ids, split sizes, what
//!   the vocabulary was learnt from;
//! - `tokenizer.json`;
//! - `train-NNN.bin`, `validation-NNN.bin` (and `*-target-NNN.bin` for TSV pairs): shards of at most
//!   `data.shard_tokens` tokens each (a longer document gets a shard of its own);
//! - `token_counts.bin`: how often each token occurs in the training split ([`super::token_counts`]);
//! - `ngrams.bin`: PMI masking's n-gram vocabulary, counted over the training shards after the pass
//!   (strategy `pmi` only; [`super::ngram_pass`]);
//! - `static/copy-NNN.bin`: K statically masked copies of the training rows (static masking only;
//!   written by the masking plan's [`crate::masking::StaticWriter`]).
//!
//! The pass: a reader thread streams documents from the inputs ([`super::reader::for_each_document`])
//! in batches of about [`BATCH_BYTES`] of text through a channel of [`BATCH_QUEUE`] batches. Each batch
//! is encoded in parallel (rayon, results in input order) while, at the same time, the batch before
//! it is placed: in corpus order, on one thread, every document gets its split from a keyed hash of
//! its index, is appended to its split's [`ShardWriter`], counted, and (training split, static
//! masking) packed into rows ([`RowStream`]) that the plan masks and stores. Placing, counting and
//! shard writing thus overlap the encoding instead of leaving the other threads idle; the output is
//! the same as placing each batch right after encoding it, for any thread count and batch size.
//! Without a `tokenizer.json`, a first pass draws the vocabulary's sample
//! ([`super::vocab_sample`]) and learns it.
//!
//! Memory: nothing grows with the corpus except the static writer's index (8 bytes per 64 rows per
//! copy) and the token counts (8 bytes per vocabulary entry). The bound at the default settings is
//! the in-flight text (≤ (BATCH_QUEUE + 2) × BATCH_BYTES = 16 MiB), the encodings of two batches
//! (the one being placed and the one being encoded: ids and word starts, 5 bytes a token plus
//! about 100 bytes a document, ~15 MB each for short lines, plus the tokenizer's scratch of the
//! documents being encoded), one open shard per split and side (5 bytes × shard_tokens ≤ 84 MB
//! each, 2 × 84 MB for plain text), the tokenizer, and, without a `tokenizer.json`, the vocabulary
//! sample (`data.tokenizer.sample_bytes`, 64 MiB of text, and the learner's tables over its words,
//! freed before encoding): well under 1 GB (measured figures: `docs/data.md`, `docs/performance.md`).
//!
//! Completion rule: **a directory is prepared exactly when it holds `meta.json`** ([`Meta::read`]
//! refuses anything else). [`prepare`] locks the directory ([`crate::dir_lock`]), streams the whole
//! output into `OUT/.staging/`, and only then publishes it: `meta.json` is removed first, every staged
//! file is renamed into place (files of an earlier run that this one did not make are removed), and
//! the new `meta.json` is renamed in last. A crash, a kill (`kill -9`, Ctrl-C) or a full disk while
//! building leaves the earlier output untouched (the next run removes the staging directory and
//! starts again); one while publishing leaves no `meta.json`, which training refuses and the next
//! `prepare` rebuilds.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use rayon::prelude::*;
use remask_kernels::rng::{key, Purpose};

use super::config::{DataConfig, Packing};
use super::meta::{Meta, Split, SplitStats, FORMAT_VERSION};
use super::ngram_pass::write_ngrams;
use super::packer::RowStream;
use super::reader::{for_each_document, input_bytes, Document};
use super::shard::ShardWriter;
use super::token_counts::TrainingCounts;
use super::tokenizer::{EncodedDoc, TextTokenizer};
use super::vocab_sample::{document_bytes, VocabSample, VocabSource};
use crate::atomic_write::write_atomic;
use crate::dir_lock::DirLock;
use crate::fault::{FaultPlan, WriteBudget};
use crate::masking::{
    Language, MaskPlan, MaskingConfig, NgramMeta, NgramVocab, StaticWriter, Vocab,
};
use crate::{Error, Result};

/// The staging directory inside a prepared directory.
pub const STAGING: &str = ".staging";
/// Text per batch handed from the reader to the encoder.
pub const BATCH_BYTES: usize = 4 << 20;
/// Batches waiting in the channel between the reader and the encoder.
pub const BATCH_QUEUE: usize = 2;

/// Which pass `prepare` is in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    /// Reading the corpus to draw the vocabulary's sample.
    VocabularySample,
    /// Learning the vocabulary from the sample.
    VocabularyLearn,
    /// Reading, encoding and writing.
    Encode,
}

/// Where `prepare` is, reported after every batch (for a progress bar).
#[derive(Clone, Copy, Debug)]
pub struct Progress {
    pub stage: Stage,
    /// Input bytes read so far in this pass (on disk: compressed files count their compressed size).
    pub bytes_done: u64,
    /// Input bytes in all (same measure).
    pub bytes_total: u64,
    /// Documents read so far in this pass.
    pub documents: u64,
}

/// What a `prepare` run took.
#[derive(Clone, Copy, Debug, Default)]
pub struct Timings {
    /// Drawing the sample and learning the vocabulary (0 with a given `tokenizer.json`).
    pub vocabulary_s: f64,
    /// The encoding pass (reading, tokenizing, writing).
    pub encode_s: f64,
    /// Everything, publishing included.
    pub total_s: f64,
    /// Input bytes (on disk).
    pub input_bytes: u64,
}

/// The result of [`prepare_reporting`].
#[derive(Clone, Debug)]
pub struct Prepared {
    pub meta: Meta,
    pub timings: Timings,
}

/// Prepares `out` from `data` (and, for static masking, `masking`). Returns the meta written. See the
/// module docs for the lock and the completion rule.
pub fn prepare(data: &DataConfig, masking: &MaskingConfig, out: &Path) -> Result<Meta> {
    prepare_with(data, masking, out, &FaultPlan::default())
}

/// [`prepare`] with injected write faults (crash tests; [`FaultPlan`] is empty in normal builds).
pub fn prepare_with(
    data: &DataConfig,
    masking: &MaskingConfig,
    out: &Path,
    faults: &FaultPlan,
) -> Result<Meta> {
    Ok(prepare_reporting(data, masking, out, faults, &|_| {})?.meta)
}

/// [`prepare_with`], calling `report` with the progress after every batch, and returning the timings.
pub fn prepare_reporting(
    data: &DataConfig,
    masking: &MaskingConfig,
    out: &Path,
    faults: &FaultPlan,
    report: &(dyn Fn(&Progress) + Sync),
) -> Result<Prepared> {
    prepare_batched(data, masking, out, faults, report, BATCH_BYTES)
}

/// [`prepare_reporting`] with batches of about `batch_bytes` of text (tests use small batches to run
/// the pipeline over many of them; the output does not depend on the batch size).
fn prepare_batched(
    data: &DataConfig,
    masking: &MaskingConfig,
    out: &Path,
    faults: &FaultPlan,
    report: &(dyn Fn(&Progress) + Sync),
    batch_bytes: usize,
) -> Result<Prepared> {
    let start = Instant::now();
    data.validate("data")?;
    masking.validate("masking")?;
    let (meta, mut timings) = build_staged(out, "remask prepare", faults, |staging| {
        build(data, masking, staging, faults, report, batch_bytes)
    })?;
    timings.total_s = start.elapsed().as_secs_f64();
    Ok(Prepared { meta, timings })
}

/// Locks `out` for `command`, runs `build` into a fresh `OUT/.staging/` and publishes what it built
/// (see the module docs): a failed build keeps nothing of this run and leaves the earlier output
/// untouched. `prepare` and `prepare --merge` both write through here.
pub(super) fn build_staged<T>(
    out: &Path,
    command: &str,
    faults: &FaultPlan,
    build: impl FnOnce(&Path) -> Result<T>,
) -> Result<T> {
    let _lock = DirLock::acquire(out, command)?;
    let staging = out.join(STAGING);
    if staging.exists() {
        std::fs::remove_dir_all(&staging).map_err(|e| Error::io(&staging, e))?;
    }
    std::fs::create_dir_all(&staging).map_err(|e| Error::io(&staging, e))?;
    let built = match build(&staging) {
        Ok(built) => built,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&staging);
            return Err(e);
        }
    };
    publish(&staging, out, faults)?;
    Ok(built)
}

/// Moves a complete staging directory into `out`, `meta.json` last (see the module docs).
fn publish(staging: &Path, out: &Path, faults: &FaultPlan) -> Result<()> {
    let meta = out.join("meta.json");
    match std::fs::remove_file(&meta) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(Error::io(&meta, e)),
        _ => {}
    }
    fsync_dir(out)?;
    faults.pause();
    let staged: Vec<String> = entries(staging)?;
    for name in entries(out)? {
        if name != STAGING && name != crate::dir_lock::LOCK_FILE && !staged.contains(&name) {
            let p = out.join(&name);
            let removed = if p.is_dir() {
                std::fs::remove_dir_all(&p)
            } else {
                std::fs::remove_file(&p)
            };
            removed.map_err(|e| Error::io(&p, e))?;
        }
    }
    for name in staged.iter().filter(|n| *n != "meta.json") {
        let (from, to) = (staging.join(name), out.join(name));
        if to.is_dir() {
            std::fs::remove_dir_all(&to).map_err(|e| Error::io(&to, e))?;
        }
        std::fs::rename(&from, &to).map_err(|e| Error::io(&to, e))?;
    }
    fsync_dir(out)?;
    faults.pause();
    std::fs::rename(staging.join("meta.json"), &meta).map_err(|e| Error::io(&meta, e))?;
    fsync_dir(out)?;
    std::fs::remove_dir_all(staging).map_err(|e| Error::io(staging, e))
}

/// The names in a directory, sorted.
fn entries(dir: &Path) -> Result<Vec<String>> {
    let mut names = Vec::new();
    for e in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        names.push(
            e.map_err(|e| Error::io(dir, e))?
                .file_name()
                .to_string_lossy()
                .into_owned(),
        );
    }
    names.sort();
    Ok(names)
}

fn fsync_dir(dir: &Path) -> Result<()> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(dir, e))
}

/// Streams the documents of `data.inputs` in batches of about `batch_bytes` of text to `consume`,
/// reading on a separate thread (see the module docs). `done` counts the input bytes read.
fn stream_batches(
    data: &DataConfig,
    batch_bytes: usize,
    done: &AtomicU64,
    consume: &mut dyn FnMut(Vec<Document>) -> Result<()>,
) -> Result<()> {
    std::thread::scope(|scope| {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<Document>>(BATCH_QUEUE);
        let reader = scope.spawn(move || -> Result<()> {
            let (mut batch, mut bytes) = (Vec::new(), 0usize);
            let gone = || Error::Other("prepare: the encoder stopped".into());
            for_each_document(
                &data.inputs,
                data.format,
                data.documents,
                &data.text_field,
                done,
                &mut |d| {
                    bytes += document_bytes(&d) as usize;
                    batch.push(d);
                    if bytes >= batch_bytes {
                        bytes = 0;
                        tx.send(std::mem::take(&mut batch)).map_err(|_| gone())?;
                    }
                    Ok(())
                },
            )?;
            if !batch.is_empty() {
                tx.send(batch).map_err(|_| gone())?;
            }
            Ok(())
        });
        let mut consumed = Ok(());
        for batch in rx.iter() {
            consumed = consume(batch);
            if consumed.is_err() {
                break;
            }
        }
        drop(rx);
        let read = reader
            .join()
            .unwrap_or_else(|_| Err(Error::Other("prepare: the reader thread panicked".into())));
        // The encoder's error first: the reader's is then only that the encoder stopped.
        consumed.and(read)
    })
}

/// The keyed train/validation split of document `index`.
fn is_validation(data: &DataConfig, index: u64) -> bool {
    let threshold = (data.validation_share as f64 * u64::MAX as f64) as u64;
    key(data.seed, Purpose::Split, 0, index) < threshold
}

/// Whether the last document must go to validation: a validation share was asked, there are at least
/// two documents and the keyed split sent none there.
fn force_last_to_validation(data: &DataConfig, documents: u64, any_validation: bool) -> bool {
    data.validation_share > 0.0 && documents >= 2 && !any_validation
}

/// The first pass without a `tokenizer.json`: draws the sample and learns the vocabulary from it.
fn learn_vocabulary(
    data: &DataConfig,
    batch_bytes: usize,
    bytes_total: u64,
    report: &(dyn Fn(&Progress) + Sync),
) -> Result<(TextTokenizer, VocabSource)> {
    let done = AtomicU64::new(0);
    let mut sample = VocabSample::new(data.tokenizer.sample_bytes);
    let (mut index, mut any_val) = (0u64, false);
    let mut last: Option<(u64, u64, bool)> = None;
    stream_batches(data, batch_bytes, &done, &mut |batch| {
        for d in batch {
            let val = is_validation(data, index);
            any_val |= val;
            last = Some((index, document_bytes(&d), val));
            if !val {
                sample.offer(index, key(data.seed, Purpose::Split, 1, index), d);
            }
            index += 1;
        }
        report(&Progress {
            stage: Stage::VocabularySample,
            bytes_done: done.load(Ordering::Relaxed),
            bytes_total,
            documents: index,
        });
        Ok(())
    })?;
    if let Some((i, bytes, false)) = last {
        if force_last_to_validation(data, index, any_val) {
            sample.withdraw(i, bytes);
        }
    }
    report(&Progress {
        stage: Stage::VocabularyLearn,
        bytes_done: bytes_total,
        bytes_total,
        documents: index,
    });
    let (docs, source) = sample.finish();
    let mut texts: Vec<&str> = Vec::with_capacity(docs.len());
    for d in &docs {
        texts.push(&d.text);
        if let Some(t) = &d.target {
            texts.push(t);
        }
    }
    Ok((TextTokenizer::train(&data.tokenizer, &texts)?, source))
}

/// Charges every written file to the fault plan's budget (and pauses there in crash tests).
pub(super) struct Written<'a> {
    faults: &'a FaultPlan,
    budget: WriteBudget,
}

impl<'a> Written<'a> {
    pub(super) fn new(faults: &'a FaultPlan) -> Self {
        Self {
            faults,
            budget: faults.write_budget(),
        }
    }

    pub(super) fn file(&mut self, path: &Path) -> Result<()> {
        self.faults.pause();
        let bytes = std::fs::metadata(path)
            .map_err(|e| Error::io(path, e))?
            .len();
        self.budget.charge(bytes, path)
    }
}

/// One split being written: its shards and statistics.
struct SplitSink {
    shards: ShardWriter,
    targets: Option<ShardWriter>,
    stats: SplitStats,
    /// Real tokens in its rows (special tokens included), for the padding share.
    real: u64,
}

impl SplitSink {
    fn new(dir: &Path, split: Split, pairs: bool, shard_tokens: u64) -> Self {
        let name = split.name();
        Self {
            shards: ShardWriter::new(dir, name, shard_tokens),
            targets: pairs.then(|| ShardWriter::new(dir, &format!("{name}-target"), shard_tokens)),
            stats: SplitStats::default(),
            real: 0,
        }
    }

    /// Adds a document's rows to the statistics, as [`super::packer::Packer`] lays them out.
    fn count_rows(&mut self, len: usize, seq_len: usize, packing: Packing) {
        match packing {
            Packing::Pack => self.real += len as u64 + 2,
            Packing::Pad => {
                let body = seq_len - 2;
                let mut start = 0;
                loop {
                    self.stats.rows += 1;
                    self.real += ((len - start).min(body) + 2) as u64;
                    start += body;
                    if start >= len {
                        break;
                    }
                }
            }
        }
    }

    fn finish(
        mut self,
        seq_len: usize,
        packing: Packing,
        written: &mut Written<'_>,
    ) -> Result<SplitStats> {
        let mut on = |p: &Path| written.file(p);
        self.stats.shards = self.shards.finish(&mut on)?;
        if let Some(t) = self.targets {
            self.stats.target_shards = t.finish(&mut on)?;
        }
        if packing == Packing::Pack {
            self.stats.rows = self.real.div_ceil(seq_len as u64);
        }
        let positions = self.stats.rows * seq_len as u64;
        self.stats.padding_share = if positions == 0 {
            0.0
        } else {
            1.0 - self.real as f64 / positions as f64
        };
        Ok(self.stats)
    }
}

/// A document read and encoded, waiting for its split to be known.
struct Encoded {
    val: bool,
    doc: EncodedDoc,
    target: Option<EncodedDoc>,
}

/// The encoding pass's writer: places documents into their splits in corpus order.
struct Sink<'a> {
    data: &'a DataConfig,
    pairs: Option<bool>,
    train: SplitSink,
    validation: SplitSink,
    /// Corpus statistics of the training split (the hook for more: [`TrainingCounts`]).
    counts: TrainingCounts,
    rows: Option<(RowStream, StaticWriter<'a>)>,
    /// The last document, held back until the end shows whether it must go to validation.
    held: Option<Encoded>,
    documents: u64,
    any_val: bool,
    written: Written<'a>,
}

impl Sink<'_> {
    fn push(&mut self, enc: Encoded) -> Result<()> {
        self.documents += 1;
        self.any_val |= enc.val;
        match self.held.replace(enc) {
            Some(prev) => self.place(prev),
            None => Ok(()),
        }
    }

    fn place(&mut self, enc: Encoded) -> Result<()> {
        if enc.doc.ids.is_empty() || enc.target.as_ref().is_some_and(|t| t.ids.is_empty()) {
            return Ok(());
        }
        let (seq_len, packing) = (self.data.seq_len as usize, self.data.packing);
        let sink = if enc.val {
            &mut self.validation
        } else {
            &mut self.train
        };
        let written = &mut self.written;
        let mut on = |p: &Path| written.file(p);
        sink.shards.push(&enc.doc, &mut on)?;
        if let (Some(w), Some(t)) = (&mut sink.targets, &enc.target) {
            w.push(t, &mut on)?;
            sink.stats.target_tokens += t.ids.len() as u64;
        }
        sink.stats.documents += 1;
        sink.stats.tokens += enc.doc.ids.len() as u64;
        sink.count_rows(enc.doc.ids.len(), seq_len, packing);
        if !enc.val {
            self.counts.observe(&enc.doc.ids);
            if let Some((stream, writer)) = &mut self.rows {
                stream.push(&enc.doc, &mut |_, row| writer.push(row))?;
            }
        }
        Ok(())
    }

    /// Pushes an encoded batch, in order.
    fn place_all(&mut self, batch: Vec<Encoded>) -> Result<()> {
        batch.into_iter().try_for_each(|enc| self.push(enc))
    }

    /// Places the held document (in validation if no other went there; see
    /// [`force_last_to_validation`]).
    fn finish_documents(&mut self) -> Result<()> {
        if let Some(mut last) = self.held.take() {
            if force_last_to_validation(self.data, self.documents, self.any_val) {
                last.val = true;
            }
            self.place(last)?;
        }
        if let Some((stream, writer)) = &mut self.rows {
            stream.finish(&mut |_, row| writer.push(row))?;
        }
        Ok(())
    }
}

/// Encodes a batch in parallel (results in input order, whatever the thread count) and draws each
/// document's split; `first` is the global index of the batch's first document.
fn encode_batch(
    tokenizer: &TextTokenizer,
    data: &DataConfig,
    language: Language,
    batch: &[Document],
    first: u64,
) -> Result<Vec<Encoded>> {
    batch
        .par_iter()
        .enumerate()
        .map(|(k, d)| {
            let doc = tokenizer.encode(&d.text, language)?;
            let target = match &d.target {
                Some(t) => Some(tokenizer.encode(t, language)?),
                None => None,
            };
            Ok(Encoded {
                val: is_validation(data, first + k as u64),
                doc,
                target,
            })
        })
        .collect()
}

/// Writes the whole prepared output into `out` (the staging directory).
fn build(
    data: &DataConfig,
    masking: &MaskingConfig,
    out: &Path,
    faults: &FaultPlan,
    report: &(dyn Fn(&Progress) + Sync),
    batch_bytes: usize,
) -> Result<(Meta, Timings)> {
    let bytes_total = input_bytes(&data.inputs)?;
    let mut timings = Timings {
        input_bytes: bytes_total,
        ..Default::default()
    };
    let started = Instant::now();
    // Tokenizer: loaded, or learnt from a sample of the training documents (both sides for pairs).
    let (tokenizer, vocabulary) = match &data.tokenizer.path {
        Some(p) => (
            TextTokenizer::load(p)?,
            VocabSource::Loaded { path: p.clone() },
        ),
        None => learn_vocabulary(data, batch_bytes, bytes_total, report)?,
    };
    timings.vocabulary_s = started.elapsed().as_secs_f64();
    let encode_start = Instant::now();
    let mut written = Written {
        faults,
        budget: faults.write_budget(),
    };
    write_atomic(&out.join("tokenizer.json"), tokenizer.to_json()?.as_bytes())?;
    written.file(&out.join("tokenizer.json"))?;
    let specials = tokenizer.specials().clone();
    let vocab_size = tokenizer.vocab_size();

    // Masks decided now (static masking: the plan writes copy k as its masks of epoch k, row by row as
    // the training split streams past). Masks that draw by the token counts cannot be decided before
    // the counts are complete: those copies are written after the pass (`write_static_from_shards`).
    let seq_len = data.seq_len as usize;
    let plan_vocab = Vocab {
        size: vocab_size,
        mask_id: specials.mask,
        special_ids: &specials.all,
        counts: None,
        ngrams: None,
    };
    let plan = if masking.dupe_factor().is_some()
        && !masking.needs_token_counts()
        && !masking.needs_ngrams()
    {
        Some(MaskPlan::new(masking, &plan_vocab, data.seed)?)
    } else {
        None
    };
    let static_writer = match &plan {
        Some(p) => p.static_writer(out, seq_len)?,
        None => None,
    };
    let done = AtomicU64::new(0);
    let mut sink = Sink {
        data,
        pairs: None,
        train: SplitSink::new(out, Split::Train, false, data.shard_tokens),
        validation: SplitSink::new(out, Split::Validation, false, data.shard_tokens),
        counts: TrainingCounts::new(vocab_size),
        rows: static_writer.map(|w| (RowStream::new(seq_len, data.packing, &specials), w)),
        held: None,
        documents: 0,
        any_val: false,
        written,
    };
    let language = masking.language;
    // The pipeline: batch n + 1 is encoded (in parallel) while batch n is placed (in corpus order, on
    // one thread), so the placing, counting, static masking and shard writing overlap the encoding.
    // `read` is the global index of the next batch's first document.
    let mut read = 0u64;
    let mut encoded: Vec<Encoded> = Vec::new();
    stream_batches(data, batch_bytes, &done, &mut |batch| {
        if sink.pairs.is_none() {
            let pairs = batch.first().is_some_and(|d| d.target.is_some());
            sink.pairs = Some(pairs);
            sink.train = SplitSink::new(out, Split::Train, pairs, data.shard_tokens);
            sink.validation = SplitSink::new(out, Split::Validation, pairs, data.shard_tokens);
        }
        let pairs = sink.pairs == Some(true);
        if batch.iter().any(|d| d.target.is_some() != pairs) {
            return Err(Error::config(
                "data.inputs",
                "mixes TSV sentence pairs with plain documents",
            ));
        }
        let first = read;
        read += batch.len() as u64;
        let previous = std::mem::take(&mut encoded);
        let (next, placed) = rayon::join(
            || encode_batch(&tokenizer, data, language, &batch, first),
            || sink.place_all(previous),
        );
        drop(batch);
        // The earlier batch's error first (corpus order).
        placed?;
        encoded = next?;
        report(&Progress {
            stage: Stage::Encode,
            bytes_done: done.load(Ordering::Relaxed),
            bytes_total,
            documents: read,
        });
        Ok(())
    })?;
    sink.place_all(encoded)?;
    sink.finish_documents()?;
    let Sink {
        pairs,
        train,
        validation,
        counts,
        rows,
        mut written,
        ..
    } = sink;
    let train = train.finish(seq_len, data.packing, &mut written)?;
    let validation = validation.finish(seq_len, data.packing, &mut written)?;
    if train.documents == 0 {
        return Err(Error::config(
            "data.validation_share",
            "no training documents left; lower the validation share",
        ));
    }
    for file in counts.write(out)? {
        written.file(&file)?;
    }
    // PMI masking's n-gram vocabulary: two bounded-memory passes over the training shards just written.
    let ngrams = {
        let paths: Vec<PathBuf> = train.shards.iter().map(|s| out.join(s)).collect();
        let shards = super::shard::ShardSet::open(&paths)?;
        write_ngrams(out, &shards, &specials.all, masking)?
    };
    if let Some(ng) = &ngrams {
        written.file(&out.join(&ng.file))?;
    }
    let static_masks = match rows {
        Some((_, writer)) => {
            let stored = writer.finish()?;
            for file in &stored.files {
                written.file(&out.join(file))?;
            }
            Some(stored)
        }
        None => write_static_from_shards(
            data,
            masking,
            out,
            &specials,
            vocab_size,
            &counts.tokens,
            ngrams.as_ref(),
            &train,
            &mut written,
        )?,
    };
    let meta = Meta {
        format_version: FORMAT_VERSION,
        data: DataConfig {
            dir: None,
            ..data.clone()
        },
        masking: masking.clone(),
        vocab_size,
        special_tokens: specials,
        pairs: pairs == Some(true),
        train,
        validation,
        static_masks,
        vocabulary: Some(vocabulary),
        ngrams,
    };
    meta.write(out)?;
    timings.encode_s = encode_start.elapsed().as_secs_f64();
    Ok((meta, timings))
}

/// Static masking whose masks read the training split's token counts (frequency-weighted random
/// replacement) or PMI masking's n-grams: both are complete only after the pass, so the copies are
/// written in a second pass over the shards just written. Nothing for other masking.
#[allow(clippy::too_many_arguments)]
pub(super) fn write_static_from_shards(
    data: &DataConfig,
    masking: &MaskingConfig,
    out: &Path,
    specials: &super::tokenizer::SpecialTokens,
    vocab_size: u32,
    counts: &[u64],
    ngrams: Option<&NgramMeta>,
    train: &SplitStats,
    written: &mut Written<'_>,
) -> Result<Option<crate::masking::StaticMeta>> {
    if masking.dupe_factor().is_none() {
        return Ok(None);
    }
    let ngrams = match ngrams {
        Some(_) => Some(std::sync::Arc::new(NgramVocab::read(out, vocab_size)?)),
        None => None,
    };
    let vocab = Vocab {
        size: vocab_size,
        mask_id: specials.mask,
        special_ids: &specials.all,
        counts: Some(counts),
        ngrams: ngrams.as_ref(),
    };
    let plan = MaskPlan::new(masking, &vocab, data.seed)?;
    let paths: Vec<PathBuf> = train.shards.iter().map(|s| out.join(s)).collect();
    let shards = super::shard::ShardSet::open(&paths)?;
    let packer = super::packer::Packer::new(&shards, data.seq_len as usize, data.packing);
    let t = data.seq_len as usize;
    let (mut doc_ids, mut positions) = (vec![0u32; t], vec![0u32; t]);
    let mut fill = |r: u64, row: &mut crate::masking::TokenRowBuf| {
        let o = super::packer::RowOut {
            ids: &mut row.ids,
            word_starts: &mut row.word_starts,
            doc_ids: &mut doc_ids,
            positions: &mut positions,
        };
        row.length = packer.fill(&shards, specials, r, o);
    };
    let stored = plan.write_static_copies(out, packer.num_rows(), t, &mut fill)?;
    if let Some(stored) = &stored {
        for file in &stored.files {
            written.file(&out.join(file))?;
        }
    }
    Ok(stored)
}

/// Reads the `[data]` and `[masking]` sections of a run config (other sections are ignored here; the
/// trainer validates them). Missing sections take their defaults.
pub fn read_sections(path: &Path) -> Result<(DataConfig, MaskingConfig)> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let value: toml::Table =
        toml::from_str(&text).map_err(|e| Error::data(path, format!("not valid TOML: {e}")))?;
    let section = |name: &str| {
        value
            .get(name)
            .cloned()
            .unwrap_or(toml::Value::Table(Default::default()))
    };
    let data: DataConfig = section("data")
        .try_into()
        .map_err(|e| Error::config("data", format!("{} [data]: {e}", path.display())))?;
    let masking: MaskingConfig = section("masking")
        .try_into()
        .map_err(|e| Error::config("masking", format!("{} [masking]: {e}", path.display())))?;
    data.validate("data")?;
    masking.validate("masking")?;
    Ok((data, masking))
}

/// The prepared directory for a run: `data.dir` when set (it must hold a `meta.json`), otherwise
/// `fallback`, prepared now unless it already holds data prepared from the same `[data]` section (and,
/// for static masking, the same `[masking]` section).
pub fn ensure_prepared(
    data: &DataConfig,
    masking: &MaskingConfig,
    fallback: &Path,
) -> Result<std::path::PathBuf> {
    if let Some(dir) = &data.dir {
        Meta::read(dir)?;
        return Ok(dir.clone());
    }
    if let Ok(meta) = Meta::read(fallback) {
        let same_data = DataConfig {
            dir: None,
            ..meta.data.clone()
        } == *data;
        let same_static = masking.dupe_factor().is_none() || meta.masking == *masking;
        let same_ngrams =
            !masking.needs_ngrams() || meta.ngrams.as_ref().is_some_and(|n| n.pmi == masking.pmi);
        if same_data && same_static && same_ngrams {
            return Ok(fallback.to_path_buf());
        }
    }
    prepare(data, masking, fallback)?;
    Ok(fallback.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::masking::When;

    fn in_pool<T: Send>(threads: usize, f: impl FnOnce() -> T + Send) -> T {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap()
            .install(f)
    }

    fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
        let mut out = Vec::new();
        for sub in ["", "static"] {
            let mut names: Vec<PathBuf> = std::fs::read_dir(dir.join(sub))
                .unwrap()
                .map(|e| e.unwrap().path())
                .filter(|p| p.is_file() && !p.ends_with(crate::dir_lock::LOCK_FILE))
                .collect();
            names.sort();
            for p in names {
                out.push((
                    p.strip_prefix(dir).unwrap().display().to_string(),
                    std::fs::read(&p).unwrap(),
                ));
            }
        }
        out
    }

    /// Guards the pipeline (batch n + 1 encoded while batch n is placed): hundreds of small batches,
    /// on 1 or 2 threads, give the same bytes as one batch, shards, token counts and static copies
    /// included (static masking runs inside the placing step, shards close in the middle of batches).
    #[test]
    fn the_pipeline_gives_the_same_bytes_for_any_batch_size_and_thread_count() {
        let dir =
            std::env::temp_dir().join(format!("remask-prepare-pipeline-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let text: String = super::super::reader::BUILTIN_WEB
            .lines()
            .skip(1)
            .take(1500)
            .map(|l| format!("{l}\n"))
            .collect();
        let input = dir.join("corpus.txt");
        std::fs::write(&input, &text).unwrap();
        let mut data = DataConfig {
            inputs: vec![input],
            seq_len: 64,
            validation_share: 0.05,
            shard_tokens: 5000,
            ..Default::default()
        };
        data.tokenizer.vocab_size = 1200;
        let masking = MaskingConfig {
            when: When::Static { dupe_factor: 2 },
            ..Default::default()
        };
        let run = |name: &str, threads: usize, batch_bytes: usize| {
            let out = dir.join(name);
            let faults = FaultPlan::default();
            let p = in_pool(threads, || {
                prepare_batched(&data, &masking, &out, &faults, &|_| {}, batch_bytes)
            })
            .unwrap();
            (p.meta, files(&out))
        };
        let (meta, whole) = run("whole", 1, BATCH_BYTES);
        assert!(
            meta.train.shards.len() >= 3 && meta.validation.documents > 0,
            "{:?}",
            meta.train
        );
        assert!(
            text.len() / 2000 > 50,
            "too few batches to exercise the pipeline"
        );
        for (name, threads, batch_bytes) in
            [("small-1", 1, 2000), ("small-2", 2, 2000), ("tiny-2", 2, 1)]
        {
            let (m, got) = run(name, threads, batch_bytes);
            assert_eq!(m, meta, "{name}");
            assert_eq!(got.len(), whole.len(), "{name}");
            for ((fa, a), (fb, b)) in whole.iter().zip(&got) {
                assert_eq!((fa, a.len()), (fb, b.len()), "{name}");
                assert!(a == b, "{name}: {fa} differs");
            }
        }
        std::fs::remove_dir_all(&dir).ok();
    }
}
