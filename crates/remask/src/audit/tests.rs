//! Tests of the leakage audit: every built-in mask passes on tiny real models, a planted leak (one
//! future token let through) is caught and named, and the allowed relation closes over layers; for an
//! encoder-decoder, the decoder's causal self-attention and its cross-attention pass, and a planted
//! future target token or padded source token is caught and named.

use super::*;
use crate::attention::{AttentionMaskSpec, MaskFn};
use crate::masking::config::MaskingConfig;
use crate::model::{new_model, Arch, ModelConfig, Seq2SeqMasks, ATTENTION_TILE};
use crate::{Batch, IGNORE_INDEX};

fn tiny(arch: Arch, layers: usize, attention: AttentionMaskSpec) -> ModelConfig {
    let base = match arch {
        Arch::Decoder => ModelConfig::gpt2_like(),
        Arch::Encoder => ModelConfig::bert_like(),
        Arch::EncoderDecoder => ModelConfig {
            n_decoder_layers: 1,
            ..ModelConfig::bart_like()
        },
    };
    ModelConfig {
        vocab_size: 29,
        d_model: 16,
        n_heads: 2,
        n_layers: layers,
        d_ff: 24,
        max_positions: 32,
        init_std: 0.3,
        attention,
        ..base
    }
}

fn audit(arch: Arch, layers: usize, spec: AttentionMaskSpec, t: usize) -> AuditReport {
    let cfg = tiny(arch, layers, spec);
    let batch = audit_batch(&cfg, 3, t, 7).unwrap();
    let mut model = new_model(cfg, 11).unwrap();
    audit_model(model.as_mut(), &spec, &batch, &AuditOptions::default()).unwrap()
}

#[test]
fn every_built_in_mask_passes_on_an_encoder() {
    for spec in [
        AttentionMaskSpec::Padding,
        AttentionMaskSpec::Causal,
        AttentionMaskSpec::Document { causal: false },
        AttentionMaskSpec::Document { causal: true },
        AttentionMaskSpec::SlidingWindow {
            window: 3,
            causal: false,
        },
        AttentionMaskSpec::SlidingWindow {
            window: 3,
            causal: true,
        },
        AttentionMaskSpec::PrefixLm,
    ] {
        let r = audit(Arch::Encoder, 2, spec, 20);
        assert!(r.passed, "{}", r.line());
        assert_eq!(r.checked_queries, 3 * 20);
        // Every mask here forbids something (padding keys at least), so the check had teeth.
        assert!(r.forbidden_pairs > 0, "{spec:?}");
    }
}

#[test]
fn causal_kinds_pass_on_a_decoder_and_the_encoder_of_an_encoder_decoder() {
    for spec in [
        AttentionMaskSpec::Causal,
        AttentionMaskSpec::PrefixLm,
        AttentionMaskSpec::SlidingWindow {
            window: 4,
            causal: true,
        },
    ] {
        let r = audit(Arch::Decoder, 2, spec, 16);
        assert!(r.passed, "decoder {}", r.line());
    }
    let r = audit(
        Arch::EncoderDecoder,
        2,
        AttentionMaskSpec::Document { causal: false },
        16,
    );
    assert!(r.passed, "encoder-decoder {}", r.line());
}

/// Runs a model whose configured mask is causal with `causal | (q == 3 && k == 5)` instead, and
/// audits it against plain causal.
fn planted(layers: usize) -> AuditReport {
    let cfg = tiny(Arch::Encoder, layers, AttentionMaskSpec::Causal);
    let batch = audit_batch(&cfg, 2, 12, 3).unwrap();
    let model = new_model(cfg, 5).unwrap();
    let lengths = batch.lengths.clone();
    let leaky = (MaskFn::causal() | MaskFn::custom(|_, _, q, k| q == 3 && k == 5))
        & MaskFn::padding(&lengths);
    let run_mask = leaky.compile(
        batch.batch_size,
        1,
        batch.seq_len,
        batch.seq_len,
        ATTENTION_TILE,
    );
    let expected = AttentionMaskSpec::Causal.predicate(&batch);
    audit_with_mask(
        model.as_ref(),
        &run_mask,
        &expected,
        "causal",
        &batch,
        &AuditOptions::default(),
    )
    .unwrap()
}

