//! Zero-shot minimal pairs (BLiMP's format and protocol): a model prefers the grammatical sentence of a
//! pair when it scores it higher.
//!
//! - **Masked models** (encoders with an MLM head): pseudo-log-likelihood (PLL; Salazar et al., 2020).
//!   Each non-special token is masked on its own and the log-probability of the true token at that
//!   position is summed. The single-mask copies of many sentences are scored together in batches
//!   (sentences sorted by length, so a batch pads little).
//! - **Causal models** (decoders): the summed log-probability of every token given the ones before it
//!   (the first token is the context, e.g. `[CLS]` or GPT-2's `<|endoftext|>`).
//!
//! A tie counts as wrong. Input is JSON Lines with `sentence_good`, `sentence_bad` and an optional
//! `UID` (the phenomenon); a directory means all of its `*.jsonl` files in name order.
//! `builtin:blimp-sample` is the sample of BLiMP compiled into remask (`data/blimp-sample.jsonl`).
//!
//! This module scores token ids; turning text into ids (with the model's own tokenizer and special
//! tokens) is the caller's: see [`encode_pairs`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::model::TrainModel;
use crate::{Batch, Error, Result, IGNORE_INDEX, PAD_DOC};

/// The BLiMP sample compiled into remask: the first 20 pairs of each of BLiMP's 67 phenomena
/// (Warstadt et al., TACL 2020; CC BY 4.0), fields trimmed to `sentence_good`, `sentence_bad`, `UID`.
pub const BUILTIN_BLIMP_SAMPLE: &str = include_str!("../../../../data/blimp-sample.jsonl");
/// The name that selects [`BUILTIN_BLIMP_SAMPLE`].
pub const BUILTIN_BLIMP_NAME: &str = "builtin:blimp-sample";

/// One pair as read, with where it came from (for error messages and the scores file).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MinimalPair {
    pub good: String,
    pub bad: String,
    /// The phenomenon (`UID`), or the file stem when the line has none.
    pub uid: String,
    /// The file (or built-in name) and the 1-based line.
    pub file: String,
    pub line: usize,
}

impl MinimalPair {
    /// `file:line`, the way errors name a pair.
    pub fn location(&self) -> String {
        format!("{}:{}", self.file, self.line)
    }
}

#[derive(Deserialize)]
struct RawPair {
    sentence_good: Option<serde_json::Value>,
    sentence_bad: Option<serde_json::Value>,
    #[serde(rename = "UID")]
    uid: Option<serde_json::Value>,
}

/// Reads minimal pairs from a JSONL file, a directory of `*.jsonl` files (in name order) or
/// `builtin:blimp-sample`. Errors name the file and line: not JSON, a missing or non-string
/// `sentence_good` / `sentence_bad`, an empty sentence, or no pairs at all.
pub fn read_pairs(path: &Path) -> Result<Vec<MinimalPair>> {
    if path.as_os_str() == BUILTIN_BLIMP_NAME {
        return parse_pairs(BUILTIN_BLIMP_SAMPLE, BUILTIN_BLIMP_NAME, "blimp-sample");
    }
    let files: Vec<PathBuf> = if path.is_dir() {
        let mut f: Vec<PathBuf> = std::fs::read_dir(path)
            .map_err(|e| Error::io(path, e))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "jsonl"))
            .collect();
        f.sort();
        if f.is_empty() {
            return Err(Error::data(
                path,
                "no *.jsonl files of minimal pairs in this directory",
            ));
        }
        f
    } else {
        vec![path.to_path_buf()]
    };
    let mut out = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f).map_err(|e| Error::io(&f, e))?;
        let stem = f
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        out.extend(parse_pairs(&text, &f.display().to_string(), &stem)?);
    }
    if out.is_empty() {
        return Err(Error::data(
            path,
            "no minimal pairs (expected JSON lines with sentence_good and sentence_bad)",
        ));
    }
    Ok(out)
}

