//! `NativeMasker`: the native half of `remask.MaskingCollator`. A tokenizer (for its special tokens,
//! vocabulary and remask's word boundaries) plus a `remask::masking::MaskPlan`, the one owner of
//! *when* masks are decided. A batch row with sample index i seen in epoch e is masked by
//! `MaskPlan::mask_train(row, i, e, progress)`: the call `remask` training makes, so the collator's
//! masks equal the library's for the same tokenizer, seed and rows.
//!
//! B = rows in a batch, T = padded row length.

use std::mem::MaybeUninit;
use std::sync::Mutex;

use numpy::{PyArray2, PyArrayMethods, PyReadonlyArray1, PyReadonlyArray2};
use pyo3::prelude::*;
use rayon::prelude::*;
use remask::data::tokenizer::jieba_word_starts;
use remask::data::TextTokenizer;
use remask::masking::{collect_stats, Language, MaskPlan, MaskScratch, MaskedRow, MaskingConfig, StrategyKind, TokenRow, TokenRowBuf, Vocab};
use remask::{Batch, IGNORE_INDEX};

use crate::batch_input::{copy_checked, IdRange, Rows};
use crate::error::{to_py, value_error};

/// The `[B, T]` arrays a batch becomes: input ids, labels, attention mask (and token type ids).
type BatchArrays = Vec<Py<PyArray2<i64>>>;

const PIECE_STARTS: u8 = 0;
const PIECE_CONTINUES: u8 = 1;
const PIECE_SPECIAL: u8 = 2;

/// Batches of at least this many rows are masked on rayon's threads.
const PARALLEL_ROWS: usize = 128;

/// How a token id continues the previous token's word when no word boundaries are given.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PieceRule {
    /// WordPiece: pieces starting with `##` continue a word.
    ContinuationPrefix,
    /// Byte-level BPE (`Ġ`) or SentencePiece (`▁`): pieces *without* the marker continue a word.
    WordStartMarker,
    /// No marker found: every token is its own word.
    EveryToken,
}

/// A tokenizer and a masking plan; see the module doc.
#[pyclass(module = "remask._native", name = "NativeMasker")]
pub struct NativeMasker {
    tokenizer: TextTokenizer,
    plan: MaskPlan,
    language: Language,
    /// Per token id: [`PIECE_STARTS`], [`PIECE_CONTINUES`] (the previous word, when no word
    /// boundaries are given) or [`PIECE_SPECIAL`].
    piece_kind: Vec<u8>,
    rule: PieceRule,
    /// Reused by every `mask` call (a call that finds them in use, from another thread, allocates
    /// its own).
    buffers: Mutex<BatchBuffers>,
}

/// A batch gathered for masking, and one row's masking scratch. Kept between calls so that a call
/// allocates nothing but its output arrays.
#[derive(Default)]
struct BatchBuffers {
    /// `[B, T]` ids, padded with the pad id.
    ids: Vec<u32>,
    /// `[B, T]` word starts (true on padding).
    starts: Vec<bool>,
    /// Per row: its real tokens (the rest is padding).
    lengths: Vec<usize>,
    /// Per row: the sample index its masks are keyed by.
    indices: Vec<u64>,
    /// `[B, T]` token type ids (0 on padding), when the features have them.
    types: Vec<u32>,
    row: RowScratch,
}

/// One row's masking buffers (per thread when rows are masked in parallel).
#[derive(Default)]
struct RowScratch {
    mask: MaskScratch,
    input: Vec<u32>,
    labels: Vec<i32>,
}

/// How a batch is padded: to its longest row, rounded up to a multiple; rows longer than
/// `max_length` are refused.
#[derive(Clone, Copy, Debug)]
struct Padding {
    max_length: Option<usize>,
    multiple: Option<usize>,
}

impl Padding {
    /// T for a batch whose longest row has `longest` tokens (at least 1).
    fn length(self, longest: usize) -> PyResult<usize> {
        if let Some(m) = self.max_length {
            if longest > m {
                return Err(value_error(format!("a feature has {longest} tokens, more than max_length={m}: truncate when tokenizing")));
            }
        }
        let t = longest.max(1);
        Ok(match self.multiple {
            Some(m) if m > 1 => t.div_ceil(m) * m,
            _ => t,
        })
    }
}

impl NativeMasker {
    fn vocab_size(&self) -> u32 {
        self.tokenizer.vocab_size()
    }

