//! Tokenizer glue over the Hugging Face `tokenizers` crate: train WordPiece (BERT normaliser, CJK
//! characters split apart) or byte-level BPE on the corpus, or load any `tokenizer.json`. Encoding also
//! yields word starts for whole-word and span masking: from the pre-tokenizer's words, or, for Chinese
//! text, from jieba's segmentation (its dictionary is compiled into the binary; nothing is downloaded).

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::OnceLock;

use rayon::prelude::*;
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::decoders::wordpiece::WordPiece as WordPieceDecoder;
use tokenizers::models::bpe::BPE;
use tokenizers::models::wordpiece::WordPiece;
use tokenizers::normalizers::bert::BertNormalizer;
use tokenizers::pre_tokenizers::bert::BertPreTokenizer;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::processors::bert::BertProcessing;
use tokenizers::processors::roberta::RobertaProcessing;
use tokenizers::{AddedToken, NormalizerWrapper, PreTokenizerWrapper, Tokenizer};

use super::ascii_words::{bert_ascii_words, is_printable_ascii, AddedScan, WordPieceIds};
use super::config::{TokenizerConfig, TokenizerKind};
use super::vocab_trainer;
use crate::masking::Language;
use crate::{Error, Result};

/// Ids of the special tokens the pipeline uses.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SpecialTokens {
    pub pad: u32,
    pub unk: Option<u32>,
    /// Start of a document (`[CLS]` / `<s>`); also the decoder start token.
    pub cls: u32,
    /// End of a document (`[SEP]` / `</s>`); also the end-of-sequence token.
    pub sep: u32,
    pub mask: u32,
    /// Every special token id (the above and any other special added token), sorted.
    pub all: Vec<u32>,
}

/// A tokenizer plus the pipeline's view of its special tokens.
#[derive(Clone)]
pub struct TextTokenizer {
    inner: Tokenizer,
    specials: SpecialTokens,
    /// `inner`'s vocabulary size with added tokens, cached: the tokenizers crate builds the whole
    /// vocabulary map to count it.
    vocab_size: u32,
    /// Whether the pre-tokenizer is BERT's (see [`TextTokenizer::encode_by_words`]).
    bert_pre_tokenizer: bool,
    /// The added tokens, to find texts that cannot hold one.
    added: AddedScan,
    /// The model's search without allocations, if it is WordPiece.
    wordpiece: Option<WordPieceIds>,
}

/// One encoded document: token ids (no special tokens) and word starts. Both `[n]`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EncodedDoc {
    pub ids: Vec<u32>,
    pub word_starts: Vec<bool>,
}

fn jieba() -> &'static jieba_rs::Jieba {
    static JIEBA: OnceLock<jieba_rs::Jieba> = OnceLock::new();
    JIEBA.get_or_init(jieba_rs::Jieba::new)
}

/// True for CJK ideographs (the ranges BERT's normaliser splits apart).
pub fn is_cjk(c: char) -> bool {
    matches!(c as u32,
        0x4E00..=0x9FFF | 0x3400..=0x4DBF | 0x20000..=0x2A6DF | 0x2A700..=0x2B73F
        | 0x2B740..=0x2B81F | 0x2B820..=0x2CEAF | 0xF900..=0xFAFF | 0x2F800..=0x2FA1F)
}

/// Byte offsets where jieba words start in `text` (HMM off: dictionary words only, deterministic).
pub fn jieba_word_starts(text: &str) -> Vec<usize> {
    jieba()
        .cut(text, false)
        .iter()
        .map(|t| t.byte_start)
        .collect()
}

