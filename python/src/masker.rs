//! `NativeMasker`: the native half of `remask.MaskingCollator`. A tokenizer (for its special tokens,
//! vocabulary and remask's word boundaries) plus a `remask::masking::MaskPlan`, the one owner of
//! *when* masks are decided. A batch row with sample index i seen in epoch e is masked by
//! `MaskPlan::mask_train(row, i, e, progress)`: the call `remask` training makes, so the collator's
//! masks equal the library's for the same tokenizer, seed and rows.
//!
//! B = rows in a batch, T = padded row length.

use numpy::ndarray::Array2;
use numpy::{IntoPyArray, PyArray2, PyReadonlyArray1, PyReadonlyArray2};
use pyo3::prelude::*;
use pyo3::types::PyList;
use rayon::prelude::*;
use remask::data::tokenizer::jieba_word_starts;
use remask::data::TextTokenizer;
use remask::masking::{collect_stats, Language, MaskPlan, MaskScratch, MaskedRow, MaskingConfig, TokenRowBuf, Vocab};
use remask::{Batch, IGNORE_INDEX};

use crate::error::{to_py, value_error};

/// The three `[B, T]` arrays a batch becomes: input ids, labels, attention mask.
type BatchArrays = (Py<PyArray2<i64>>, Py<PyArray2<i64>>, Py<PyArray2<i64>>);

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
    /// V, cached: `TextTokenizer::vocab_size` builds the vocabulary map on every call.
    vocab_size: u32,
}

impl NativeMasker {
    fn vocab_size(&self) -> u32 {
        self.vocab_size
    }

    /// Word starts of a row from its token pieces (see [`PieceRule`]); special tokens, and the token
    /// after one, start words.
    fn starts_from_pieces(&self, ids: &[u32]) -> Vec<bool> {
        let mut prev_special = true;
        ids.iter()
            .map(|&id| {
                let kind = self.piece_kind.get(id as usize).copied().unwrap_or(PIECE_SPECIAL);
                let start = prev_special || kind != PIECE_CONTINUES;
                prev_special = kind == PIECE_SPECIAL;
                start
            })
            .collect()
    }

    /// Checks one row's ids against the vocabulary; `row` names it in the error.
    fn checked_ids(&self, row: usize, ids: &[i64], capacity: usize) -> PyResult<Vec<u32>> {
        let v = self.vocab_size() as i64;
        // One branch-free pass (it vectorizes); the error path looks for the culprit.
        if ids.iter().fold(true, |ok, &id| ok & (0..v).contains(&id)) {
            let mut out = Vec::with_capacity(capacity.max(ids.len()));
            out.extend(ids.iter().map(|&id| id as u32));
            return Ok(out);
        }
        let (i, id) = ids.iter().enumerate().find(|(_, &id)| !(0..v).contains(&id)).map_or((0, 0), |(i, &id)| (i, id));
        Err(value_error(format!(
            "input_ids of feature {row}, position {i}: id {id} is outside the tokenizer's vocabulary (0..{v}); was the collator given the tokenizer that made these ids?"
        )))
    }

    /// Rows of `seq_len` from ids and optional word starts (padding: the pad id, word starts true).
    fn rows(&self, ids: &[Vec<i64>], word_starts: &[Option<Vec<bool>>], seq_len: usize) -> PyResult<Vec<TokenRowBuf>> {
        if word_starts.len() != ids.len() {
            return Err(value_error(format!("{} rows of ids but {} of word starts", ids.len(), word_starts.len())));
        }
        let pad = self.tokenizer.specials().pad;
        ids.iter()
            .zip(word_starts)
            .enumerate()
            .map(|(r, (row_ids, ws))| {
                if row_ids.len() > seq_len {
                    return Err(value_error(format!("feature {r} has {} tokens, more than the padded length {seq_len}", row_ids.len())));
                }
                let mut ids = self.checked_ids(r, row_ids, seq_len)?;
                let mut starts = match ws {
                    Some(w) if w.len() != ids.len() => {
                        return Err(value_error(format!(
                            "feature {r}: word_ids / word_starts has {} entries for {} input_ids",
                            w.len(),
                            ids.len()
                        )))
                    }
                    Some(w) => w.clone(),
                    None => self.starts_from_pieces(&ids),
                };
                starts.reserve(seq_len - starts.len());
                let length = ids.len();
                ids.resize(seq_len, pad);
                starts.resize(seq_len, true);
                Ok(TokenRowBuf { ids, word_starts: starts, length })
            })
            .collect()
    }
}

#[pymethods]
impl NativeMasker {
    /// `tokenizer_json`: the text of a `tokenizer.json`; `config_json`: a `[masking]` section as JSON
    /// (the keys of `remask::masking::MaskingConfig`); `token_counts`: per-id corpus frequencies for
    /// `frequency_weighted_random`.
    #[new]
    /// `source` names the tokenizer in errors (its path).
    #[pyo3(signature = (tokenizer_json, config_json, seed, token_counts=None, source="<tokenizer>"))]
    fn new(tokenizer_json: &str, config_json: &str, seed: u64, token_counts: Option<Vec<u64>>, source: &str) -> PyResult<Self> {
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
        let s = tokenizer.specials();
        let vocab = Vocab { size: tokenizer.vocab_size(), mask_id: s.mask, special_ids: &s.all, counts: token_counts.as_deref() };
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
        let vocab_size = tokenizer.vocab_size();
        Ok(Self { language: config.language, tokenizer, plan, piece_kind, rule, vocab_size })
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
        let ids = self.checked_ids(0, &ids, 0)?;
        Ok(self.starts_from_pieces(&ids))
    }