    /// Word starts of a row from its token pieces (see [`PieceRule`]) into `out`; special tokens,
    /// and the token after one, start words.
    fn starts_from_pieces(&self, ids: &[u32], out: &mut [bool]) {
        let mut prev_special = true;
        for (o, &id) in out.iter_mut().zip(ids) {
            let kind = self.piece_kind.get(id as usize).copied().unwrap_or(PIECE_SPECIAL);
            *o = prev_special || kind != PIECE_CONTINUES;
            prev_special = kind == PIECE_SPECIAL;
        }
    }

    /// Reads a batch into `buf`: ids padded to T, word starts (`word_starts[r]`, or from the pieces
    /// when `None`), lengths, keys (`indices[r]`, or from the content when `None`) and token types
    /// (`token_types`, one row per feature and id, if given). Returns (B, T).
    fn gather(
        &self,
        rows: &Rows<'_>,
        word_starts: Option<Vec<Option<Vec<bool>>>>,
        indices: Option<Vec<Option<u64>>>,
        token_types: Option<&Rows<'_>>,
        padding: Padding,
        buf: &mut BatchBuffers,
    ) -> PyResult<(usize, usize)> {
        let b = rows.count();
        if b == 0 {
            return Err(value_error("an empty batch: the collator needs at least one feature"));
        }
        if let Some(w) = &word_starts {
            if w.len() != b {
                return Err(value_error(format!("{b} features but {} rows of word starts", w.len())));
            }
        }
        if let Some(ix) = &indices {
            if ix.len() != b {
                return Err(value_error(format!("{b} features but {} sample indices", ix.len())));
            }
        }
        if let Some(tt) = token_types {
            if tt.count() != b {
                return Err(value_error(format!("{b} features but {} rows of token_type_ids", tt.count())));
            }
        }
        let longest = (0..b).map(|r| rows.len_of(r)).max().unwrap_or(0);
        let t = padding.length(longest)?;
        let pad = self.tokenizer.specials().pad;
        let vocab = IdRange::Vocab(self.vocab_size());
        buf.ids.clear();
        buf.ids.resize(b * t, pad);
        buf.starts.clear();
        buf.starts.resize(b * t, true);
        buf.lengths.clear();
        buf.indices.clear();
        buf.types.clear();
        if token_types.is_some() {
            buf.types.resize(b * t, 0);
        }
        for r in 0..b {
            let n = rows.len_of(r);
            if let Some(tt) = token_types {
                if tt.len_of(r) != n {
                    return Err(value_error(format!("feature {r}: token_type_ids has {} entries for {n} input_ids", tt.len_of(r))));
                }
                tt.read(r, &mut buf.types[r * t..r * t + n], IdRange::TokenTypes)?;
            }
            let ids = &mut buf.ids[r * t..r * t + n];
            rows.read(r, ids, vocab)?;
            let starts = &mut buf.starts[r * t..r * t + n];
            match word_starts.as_ref().and_then(|w| w[r].as_deref()) {
                Some(w) if w.len() != n => {
                    return Err(value_error(format!("feature {r}: word_ids / word_starts has {} entries for {n} input_ids", w.len())))
                }
                Some(w) => starts.copy_from_slice(w),
                // Token masking reads no word starts (every token is a unit): the pieces rule, a
                // table lookup per id, is skipped for it.
                None if self.plan.config().strategy == StrategyKind::Token => {}
                None => self.starts_from_pieces(ids, starts),
            }
            buf.lengths.push(n);
            buf.indices.push(indices.as_ref().and_then(|ix| ix[r]).unwrap_or_else(|| content_index(ids)));
        }
        Ok((b, t))
    }
}