#[test]
fn a_planted_future_token_leak_is_caught_and_named() {
    // One layer: query 3 reads key 5 and nothing else beyond itself.
    let r = planted(1);
    assert!(!r.passed);
    let v = r.first_violation.clone().unwrap();
    assert_eq!(
        (v.row, v.query, v.key_row, v.key),
        (0, 3, 0, 5),
        "{}",
        r.line()
    );
    assert_eq!(v.leaked_keys, vec![5]);
    assert_eq!(
        r.line(),
        "LEAK causal: query 3 reads forbidden key 5 (row 0)"
    );
    assert_eq!(v.method, "gradient");
    // Both methods see it, in both rows, and only at query 3 (one layer does not spread it).
    assert_eq!(r.gradient_violations, 2);
    assert_eq!(r.perturbation_violations, 2);

    // Two layers: the state at 5 that query 3 reads in layer 2 had read key 4 in layer 1, so query 3
    // depends on 4 and 5; and query 4 reads query 3's leaked layer-1 state, so it depends on 5.
    let r = planted(2);
    let v = r.first_violation.clone().unwrap();
    assert_eq!((v.row, v.query), (0, 3));
    assert_eq!(v.leaked_keys, vec![4, 5]);
    assert_eq!(r.gradient_violations, r.perturbation_violations);
    assert_eq!(r.gradient_violations, 2 * 2, "queries 3 and 4 of both rows");
}

#[test]
fn a_model_is_held_to_the_kind_asked_for() {
    // A bidirectional encoder audited as if it had to be causal: query 0 reads key 1.
    let cfg = tiny(Arch::Encoder, 1, AttentionMaskSpec::Padding);
    let batch = audit_batch(&cfg, 2, 8, 1).unwrap();
    let mut model = new_model(cfg, 2).unwrap();
    let r = audit_model(
        model.as_mut(),
        &AttentionMaskSpec::Causal,
        &batch,
        &AuditOptions::default(),
    )
    .unwrap();
    let v = r.first_violation.unwrap();
    assert_eq!((v.row, v.query, v.key), (0, 0, 1));
}

#[test]
fn sampled_queries_include_both_ends() {
    let r = {
        let cfg = tiny(Arch::Encoder, 1, AttentionMaskSpec::Causal);
        let batch = audit_batch(&cfg, 1, 24, 1).unwrap();
        let mut model = new_model(cfg, 2).unwrap();
        audit_model(
            model.as_mut(),
            &AttentionMaskSpec::Causal,
            &batch,
            &AuditOptions {
                max_queries_per_row: 4,
                seed: 1,
            },
        )
        .unwrap()
    };
    assert!(r.passed);
    assert_eq!(r.checked_queries, 4);
}

#[test]
fn reach_closes_sliding_windows_over_layers_and_keeps_causal_fixed() {
    let batch = Batch::new(1, 12).with_lengths(vec![12]);
    let causal = AttentionMaskSpec::Causal.predicate(&batch);
    assert_eq!(
        Reach::closure(&causal, 1, 1, 12, 3),
        Reach::closure(&causal, 1, 1, 12, 1)
    );
    let sliding = AttentionMaskSpec::SlidingWindow {
        window: 3,
        causal: true,
    }
    .predicate(&batch);
    for layers in 0..4 {
        let r = Reach::closure(&sliding, 1, 1, 12, layers);
        // q = 9 reads 9-2..=9 per layer, so 9 - 2·layers ..= 9 after `layers` layers.
        let want: Vec<usize> = (0..12)
            .filter(|&k| !(k + 2 * layers >= 9 && k <= 9))
            .collect();
        assert_eq!(r.forbidden(0, 9), want, "{layers} layers");
    }
}

