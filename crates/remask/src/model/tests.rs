//! Model-level tests: finite-difference gradients of all three architectures, packed documents equal
//! separate forwards, dropout keying, bad input, HF export/import round trips.

use remask_kernels::rng::{KeyedRng, Purpose};

use super::*;
use crate::attention::AttentionMaskSpec;
use crate::{Batch, DecoderBatch, IGNORE_INDEX};

fn tiny(arch: Arch) -> ModelConfig {
    let base = match arch {
        Arch::Encoder => ModelConfig::bert_like(),
        Arch::Decoder => ModelConfig::gpt2_like(),
        Arch::EncoderDecoder => ModelConfig::bart_like(),
    };
    ModelConfig {
        vocab_size: 13,
        d_model: 8,
        n_heads: 2,
        n_layers: 2,
        n_decoder_layers: if arch == Arch::EncoderDecoder { 2 } else { 0 },
        d_ff: 16,
        max_positions: 16,
        layer_norm_eps: 1e-5,
        init_std: 0.3,
        ..base
    }
}

/// A batch with rows of the given lengths (padding after), ids from a keyed stream, labels on every
/// `label_every`-th real position (CLM style: all real positions but the last when `clm`).
fn batch(lengths: &[usize], t: usize, vocab: u32, seed: u64, clm: bool) -> Batch {
    let b = lengths.len();
    let mut rng = KeyedRng::new(seed, Purpose::Other, 0, 0);
    let mut bt = Batch::new(b, t).with_lengths(lengths.iter().map(|&l| l as u32).collect());
    for (r, &len) in lengths.iter().enumerate() {
        for p in 0..t {
            let i = r * t + p;
            bt.positions[i] = p as u32;
            if p < len {
                bt.input_ids[i] = 1 + rng.below(vocab as u64 - 1) as u32;
                bt.doc_ids[i] = 0;
                let labelled = if clm { p + 1 < len } else { p % 2 == 1 };
                if labelled {
                    bt.labels[i] = rng.below(vocab as u64) as i32;
                }
            }
        }
    }
    bt
}

fn with_decoder(mut bt: Batch, dec_lengths: &[usize], td: usize, vocab: u32, seed: u64) -> Batch {
    let d = batch(dec_lengths, td, vocab, seed, true);
    bt.labels.fill(IGNORE_INDEX);
    bt.decoder = Some(
        DecoderBatch::new(d.batch_size, td)
            .with_input_ids(d.input_ids)
            .with_labels(d.labels)
            .with_lengths(d.lengths),
    );
    bt
}

fn test_batch(cfg: &ModelConfig) -> Batch {
    match cfg.arch {
        Arch::Encoder => batch(&[6, 4], 6, cfg.vocab_size as u32, 3, false),
        Arch::Decoder => batch(&[6, 4], 6, cfg.vocab_size as u32, 3, true),
        Arch::EncoderDecoder => with_decoder(
            batch(&[6, 4], 6, cfg.vocab_size as u32, 3, false),
            &[5, 3],
            5,
            cfg.vocab_size as u32,
            4,
        ),
    }
}