#[pymethods]
impl NativeMasker {
    /// `tokenizer_json`: the text of a `tokenizer.json`; `config_json`: a `[masking]` section as JSON
    /// (the keys of `remask::masking::MaskingConfig`); `token_counts`: per-id corpus frequencies for
    /// `frequency_weighted_random`.
    #[new]
    /// `source` names the tokenizer in errors (its path).
    /// `ngrams_dir`: a prepared directory holding PMI masking's `ngrams.bin` (strategy `pmi`).
    #[pyo3(signature = (tokenizer_json, config_json, seed, token_counts=None, source="<tokenizer>", ngrams_dir=None))]
    fn new(
        tokenizer_json: &str,
        config_json: &str,
        seed: u64,
        token_counts: Option<Vec<u64>>,
        source: &str,
        ngrams_dir: Option<std::path::PathBuf>,
    ) -> PyResult<Self> {
        let tokenizer = TextTokenizer::from_json(tokenizer_json, std::path::Path::new(source)).map_err(to_py)?;
        let config: MaskingConfig = serde_json::from_str(config_json).map_err(|e| value_error(format!("masking config: {e}")))?;
        if config.frequency_weighted_random && token_counts.is_none() {
            return Err(value_error(
                "frequency_weighted_random=True needs token_counts (one count per token id of the training corpus)",
            ));
        }
        if let Some(c) = &token_counts {
            if c.len() != tokenizer.vocab_size() as usize {
                return Err(value_error(format!("token_counts has {} entries, the tokenizer {} tokens", c.len(), tokenizer.vocab_size())));
            }
        }
        let ngrams = match &ngrams_dir {
            Some(dir) => Some(std::sync::Arc::new(
                remask::masking::NgramVocab::read(dir, tokenizer.vocab_size()).map_err(to_py)?,
            )),
            None => None,
        };
        let s = tokenizer.specials();
        let vocab = Vocab {
            size: tokenizer.vocab_size(),
            mask_id: s.mask,
            special_ids: &s.all,
            counts: token_counts.as_deref(),
            ngrams: ngrams.as_ref(),
        };
        let plan = MaskPlan::new(&config, &vocab, seed).map_err(to_py)?;
        let pieces: Vec<String> = (0..tokenizer.vocab_size()).map(|id| tokenizer.token(id)).collect();
        let rule = if pieces.iter().any(|p| p.starts_with("##")) {
            PieceRule::ContinuationPrefix
        } else if pieces.iter().any(|p| p.starts_with('Ġ') || p.starts_with('▁')) {
            PieceRule::WordStartMarker
        } else {
            PieceRule::EveryToken
        };
        let specials = &tokenizer.specials().all;
        let piece_kind = pieces
            .iter()
            .enumerate()
            .map(|(id, p)| {
                let continues = match rule {
                    PieceRule::ContinuationPrefix => p.starts_with("##"),
                    PieceRule::WordStartMarker => !(p.starts_with('Ġ') || p.starts_with('▁')),
                    PieceRule::EveryToken => false,
                };
                if specials.binary_search(&(id as u32)).is_ok() {
                    PIECE_SPECIAL
                } else if continues {
                    PIECE_CONTINUES
                } else {
                    PIECE_STARTS
                }
            })
            .collect();
        Ok(Self { language: config.language, tokenizer, plan, piece_kind, rule, buffers: Mutex::default() })
    }

