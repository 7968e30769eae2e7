//! The short road through a BERT-style tokenizer for printable-ASCII documents: the words and ids HF
//! `tokenizers` gives, without its string machinery.
//!
//! HF's pipeline keeps every intermediate string with a byte-by-byte alignment to the original text
//! (each normaliser step and each pre-tokenizer split rebuilds a string and its alignments), and its
//! WordPiece model allocates a string for every piece it looks up and for every token it returns.
//! `prepare` needs none of that: only ids and where words start. On printable ASCII (bytes ' ' to
//! '~') the result of each stage is known directly:
//! - BERT's normaliser leaves such text as it is, or lower-cases it ([`TextTokenizer`]'s
//!   `normalised_ascii`);
//! - BERT's pre-tokenizer cuts it at spaces and around each ASCII punctuation character
//!   ([`bert_ascii_words`]), provided no added token occurs in it ([`AddedScan`]);
//! - WordPiece's greedy longest-match-first search is the same search over borrowed slices
//!   ([`WordPieceIds`]).
//!
//! Anything else (other bytes, other normalisers, pre-tokenizers or models, a text that may hold an
//! added token) goes through HF's own stages. Both roads give the same ids and word starts: tested
//! against `Tokenizer::encode` in `tokenizer.rs`.
//!
//! [`TextTokenizer`]: super::tokenizer::TextTokenizer

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use tokenizers::Tokenizer;

use crate::{Error, Result};

/// Printable ASCII: bytes ' ' to '~'.
pub fn is_printable_ascii(text: &str) -> bool {
    text.bytes().all(|c| (b' '..=b'~').contains(&c))
}

/// Cuts printable-ASCII text into words as BERT's pre-tokenizer does: at spaces (dropped) and around
/// every ASCII punctuation character (a word of its own). On printable ASCII the pre-tokenizer's
/// whitespace is only ' ' and its punctuation (`is_ascii_punctuation` or Unicode punctuation) is
/// exactly `is_ascii_punctuation`.
pub fn bert_ascii_words(text: &str, mut word: impl FnMut(&str) -> Result<()>) -> Result<()> {
    let mut start = 0;
    for (i, c) in text.bytes().enumerate() {
        if c == b' ' || c.is_ascii_punctuation() {
            if start < i {
                word(&text[start..i])?;
            }
            if c != b' ' {
                word(&text[i..i + 1])?;
            }
            start = i + 1;
        }
    }
    if start < text.len() {
        word(&text[start..])?;
    }
    Ok(())
}

/// The added tokens (special tokens included) as they may appear in a text, in ASCII lower case:
/// each token's content and its normalised form. A text that contains none of them, in any case,
/// has no added token for the tokenizer to split out, before or after normalising.
#[derive(Clone, Debug)]
pub struct AddedScan {
    folded: Vec<String>,
    /// `first[b]`: some folded token starts with byte `b` (all true if one is empty).
    first: [bool; 256],
}

impl AddedScan {
    pub fn new(tokenizer: &Tokenizer) -> Result<Self> {
        use tokenizers::Normalizer;
        let mut folded = Vec::new();
        for t in tokenizer.get_added_tokens_decoder().values() {
            folded.push(t.content.to_ascii_lowercase());
            if let Some(norm) = tokenizer.get_normalizer() {
                let mut n = tokenizers::NormalizedString::from(t.content.as_str());
                norm.normalize(&mut n).map_err(|e| {
                    Error::Other(format!(
                        "tokenizer: normalising the added token {:?}: {e}",
                        t.content
                    ))
                })?;
                folded.push(n.get().to_ascii_lowercase());
            }
        }
        folded.sort();
        folded.dedup();
        let mut first = [false; 256];
        for t in &folded {
            match t.as_bytes().first() {
                Some(&b) => first[b as usize] = true,
                None => first = [true; 256],
            }
        }
        Ok(Self { folded, first })
    }

    /// Whether an added token may occur in `text` (ignoring ASCII case).
    pub fn may_occur_in(&self, text: &str) -> bool {
        if !text
            .bytes()
            .any(|c| self.first[c.to_ascii_lowercase() as usize])
        {
            return false;
        }
        let lower = text.to_ascii_lowercase();
        self.folded.iter().any(|t| lower.contains(t.as_str()))
    }
}