/// Parses JSONL text; `file` names it in errors, `default_uid` is the UID of lines without one.
pub fn parse_pairs(text: &str, file: &str, default_uid: &str) -> Result<Vec<MinimalPair>> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let at = format!("{file}:{}", i + 1);
        if line.trim().is_empty() {
            continue;
        }
        let raw: RawPair = serde_json::from_str(line).map_err(|e| {
            Error::data(
                &at,
                format!("not a JSON object with sentence_good and sentence_bad ({e})"),
            )
        })?;
        let sentence = |v: Option<serde_json::Value>, key: &str| -> Result<String> {
            match v {
                None => Err(Error::data(&at, format!("missing field `{key}`"))),
                Some(serde_json::Value::String(s)) if s.trim().is_empty() => {
                    Err(Error::data(&at, format!("`{key}` is empty")))
                }
                Some(serde_json::Value::String(s)) => Ok(s),
                Some(other) => Err(Error::data(
                    &at,
                    format!("`{key}` must be a string, got {other}"),
                )),
            }
        };
        let good = sentence(raw.sentence_good, "sentence_good")?;
        let bad = sentence(raw.sentence_bad, "sentence_bad")?;
        let uid = match raw.uid {
            None | Some(serde_json::Value::Null) => default_uid.to_string(),
            Some(serde_json::Value::String(s)) => s,
            Some(other) => other.to_string(),
        };
        out.push(MinimalPair {
            good,
            bad,
            uid,
            file: file.to_string(),
            line: i + 1,
        });
    }
    Ok(out)
}

/// Keeps at most `n` pairs per UID (the first ones, in reading order); 0 keeps all.
pub fn first_per_uid(pairs: Vec<MinimalPair>, n: usize) -> Vec<MinimalPair> {
    if n == 0 {
        return pairs;
    }
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    pairs
        .into_iter()
        .filter(|p| {
            let c = seen.entry(p.uid.clone()).or_default();
            *c += 1;
            *c <= n
        })
        .collect()
}

/// A sentence as the model reads it: token ids with the model's special tokens, and which of them are
/// special (never masked for PLL).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EncodedSentence {
    pub ids: Vec<u32>,
    pub special: Vec<bool>,
}

/// A pair ready to score.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EncodedPair {
    pub good: EncodedSentence,
    pub bad: EncodedSentence,
}

/// How sentences are scored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scoring {
    /// Pseudo-log-likelihood of a masked model; `mask` is the `[MASK]` id.
    PseudoLogLikelihood { mask: u32 },
    /// Summed next-token log-probability of a causal model.
    Causal,
}

impl Scoring {
    pub fn name(&self) -> &'static str {
        match self {
            Scoring::PseudoLogLikelihood { .. } => "pseudo-log-likelihood",
            Scoring::Causal => "summed log-probability",
        }
    }
}

/// Encodes every pair with `encode` (text → ids and special flags) and checks what the model can
/// read: at least one scorable token and at most `max_positions` tokens. Errors name the pair's file
/// and line and which sentence.
pub fn encode_pairs(
    pairs: &[MinimalPair],
    max_positions: usize,
    scoring: Scoring,
    mut encode: impl FnMut(&str) -> Result<EncodedSentence>,
) -> Result<Vec<EncodedPair>> {
    let mut check = |p: &MinimalPair, text: &str, key: &str| -> Result<EncodedSentence> {
        let s = encode(text).map_err(|e| Error::data(p.location(), format!("`{key}`: {e}")))?;
        if s.ids.len() != s.special.len() {
            return Err(Error::Other(format!(
                "{}: encoder returned {} ids but {} special flags",
                p.location(),
                s.ids.len(),
                s.special.len()
            )));
        }
        if s.ids.len() > max_positions {
            return Err(Error::data(
                p.location(),
                format!("`{key}` is {} tokens long, more than the model's {max_positions} positions (max_positions): shorten it or drop the line", s.ids.len()),
            ));
        }
        let scorable = match scoring {
            Scoring::PseudoLogLikelihood { .. } => s.special.iter().filter(|&&x| !x).count(),
            Scoring::Causal => s.ids.len().saturating_sub(1),
        };
        if scorable == 0 {
            return Err(Error::data(
                p.location(),
                format!("`{key}` has no token to score after tokenization"),
            ));
        }
        Ok(s)
    };
    pairs
        .iter()
        .map(|p| {
            Ok(EncodedPair {
                good: check(p, &p.good, "sentence_good")?,
                bad: check(p, &p.bad, "sentence_bad")?,
            })
        })
        .collect()
}