    #[getter]
    fn vocab_size_(&self) -> u32 {
        self.vocab_size()
    }
    #[getter]
    fn pad_id(&self) -> u32 {
        self.tokenizer.specials().pad
    }
    #[getter]
    fn mask_id(&self) -> u32 {
        self.tokenizer.specials().mask
    }
    #[getter]
    fn cls_id(&self) -> u32 {
        self.tokenizer.specials().cls
    }
    #[getter]
    fn sep_id(&self) -> u32 {
        self.tokenizer.specials().sep
    }
    #[getter]
    fn special_ids(&self) -> Vec<u32> {
        self.tokenizer.specials().all.clone()
    }
    /// The word rule used when features carry no word boundaries.
    #[getter]
    fn piece_rule(&self) -> &'static str {
        match self.rule {
            PieceRule::ContinuationPrefix => "##-continuation",
            PieceRule::WordStartMarker => "word-start-marker",
            PieceRule::EveryToken => "every-token",
        }
    }
    /// The masking config in effect, as JSON (defaults filled in).
    fn config_json(&self) -> PyResult<String> {
        serde_json::to_string(self.plan.config()).map_err(|e| value_error(e.to_string()))
    }
    /// The epoch whose masks training epoch `epoch` sees (static: copy `epoch mod K`).
    fn key_epoch(&self, epoch: u64) -> u64 {
        self.plan.key_epoch(epoch)
    }

    /// Encodes texts as `remask prepare` does (word starts from the pre-tokenizer, or jieba for
    /// Chinese), framed `[CLS] … [SEP]`, cut to `max_length` tokens. Returns `(ids, word_starts)`.
    #[pyo3(signature = (texts, max_length=None))]
    fn encode(&self, py: Python<'_>, texts: Vec<String>, max_length: Option<usize>) -> PyResult<Vec<(Vec<u32>, Vec<bool>)>> {
        let s = self.tokenizer.specials().clone();
        let docs = py.detach(|| {
            let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
            self.tokenizer.encode_all(&refs, self.language)
        });
        let docs = docs.map_err(to_py)?;
        Ok(docs
            .into_iter()
            .map(|d| {
                let mut ids = Vec::with_capacity(d.ids.len() + 2);
                let mut starts = Vec::with_capacity(d.ids.len() + 2);
                ids.push(s.cls);
                starts.push(true);
                ids.extend(d.ids);
                starts.extend(d.word_starts);
                if let Some(m) = max_length {
                    let keep = m.max(2) - 1;
                    ids.truncate(keep);
                    starts.truncate(keep);
                }
                ids.push(s.sep);
                starts.push(true);
                (ids, starts)
            })
            .collect())
    }

    /// Word starts from Hugging Face character offsets `(start, end)` into `text`: with jieba when
    /// the masker's language is `zh`, or `auto` and the text has CJK characters (a token starts a word
    /// when its first character starts a jieba word); otherwise where a token does not touch the
    /// previous one (a space between them). Offsets `(0, 0)` (special tokens) start words.
    fn word_starts_from_offsets(&self, text: &str, offsets: Vec<(usize, usize)>) -> Vec<bool> {
        let use_jieba = match self.language {
            Language::Zh => true,
            Language::Other => false,
            Language::Auto => text.chars().any(remask::data::tokenizer::is_cjk),
        };
        // Character index → byte offset (HF offsets count characters; jieba counts bytes).
        let mut byte_of: Vec<usize> = text.char_indices().map(|(b, _)| b).collect();
        byte_of.push(text.len());
        let starts = if use_jieba { jieba_word_starts(text) } else { Vec::new() };
        let mut out = Vec::with_capacity(offsets.len());
        let (mut prev_start, mut prev_end) = (usize::MAX, usize::MAX);
        for (i, &(s, e)) in offsets.iter().enumerate() {
            let special = s == 0 && e == 0;
            let start = if special || i == 0 || prev_start == usize::MAX {
                true
            } else if use_jieba {
                let b = byte_of.get(s).copied().unwrap_or(text.len());
                s != prev_start && starts.binary_search(&b).is_ok()
            } else {
                s != prev_end
            };
            out.push(start);
            (prev_start, prev_end) = if special { (usize::MAX, usize::MAX) } else { (s, e) };
        }
        out
    }

    /// Word starts from the tokens alone (WordPiece `##`, BPE `Ġ` / SentencePiece `▁` markers).
    fn word_starts_from_tokens(&self, ids: Vec<i64>) -> PyResult<Vec<bool>> {
        let mut checked = vec![0; ids.len()];
        copy_checked(&ids, &mut checked, IdRange::Vocab(self.vocab_size()), 0)?;
        let mut starts = vec![false; ids.len()];
        self.starts_from_pieces(&checked, &mut starts);
        Ok(starts)
    }

    /// Pads and masks a batch. `features`: a list of rows (lists of ints or 1-D int64 arrays; other
    /// items go through `convert(item, r)`, which returns one of those) or a `[B, T]` int64 array.
    /// `word_starts[r]`: row r's word starts, or `None` (from its pieces); `indices[r]`: its sample
    /// index, or `None` for a key from its content ([`content_index`]). Rows are padded to the
    /// longest, rounded up to `pad_to_multiple_of`. Returns `input_ids`, `labels` (-100 where not
    /// chosen) and `attention_mask`, each `[B, T]` int64. Row r is
    /// `MaskPlan::mask_train(row, indices[r], epoch, progress)`; with `mlm=False`, labels are the
    /// ids (causal LM). `token_type_ids`: one row per feature (as `features`), padded with 0 into a
    /// fourth array.
    #[pyo3(signature = (features, word_starts=None, indices=None, epoch=0, progress=0.0, max_length=None, pad_to_multiple_of=None, mlm=true, convert=None, token_type_ids=None))]
    #[allow(clippy::too_many_arguments)]
    fn mask<'py>(
        &self,
        py: Python<'py>,
        features: &Bound<'py, PyAny>,
        word_starts: Option<Vec<Option<Vec<bool>>>>,
        indices: Option<Vec<Option<u64>>>,
        epoch: u64,
        progress: f32,
        max_length: Option<usize>,
        pad_to_multiple_of: Option<usize>,
        mlm: bool,
        convert: Option<Bound<'py, PyAny>>,
        token_type_ids: Option<Bound<'py, PyAny>>,
    ) -> PyResult<BatchArrays> {
        if !(0.0..=1.0).contains(&progress) {
            return Err(value_error(format!("progress must lie in [0, 1], got {progress}")));
        }
        let rows = Rows::of(features, convert.as_ref())?;
        let types = token_type_ids.map(|tt| Rows::of(&tt, convert.as_ref())).transpose()?;
        let mut shared = self.buffers.try_lock();
        let mut own = BatchBuffers::default();
        let buf = match shared.as_deref_mut() {
            Ok(b) => b,
            Err(_) => &mut own,
        };
        let padding = Padding { max_length, multiple: pad_to_multiple_of };
        let (b, t) = self.gather(&rows, word_starts, indices, types.as_ref(), padding, buf)?;
        drop((rows, types));
        // SAFETY: `PyArray2::new` makes C-ordered arrays of b * t >= 1 uninitialised elements, not
        // yet visible to Python; they are seen as `MaybeUninit` and written whole below, before
        // they are returned.
        let n_out = if buf.types.is_empty() { 3 } else { 4 };
        let arrays: Vec<_> = (0..n_out).map(|_| unsafe { PyArray2::<i64>::new(py, [b, t], false) }).collect();
        let uninit = |a: &Bound<'py, PyArray2<i64>>| unsafe { std::slice::from_raw_parts_mut(a.data().cast::<MaybeUninit<i64>>(), b * t) };
        let (input, labels, attn) = (uninit(&arrays[0]), uninit(&arrays[1]), uninit(&arrays[2]));
        if let Some(a) = arrays.get(3) {
            for (o, &x) in uninit(a).iter_mut().zip(&buf.types) {
                o.write(x as i64);
            }
        }
        let BatchBuffers { ids, starts, lengths, indices, row, .. } = buf;
        let (ids, starts, lengths, indices) = (&*ids, &*starts, &*lengths, &*indices);
        let fill = |r: usize, input: &mut [MaybeUninit<i64>], labels: &mut [MaybeUninit<i64>], attn: &mut [MaybeUninit<i64>], s: &mut RowScratch| {
            let span = r * t..(r + 1) * t;
            let (ids, n) = (&ids[span.clone()], lengths[r]);
            if mlm {
                s.input.resize(t, 0);
                s.labels.resize(t, 0);
                let row = TokenRow { ids, word_starts: &starts[span], length: n };
                self.plan.mask_train(row, indices[r], epoch, progress, MaskedRow { input: &mut s.input, labels: &mut s.labels }, &mut s.mask);
                write_row(input, labels, attn, &s.input, &s.labels, n);
            } else {
                write_row(input, labels, attn, ids, ids, n);
            }
        };
        // The ids were copied out of Python objects: masking runs without the GIL.
        py.detach(|| {
            // Small batches are not worth a hand-off to rayon's pool (tens of microseconds).
            if b < PARALLEL_ROWS {
                let items = input.chunks_mut(t).zip(labels.chunks_mut(t)).zip(attn.chunks_mut(t)).enumerate();
                items.for_each(|(r, ((i, l), a))| fill(r, i, l, a, row));
            } else {
                // Keyed draws make the result the same on any number of threads.
                let items = input.par_chunks_mut(t).zip(labels.par_chunks_mut(t)).zip(attn.par_chunks_mut(t)).enumerate();
                items.with_min_len(PARALLEL_ROWS / 2).for_each_init(RowScratch::default, |s, (r, ((i, l), a))| fill(r, i, l, a, s));
            }
        });
        Ok(arrays.into_iter().map(Bound::unbind).collect())
    }

    /// Adaptive masking: takes the loss of every labelled position of a batch (`labels` `[B, T]` as
    /// returned by [`Self::mask`], `losses` in row-major order of the labels that are not -100).
    /// A no-op for other modes.
    fn feedback(&mut self, labels: PyReadonlyArray2<'_, i64>, losses: PyReadonlyArray1<'_, f32>) -> PyResult<()> {
        let l = labels.as_array();
        let (b, t) = l.dim();
        let labels: Vec<i32> = l.iter().map(|&x| x.clamp(i32::MIN as i64, i32::MAX as i64) as i32).collect();
        let n_labelled = labels.iter().filter(|&&x| x != IGNORE_INDEX).count();
        let losses = losses.as_slice().map_err(|e| value_error(format!("losses: {e}")))?;
        if losses.len() != n_labelled {
            return Err(value_error(format!(
                "feedback: {} losses for {n_labelled} labelled positions (one loss per label that is not -100, row-major)",
                losses.len()
            )));
        }
        let batch = Batch::new(b, t).with_labels(labels);
        self.plan.feedback(&batch, losses);
        Ok(())
    }

    /// The statistics `remask inspect masking --json` reports, over the rows of `features` (as for
    /// [`Self::mask`]; row r keyed as sample r) for `epochs` epochs, as JSON: the library's
    /// `collect_stats` on these rows.
    #[pyo3(signature = (features, word_starts, epochs, max_length=None, pad_to_multiple_of=None))]
    fn stats_json(
        &self,
        features: &Bound<'_, PyAny>,
        word_starts: Option<Vec<Option<Vec<bool>>>>,
        epochs: u64,
        max_length: Option<usize>,
        pad_to_multiple_of: Option<usize>,
    ) -> PyResult<String> {
        let rows = Rows::of(features, None)?;
        let mut buf = BatchBuffers::default();
        let (b, t) = self.gather(&rows, word_starts, None, None, Padding { max_length, multiple: pad_to_multiple_of }, &mut buf)?;
        let rows: Vec<TokenRowBuf> = (0..b)
            .map(|r| TokenRowBuf { ids: buf.ids[r * t..(r + 1) * t].to_vec(), word_starts: buf.starts[r * t..(r + 1) * t].to_vec(), length: buf.lengths[r] })
            .collect();
        serde_json::to_string(&collect_stats(&self.plan, &rows, epochs)).map_err(|e| value_error(e.to_string()))
    }
}