/// FxHash (rustc's): fast on short keys; the keys are a vocabulary's tokens.
#[derive(Default)]
struct FxHasher(u64);

impl Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut add =
            |w: u64| self.0 = (self.0.rotate_left(5) ^ w).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            add(u64::from_le_bytes([
                c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7],
            ]));
        }
        for &b in chunks.remainder() {
            add(b as u64);
        }
    }

    fn write_u8(&mut self, b: u8) {
        self.write(&[b]);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

type Map = HashMap<String, u32, BuildHasherDefault<FxHasher>>;

/// A WordPiece model's search (`tokenizers::models::wordpiece::WordPiece::tokenize`) over borrowed
/// slices: at each position the longest vocabulary entry that matches (prefixed with `##` after the
/// word's first piece), the whole word as the unknown token when some position has none or the word
/// is longer than `max_input_chars_per_word` characters.
#[derive(Clone, Debug)]
pub struct WordPieceIds {
    /// The whole vocabulary: pieces that start a word.
    whole: Map,
    /// The entries that begin with the continuing-subword prefix, without it: pieces inside a word.
    inner: Map,
    unk: Option<u32>,
    unk_token: String,
    max_chars: usize,
}

impl WordPieceIds {
    /// The search of `tokenizer`'s model, if it is WordPiece.
    pub fn of(tokenizer: &Tokenizer) -> Option<Self> {
        use tokenizers::Model;
        let tokenizers::ModelWrapper::WordPiece(wp) = tokenizer.get_model() else {
            return None;
        };
        let prefix = wp.continuing_subword_prefix.as_str();
        let (mut whole, mut inner) = (Map::default(), Map::default());
        for (token, id) in wp.get_vocab() {
            if let Some(rest) = token.strip_prefix(prefix) {
                inner.insert(rest.to_string(), id);
            }
            whole.insert(token, id);
        }
        let unk = whole.get(&wp.unk_token).copied();
        Some(Self {
            whole,
            inner,
            unk,
            unk_token: wp.unk_token.clone(),
            max_chars: wp.max_input_chars_per_word,
        })
    }

    /// Appends the ids of `word` to `ids` and whether each starts the word to `starts`.
    pub fn push(&self, word: &str, ids: &mut Vec<u32>, starts: &mut Vec<bool>) -> Result<()> {
        let mark = ids.len();
        if word.chars().count() <= self.max_chars {
            let mut start = 0;
            while start < word.len() {
                let map = if start == 0 { &self.whole } else { &self.inner };
                let mut end = word.len();
                let mut found = None;
                while start < end {
                    let piece = &word[start..end];
                    if let Some(&id) = map.get(piece) {
                        found = Some(id);
                        break;
                    }
                    end -= piece.chars().next_back().map_or(1, char::len_utf8);
                }
                let Some(id) = found else { break };
                ids.push(id);
                starts.push(start == 0);
                start = end;
            }
            if start == word.len() {
                return Ok(());
            }
        }
        ids.truncate(mark);
        starts.truncate(mark);
        let unk = self.unk.ok_or_else(|| {
            Error::Other(format!(
                "tokenizer: encoding: WordPiece has no unknown token `{}` in its vocabulary",
                self.unk_token
            ))
        })?;
        ids.push(unk);
        starts.push(true);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ascii_words_are_cut_at_spaces_and_around_punctuation() {
        let mut words = Vec::new();
        bert_ascii_words("Hey friend!     How are you?!? (x+y)=z don't", |w| {
            words.push(w.to_string());
            Ok(())
        })
        .unwrap();
        let want = [
            "Hey", "friend", "!", "How", "are", "you", "?", "!", "?", "(", "x", "+", "y", ")", "=",
            "z", "don", "'", "t",
        ];
        assert_eq!(words, want);
        assert!(
            is_printable_ascii(" ~az")
                && !is_printable_ascii("a\tb")
                && !is_printable_ascii("caf\u{e9}")
        );
    }
}
