//! End-to-end checks of `prepare` and the `Loader`: byte-identical re-runs, batches independent of the
//! batch size, static copies equal to frozen dynamic masks, fixed evaluation masks, packing invariants,
//! CLM shifting, seq2seq pairs, Chinese whole-word masking against committed gold word boundaries,
//! Parquet and bad input.

use std::path::{Path, PathBuf};

use remask::data::{prepare, DataConfig, InputFormat, Loader, Packing, Split, Task, TokenizerKind};
use remask::masking::{Language, MaskedRow, MaskingConfig, StrategyKind, When};
use remask::{BatchSource, IGNORE_INDEX, PAD_DOC};

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("remask-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// The first 1500 verses of the embedded corpus as an input file.
fn small_corpus(dir: &Path) -> PathBuf {
    let text: String = remask::data::reader::BUILTIN_WEB
        .lines()
        .skip(1)
        .take(1500)
        .map(|l| format!("{l}\n"))
        .collect();
    let p = dir.join("corpus.txt");
    std::fs::write(&p, text).unwrap();
    p
}

fn small_config(input: PathBuf) -> DataConfig {
    let mut c = DataConfig {
        inputs: vec![input],
        seq_len: 64,
        validation_share: 0.05,
        ..Default::default()
    };
    c.tokenizer.vocab_size = 1200;
    c
}

fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for sub in ["", "static"] {
        let Ok(rd) = std::fs::read_dir(dir.join(sub)) else {
            continue;
        };
        // `.lock` names the process that held the directory: not part of the output.
        let mut names: Vec<PathBuf> = rd
            .map(|e| e.unwrap().path())
            .filter(|p| p.is_file() && !p.ends_with(remask::dir_lock::LOCK_FILE))
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

#[test]
fn prepare_is_byte_identical_and_loader_batches_keep_every_invariant() {
    let dir = tmp("pipeline");
    let input = small_corpus(&dir);
    let data = small_config(input);
    let masking = MaskingConfig {
        when: When::Static { dupe_factor: 2 },
        ..Default::default()
    };
    let (a, b) = (dir.join("a"), dir.join("b"));
    let meta = prepare(&data, &masking, &a).unwrap();
    prepare(&data, &masking, &b).unwrap();
    let (fa, fb) = (files(&a), files(&b));
    assert!(
        fa.len() >= 6,
        "{:?}",
        fa.iter().map(|f| &f.0).collect::<Vec<_>>()
    );
    assert_eq!(fa, fb, "re-running prepare must give byte-identical files");
    assert!(meta.validation.documents > 0 && meta.train.documents > 1000);
    assert_eq!(meta.train.padding_share < 0.01, true);

    // Dynamic batches do not depend on the batch size, and cross epoch boundaries cleanly.
    let dynamic = MaskingConfig::default();
    let mut l = Loader::open(&a, Split::Train, Task::Mlm, &dynamic).unwrap();
    let n = l.num_samples();
    let first = n - 3;
    let big = l.batch(first, 8, 0.0).unwrap();
    let mut l2 = Loader::open(&a, Split::Train, Task::Mlm, &dynamic).unwrap();
    let x = l2.batch(first + 4, 4, 0.0).unwrap();
    let y = l2.batch(first, 4, 0.0).unwrap();
    let t = l.seq_len();
    assert_eq!(&big.input_ids[..4 * t], &y.input_ids[..]);
    assert_eq!(&big.input_ids[4 * t..], &x.input_ids[..]);
    assert_eq!(&big.labels[4 * t..], &x.labels[..]);
    assert_eq!(big.sample_ids, (first..first + 8).collect::<Vec<_>>());
    big.validate().unwrap();

    // Packing: positions restart at each document, doc ids change there, padding only at the end.
    let s = l.specials().clone();
    for row in 0..big.batch_size {
        let len = big.lengths[row] as usize;
        for i in 0..t {
            let k = row * t + i;
            if i >= len {
                assert_eq!(big.doc_ids[k], PAD_DOC);
                assert_eq!(big.labels[k], IGNORE_INDEX);
                continue;
            }
            if i > 0 && big.doc_ids[k] != big.doc_ids[k - 1] {
                assert_eq!(big.positions[k], 0, "positions restart per document");
            } else if i > 0 {
                assert_eq!(big.positions[k], big.positions[k - 1] + 1);
            }
            if big.labels[k] != IGNORE_INDEX {
                assert!(
                    !s.all.contains(&(big.labels[k] as u32)),
                    "a special token was chosen"
                );
            }
        }
    }

    // Static: epoch e reads copy e mod K, which equals the dynamic mask of key epoch e mod K.
    let mut st = Loader::open(&a, Split::Train, Task::Mlm, &masking).unwrap();
    let e0 = st.batch(0, 4, 0.0).unwrap();
    let e2 = st.batch(2 * n, 4, 0.0).unwrap();
    let (ep0, r0) = st.locate(0).unwrap();
    let (ep2, r2) = st.locate(2 * n).unwrap();
    assert_eq!((ep0, ep2), (0, 2));
    let mut d = Loader::open(&a, Split::Train, Task::Mlm, &dynamic).unwrap();
    let mut row = d.row_buffers();
    let mut scratch = Default::default();
    let (mut input, mut labels) = (vec![0u32; t], vec![0i32; t]);
    d.fill_row(&mut row, r0);
    let plan = d.mask_plan().unwrap();
    plan.mask_train(
        row.tokens(),
        r0,
        0,
        0.0,
        MaskedRow {
            input: &mut input,
            labels: &mut labels,
        },
        &mut scratch,
    );
    assert_eq!(&e0.input_ids[..t], &input[..]);
    assert_eq!(&e0.labels[..t], &labels[..]);
    // Epoch 2 shows row r2 with copy 0's masks.
    d.fill_row(&mut row, r2);
    plan.mask_train(
        row.tokens(),
        r2,
        0,
        0.0,
        MaskedRow {
            input: &mut input,
            labels: &mut labels,
        },
        &mut scratch,
    );
    assert_eq!(&e2.input_ids[..t], &input[..]);
    let _ = d.batch(0, 1, 0.0).unwrap();
    // A static config that differs from the stored one is refused, naming what to do.
    let other = MaskingConfig {
        when: When::Static { dupe_factor: 3 },
        ..Default::default()
    };
    let e = Loader::open(&a, Split::Train, Task::Mlm, &other)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("prepare"), "{e}");

    // Frequency-weighted replacement draws by the counts `prepare` stored; a directory prepared
    // without them (an older build) is counted from its shards, with the same masks.
    let weighted = MaskingConfig {
        frequency_weighted_random: true,
        random_share: 0.5,
        mask_share: 0.4,
        ..Default::default()
    };
    let stored = Loader::open(&a, Split::Train, Task::Mlm, &weighted)
        .unwrap()
        .batch(0, 16, 0.0)
        .unwrap();
    std::fs::remove_file(b.join("token_counts.bin")).unwrap();
    let counted = Loader::open(&b, Split::Train, Task::Mlm, &weighted)
        .unwrap()
        .batch(0, 16, 0.0)
        .unwrap();
    assert_eq!(stored, counted);
    // The weights are used: uniform replacement with the same shares and draws picks other tokens.
    let uniform = MaskingConfig {
        frequency_weighted_random: false,
        ..weighted.clone()
    };
    let u = Loader::open(&a, Split::Train, Task::Mlm, &uniform)
        .unwrap()
        .batch(0, 16, 0.0)
        .unwrap();
    assert_eq!(u.labels, stored.labels);
    assert_ne!(u.input_ids, stored.input_ids);

    // Fixed evaluation masks: the same every call, whatever happened in between.
    let mut v = Loader::open(&a, Split::Validation, Task::Mlm, &dynamic).unwrap();
    let e1 = v.eval_batches(16).unwrap();
    let _ = v.batch(0, 16, 0.5).unwrap();
    let e2 = v.eval_batches(16).unwrap();
    assert_eq!(e1, e2);
    assert_eq!(
        e1.iter().map(|b| b.batch_size as u64).sum::<u64>(),
        v.num_samples()
    );
    assert!(e1[0].num_labels() > 0);

    // CLM: labels are the next token of the same document.
    let mut c = Loader::open(&a, Split::Train, Task::Clm, &dynamic).unwrap();
    let cb = c.batch(5, 2, 0.0).unwrap();
    for i in 0..t - 1 {
        if cb.labels[i] != IGNORE_INDEX {
            assert_eq!(cb.labels[i], cb.input_ids[i + 1] as i32);
            assert_eq!(cb.doc_ids[i], cb.doc_ids[i + 1]);
        } else {
            assert!(i + 1 >= cb.lengths[0] as usize || cb.doc_ids[i] != cb.doc_ids[i + 1]);
        }
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn pad_packing_and_adaptive_state_round_trip() {
    let dir = tmp("pad");
    let input = small_corpus(&dir);
    let mut data = small_config(input);
    data.packing = Packing::Pad;
    data.tokenizer.kind = TokenizerKind::Bpe;
    let meta = prepare(&data, &MaskingConfig::default(), &dir.join("p")).unwrap();
    assert!(
        meta.train.padding_share > 0.2,
        "verses are shorter than 64 tokens: {}",
        meta.train.padding_share
    );
    // The trainer's entry point reuses a directory prepared from the same [data] section.
    let stamp = std::fs::metadata(dir.join("p/meta.json"))
        .unwrap()
        .modified()
        .unwrap();
    let got =
        remask::data::ensure_prepared(&data, &MaskingConfig::default(), &dir.join("p")).unwrap();
    assert_eq!(got, dir.join("p"));
    assert_eq!(
        std::fs::metadata(dir.join("p/meta.json"))
            .unwrap()
            .modified()
            .unwrap(),
        stamp,
        "not prepared again"
    );
    // Both loss-guided modes: `adaptive` (row-relative weights) and `token-id` (a bounded
    // probability per token id); their running statistics are the state a checkpoint keeps.
    for when in [
        When::Adaptive {
            temperature: 0.5,
            decay: 0.5,
            uniform_mix: 0.2,
        },
        When::TokenId {
            decay: 0.5,
            floor: 0.5,
            ceiling: 2.0,
        },
    ] {
        let adaptive = MaskingConfig {
            when,
            ..Default::default()
        };
        let mut l = Loader::open(&dir.join("p"), Split::Train, Task::Mlm, &adaptive).unwrap();
        let b = l.batch(0, 8, 0.0).unwrap();
        for row in 0..8 {
            let docs: std::collections::BTreeSet<u32> = b.doc_ids[row * 64..(row + 1) * 64]
                .iter()
                .copied()
                .filter(|&d| d != PAD_DOC)
                .collect();
            assert_eq!(docs.len(), 1, "pad packing: one document per row");
        }
        let fresh = l.batch(8, 8, 0.0).unwrap();
        let losses: Vec<f32> = (0..b.num_labels()).map(|i| (i % 5) as f32).collect();
        l.feedback(&b, &losses);
        let state = l.state();
        let next = l.batch(8, 8, 0.0).unwrap();
        assert_ne!(next, fresh, "{when:?}: the feedback changes the masks");
        let mut l2 = Loader::open(&dir.join("p"), Split::Train, Task::Mlm, &adaptive).unwrap();
        l2.restore(&state).unwrap();
        assert_eq!(
            l2.batch(8, 8, 0.0).unwrap(),
            next,
            "{when:?}: resume with restored state gives the same masks"
        );
        // The state goes through a checkpoint as JSON text.
        let text = serde_json::to_string(&state).unwrap();
        let mut l3 = Loader::open(&dir.join("p"), Split::Train, Task::Mlm, &adaptive).unwrap();
        l3.restore(&serde_json::from_str(&text).unwrap()).unwrap();
        assert_eq!(
            l3.batch(8, 8, 0.0).unwrap(),
            next,
            "{when:?}: state through JSON text"
        );
    }
    std::fs::remove_dir_all(&dir).ok();
}

/// PMI masking end to end: `prepare` stores a deterministic n-gram vocabulary of real collocations,
/// the Loader masks its n-grams whole at the configured rate, and a corpus too small to count
/// n-grams or a directory built with other settings is refused naming the key.
#[test]
fn pmi_vocabulary_is_prepared_and_masks_ngrams_whole() {
    use remask::masking::{
        collect_ngram_stats, collect_stats, MaskPlan, NgramVocab, PmiConfig, TokenRowBuf, Vocab,
    };
    let dir = tmp("pmi");
    let input = small_corpus(&dir);
    let data = small_config(input);
    let pmi = MaskingConfig {
        strategy: StrategyKind::Pmi,
        pmi: PmiConfig {
            ngrams: 2000,
            min_count: 5,
        },
        ..Default::default()
    };
    let meta = prepare(&data, &pmi, &dir.join("a")).unwrap();
    prepare(&data, &pmi, &dir.join("b")).unwrap();
    assert_eq!(
        std::fs::read(dir.join("a/ngrams.bin")).unwrap(),
        std::fs::read(dir.join("b/ngrams.bin")).unwrap()
    );
    let stored = meta
        .ngrams
        .clone()
        .expect("meta.json records the n-gram vocabulary");
    assert!(stored.entries > 100 && stored.entries <= 2000, "{stored:?}");
    assert_eq!(stored.stats.pruned_below, 0);
    let vocab = std::sync::Arc::new(NgramVocab::read(&dir.join("a"), meta.vocab_size).unwrap());
    let tok = remask::data::TextTokenizer::load(&dir.join("a/tokenizer.json")).unwrap();
    let top: Vec<String> = vocab
        .entries()
        .iter()
        .take(50)
        .map(|e| tok.decode(&e.tokens))
        .collect();
    // Genesis' collocations rank high.
    let known = [
        "burnt offering",
        "living creature",
        "birds of the sky",
        "male and female",
        "early in the morning",
    ];
    assert!(
        known.iter().filter(|k| top.iter().any(|t| t == *k)).count() >= 3,
        "{top:?}"
    );

    let mut l = Loader::open(&dir.join("a"), Split::Train, Task::Mlm, &pmi).unwrap();
    let b = l.batch(0, 16, 0.0).unwrap();
    b.validate().unwrap();
    let mut buf = l.row_buffers();
    let rows: Vec<TokenRowBuf> = (0..400)
        .map(|r| {
            l.fill_row(&mut buf, r);
            TokenRowBuf {
                ids: buf.ids.clone(),
                word_starts: buf.word_starts.clone(),
                length: buf.length,
            }
        })
        .collect();
    let s = &meta.special_tokens;
    let v = Vocab {
        size: meta.vocab_size,
        mask_id: s.mask,
        special_ids: &s.all,
        counts: None,
        ngrams: Some(&vocab),
    };
    let plan = MaskPlan::new(&pmi, &v, 7).unwrap();
    let st = collect_stats(&plan, &rows, 2);
    assert!((st.mask_rate - 0.15).abs() < 0.01, "{st:?}");
    assert_eq!(st.chosen_ineligible, 0);
    let g = collect_ngram_stats(&plan, &rows, 2).unwrap();
    assert_eq!(g.ngrams_split, 0, "{g:?}");
    assert!(g.ngram_share > 0.05 && g.ngrams_masked > 50, "{g:?}");

    // Another `pmi` setting than the directory's is refused naming the key; a reused directory
    // with other settings is prepared again.
    let other = MaskingConfig {
        pmi: PmiConfig {
            ngrams: 100,
            min_count: 5,
        },
        ..pmi.clone()
    };
    let e = Loader::open(&dir.join("a"), Split::Train, Task::Mlm, &other)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("masking.pmi") && !e.contains('\n'), "{e}");
    remask::data::ensure_prepared(&data, &other, &dir.join("a")).unwrap();
    assert!(Loader::open(&dir.join("a"), Split::Train, Task::Mlm, &other).is_ok());

    // A corpus too small to count n-grams.
    std::fs::write(
        dir.join("tiny.txt"),
        "In the beginning God created the heavens and the earth.\nAnd the earth was void.\n",
    )
    .unwrap();
    let mut tiny = small_config(dir.join("tiny.txt"));
    tiny.validation_share = 0.0;
    tiny.tokenizer.vocab_size = 200;
    let e = prepare(&tiny, &pmi, &dir.join("t"))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("masking.pmi.min_count") && !e.contains('\n'),
        "{e}"
    );
    // The same corpus prepares for other strategies (no vocabulary), and PMI on it is refused.
    let meta = prepare(&tiny, &MaskingConfig::default(), &dir.join("t")).unwrap();
    assert!(meta.ngrams.is_none() && !dir.join("t/ngrams.bin").exists());
    let e = Loader::open(&dir.join("t"), Split::Train, Task::Mlm, &pmi)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("masking.strategy") && e.contains("pmi"), "{e}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn tsv_pairs_give_seq2seq_batches() {
    let dir = tmp("tsv");
    let mut data = DataConfig {
        inputs: vec!["builtin:kjv-rv1909".into()],
        seq_len: 48,
        ..Default::default()
    };
    data.tokenizer.vocab_size = 1500;
    let meta = prepare(&data, &MaskingConfig::default(), &dir.join("t")).unwrap();
    assert!(meta.pairs);
    let mut l = Loader::open(
        &dir.join("t"),
        Split::Train,
        Task::Seq2seq,
        &MaskingConfig::default(),
    )
    .unwrap();
    let b = l.batch(0, 4, 0.0).unwrap();
    b.validate().unwrap();
    let d = b.decoder.as_ref().unwrap();
    let s = l.specials().clone();
    for row in 0..4 {
        let n = d.lengths[row] as usize;
        let o = row * d.seq_len;
        assert_eq!(d.input_ids[o], s.cls);
        assert_eq!(d.labels[o + n - 1], s.sep as i32);
        for j in 0..n - 1 {
            assert_eq!(
                d.labels[o + j],
                d.input_ids[o + j + 1] as i32,
                "decoder labels are inputs shifted"
            );
        }
    }
    assert!(Loader::open(
        &dir.join("t"),
        Split::Train,
        Task::Mlm,
        &MaskingConfig::default()
    )
    .is_ok());
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn bad_inputs_fail_with_one_line_naming_what() {
    let dir = tmp("bad");
    let input = small_corpus(&dir);
    let mut data = small_config(input.clone());
    data.tokenizer.vocab_size = 5;
    let e = prepare(&data, &MaskingConfig::default(), &dir.join("o"))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("data.tokenizer.vocab_size") && e.contains('5'),
        "{e}"
    );
    let data = small_config(dir.join("nope.txt"));
    let e = prepare(&data, &MaskingConfig::default(), &dir.join("o"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("nope.txt"), "{e}");
    let m = MaskingConfig {
        rate: 0.0,
        ..Default::default()
    };
    let e = prepare(&small_config(input.clone()), &m, &dir.join("o"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("masking.rate") && e.contains('0'), "{e}");
    let mut data = small_config(input);
    data.format = InputFormat::Jsonl;
    let e = prepare(&data, &MaskingConfig::default(), &dir.join("o"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("corpus.txt") && e.contains("line 1"), "{e}");
    assert!(!e.contains('\n'));
    std::fs::remove_dir_all(&dir).ok();
}

#[cfg(feature = "parquet")]
#[test]
fn parquet_column_is_read_and_a_missing_column_named() {
    use parquet::data_type::{ByteArray, ByteArrayType};
    use parquet::file::properties::WriterProperties;
    use parquet::file::writer::SerializedFileWriter;
    use parquet::schema::parser::parse_message_type;
    use std::sync::Arc;

    let dir = tmp("parquet");
    let path = dir.join("docs.parquet");
    let schema = Arc::new(
        parse_message_type("message m { required binary body (UTF8); required int32 n; }").unwrap(),
    );
    let file = std::fs::File::create(&path).unwrap();
    let mut w =
        SerializedFileWriter::new(file, schema, Arc::new(WriterProperties::builder().build()))
            .unwrap();
    let mut rg = w.next_row_group().unwrap();
    let texts: Vec<ByteArray> = ["first document here", "second one", "第三个文档"]
        .iter()
        .map(|s| ByteArray::from(*s))
        .collect();
    let mut col = rg.next_column().unwrap().unwrap();
    col.typed::<ByteArrayType>()
        .write_batch(&texts, None, None)
        .unwrap();
    col.close().unwrap();
    let mut col = rg.next_column().unwrap().unwrap();
    col.typed::<parquet::data_type::Int32Type>()
        .write_batch(&[1, 2, 3], None, None)
        .unwrap();
    col.close().unwrap();
    rg.close().unwrap();
    w.close().unwrap();
    let docs =
        remask::data::reader::read_file(&path, InputFormat::Auto, Default::default(), "body")
            .unwrap();
    assert_eq!(docs.len(), 3);
    assert_eq!(docs[2].text, "第三个文档");
    let e = remask::data::reader::read_file(&path, InputFormat::Auto, Default::default(), "text")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("docs.parquet") && e.contains("`text`") && e.contains("body"),
        "{e}"
    );
    std::fs::remove_dir_all(&dir).ok();
}

/// Chinese whole-word masking masks whole words, checked against known word boundaries: the
/// committed gold-segmented sentences in `tests/data/zh_gold_segmented.txt` (written for remask;
/// spaces mark the words). The raw text (words joined) is prepared with whole-word masking; no word
/// the masker groups (jieba's) is ever split by a mask, and those words agree with the gold ones.
#[test]
fn chinese_whole_word_masks_whole_jieba_words() {
    // Compiled in: a missing fixture fails the build, it can never skip.
    let gold_text = include_str!("data/zh_gold_segmented.txt");
    let gold: Vec<Vec<&str>> = gold_text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.split(' ').collect())
        .collect();
    assert!(gold.len() >= 40, "{} gold sentences", gold.len());
    let raw: Vec<String> = gold.iter().map(|words| words.concat()).collect();
    // Each sentence twice in a different order, so there are rows enough to mask.
    let lines: Vec<String> = raw.iter().chain(raw.iter().rev()).cloned().collect();
    let dir = tmp("zh");
    let input = dir.join("zh.txt");
    std::fs::write(&input, lines.join("\n")).unwrap();
    let mut data = DataConfig {
        inputs: vec![input],
        seq_len: 128,
        validation_share: 0.0,
        ..Default::default()
    };
    data.tokenizer.vocab_size = 600;
    let masking = MaskingConfig {
        strategy: StrategyKind::WholeWord,
        rate: 0.3,
        language: Language::Zh,
        ..Default::default()
    };
    prepare(&data, &masking, &dir.join("p")).unwrap();
    let mut l = Loader::open(&dir.join("p"), Split::Train, Task::Mlm, &masking).unwrap();
    let tok = l.tokenizer().unwrap();
    // Tokens of each row, grouped into jieba words by the stored word starts; check against jieba
    // directly on the first document and that no word is ever split by the mask.
    let b = l.batch(0, 32, 0.0).unwrap();
    let t = b.seq_len;
    let mut row = l.row_buffers();
    let mut multi_char_words = 0;
    for k in 0..b.batch_size {
        let r = l.locate(k as u64).unwrap().1;
        l.fill_row(&mut row, r);
        for i in 1..row.length {
            let chosen = |j: usize| b.labels[k * t + j] != IGNORE_INDEX;
            let special = |j: usize| l.specials().all.contains(&row.ids[j]);
            if !row.word_starts[i] && !special(i) && !special(i - 1) {
                multi_char_words += 1;
                assert_eq!(
                    chosen(i),
                    chosen(i - 1),
                    "row {r}: a jieba word was split at {i}"
                );
            }
        }
    }
    assert!(
        multi_char_words > 100,
        "Chinese words of several characters exist: {multi_char_words}"
    );
    // The units the mask keeps whole against the gold words: every character is one token, and the
    // tokens that start a word are compared with the gold word starts (inner boundaries only).
    let (mut both, mut only_gold, mut only_ours) = (0usize, 0usize, 0usize);
    for (words, text) in gold.iter().zip(&raw) {
        let enc = tok.encode(text, Language::Zh).unwrap();
        assert_eq!(
            enc.ids.len(),
            text.chars().count(),
            "one token per character: {text}"
        );
        let mut gold_starts = vec![false; enc.ids.len()];
        let mut at = 0;
        for w in words {
            gold_starts[at] = true;
            at += w.chars().count();
        }
        for i in 1..enc.ids.len() {
            match (gold_starts[i], enc.word_starts[i]) {
                (true, true) => both += 1,
                (true, false) => only_gold += 1,
                (false, true) => only_ours += 1,
                (false, false) => {}
            }
        }
    }
    let precision = both as f64 / (both + only_ours) as f64;
    let recall = both as f64 / (both + only_gold) as f64;
    eprintln!("word boundaries against gold: precision {precision:.3}, recall {recall:.3} ({both} agree, {only_gold} missed, {only_ours} extra)");
    // Measured with jieba-rs 0.11: precision 1.000, recall 0.934 (jieba keeps some gold pairs such
    // as 孩子 们 or 三十 个 together, so a mask may cover both; it never cuts a gold word).
    assert!(
        precision >= 0.98 && recall >= 0.9,
        "precision {precision:.3}, recall {recall:.3}"
    );
    std::fs::remove_dir_all(&dir).ok();
}

fn in_pool<T: Send>(threads: usize, f: impl FnOnce() -> T + Send) -> T {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap()
        .install(f)
}

/// The streaming `prepare`: the corpus as one plain file, or cut into a gzip, a zstd and a plain part
/// named by a glob, written into many small shards, with 1 or 3 tokenizer threads, gives the same
/// tokenizer, counts, statistics, static copies (stored compactly) and batches; a small vocabulary
/// sample is recorded and deterministic.
#[test]
fn streaming_prepare_is_the_same_for_any_shards_threads_and_compression() {
    use std::io::Write;
    let dir = tmp("streaming");
    let whole = small_corpus(&dir);
    let text = std::fs::read_to_string(&whole).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let parts = dir.join("parts");
    std::fs::create_dir_all(&parts).unwrap();
    let chunk = |k: usize| {
        lines[k * 500..(k + 1) * 500]
            .iter()
            .map(|l| format!("{l}\n"))
            .collect::<String>()
    };
    let mut gz = flate2::write::GzEncoder::new(
        std::fs::File::create(parts.join("part-0.txt.gz")).unwrap(),
        flate2::Compression::fast(),
    );
    gz.write_all(chunk(0).as_bytes()).unwrap();
    gz.finish().unwrap();
    std::fs::write(
        parts.join("part-1.txt.zst"),
        zstd::encode_all(chunk(1).as_bytes(), 1).unwrap(),
    )
    .unwrap();
    std::fs::write(parts.join("part-2.txt"), chunk(2)).unwrap();
    std::fs::write(parts.join("notes.md"), "not matched by the glob\n").unwrap();

    let masking = MaskingConfig {
        when: When::Static { dupe_factor: 2 },
        ..Default::default()
    };
    let one = small_config(whole);
    let mut many = small_config(parts.join("part-*.txt*"));
    many.shard_tokens = 3000;
    let (a, b, c) = (dir.join("a"), dir.join("b"), dir.join("c"));
    let ma = in_pool(1, || prepare(&one, &masking, &a)).unwrap();
    let mc = in_pool(3, || prepare(&one, &masking, &c)).unwrap();
    assert_eq!(
        files(&a),
        files(&c),
        "the output depends on the thread count"
    );
    let mb = in_pool(3, || prepare(&many, &masking, &b)).unwrap();
    assert_eq!(ma, mc);
    assert!(mb.train.shards.len() >= 5, "{:?}", mb.train.shards);
    assert_eq!(ma.train.shards, ["train-000.bin"]);
    for (x, y) in [(&ma.train, &mb.train), (&ma.validation, &mb.validation)] {
        assert_eq!(
            (x.documents, x.tokens, x.rows, x.padding_share),
            (y.documents, y.tokens, y.rows, y.padding_share)
        );
    }
    for f in [
        "tokenizer.json",
        "token_counts.bin",
        "static/copy-000.bin",
        "static/copy-001.bin",
    ] {
        assert_eq!(
            std::fs::read(a.join(f)).unwrap(),
            std::fs::read(b.join(f)).unwrap(),
            "{f}"
        );
    }
    // Static copies cost well under a byte per position and copy (version 1 stored 5).
    let sm = ma.static_masks.as_ref().unwrap();
    assert!(
        sm.bytes_per_training_token > 0.5 && sm.bytes_per_training_token < 2.0,
        "{sm:?}"
    );
    // Batches: static (read from the compact copies) and dynamic, across shard boundaries.
    for m in [masking.clone(), MaskingConfig::default()] {
        let mut la = Loader::open(&a, Split::Train, Task::Mlm, &m).unwrap();
        let mut lb = Loader::open(&b, Split::Train, Task::Mlm, &m).unwrap();
        let n = la.num_samples();
        assert_eq!(n, lb.num_samples());
        for first in [0, n / 3, n - 5, 2 * n + 7] {
            assert_eq!(
                la.batch(first, 16, 0.0).unwrap(),
                lb.batch(first, 16, 0.0).unwrap()
            );
        }
        let mut va = Loader::open(&a, Split::Validation, Task::Mlm, &m).unwrap();
        let mut vb = Loader::open(&b, Split::Validation, Task::Mlm, &m).unwrap();
        assert_eq!(va.eval_batches(8).unwrap(), vb.eval_batches(8).unwrap());
    }
    // The whole corpus fitted in the default sample; a small sample is recorded and deterministic.
    let remask::data::VocabSource::Learnt {
        documents,
        corpus_documents,
        ..
    } = ma.vocabulary.clone().unwrap()
    else {
        panic!()
    };
    assert_eq!(documents, corpus_documents);
    assert_eq!(corpus_documents, ma.train.documents);
    let mut sampled = small_config(dir.join("corpus.txt"));
    sampled.tokenizer.sample_bytes = 20_000;
    let (d1, d3) = (dir.join("d1"), dir.join("d3"));
    let m1 = in_pool(1, || prepare(&sampled, &MaskingConfig::default(), &d1)).unwrap();
    in_pool(3, || prepare(&sampled, &MaskingConfig::default(), &d3)).unwrap();
    assert_eq!(files(&d1), files(&d3));
    let remask::data::VocabSource::Learnt {
        documents,
        bytes,
        corpus_documents,
        limit_bytes,
        ..
    } = m1.vocabulary.unwrap()
    else {
        panic!()
    };
    assert!(
        bytes <= 20_000
            && bytes > 19_000
            && documents < corpus_documents / 4
            && limit_bytes == 20_000
    );
    assert_ne!(
        std::fs::read(d1.join("tokenizer.json")).unwrap(),
        std::fs::read(a.join("tokenizer.json")).unwrap()
    );
    std::fs::remove_dir_all(&dir).ok();
}

/// One bad file among a thousand: the error names it and the line.
#[test]
fn one_bad_file_in_a_thousand_is_named_with_its_line() {
    let dir = tmp("thousand");
    let inputs = dir.join("in");
    std::fs::create_dir_all(&inputs).unwrap();
    for i in 0..1000 {
        std::fs::write(
            inputs.join(format!("f{i:04}.txt")),
            format!("document {i} has a few words\nand a second line\n"),
        )
        .unwrap();
    }
    std::fs::write(
        inputs.join("f0613.txt"),
        b"fine first line\nfine second line\nbroken \xff here\n",
    )
    .unwrap();
    let mut data = small_config(inputs.clone());
    data.tokenizer.vocab_size = 200;
    let e = prepare(&data, &MaskingConfig::default(), &dir.join("out"))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("f0613.txt") && e.contains("line 3") && !e.contains('\n'),
        "{e}"
    );
    assert!(!dir.join("out/meta.json").exists());
    std::fs::remove_dir_all(&dir).ok();
}