    /// Masks a batch. `ids[r]`: the tokens of feature r (special tokens included); `word_starts[r]`:
    /// its word starts or `None` (from the pieces); `indices[r]`: its sample index, or `None` for a
    /// key from its content ([`content_index`]). Rows are padded
    /// to `seq_len`. Returns `input_ids`, `labels` (-100 where not chosen) and `attention_mask`, each
    /// `[B, seq_len]`. Row r is `MaskPlan::mask_train(row, indices[r], epoch, progress)`.
    fn mask(
        &self,
        py: Python<'_>,
        ids: Vec<Bound<'_, PyAny>>,
        word_starts: Vec<Option<Vec<bool>>>,
        indices: Vec<Option<u64>>,
        epoch: u64,
        progress: f32,
        seq_len: usize,
    ) -> PyResult<BatchArrays> {
        if indices.len() != ids.len() {
            return Err(value_error(format!("{} features but {} sample indices", ids.len(), indices.len())));
        }
        if !(0.0..=1.0).contains(&progress) {
            return Err(value_error(format!("progress must lie in [0, 1], got {progress}")));
        }
        let ids = ids.iter().map(extract_ids).collect::<PyResult<Vec<_>>>()?;
        let rows = self.rows(&ids, &word_starts, seq_len)?;
        let indices: Vec<u64> = indices.iter().zip(&rows).map(|(i, row)| i.unwrap_or_else(|| content_index(row))).collect();
        let (b, t) = (rows.len(), seq_len);
        let (mut input, mut labels, mut attn) = (vec![0i64; b * t], vec![0i64; b * t], vec![0i64; b * t]);
        let mut run = || {
            let work = |(((row, &index), input), (labels, attn)): (((&TokenRowBuf, &u64), &mut [i64]), (&mut [i64], &mut [i64])),
                        scratch: &mut (MaskScratch, Vec<u32>, Vec<i32>)| {
                let (scratch, inp, lab) = scratch;
                inp.resize(t, 0);
                lab.resize(t, 0);
                self.plan.mask_train(row.view(), index, epoch, progress, MaskedRow { input: inp, labels: lab }, scratch);
                for i in 0..t {
                    let real = i < row.length;
                    input[i] = inp[i] as i64;
                    labels[i] = if real { lab[i] as i64 } else { IGNORE_INDEX as i64 };
                    attn[i] = real as i64;
                }
            };
            if t == 0 {
                return;
            }
            // Small batches are not worth a hand-off to rayon's pool (tens of microseconds); keyed
            // draws make the result the same either way.
            if b < PARALLEL_ROWS {
                let mut s = (MaskScratch::default(), Vec::new(), Vec::new());
                let items = rows.iter().zip(indices.iter()).zip(input.chunks_mut(t)).zip(labels.chunks_mut(t).zip(attn.chunks_mut(t)));
                items.for_each(|item| work(item, &mut s));
            } else {
                let items = rows.par_iter().zip(indices.par_iter()).zip(input.par_chunks_mut(t)).zip(labels.par_chunks_mut(t).zip(attn.par_chunks_mut(t)));
                items.with_min_len(PARALLEL_ROWS / 2).for_each_init(|| (MaskScratch::default(), Vec::new(), Vec::new()), |s, item| work(item, s));
            }
        };
        // Releasing the GIL costs more than masking a small batch.
        if b < PARALLEL_ROWS {
            run();
        } else {
            py.detach(run);
        }
        let shape = (b, t);
        let arr = |v: Vec<i64>| -> PyResult<Py<PyArray2<i64>>> {
            Ok(Array2::from_shape_vec(shape, v).map_err(|e| value_error(e.to_string()))?.into_pyarray(py).unbind())
        };
        Ok((arr(input)?, arr(labels)?, arr(attn)?))
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

    /// The statistics `remask inspect masking --json` reports, over `ids` rows (row r keyed as sample
    /// r) for `epochs` epochs, as JSON: the library's `collect_stats` on these rows.
    fn stats_json(&self, ids: Vec<Vec<i64>>, word_starts: Vec<Option<Vec<bool>>>, seq_len: usize, epochs: u64) -> PyResult<String> {
        let rows = self.rows(&ids, &word_starts, seq_len)?;
        serde_json::to_string(&collect_stats(&self.plan, &rows, epochs)).map_err(|e| value_error(e.to_string()))
    }
}

/// A row of token ids from a Python list (the fast path: one call per element), a NumPy array or
/// any other sequence of integers.
fn extract_ids(obj: &Bound<'_, PyAny>) -> PyResult<Vec<i64>> {
    if let Ok(list) = obj.cast::<PyList>() {
        let mut out = Vec::with_capacity(list.len());
        for item in list.iter() {
            out.push(item.extract::<i64>()?);
        }
        return Ok(out);
    }
    if let Ok(a) = obj.extract::<PyReadonlyArray1<'_, i64>>() {
        return Ok(a.as_array().to_vec());
    }
    obj.extract::<Vec<i64>>()
}

/// The sample index of a row that carries none: 2^63 + a 64-bit FNV-1a-style hash of its real token
/// ids (one step per id). It does not depend on the DataLoader worker or the batch, and never equals
/// a real index below 2^63; equal rows get equal masks in an epoch.
pub fn content_index(row: &TokenRowBuf) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &id in &row.ids[..row.length] {
        h = (h ^ id as u64).wrapping_mul(0x0000_0100_0000_01b3);
    }
    h | (1 << 63)
}