/// The log-likelihood (PLL or summed log-probability, in nats) of every sentence, in order. Scored
/// `rows_per_pass` rows at a time (a PLL sentence of n scorable tokens is n rows, a causal one 1).
pub fn sentence_scores(
    model: &mut dyn TrainModel,
    sentences: &[&EncodedSentence],
    scoring: Scoring,
    rows_per_pass: usize,
) -> Result<Vec<f64>> {
    let rows_per_pass = rows_per_pass.max(1);
    // Sentences by length, so each batch pads to about its own length.
    let mut order: Vec<usize> = (0..sentences.len()).collect();
    order.sort_by_key(|&i| (sentences[i].ids.len(), i));
    // (sentence, masked position or None for a causal row)
    let mut items: Vec<(usize, Option<usize>)> = Vec::new();
    for &i in &order {
        let s = sentences[i];
        match scoring {
            Scoring::PseudoLogLikelihood { .. } => {
                items.extend(
                    s.special
                        .iter()
                        .enumerate()
                        .filter(|(_, &sp)| !sp)
                        .map(|(p, _)| (i, Some(p))),
                );
            }
            Scoring::Causal => items.push((i, None)),
        }
    }
    let mut scores = vec![0.0f64; sentences.len()];
    for chunk in items.chunks(rows_per_pass) {
        let batch = scoring_batch(sentences, chunk, scoring);
        model.forward_eval(&batch)?;
        let losses = model.last_label_losses();
        // Labels are read back in row-major order; each row's labels belong to its sentence.
        let mut k = 0;
        for (row, &(i, _)) in chunk.iter().enumerate() {
            let n = batch.labels[row * batch.seq_len..(row + 1) * batch.seq_len]
                .iter()
                .filter(|&&l| l != IGNORE_INDEX)
                .count();
            let Some(ls) = losses.get(k..k + n) else {
                return Err(Error::Other(format!(
                    "model returned {} label losses for a batch of {} labels",
                    losses.len(),
                    batch.num_labels()
                )));
            };
            scores[i] -= ls.iter().map(|&l| l as f64).sum::<f64>();
            k += n;
        }
    }
    Ok(scores)
}

/// One batch of scoring rows: a PLL row is the sentence with one position masked and labelled; a
/// causal row labels every token after the first with itself (label at t = token t + 1).
fn scoring_batch(
    sentences: &[&EncodedSentence],
    items: &[(usize, Option<usize>)],
    scoring: Scoring,
) -> Batch {
    let t = items
        .iter()
        .map(|&(i, _)| sentences[i].ids.len())
        .max()
        .unwrap_or(1)
        .max(1);
    let b = items.len();
    let mut batch = Batch {
        batch_size: b,
        seq_len: t,
        input_ids: vec![0; b * t],
        labels: vec![IGNORE_INDEX; b * t],
        positions: vec![0; b * t],
        doc_ids: vec![PAD_DOC; b * t],
        token_type_ids: vec![0; b * t],
        lengths: vec![0; b],
        prefix_lengths: vec![0; b],
        sample_ids: (0..b as u64).collect(),
        decoder: None,
    };
    for (row, &(i, pos)) in items.iter().enumerate() {
        let ids = &sentences[i].ids;
        let o = row * t;
        batch.input_ids[o..o + ids.len()].copy_from_slice(ids);
        for p in 0..ids.len() {
            batch.positions[o + p] = p as u32;
            batch.doc_ids[o + p] = row as u32;
        }
        batch.lengths[row] = ids.len() as u32;
        match (scoring, pos) {
            (Scoring::PseudoLogLikelihood { mask }, Some(p)) => {
                batch.input_ids[o + p] = mask;
                batch.labels[o + p] = ids[p] as i32;
            }
            _ => {
                for p in 0..ids.len() - 1 {
                    batch.labels[o + p] = ids[p + 1] as i32;
                }
            }
        }
    }
    batch
}

/// One pair's scores.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PairScore {
    pub file: String,
    pub line: usize,
    pub uid: String,
    pub sentence_good: String,
    pub sentence_bad: String,
    pub score_good: f64,
    pub score_bad: f64,
    /// `score_good > score_bad` (a tie is wrong).
    pub correct: bool,
}

/// Accuracy over the pairs of one UID.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct UidAccuracy {
    pub accuracy: f64,
    pub pairs: usize,
}