/// Analytic gradients against central differences on two elements of every tensor.
fn check_gradients(cfg: ModelConfig) {
    let bt = test_batch(&cfg);
    let mut m = new_model(cfg, 11).unwrap();
    m.grads_mut().fill(0.0);
    let stats = m.forward_backward(&bt, 1.0, 0).unwrap();
    assert!(stats.n_labels > 0 && stats.loss_sum.is_finite());
    let eval = m.forward_eval(&bt).unwrap();
    assert!((eval.loss_sum - stats.loss_sum).abs() < 1e-4 * stats.loss_sum.abs());
    let grads = m.grads().to_vec();
    let tensors = m.tensors().to_vec();
    let mut rng = KeyedRng::new(5, Purpose::Other, 0, 1);
    let h = 1e-2f32;
    let mut worst = 0.0f64;
    for t in &tensors {
        if t.name == "final_logits_bias" {
            assert!(
                grads[t.offset..t.offset + t.numel()]
                    .iter()
                    .all(|&g| g == 0.0),
                "frozen bias got a gradient"
            );
            continue;
        }
        for _ in 0..2 {
            let i = t.offset + rng.below(t.numel() as u64) as usize;
            let orig = m.params()[i];
            m.params_mut()[i] = orig + h;
            let lp = m.forward_eval(&bt).unwrap().loss_sum;
            m.params_mut()[i] = orig - h;
            let lm = m.forward_eval(&bt).unwrap().loss_sum;
            m.params_mut()[i] = orig;
            let fd = (lp - lm) / (2.0 * h as f64);
            let an = grads[i] as f64;
            let err = (fd - an).abs() / (an.abs().max(fd.abs()) + 1e-2);
            worst = worst.max(err);
            assert!(
                err < 3e-2,
                "{}[{}]: analytic {an} vs finite difference {fd}",
                t.name,
                i - t.offset
            );
        }
    }
    eprintln!("worst relative gradient error {worst:.2e}");
}

#[test]
fn encoder_gradients_match_finite_differences() {
    check_gradients(ModelConfig {
        type_vocab_size: 2,
        ..tiny(Arch::Encoder)
    });
}

#[test]
fn decoder_gradients_match_finite_differences() {
    check_gradients(tiny(Arch::Decoder));
}

#[test]
fn encoder_decoder_gradients_match_finite_differences() {
    check_gradients(ModelConfig {
        embed_scale: 8f32.sqrt(),
        ..tiny(Arch::EncoderDecoder)
    });
}

#[test]
fn variants_gradients_match_finite_differences() {
    // Pre-LN encoder with sinusoidal positions, no embedding LN, untied head, tanh GELU.
    check_gradients(ModelConfig {
        norm: NormPlacement::Pre,
        positions: PositionKind::Sinusoidal,
        embedding_layer_norm: false,
        tie_embeddings: false,
        gelu: GeluForm::Tanh,
        ..tiny(Arch::Encoder)
    });
}

#[test]
fn packed_documents_equal_separate_rows() {
    // Guards the document mask + restarting positions: two documents packed in one row must give
    // exactly what each gives alone in its own (padded) row.
    let cfg = ModelConfig {
        attention: AttentionMaskSpec::Document { causal: false },
        init_std: 0.1,
        ..tiny(Arch::Encoder)
    };
    let (la, lb, t) = (5usize, 7usize, 12usize);
    let mut packed = batch(&[t], t, 13, 9, false);
    for p in 0..t {
        let (doc, pos) = if p < la { (0, p) } else { (1, p - la) };
        packed.doc_ids[p] = doc;
        packed.positions[p] = pos as u32;
    }
    let mut separate = batch(&[la, lb], t, 13, 10, false);
    for p in 0..t {
        separate.input_ids[p] = if p < la { packed.input_ids[p] } else { 0 };
        separate.input_ids[t + p] = if p < lb { packed.input_ids[la + p] } else { 0 };
    }
    let mut m = LmModel::new(cfg, 2).unwrap();
    let v = 13;
    let lp = m.logits(&packed).unwrap().to_vec();
    let ls = m.logits(&separate).unwrap().to_vec();
    let mut worst = 0.0f32;
    for p in 0..t {
        let row = if p < la { p } else { t + p - la };
        for j in 0..v {
            worst = worst.max((lp[p * v + j] - ls[row * v + j]).abs());
        }
    }
    assert!(worst < 1e-5, "packed vs separate logits differ by {worst}");
}