/// Writes one output row: `input[i] = ids[i]`; on the first `n` (real) positions `labels[i] =
/// label[i]` and `attn[i]` = 1, on padding -100 and 0. (Real and padding parts are separate loops,
/// so that each vectorizes.)
fn write_row<L: Copy + Into<i64>>(input: &mut [MaybeUninit<i64>], labels: &mut [MaybeUninit<i64>], attn: &mut [MaybeUninit<i64>], ids: &[u32], label: &[L], n: usize) {
    for (o, &id) in input.iter_mut().zip(ids) {
        o.write(id as i64);
    }
    let (labels_real, labels_pad) = labels.split_at_mut(n);
    for (o, &l) in labels_real.iter_mut().zip(&label[..n]) {
        o.write(l.into());
    }
    labels_pad.iter_mut().for_each(|o| {
        o.write(IGNORE_INDEX as i64);
    });
    let (attn_real, attn_pad) = attn.split_at_mut(n);
    attn_real.iter_mut().for_each(|o| {
        o.write(1);
    });
    attn_pad.iter_mut().for_each(|o| {
        o.write(0);
    });
}

/// The sample index of a row that carries none: 2^63 + a 64-bit hash of its real token ids `ids`:
/// four FNV-1a-style lanes (id i goes to lane i mod 4; four independent multiply chains, ~4× the
/// speed of one), folded with the length. It does not depend on the DataLoader worker or the batch,
/// and never equals a real index below 2^63; equal rows get equal masks in an epoch.
pub fn content_index(ids: &[u32]) -> u64 {
    const BASIS: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut lanes = [BASIS, BASIS ^ 1, BASIS ^ 2, BASIS ^ 3];
    let mut quads = ids.chunks_exact(4);
    for q in &mut quads {
        for (h, &id) in lanes.iter_mut().zip(q) {
            *h = (*h ^ id as u64).wrapping_mul(PRIME);
        }
    }
    for (h, &id) in lanes.iter_mut().zip(quads.remainder()) {
        *h = (*h ^ id as u64).wrapping_mul(PRIME);
    }
    let h = lanes.iter().fold(BASIS ^ ids.len() as u64, |acc, &h| (acc ^ h).wrapping_mul(PRIME));
    h | (1 << 63)
}