/// The result over a pair set.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MinimalPairResult {
    /// Share of pairs whose good sentence scored strictly higher.
    pub accuracy: f64,
    pub pairs: usize,
    pub by_uid: BTreeMap<String, UidAccuracy>,
    pub scoring: Scoring,
    /// Every pair's scores (not serialized with the summary; written by `--scores`).
    #[serde(skip)]
    pub scores: Vec<PairScore>,
}

/// Scores every pair with `model` and counts how often the good sentence wins.
pub fn score_pairs(
    model: &mut dyn TrainModel,
    pairs: &[MinimalPair],
    encoded: &[EncodedPair],
    scoring: Scoring,
    rows_per_pass: usize,
) -> Result<MinimalPairResult> {
    if pairs.len() != encoded.len() {
        return Err(Error::Other(format!(
            "{} pairs but {} encoded pairs",
            pairs.len(),
            encoded.len()
        )));
    }
    let sentences: Vec<&EncodedSentence> = encoded.iter().flat_map(|p| [&p.good, &p.bad]).collect();
    let s = sentence_scores(model, &sentences, scoring, rows_per_pass)?;
    let scores: Vec<PairScore> = pairs
        .iter()
        .enumerate()
        .map(|(k, p)| PairScore {
            file: p.file.clone(),
            line: p.line,
            uid: p.uid.clone(),
            sentence_good: p.good.clone(),
            sentence_bad: p.bad.clone(),
            score_good: s[2 * k],
            score_bad: s[2 * k + 1],
            correct: s[2 * k] > s[2 * k + 1],
        })
        .collect();
    Ok(summarize(scores, scoring))
}