#[test]
fn dropout_is_keyed_and_off_in_eval() {
    let cfg = ModelConfig {
        dropout: 0.3,
        ..tiny(Arch::Encoder)
    };
    let bt = test_batch(&cfg);
    let mut m = LmModel::new(cfg, 1).unwrap();
    let a = m.forward_backward(&bt, 1.0, 7).unwrap().loss_sum;
    let ga = m.grads().to_vec();
    m.grads_mut().fill(0.0);
    let b = m.forward_backward(&bt, 1.0, 7).unwrap().loss_sum;
    assert_eq!(a, b);
    assert_eq!(ga, m.grads());
    let c = m.forward_backward(&bt, 1.0, 8).unwrap().loss_sum;
    assert_ne!(a, c);
    let e1 = m.forward_eval(&bt).unwrap().loss_sum;
    let e2 = m.forward_eval(&bt).unwrap().loss_sum;
    assert_eq!(e1, e2);
    assert_ne!(e1, a);
}

#[test]
fn gathered_head_loss_equals_all_positions_loss() {
    let cfg = tiny(Arch::Encoder);
    let bt = test_batch(&cfg);
    let mut m = LmModel::new(cfg, 4).unwrap();
    let stats = m.forward_eval(&bt).unwrap();
    let losses = m.last_label_losses().to_vec();
    assert_eq!(losses.len(), stats.n_labels);
    let logits = m.logits(&bt).unwrap().to_vec();
    let v = 13;
    let mut k = 0;
    for (i, &l) in bt.labels.iter().enumerate() {
        if l == IGNORE_INDEX {
            continue;
        }
        let row = &logits[i * v..(i + 1) * v];
        let mx = row.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
        let lse = mx + row.iter().map(|x| (x - mx).exp()).sum::<f32>().ln();
        assert!((lse - row[l as usize] - losses[k]).abs() < 1e-4);
        k += 1;
    }
    assert_eq!(k, losses.len());
}

#[test]
fn bad_input_is_an_error_not_a_panic() {
    let cfg = tiny(Arch::Encoder);
    let mut m = LmModel::new(cfg.clone(), 1).unwrap();
    let too_long = batch(&[17], 17, 13, 1, false);
    let e = m
        .forward_backward(&too_long, 1.0, 0)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("batch.positions") && e.contains("max_positions (16)"),
        "{e}"
    );
    let mut bad = test_batch(&cfg);
    bad.input_ids[0] = 13;
    assert!(m
        .forward_eval(&bad)
        .unwrap_err()
        .to_string()
        .contains("vocab_size (13)"));
    let mut bad = test_batch(&cfg);
    bad.labels.pop();
    assert!(m
        .forward_eval(&bad)
        .unwrap_err()
        .to_string()
        .contains("batch.labels"));
    let e = LmModel::new(
        ModelConfig {
            n_heads: 3,
            ..cfg.clone()
        },
        1,
    )
    .err()
    .unwrap()
    .to_string();
    assert!(e.contains("model.n_heads"), "{e}");
    let e = LmModel::from_params(cfg, vec![0.0; 5])
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("model parameters"), "{e}");
    let mut s2s = EncoderDecoderModel::new(tiny(Arch::EncoderDecoder), 1).unwrap();
    assert!(s2s
        .forward_eval(&test_batch(&tiny(Arch::Encoder)))
        .unwrap_err()
        .to_string()
        .contains("batch.decoder"));
}