#[test]
fn masking_audit_reports_the_visible_target_share() {
    // 100 labels: 80 [MASK] (id 4), 10 random, 10 unchanged — the configured 80/10/10.
    let mut b = Batch::new(1, 100)
        .with_lengths(vec![100])
        .with_doc_ids(vec![0; 100]);
    for i in 0..100 {
        let target = 10 + i as u32 % 7;
        b.labels[i] = target as i32;
        b.input_ids[i] = match i % 10 {
            0 => target,
            1 => target + 1,
            _ => 4,
        };
    }
    let cfg = MaskingConfig::default();
    let a = audit_masking(std::slice::from_ref(&b), 4, 50, &cfg).unwrap();
    assert_eq!(
        (a.labels, a.masked, a.random, a.unchanged),
        (100, 80, 10, 10)
    );
    assert!(a.passed, "{}", a.line());
    // A pipeline that forgot to corrupt half of the targets leaks them.
    for i in 0..50 {
        b.input_ids[i] = b.labels[i] as u32;
    }
    let a = audit_masking(std::slice::from_ref(&b), 4, 50, &cfg).unwrap();
    assert!(!a.passed, "{}", a.line());
    assert!(b.labels.iter().all(|&l| l != IGNORE_INDEX));
}

#[test]
fn an_encoder_decoder_passes_on_encoder_decoder_causal_and_cross_padding() {
    for spec in [
        AttentionMaskSpec::Padding,
        AttentionMaskSpec::Document { causal: false },
    ] {
        let cfg = tiny(Arch::EncoderDecoder, 2, spec);
        let cfg = ModelConfig {
            n_decoder_layers: 2,
            ..cfg
        };
        // Sources of 12, 9, 10 real tokens; targets of 6, 5, 6 (padded at different lengths).
        let batch = audit_batch(&cfg, 3, 12, 7).unwrap();
        let d = batch.decoder.clone().unwrap();
        assert_eq!(
            (batch.lengths.clone(), d.lengths.clone()),
            (vec![12, 9, 10], vec![6, 5, 6])
        );
        let mut model = new_model(cfg, 11).unwrap();
        let reports = audit_all(model.as_mut(), &spec, &batch, &AuditOptions::default()).unwrap();
        let kinds: Vec<&str> = reports.iter().map(|r| r.kind.as_str()).collect();
        assert_eq!(
            kinds,
            [kind_name(&spec).as_str(), DECODER_CAUSAL, CROSS_PADDING]
        );
        for r in &reports {
            assert!(r.passed, "{}", r.line());
        }
        let (dec, cross) = (&reports[1], &reports[2]);
        assert_eq!((dec.checked_queries, cross.checked_queries), (3 * 6, 3 * 6));
        // Target side: query i forbids the keys after i (padding sits at the end, so every padded key
        // is after every real query); the padded query 5 of row 1 reads the real keys and itself.
        let causal: usize = (0..6).map(|i| 5 - i).sum();
        assert_eq!(dec.forbidden_pairs, 3 * causal);
        // Source side: every decoder query forbids exactly the padded source positions of its row
        // (0, 3 and 2).
        assert_eq!(cross.forbidden_pairs, 6 * (3 + 2));
        assert_eq!(
            dec.line(),
            "PASS decoder-causal: 18 query positions checked by gradients and perturbation"
        );
    }
}

/// A tiny encoder-decoder (2 encoder layers, 1 decoder layer) run with its own masks except for
/// `plant` (given the model's masks and the batch), audited against its own relations.
fn planted_seq2seq(plant: impl FnOnce(&mut Seq2SeqMasks, &Batch)) -> Vec<AuditReport> {
    let cfg = tiny(Arch::EncoderDecoder, 2, AttentionMaskSpec::Padding);
    // Sources of 12 and 9 real tokens, targets of 6 and 5.
    let batch = audit_batch(&cfg, 2, 12, 3).unwrap();
    let model = new_model(cfg.clone(), 5).unwrap();
    let mut masks = Seq2SeqMasks::of(&cfg, &batch).unwrap();
    plant(&mut masks, &batch);
    let expected = Seq2SeqExpected::new(&cfg.attention, &batch).unwrap();
    audit_seq2seq_with_masks(
        model.as_ref(),
        &masks,
        &expected,
        &batch,
        &AuditOptions::default(),
    )
    .unwrap()
}