/// Overall and per-UID accuracy of scored pairs.
pub fn summarize(scores: Vec<PairScore>, scoring: Scoring) -> MinimalPairResult {
    let mut by: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    for p in &scores {
        let e = by.entry(p.uid.clone()).or_default();
        e.0 += usize::from(p.correct);
        e.1 += 1;
    }
    let correct = scores.iter().filter(|p| p.correct).count();
    MinimalPairResult {
        accuracy: if scores.is_empty() {
            0.0
        } else {
            correct as f64 / scores.len() as f64
        },
        pairs: scores.len(),
        by_uid: by
            .into_iter()
            .map(|(k, (c, n))| {
                (
                    k,
                    UidAccuracy {
                        accuracy: c as f64 / n as f64,
                        pairs: n,
                    },
                )
            })
            .collect(),
        scoring,
        scores,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::testing::BigramModel;

    fn sentence(ids: &[u32]) -> EncodedSentence {
        let n = ids.len();
        EncodedSentence {
            ids: ids.to_vec(),
            special: (0..n).map(|i| i == 0 || i == n - 1).collect(),
        }
    }

    #[test]
    fn reads_pairs_and_names_bad_lines() {
        let good = "{\"sentence_good\": \"A cat sleeps.\", \"sentence_bad\": \"A cat sleep.\", \"UID\": \"agr\"}\n\n\
                    {\"sentence_good\": \"Cats sleep.\", \"sentence_bad\": \"Cats sleeps.\"}\n";
        let p = parse_pairs(good, "x.jsonl", "x").unwrap();
        assert_eq!(p.len(), 2);
        assert_eq!((p[0].uid.as_str(), p[0].line), ("agr", 1));
        assert_eq!((p[1].uid.as_str(), p[1].line), ("x", 3));
        for (text, want) in [
            (
                "{\"sentence_good\": \"a\"}",
                "x.jsonl:1: missing field `sentence_bad`",
            ),
            (
                "{\"sentence_good\": \"a\", \"sentence_bad\": \"  \"}",
                "x.jsonl:1: `sentence_bad` is empty",
            ),
            (
                "{\"sentence_good\": 3, \"sentence_bad\": \"b\"}",
                "x.jsonl:1: `sentence_good` must be a string",
            ),
            ("\n{not json", "x.jsonl:2: not a JSON object"),
        ] {
            let e = parse_pairs(text, "x.jsonl", "x").unwrap_err().to_string();
            assert!(e.starts_with(want), "{e}");
            assert_eq!(e.lines().count(), 1, "{e}");
        }
    }

    #[test]
    fn the_builtin_sample_has_67_phenomena_of_20_pairs() {
        let p = read_pairs(Path::new(BUILTIN_BLIMP_NAME)).unwrap();
        assert_eq!(p.len(), 67 * 20);
        let p = first_per_uid(p, 3);
        assert_eq!(p.len(), 67 * 3);
        assert_eq!(p[0].uid, p[2].uid);
        assert_ne!(p[0].uid, p[3].uid);
    }

    #[test]
    fn too_long_and_unscorable_sentences_name_the_line() {
        let pairs = parse_pairs(
            "{\"sentence_good\": \"a b c\", \"sentence_bad\": \"a b c d e\"}",
            "f",
            "f",
        )
        .unwrap();
        let enc = |t: &str| {
            Ok(sentence(
                &(0..t.split(' ').count() as u32 + 2).collect::<Vec<_>>(),
            ))
        };
        let e = encode_pairs(&pairs, 6, Scoring::Causal, enc)
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with(
                "f:1: `sentence_bad` is 7 tokens long, more than the model's 6 positions"
            ),
            "{e}"
        );
        let only_special = |_: &str| {
            Ok(EncodedSentence {
                ids: vec![1, 2],
                special: vec![true, true],
            })
        };
        let e = encode_pairs(
            &pairs,
            6,
            Scoring::PseudoLogLikelihood { mask: 3 },
            only_special,
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("f:1: `sentence_good` has no token to score"),
            "{e}"
        );
    }

    #[test]
    fn causal_scores_sum_next_token_log_probabilities() {
        // The bigram model predicts the label at t from the input at t - 1 (none at t = 0); a causal
        // row labels t with token t + 1: a hand computation.
        let mut m = BigramModel::new(8, 0.3, 5);
        let a = sentence(&[1, 4, 6, 2]);
        let b = sentence(&[1, 5, 2]);
        let got = sentence_scores(&mut m, &[&a, &b], Scoring::Causal, 1).unwrap();
        for (s, g) in [(&a, got[0]), (&b, got[1])] {
            let want: f64 = (0..s.ids.len() - 1)
                .map(|t| -(m.label_loss(t.checked_sub(1).map(|u| s.ids[u]), s.ids[t + 1]) as f64))
                .sum();
            assert!((g - want).abs() < 1e-5, "{g} vs {want}");
        }
        // Batching does not change a score.
        let together = sentence_scores(&mut m, &[&a, &b], Scoring::Causal, 64).unwrap();
        assert!((together[0] - got[0]).abs() < 1e-6 && (together[1] - got[1]).abs() < 1e-6);
    }

    #[test]
    fn pll_masks_each_non_special_token_once() {
        // Masking position p changes the bigram prediction of p (from p-1, unmasked) and nothing else
        // that is scored at p: PLL = Σ_p log p(x_p | x_{p-1}) over the non-special positions.
        let mut m = BigramModel::new(8, 0.3, 9);
        let s = sentence(&[1, 4, 6, 5, 2]);
        let got =
            sentence_scores(&mut m, &[&s], Scoring::PseudoLogLikelihood { mask: 7 }, 2).unwrap()[0];
        let want: f64 = (1..4)
            .map(|p| -(m.label_loss(Some(s.ids[p - 1]), s.ids[p]) as f64))
            .sum();
        assert!((got - want).abs() < 1e-5, "{got} vs {want}");
    }

    #[test]
    fn ties_are_wrong_and_uids_are_counted() {
        let score = |uid: &str, g: f64, b: f64| PairScore {
            file: "f".into(),
            line: 1,
            uid: uid.into(),
            sentence_good: String::new(),
            sentence_bad: String::new(),
            score_good: g,
            score_bad: b,
            correct: g > b,
        };
        let r = summarize(
            vec![
                score("a", -1.0, -2.0),
                score("a", -2.0, -2.0),
                score("b", -3.0, -1.0),
                score("b", -1.0, -3.0),
            ],
            Scoring::Causal,
        );
        assert_eq!((r.accuracy, r.pairs), (0.5, 4));
        assert_eq!(
            r.by_uid["a"],
            UidAccuracy {
                accuracy: 0.5,
                pairs: 2
            }
        );
        assert_eq!(r.by_uid["b"].pairs, 2);
    }
}