/// Counts the pre-tokenized words of `texts` (in parallel; the result does not depend on the order).
fn count_words(tokenizer: &Tokenizer, texts: &[&str]) -> Result<BTreeMap<String, u64>> {
    use tokenizers::{Normalizer, OffsetReferential, OffsetType, PreTokenizer};
    let words_of = |text: &str| -> Result<Vec<String>> {
        let mut n = tokenizers::NormalizedString::from(text);
        if let Some(norm) = tokenizer.get_normalizer() {
            norm.normalize(&mut n)
                .map_err(|e| tk_err("normalising", e))?;
        }
        let mut pts = tokenizers::PreTokenizedString::from(n);
        if let Some(pre) = tokenizer.get_pre_tokenizer() {
            pre.pre_tokenize(&mut pts)
                .map_err(|e| tk_err("pre-tokenizing", e))?;
        }
        Ok(pts
            .get_splits(OffsetReferential::Original, OffsetType::Byte)
            .into_iter()
            .map(|(s, _, _)| s.to_string())
            .collect())
    };
    texts
        .par_chunks(256)
        .map(|chunk| {
            let mut m: BTreeMap<String, u64> = BTreeMap::new();
            for t in chunk {
                for w in words_of(t)? {
                    *m.entry(w).or_default() += 1;
                }
            }
            Ok(m)
        })
        .try_reduce(BTreeMap::new, |mut a, b| {
            for (k, v) in b {
                *a.entry(k).or_default() += v;
            }
            Ok(a)
        })
}

fn tk_err(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Other(format!("tokenizer: {what}: {e}"))
}

impl TextTokenizer {
    /// Trains a tokenizer on `texts` as `config` says.
    pub fn train(config: &TokenizerConfig, texts: &[&str]) -> Result<Self> {
        let names = config.special_token_names();
        if names.len() != 5 {
            return Err(Error::config(
                "data.tokenizer.special_tokens",
                "must list pad, unk, cls, sep, mask",
            ));
        }
        let added: Vec<AddedToken> = names
            .iter()
            .map(|n| AddedToken::from(n.clone(), true))
            .collect();
        let vocab = config.vocab_size as usize;
        // The normaliser and pre-tokenizer come first: training counts the words they produce.
        let mut tokenizer = match config.kind {
            TokenizerKind::Wordpiece => {
                let mut t = Tokenizer::new(WordPiece::default());
                t.with_normalizer(Some(BertNormalizer::new(
                    true,
                    true,
                    None,
                    config.lowercase,
                )));
                t.with_pre_tokenizer(Some(BertPreTokenizer));
                t.with_decoder(Some(WordPieceDecoder::default()));
                t
            }
            TokenizerKind::Bpe => {
                let mut t = Tokenizer::new(BPE::default());
                t.with_pre_tokenizer(Some(ByteLevel::new(true, true, true)));
                t.with_decoder(Some(ByteLevelDecoder::default()));
                t
            }
        };
        let counts = count_words(&tokenizer, texts)?;
        match config.kind {
            TokenizerKind::Wordpiece => {
                let learned =
                    vocab_trainer::learn(&counts, &names, vocab, 2, Some("##"), &[], 1000);
                let v: tokenizers::models::bpe::Vocab = learned
                    .tokens
                    .iter()
                    .enumerate()
                    .map(|(i, t)| (t.clone(), i as u32))
                    .collect();
                let model = WordPiece::builder()
                    .vocab(v)
                    .unk_token(names[1].clone())
                    .continuing_subword_prefix("##".to_string())
                    .build()
                    .map_err(|e| tk_err("building WordPiece", e))?;
                tokenizer.with_model(model);
            }
            TokenizerKind::Bpe => {
                let mut alphabet: Vec<char> = ByteLevel::alphabet().into_iter().collect();
                alphabet.sort_unstable();
                let learned = vocab_trainer::learn(
                    &counts,
                    &names,
                    vocab,
                    2,
                    None,
                    &alphabet,
                    alphabet.len(),
                );
                let v: tokenizers::models::bpe::Vocab = learned
                    .tokens
                    .iter()
                    .enumerate()
                    .map(|(i, t)| (t.clone(), i as u32))
                    .collect();
                let model = BPE::builder()
                    .vocab_and_merges(v, learned.merges)
                    .build()
                    .map_err(|e| tk_err("building BPE", e))?;
                tokenizer.with_model(model);
            }
        }
        tokenizer.add_special_tokens(&added);
        let id = |n: &str| tokenizer.token_to_id(n);
        let (Some(cls), Some(sep)) = (id(&names[2]), id(&names[3])) else {
            return Err(tk_err("training", "special tokens missing after training"));
        };
        match config.kind {
            TokenizerKind::Wordpiece => {
                tokenizer.with_post_processor(Some(BertProcessing::new(
                    (names[3].clone(), sep),
                    (names[2].clone(), cls),
                )));
            }
            TokenizerKind::Bpe => {
                tokenizer.with_post_processor(Some(RobertaProcessing::new(
                    (names[3].clone(), sep),
                    (names[2].clone(), cls),
                )));
            }
        }
        Self::from_tokenizer(tokenizer, Path::new("<trained>"))
    }