#[test]
fn hf_export_import_round_trips() {
    let dir = std::env::temp_dir().join(format!("remask-hf-{}", std::process::id()));
    for arch in [Arch::Encoder, Arch::Decoder, Arch::EncoderDecoder] {
        let cfg = ModelConfig {
            type_vocab_size: if arch == Arch::Encoder { 2 } else { 0 },
            ..tiny(arch)
        };
        let bt = test_batch(&cfg);
        let mut a = new_model(cfg.clone(), 21).unwrap();
        let d = dir.join(format!("{arch:?}"));
        hf::export_hf(a.as_ref(), &d).unwrap();
        let mut imp = hf::load_hf(&d, 99).unwrap();
        assert!(imp.initialised.is_empty());
        assert_eq!(imp.model.params(), a.params(), "{arch:?}");
        assert_eq!(imp.model.tensors(), a.tensors());
        let la = a.logits(&bt).unwrap().to_vec();
        assert_eq!(imp.model.logits(&bt).unwrap(), &la[..]);
        // A file with a mis-shaped tensor names it.
        let mut stored = hf::read_safetensors(&d.join("model.safetensors")).unwrap();
        let victim = a.tensors()[1].name.clone();
        stored.get_mut(&victim).unwrap().shape.push(1);
        let e = hf::load_params(cfg.clone(), &stored, &d, 0)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains(&victim), "{e}");
        stored.remove(&victim);
        let e = hf::load_params(cfg, &stored, &d, 0)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("missing tensor") && e.contains(&victim), "{e}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn dropping_padding_rows_changes_nothing() {
    // Guards the compaction of training steps: a padded batch (run on its real rows only) must give
    // the loss and gradients of the same batch run on the full grid, where a document mask keeps
    // the real positions from reading the tail instead.
    let cfg = ModelConfig {
        attention: AttentionMaskSpec::Document { causal: false },
        ..tiny(Arch::Encoder)
    };
    let padded = test_batch(&cfg);
    let mut full = padded.clone();
    full.lengths = vec![6, 6];
    let mut m = LmModel::new(cfg, 8).unwrap();
    let a = m.forward_backward(&padded, 1.0, 0).unwrap();
    let ga = m.grads().to_vec();
    let la = m.last_label_losses().to_vec();
    m.grads_mut().fill(0.0);
    let b = m.forward_backward(&full, 1.0, 0).unwrap();
    assert_eq!(a.n_labels, b.n_labels);
    assert!((a.loss_sum - b.loss_sum).abs() < 1e-5 * a.loss_sum.abs());
    for (x, y) in la.iter().zip(m.last_label_losses()) {
        assert!((x - y).abs() < 1e-5);
    }
    let scale = ga.iter().fold(0.0f32, |s, g| s.max(g.abs()));
    let err = ga
        .iter()
        .zip(m.grads())
        .fold(0.0f32, |s, (x, y)| s.max((x - y).abs()));
    assert!(
        err < 1e-5 * scale,
        "gradients differ by {err} (scale {scale})"
    );
}

#[test]
fn empty_batches_and_rows_do_not_panic() {
    for arch in [Arch::Encoder, Arch::Decoder, Arch::EncoderDecoder] {
        let cfg = tiny(arch);
        let mut m = new_model(cfg.clone(), 3).unwrap();
        // No rows at all.
        let mut empty = batch(&[], 4, 13, 1, false);
        if arch == Arch::EncoderDecoder {
            empty = with_decoder(empty, &[], 3, 13, 2);
        }
        let s = m.forward_backward(&empty, 1.0, 0).unwrap();
        assert_eq!(s.n_labels, 0);
        assert!(m.grads().iter().all(|&g| g == 0.0));
        // A row without any real token beside a normal one (decoder rows stay non-empty).
        let mut b = batch(&[0, 5], 6, 13, 1, arch == Arch::Decoder);
        if arch == Arch::EncoderDecoder {
            b = with_decoder(b, &[3, 4], 4, 13, 2);
        }
        let s = m.forward_backward(&b, 1.0, 0).unwrap();
        assert!(s.n_labels > 0 && s.loss_sum.is_finite());
        assert!(m.grads().iter().all(|g| g.is_finite()));
    }
}