#[test]
fn a_planted_future_target_token_is_caught_and_named() {
    let reports = planted_seq2seq(|m, b| {
        let d = b.decoder.as_ref().unwrap();
        let leaky = (MaskFn::causal() | MaskFn::custom(|_, _, q, k| q == 2 && k == 4))
            & MaskFn::padding(&d.lengths);
        m.dec = leaky.compile(b.batch_size, 1, d.seq_len, d.seq_len, ATTENTION_TILE);
    });
    let (dec, cross) = (&reports[0], &reports[1]);
    assert!(cross.passed, "{}", cross.line());
    assert!(!dec.passed);
    assert_eq!(
        dec.line(),
        "LEAK decoder-causal: query 2 reads forbidden target key 4 (row 0)"
    );
    let v = dec.first_violation.clone().unwrap();
    assert_eq!(
        (v.row, v.query, v.key_row, v.key, v.key_side.as_deref()),
        (0, 2, 0, 4, Some("target"))
    );
    assert_eq!(v.leaked_keys, vec![4]);
    // One decoder layer: only query 2 of each row reads the future token, seen by both methods.
    assert_eq!(
        (dec.gradient_violations, dec.perturbation_violations),
        (2, 2)
    );
}

#[test]
fn a_planted_padded_source_token_is_caught_and_named() {
    let reports = planted_seq2seq(|m, b| {
        // Row 1 has 9 real source tokens: let its decoder query 1 read the padded encoder output 9.
        assert_eq!(b.lengths[1], 9);
        let leaky = MaskFn::padding(&b.lengths)
            | MaskFn::custom(|row, _, q, k| row == 1 && q == 1 && k == 9);
        let td = b.decoder.as_ref().unwrap().seq_len;
        m.cross = leaky.compile(b.batch_size, 1, td, b.seq_len, ATTENTION_TILE);
    });
    let (dec, cross) = (&reports[0], &reports[1]);
    assert!(dec.passed, "{}", dec.line());
    assert!(!cross.passed);
    assert_eq!(
        cross.line(),
        "LEAK cross-padding: query 1 reads forbidden source key 9 (row 1)"
    );
    let v = cross.first_violation.clone().unwrap();
    assert_eq!(
        (v.row, v.query, v.key_row, v.key, v.key_side.as_deref()),
        (1, 1, 1, 9, Some("source"))
    );
    // The padded encoder output 9 reads the real tokens and itself, so only source token 9 leaks.
    assert_eq!(v.leaked_keys, vec![9]);
    assert_eq!(
        (cross.gradient_violations, cross.perturbation_violations),
        (1, 1)
    );
}

#[test]
fn reach_composes_decoder_cross_and_encoder_relations() {
    // Decoder query i reads targets ≤ i; target j reads the first 2 encoder outputs; encoder output k
    // reads k and k + 1 (a toy relation): so every query may depend on sources 0, 1 and 2 only.
    let dec = Reach::closure(&MaskFn::causal(), 1, 1, 3, 1);
    let cross = Reach::attention(&MaskFn::padding(&[2]), 1, 1, 3, 5);
    let enc = Reach::closure(&MaskFn::custom(|_, _, q, k| k == q + 1), 1, 1, 5, 1);
    let src = dec.then(&cross).then(&enc);
    assert_eq!((src.queries(), src.seq_len()), (3, 5));
    for q in 0..3 {
        assert_eq!(src.forbidden(0, q), vec![3, 4]);
    }
}