    /// Loads a `tokenizer.json`.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Self::from_json(&text, path)
    }

    /// Parses `tokenizer.json` text; `path` is only used in error messages.
    pub fn from_json(text: &str, path: &Path) -> Result<Self> {
        // The tokenizers crate can panic on malformed JSON (found by fuzzing): report it as bad input.
        let inner: Tokenizer = crate::guard::catch_panic(|| text.parse::<Tokenizer>())
            .map_err(|m| Error::data(path, format!("not a valid tokenizer.json ({m})")))?
            .map_err(|e| Error::data(path, format!("not a valid tokenizer.json: {e}")))?;
        Self::from_tokenizer(inner, path)
    }

    fn from_tokenizer(mut inner: Tokenizer, path: &Path) -> Result<Self> {
        // Documents are encoded whole and unpadded (the packer frames and cuts them): a file that asks
        // for padding or truncation (sentence-transformers' pad to 128) would otherwise corrupt them.
        inner.with_padding(None);
        inner
            .with_truncation(None)
            .map_err(|e| Error::data(path, format!("turning truncation off: {e}")))?;
        let find = |cands: &[&str]| cands.iter().find_map(|c| inner.token_to_id(c));
        let pad = find(&["[PAD]", "<pad>", "<|padding|>", "<|pad|>"]);
        let mask = find(&["[MASK]", "<mask>", "<|mask|>"]);
        let cls = find(&["[CLS]", "<s>", "<|startoftext|>", "<bos>", "<|endoftext|>"]);
        let sep = find(&["[SEP]", "</s>", "<|endoftext|>", "<eos>"]);
        let unk = find(&["[UNK]", "<unk>", "<|unk|>"]);
        let (Some(pad), Some(mask), Some(cls), Some(sep)) = (pad, mask, cls, sep) else {
            return Err(Error::data(
                path,
                "tokenizer lacks a pad, mask, cls/bos or sep/eos token ([PAD] [MASK] [CLS] [SEP] or <pad> <mask> <s> </s>)",
            ));
        };
        let mut all: Vec<u32> = inner
            .get_added_tokens_decoder()
            .iter()
            .filter(|(_, t)| t.special)
            .map(|(&id, _)| id)
            .chain([pad, mask, cls, sep])
            .chain(unk)
            .collect();
        all.sort_unstable();
        all.dedup();
        let vocab_size = inner.get_vocab_size(true) as u32;
        let bert_pre_tokenizer = matches!(
            inner.get_pre_tokenizer(),
            Some(PreTokenizerWrapper::BertPreTokenizer(_))
        );
        let added = AddedScan::new(&inner).map_err(|e| Error::data(path, e.to_string()))?;
        let wordpiece = WordPieceIds::of(&inner);
        Ok(Self {
            inner,
            specials: SpecialTokens {
                pad,
                unk,
                cls,
                sep,
                mask,
                all,
            },
            vocab_size,
            bert_pre_tokenizer,
            added,
            wordpiece,
        })
    }

    /// The `tokenizer.json` text (compact, deterministic).
    pub fn to_json(&self) -> Result<String> {
        self.inner
            .to_string(false)
            .map_err(|e| tk_err("serialising", e))
    }

    pub fn specials(&self) -> &SpecialTokens {
        &self.specials
    }

    /// Vocabulary size including added tokens (cached at construction).
    pub fn vocab_size(&self) -> u32 {
        self.vocab_size
    }

    /// The text of a token id (`?` for unknown ids).
    pub fn token(&self, id: u32) -> String {
        self.inner
            .id_to_token(id)
            .unwrap_or_else(|| "?".to_string())
    }

    /// Decodes ids to text, keeping special tokens.
    pub fn decode(&self, ids: &[u32]) -> String {
        self.inner.decode(ids, false).unwrap_or_default()
    }

    /// Encodes one document without special tokens and marks word starts. With `language` `zh`, or
    /// `auto` and a CJK character in the text, a token starts a word exactly when its first byte starts
    /// a jieba word; otherwise when the pre-tokenizer's word index changes.
    pub fn encode(&self, text: &str, language: Language) -> Result<EncodedDoc> {
        let use_jieba = match language {
            Language::Zh => true,
            Language::Other => false,
            Language::Auto => text.chars().any(is_cjk),
        };
        if !use_jieba {
            return self.encode_by_words(text);
        }
        let enc = self
            .inner
            .encode(text, false)
            .map_err(|e| tk_err("encoding", e))?;
        let ids = enc.get_ids().to_vec();
        let starts = jieba_word_starts(text);
        let offsets = enc.get_offsets();
        let mut word_starts = Vec::with_capacity(ids.len());
        let mut prev_start = usize::MAX;
        for (i, &(s, _)) in offsets.iter().enumerate() {
            // Byte-level BPE may put two tokens at one offset (a split multi-byte character): only
            // the first of them can start a word.
            let starts_word = i == 0 || (s != prev_start && starts.binary_search(&s).is_ok());
            word_starts.push(starts_word);
            prev_start = s;
        }
        Ok(EncodedDoc { ids, word_starts })
    }

    /// The ids `Tokenizer::encode(text, false)` gives, with a token starting a word when it is the
    /// first of its pre-tokenizer word, but without building the `Encoding`: the same stages (added
    /// tokens and normaliser, pre-tokenizer, model) are run and the ids are read off the words,
    /// skipping what `prepare` never uses (offsets mapped back to the original text, token strings
    /// copied, type ids, attention and special-token masks). Without padding or truncation (turned off
    /// at load) and without special tokens, the post-processor leaves the ids as they are.
    ///
    /// Printable ASCII takes a shorter road where the result is known without HF's string machinery
    /// ([`super::ascii_words`]): the normaliser's output is computed directly
    /// ([`Self::normalised_ascii`]), and, with BERT's pre-tokenizer and no added token in the text,
    /// the words are cut directly and searched in a WordPiece vocabulary without allocating (other
    /// models tokenize them themselves). Tested against `encode` on six tokenizers.
    fn encode_by_words(&self, text: &str) -> Result<EncodedDoc> {
        use tokenizers::{Model, OffsetReferential, OffsetType, PreTokenizer};
        let inner = &self.inner;
        let model = inner.get_model();
        let normalised = self.normalised_ascii(text);
        if let Some(t) = normalised.as_deref() {
            if self.bert_pre_tokenizer && is_printable_ascii(t) && !self.added.may_occur_in(t) {
                let (mut ids, mut word_starts) = (
                    Vec::with_capacity(t.len() / 3),
                    Vec::with_capacity(t.len() / 3),
                );
                bert_ascii_words(t, |word| match &self.wordpiece {
                    Some(wp) => wp.push(word, &mut ids, &mut word_starts),
                    None => {
                        let tokens = model.tokenize(word).map_err(|e| tk_err("encoding", e))?;
                        for (j, token) in tokens.iter().enumerate() {
                            ids.push(token.id);
                            word_starts.push(j == 0);
                        }
                        Ok(())
                    }
                })?;
                return Ok(EncodedDoc { ids, word_starts });
            }
        }
        let added = inner.get_added_vocabulary();
        let mut words = match &normalised {
            Some(t) => added.extract_and_normalize(None::<&NormalizerWrapper>, t),
            None => added.extract_and_normalize(inner.get_normalizer(), text),
        };
        if let Some(pre) = inner.get_pre_tokenizer() {
            pre.pre_tokenize(&mut words)
                .map_err(|e| tk_err("pre-tokenizing", e))?;
        }
        words
            .tokenize(|w| model.tokenize(w.get()))
            .map_err(|e| tk_err("encoding", e))?;
        let splits = words.get_splits(OffsetReferential::Normalized, OffsetType::None);
        let n: usize = splits
            .iter()
            .map(|(_, _, t)| t.as_ref().map_or(0, Vec::len))
            .sum();
        let (mut ids, mut word_starts) = (Vec::with_capacity(n), Vec::with_capacity(n));
        for tokens in splits.iter().filter_map(|(_, _, t)| t.as_ref()) {
            for (j, t) in tokens.iter().enumerate() {
                ids.push(t.id);
                word_starts.push(j == 0);
            }
        }
        Ok(EncodedDoc { ids, word_starts })
    }

    /// What the normaliser makes of `text`, where that is known without running it: `text` itself
    /// without a normaliser; for BERT's normaliser on printable ASCII (no control character, no
    /// whitespace but ' ', no CJK character; stripping accents leaves ASCII alone), `text`, or `text`
    /// in lower case when it lowercases. Lowering before the added tokens are found is the same as
    /// after only when no added token occurs in the lowered text. Otherwise, and for any other
    /// normaliser, `None`: normalise as usual.
    fn normalised_ascii<'t>(&self, text: &'t str) -> Option<Cow<'t, str>> {
        match self.inner.get_normalizer() {
            None => Some(Cow::Borrowed(text)),
            Some(NormalizerWrapper::BertNormalizer(b)) => {
                if !is_printable_ascii(text) {
                    return None;
                }
                if !b.lowercase || !text.bytes().any(|c| c.is_ascii_uppercase()) {
                    return Some(Cow::Borrowed(text));
                }
                if self.added.may_occur_in(text) {
                    return None;
                }
                Some(Cow::Owned(text.to_ascii_lowercase()))
            }
            Some(_) => None,
        }
    }

    /// Encodes many documents in parallel; the result is in input order and independent of the thread
    /// count.
    pub fn encode_all(&self, texts: &[&str], language: Language) -> Result<Vec<EncodedDoc>> {
        texts.par_iter().map(|t| self.encode(t, language)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn corpus() -> Vec<String> {
        let mut v = Vec::new();
        for i in 0..200 {
            v.push(format!(
                "In the beginning God created the heavens and the earth number {i}."
            ));
            v.push(
                "The earth was formless and empty, darkness was on the surface of the deep."
                    .to_string(),
            );
            v.push("中华人民共和国 成立 了。我们 热爱 和平。".replace(' ', ""));
        }
        v
    }

    #[test]
    fn trains_wordpiece_and_bpe_deterministically_with_specials_first() {
        let docs = corpus();
        let texts: Vec<&str> = docs.iter().map(String::as_str).collect();
        for kind in [TokenizerKind::Wordpiece, TokenizerKind::Bpe] {
            let cfg = TokenizerConfig {
                kind,
                vocab_size: 400,
                ..Default::default()
            };
            let a = TextTokenizer::train(&cfg, &texts).unwrap();
            let b = TextTokenizer::train(&cfg, &texts).unwrap();
            assert_eq!(
                a.to_json().unwrap(),
                b.to_json().unwrap(),
                "{kind:?} training is not deterministic"
            );
            let s = a.specials();
            assert_eq!((s.pad, s.unk, s.cls, s.sep, s.mask), (0, Some(1), 2, 3, 4));
            assert!(a.vocab_size() <= 400 && a.vocab_size() > 50);
            let round = TextTokenizer::from_json(&a.to_json().unwrap(), Path::new("x")).unwrap();
            assert_eq!(round.specials(), a.specials());
            let enc = a.encode("God created the earth", Language::Auto).unwrap();
            assert!(!enc.ids.iter().any(|id| s.all.contains(id)));
            assert_eq!(
                enc.word_starts.iter().filter(|&&w| w).count(),
                4,
                "{kind:?}: four words"
            );
        }
    }

    #[test]
    fn a_loaded_tokenizer_neither_pads_nor_truncates() {
        let docs = corpus();
        let texts: Vec<&str> = docs.iter().map(String::as_str).collect();
        let t = TextTokenizer::train(
            &TokenizerConfig {
                vocab_size: 400,
                ..Default::default()
            },
            &texts,
        )
        .unwrap();
        let mut json: serde_json::Value = serde_json::from_str(&t.to_json().unwrap()).unwrap();
        json["truncation"] = serde_json::json!({"direction": "Right", "max_length": 4, "strategy": "LongestFirst", "stride": 0});
        json["padding"] = serde_json::json!({"strategy": {"Fixed": 64}, "direction": "Right", "pad_to_multiple_of": null,
            "pad_id": 0, "pad_type_id": 0, "pad_token": "[PAD]"});
        let loaded =
            TextTokenizer::from_json(&json.to_string(), Path::new("st/tokenizer.json")).unwrap();
        let text = "The earth was formless and empty, darkness was on the surface of the deep.";
        let want = t.encode(text, Language::Auto).unwrap();
        assert!(want.ids.len() > 8);
        assert_eq!(loaded.encode(text, Language::Auto).unwrap(), want);
    }

    /// The reference twin of [`TextTokenizer::encode_by_words`]: the full `Encoding`, word starts from
    /// its word ids (what `encode` did before the fast path).
    fn encode_via_encoding(t: &TextTokenizer, text: &str) -> EncodedDoc {
        let enc = t.inner.encode(text, false).unwrap();
        let words = enc.get_word_ids();
        let word_starts = (0..enc.len())
            .map(|i| i == 0 || words[i] != words[i - 1] || words[i].is_none())
            .collect();
        EncodedDoc {
            ids: enc.get_ids().to_vec(),
            word_starts,
        }
    }

    /// Guards the fast path `prepare` encodes with: the same ids and word starts as the `Encoding`,
    /// for trained WordPiece (cased and lowercased) and BPE and for loaded files (a BERT fixture and
    /// the fuzz corpus's WordPiece and BPE files), on text with accents, punctuation, CJK, emoji,
    /// control characters, odd spacing and special tokens written out, and on 300 random ASCII texts
    /// pieced together from words, punctuation and fragments of special tokens in either case.
    #[test]
    fn encoding_by_words_gives_the_encodings_ids_and_word_starts() {
        let docs = corpus();
        let texts: Vec<&str> = docs.iter().map(String::as_str).collect();
        let mut tokenizers = Vec::new();
        for (kind, lowercase) in [
            (TokenizerKind::Wordpiece, true),
            (TokenizerKind::Wordpiece, false),
            (TokenizerKind::Bpe, false),
        ] {
            let cfg = TokenizerConfig {
                kind,
                vocab_size: 400,
                lowercase,
                ..Default::default()
            };
            tokenizers.push((
                format!("{kind:?} lowercase={lowercase}"),
                TextTokenizer::train(&cfg, &texts).unwrap(),
            ));
        }
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        for f in [
            "fixtures/bert-pll/tokenizer.json",
            "fuzz/corpus/tokenizer/wordpiece.json",
            "fuzz/corpus/tokenizer/bpe.json",
        ] {
            tokenizers.push((f.to_string(), TextTokenizer::load(&root.join(f)).unwrap()));
        }
        let samples = [
            "",
            "   ",
            "In the beginning God created the heavens and the earth.",
            "Caf\u{e9} na\u{ef}ve \u{c9}COLE   r\u{e9}sum\u{e9}s -- don't, won't; (x+y)=z!?",
            "[CLS] the earth [MASK] formless [SEP] and <mask> empty </s> [PAD][UNK]",
            "THE EARTH [mask] AND [Sep] and [cls]",
            "\tTabs\tand\u{0}control\u{7}chars\r and  double  spaces ",
            "emoji \u{1f600}\u{1f680} and \u{2014} dashes \u{2026}",
            "\u{4e2d}\u{534e}\u{4eba}\u{6c11}\u{5171}\u{548c}\u{56fd} mixed with English words",
            "number 12345678901234567890 and a verylongwordthatthevocabularycannotpossiblycontainwhole",
            "Hey friend!     How are you?!? $5 + 3 = `x` ^ |y| ~z {a} [b] <c> @d #e %f &g *h _i \\j /k 'l' \"m\"",
        ];
        // A word longer than WordPiece's 100 characters is one unknown token.
        let long = format!("the {} earth", "Ab".repeat(60));
        // Random printable ASCII from words, punctuation, spaces and pieces of special tokens.
        let pieces = [
            "the",
            "Earth",
            "GOD",
            "was",
            "[",
            "]",
            "MASK",
            "mask",
            "<",
            ">",
            "/s",
            "s",
            "SEP",
            "cls",
            "CLS",
            "UNK",
            "pad",
            " ",
            "  ",
            ",",
            ".",
            "'",
            "-",
            "x",
            "created",
            "beginning",
            "formless",
            "9",
            "!?",
        ];
        let mut rng =
            remask_kernels::rng::KeyedRng::new(3, remask_kernels::rng::Purpose::Shuffle, 0, 0);
        let random: Vec<String> = (0..300)
            .map(|_| {
                (0..1 + rng.below(12))
                    .map(|_| pieces[rng.below(pieces.len() as u64) as usize])
                    .collect()
            })
            .collect();
        for (name, t) in &tokenizers {
            // The WordPiece ones take the whole short road (words cut directly, WordPieceIds).
            let wordpiece = !name.contains("Bpe") && !name.contains("bpe.json");
            assert_eq!(
                (t.wordpiece.is_some(), t.bert_pre_tokenizer),
                (wordpiece, wordpiece),
                "{name}"
            );
            // Both shortcuts are exercised: ASCII kept as it is, and ASCII lowered (lower-casing ones).
            assert_eq!(
                t.normalised_ascii(samples[9]).as_deref(),
                Some(samples[9]),
                "{name}"
            );
            let lowered = t.normalised_ascii(samples[2]).expect("printable ASCII");
            assert_eq!(
                matches!(lowered, Cow::Owned(_)),
                name.contains("lowercase=true") || name.contains("bert-pll"),
                "{name}"
            );
            let random = random.iter().map(String::as_str);
            let random = random.chain([long.as_str()]);
            for text in samples
                .iter()
                .copied()
                .chain(texts.iter().copied().take(9))
                .chain(random)
            {
                assert_eq!(
                    t.encode_by_words(text).unwrap(),
                    encode_via_encoding(t, text),
                    "{name}: {text:?}"
                );
            }
            // `encode` takes the fast path unless jieba segments the text.
            let text = samples[3];
            assert_eq!(
                t.encode(text, Language::Auto).unwrap(),
                encode_via_encoding(t, text),
                "{name}"
            );
        }
    }

    #[test]
    fn chinese_words_come_from_jieba() {
        let docs = corpus();
        let texts: Vec<&str> = docs.iter().map(String::as_str).collect();
        let cfg = TokenizerConfig {
            vocab_size: 400,
            ..Default::default()
        };
        let t = TextTokenizer::train(&cfg, &texts).unwrap();
        let text = "我们热爱和平";
        let enc = t.encode(text, Language::Auto).unwrap();
        // WordPiece splits every CJK character; jieba groups 我们 / 热爱 / 和平.
        assert_eq!(enc.ids.len(), 6);
        assert_eq!(enc.word_starts, [true, false, true, false, true, false]);
        let plain = t.encode(text, Language::Other).unwrap();
        assert!(plain.word_starts.iter().all(|&w| w));
    }
}