/// bf16 precision on every architecture: the loss within bf16 rounding of the f32 model's (same
/// weights, same batch) and every gradient within a few percent of its tensor's largest f32 value
/// (operands rounded to 8 significant bits, a couple of layers deep; key biases, whose true gradient
/// is 0, excepted); two runs equal bit for bit; evaluation computes in f32 (the f32 model's loss, bit
/// for bit); a weight change reaches the next bf16 forward (the packed bf16 copy follows the values),
/// which then equals a fresh model built from the changed values. A CPU without bf16 refuses the setting.
#[test]
fn bf16_precision_tracks_fp32_and_follows_weight_changes() {
    for arch in [Arch::Encoder, Arch::Decoder, Arch::EncoderDecoder] {
        let cfg32 = ModelConfig {
            d_model: 32,
            n_heads: 2,
            d_ff: 64,
            init_std: 0.1,
            ..tiny(arch)
        };
        let cfg16 = ModelConfig {
            precision: Precision::Bf16,
            ..cfg32.clone()
        };
        if remask_kernels::cpu::bf16_kernel().is_none() {
            let e = new_model(cfg16, 5).err().expect("bf16 refused").to_string();
            assert!(
                e.contains("model.precision") && e.contains("AVX-512 BF16"),
                "{e}"
            );
            continue;
        }
        let bt = test_batch(&cfg32);
        let mut m32 = new_model(cfg32, 5).unwrap();
        let mut m16 = new_model(cfg16.clone(), 5).unwrap();
        assert_eq!(m32.params(), m16.params(), "same initialisation");
        let s32 = m32.forward_backward(&bt, 1.0, 0).unwrap();
        let s16 = m16.forward_backward(&bt, 1.0, 0).unwrap();
        let rel = ((s16.loss_sum - s32.loss_sum) / s32.loss_sum).abs();
        assert!(
            rel < 2e-3,
            "{arch:?}: bf16 loss {} vs f32 {}",
            s16.loss_sum,
            s32.loss_sum
        );
        assert!(rel > 0.0, "{arch:?}: bf16 must round somewhere");
        for t in m32.tensors() {
            // Key biases have a true gradient of 0 (softmax ignores a shift shared by all keys):
            // both precisions return rounding noise there.
            if t.name.ends_with("key.bias") || t.name.ends_with("k_proj.bias") {
                continue;
            }
            let (g32, g16) = (
                &m32.grads()[t.offset..t.offset + t.numel()],
                &m16.grads()[t.offset..t.offset + t.numel()],
            );
            let scale = g32.iter().fold(0.0f32, |s, g| s.max(g.abs()));
            let err = g32
                .iter()
                .zip(g16)
                .fold(0.0f32, |s, (a, b)| s.max((a - b).abs()));
            assert!(
                err <= 5e-2 * scale + 1e-7,
                "{arch:?} {}: bf16 gradient off by {err} (scale {scale})",
                t.name
            );
        }
        // Deterministic: a second model gives the same bits.
        let mut again = new_model(cfg16.clone(), 5).unwrap();
        let s_again = again.forward_backward(&bt, 1.0, 0).unwrap();
        assert_eq!(s_again.loss_sum.to_bits(), s16.loss_sum.to_bits());
        assert_eq!(again.grads(), m16.grads());
        // Evaluation computes in f32 from the master weights: the f32 model's figures, bit for bit
        // (the same instrument for every run; what `remask eval` reports for the checkpoint).
        let (e16, e32) = (
            m16.forward_eval(&bt).unwrap(),
            m32.forward_eval(&bt).unwrap(),
        );
        assert_eq!(e16.loss_sum.to_bits(), e32.loss_sum.to_bits(), "{arch:?}");
        assert_eq!(e16.n_correct, e32.n_correct, "{arch:?}");
        assert_eq!(m16.last_label_losses(), m32.last_label_losses(), "{arch:?}");
        // A changed weight reaches the next bf16 forward (the packed copy follows the values).
        let before = m16.logits(&bt).unwrap().to_vec();
        let w = m16
            .tensors()
            .iter()
            .find(|t| t.shape.len() == 2 && t.name.contains("weight") && !t.name.contains("embed"))
            .unwrap()
            .clone();
        for x in &mut m16.params_mut()[w.offset..w.offset + w.numel()] {
            *x *= 1.5;
        }
        let after = m16.logits(&bt).unwrap().to_vec();
        assert_ne!(
            before, after,
            "{arch:?}: {} changed but the logits did not",
            w.name
        );
        let mut fresh = model_from_params(cfg16, m16.params().to_vec()).unwrap();
        assert_eq!(fresh.logits(&bt).unwrap(), &after[..]);
        assert_eq!(
            fresh.forward_eval(&bt).unwrap().loss_sum.to_bits(),
            m16.forward_eval(&bt).unwrap().loss_sum.to_bits()
        );
    }
}
