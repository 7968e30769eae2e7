//! The tokenizer of a loaded model: any `tokenizer.json`, with its padding and truncation turned
//! off (sentence-transformers' files enable fixed padding to 128, which would change the ids), so
//! that one text gives exactly the ids `transformers`' tokenizer gives without `padding=`.

use std::path::Path;

use tokenizers::Tokenizer;

use crate::{Error, Result};

/// A `tokenizer.json` ready for inference.
#[derive(Clone)]
pub struct InferTokenizer {
    inner: Tokenizer,
    /// The mask token's text and id (`[MASK]` or `<mask>`), when the vocabulary has one.
    pub mask: Option<(String, u32)>,
}

fn tk_err(path: &Path, what: &str, e: impl std::fmt::Display) -> Error {
    Error::data(path, format!("tokenizer: {what}: {e}"))
}

impl InferTokenizer {
    /// Loads `path` (a `tokenizer.json`).
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        // The tokenizers crate can panic on malformed JSON (found by fuzzing): report it as bad input.
        let mut inner: Tokenizer = crate::guard::catch_panic(|| text.parse::<Tokenizer>())
            .map_err(|m| Error::data(path, format!("not a valid tokenizer.json ({m})")))?
            .map_err(|e| tk_err(path, "not a valid tokenizer.json", e))?;
        inner.with_padding(None);
        inner
            .with_truncation(None)
            .map_err(|e| tk_err(path, "turning truncation off", e))?;
        let mask = ["[MASK]", "<mask>", "<|mask|>"]
            .iter()
            .find_map(|t| inner.token_to_id(t).map(|id| (t.to_string(), id)));
        Ok(Self { inner, mask })
    }

    /// The ids of `text` with the special tokens the tokenizer's post-processor adds (BERT:
    /// `[CLS] … [SEP]`, BART/RoBERTa: `<s> … </s>`, GPT-2: none).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let enc = self
            .inner
            .encode(text, true)
            .map_err(|e| Error::Other(format!("tokenizer: encoding {text:?}: {e}")))?;
        Ok(enc.get_ids().to_vec())
    }

    /// The ids of `text` as [`Self::encode`] gives them, with a flag per id that is true for the
    /// special tokens the post-processor added (what pseudo-log-likelihood never masks).
    pub fn encode_with_special_mask(&self, text: &str) -> Result<(Vec<u32>, Vec<bool>)> {
        let enc = self
            .inner
            .encode(text, true)
            .map_err(|e| Error::Other(format!("tokenizer: encoding {text:?}: {e}")))?;
        Ok((
            enc.get_ids().to_vec(),
            enc.get_special_tokens_mask()
                .iter()
                .map(|&m| m != 0)
                .collect(),
        ))
    }

    /// The ids of `text` without special tokens.
    pub fn encode_plain(&self, text: &str) -> Result<Vec<u32>> {
        let enc = self
            .inner
            .encode(text, false)
            .map_err(|e| Error::Other(format!("tokenizer: encoding {text:?}: {e}")))?;
        Ok(enc.get_ids().to_vec())
    }

    /// Decodes ids to text; `skip_special` drops special tokens.
    pub fn decode(&self, ids: &[u32], skip_special: bool) -> String {
        self.inner.decode(ids, skip_special).unwrap_or_default()
    }

    /// The text of one token (`?` for an id outside the vocabulary).
    pub fn token(&self, id: u32) -> String {
        self.inner.id_to_token(id).unwrap_or_else(|| "?".into())
    }

    /// The id of a token's text.
    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// Vocabulary size including added tokens.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }
}
