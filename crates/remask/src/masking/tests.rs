//! Property tests of the masking invariants: special tokens and padding are never chosen; realised
//! rates and replacement shares match the config; the same key gives the same mask and different
//! epochs differ; whole words are never split; span lengths follow the truncated geometric law; PMI
//! masking hides its n-grams whole.

use proptest::prelude::*;
use remask_kernels::rng::{KeyedRng, Purpose};

use super::*;
use crate::batch::IGNORE_INDEX;

const V: u32 = 1000;
const SPECIALS: [u32; 5] = [0, 1, 2, 3, 4];
const MASK: u32 = 4;

/// A row of length t: [CLS] words [SEP] then padding from `length`; about 3 in 4 tokens start a word.
fn row(t: usize, length: usize, seed: u64) -> TokenRowBuf {
    let mut rng = KeyedRng::new(seed, Purpose::Other, 0, 0);
    let mut ids = vec![0u32; t];
    let mut word_starts = vec![true; t];
    for i in 0..length {
        ids[i] = if i == 0 {
            2
        } else if i + 1 == length {
            3
        } else {
            5 + rng.below((V - 5) as u64) as u32
        };
        word_starts[i] = i == 0 || i + 1 == length || rng.next_f32() < 0.7;
    }
    TokenRowBuf {
        ids,
        word_starts,
        length,
    }
}

fn config(strategy: StrategyKind, count: CountRule, rate: f32) -> MaskingConfig {
    MaskingConfig {
        strategy,
        count,
        rate,
        ..Default::default()
    }
}

fn strategies() -> impl Strategy<Value = (StrategyKind, CountRule)> {
    (
        prop_oneof![
            Just(StrategyKind::Token),
            Just(StrategyKind::WholeWord),
            Just(StrategyKind::Span),
            Just(StrategyKind::Pmi)
        ],
        prop_oneof![Just(CountRule::Exact), Just(CountRule::Bernoulli)],
    )
}

/// The n-grams of the test vocabulary: (tokens, tokens per word). [`pmi_row`] plants them.
const NGRAMS: [(&[u32], &[u16]); 4] = [
    (&[100, 101], &[1, 1]),
    (&[200, 201, 202], &[2, 1]),
    (&[300, 301, 302, 303, 304], &[1, 1, 1, 1, 1]),
    (&[400, 401, 402, 403], &[1, 1, 2]),
];

fn ngram_vocab() -> &'static std::sync::Arc<NgramVocab> {
    static VOCAB: std::sync::OnceLock<std::sync::Arc<NgramVocab>> = std::sync::OnceLock::new();
    VOCAB.get_or_init(|| {
        let entries = NGRAMS
            .iter()
            .map(|(t, w)| Ngram {
                tokens: t.to_vec(),
                word_lens: w.to_vec(),
                score: 5.0,
                count: 10,
            })
            .collect();
        std::sync::Arc::new(NgramVocab::new(entries, NgramStats::default()))
    })
}

/// A row like [`row`] in which about a third of the words are replaced by one of [`NGRAMS`] (cut
/// short where the row ends).
fn pmi_row(t: usize, length: usize, seed: u64) -> TokenRowBuf {
    let mut r = row(t, length, seed);
    let mut rng = KeyedRng::new(seed, Purpose::Other, 1, 0);
    let mut i = 1;
    while i + 1 < length {
        if r.word_starts[i] && rng.next_f32() < 0.3 {
            let (tokens, lens) = NGRAMS[rng.below(NGRAMS.len() as u64) as usize];
            let mut starts = Vec::new();
            for &l in lens {
                starts.push(true);
                starts.extend(std::iter::repeat_n(false, l as usize - 1));
            }
            for (k, (&id, &w)) in tokens.iter().zip(&starts).enumerate() {
                if i + k + 1 >= length {
                    break;
                }
                r.ids[i + k] = id;
                r.word_starts[i + k] = w;
            }
            i += tokens.len();
            if i + 1 < length {
                r.word_starts[i] = true;
            }
        } else {
            i += 1;
        }
    }
    r
}

fn vocab(specials: &[u32]) -> Vocab<'_> {
    Vocab {
        size: V,
        mask_id: MASK,
        special_ids: specials,
        counts: None,
        ngrams: Some(ngram_vocab()),
    }
}

fn masker(config: &MaskingConfig) -> Masker {
    Masker::new(config, &vocab(&SPECIALS)).unwrap()
}

fn plan(config: &MaskingConfig, seed: u64) -> MaskPlan {
    MaskPlan::new(config, &vocab(&SPECIALS), seed).unwrap()
}

fn mask(
    m: &Masker,
    r: &TokenRowBuf,
    rate: f32,
    (seed, epoch, index): (u64, u64, u64),
    adaptive: Option<&Adaptive>,
) -> (Vec<u32>, Vec<i32>, Vec<bool>) {
    let t = r.ids.len();
    let (mut input, mut labels) = (vec![0u32; t], vec![0i32; t]);
    let mut s = MaskScratch::default();
    let out = MaskedRow {
        input: &mut input,
        labels: &mut labels,
    };
    m.mask_row(
        r.view(),
        out,
        rate,
        MaskKey { seed, epoch, index },
        adaptive,
        &mut s,
    );
    (input, labels, s.chosen)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn specials_and_padding_are_never_chosen_and_labels_match(
        (strategy, count) in strategies(),
        rate in 0.01f32..0.99,
        t in 4usize..160,
        fill in 0.0f64..1.0,
        seed in any::<u64>(),
        epoch in 0u64..100,
    ) {
        let length = 2 + ((t - 2) as f64 * fill) as usize;
        let r = row(t, length, seed);
        let m = masker(&config(strategy, count, rate));
        let (input, labels, chosen) = mask(&m, &r, rate, (seed, epoch, 3), None);
        for i in 0..t {
            let eligible = i < length && !SPECIALS.contains(&r.ids[i]);
            prop_assert!(!chosen[i] || eligible, "position {i} chosen but ineligible");
            if chosen[i] {
                prop_assert_eq!(labels[i], r.ids[i] as i32);
                // Random replacements never draw special tokens.
                prop_assert!(input[i] == MASK || !SPECIALS.contains(&input[i]));
            } else {
                prop_assert_eq!(labels[i], IGNORE_INDEX);
                prop_assert_eq!(input[i], r.ids[i]);
            }
        }
    }

    #[test]
    fn same_key_same_mask_and_epochs_differ(
        (strategy, count) in strategies(),
        seed in any::<u64>(),
        index in any::<u64>(),
    ) {
        let r = row(128, 128, seed ^ 1);
        let m = masker(&config(strategy, count, 0.15));
        let a = mask(&m, &r, 0.15, (seed, 5, index), None);
        let b = mask(&m, &r, 0.15, (seed, 5, index), None);
        prop_assert_eq!(&a, &b);
        // Over a few other epochs at least one mask differs (two identical 128-token masks by chance
        // are astronomically unlikely; three chances make it safe).
        let differs = (6..9).any(|e| mask(&m, &r, 0.15, (seed, e, index), None).2 != a.2);
        prop_assert!(differs);
    }

    #[test]
    fn whole_word_and_span_never_split_a_word(
        strategy in prop_oneof![Just(StrategyKind::WholeWord), Just(StrategyKind::Span)],
        count in prop_oneof![Just(CountRule::Exact), Just(CountRule::Bernoulli)],
        rate in 0.05f32..0.6,
        seed in any::<u64>(),
    ) {
        let r = row(128, 120, seed);
        let m = masker(&config(strategy, count, rate));
        let (_, _, chosen) = mask(&m, &r, rate, (seed, 0, 0), None);
        for i in 1..r.length {
            let continues_word = !r.word_starts[i] && !SPECIALS.contains(&r.ids[i]) && !SPECIALS.contains(&r.ids[i - 1]);
            if continues_word {
                prop_assert_eq!(chosen[i], chosen[i - 1], "word split at {}", i);
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// PMI masking: every n-gram unit of the row is hidden whole or not at all, no word is split, and
    /// nothing ineligible is chosen.
    #[test]
    fn pmi_masks_ngrams_whole(
        count in prop_oneof![Just(CountRule::Exact), Just(CountRule::Bernoulli)],
        rate in 0.05f32..0.6,
        t in 8usize..200,
        seed in any::<u64>(),
        epoch in 0u64..50,
    ) {
        let r = pmi_row(t, t - t / 8, seed);
        let m = masker(&config(StrategyKind::Pmi, count, rate));
        let (_, _, chosen) = mask(&m, &r, rate, (seed, epoch, 1), None);
        let mut eligible = Vec::new();
        m.eligible(r.view(), &mut eligible);
        let pmi = PmiMasking { count, vocab: ngram_vocab().clone() };
        let view = RowView { ids: &r.ids, eligible: &eligible, word_starts: &r.word_starts, weights: None };
        let (mut units, mut is_ngram) = (Vec::new(), Vec::new());
        pmi.segment(&view, &mut units, Some(&mut is_ngram), &mut SegmentScratch::default());
        for (&(a, l), &g) in units.iter().zip(&is_ngram) {
            let hidden = chosen[a as usize..(a + l) as usize].iter().filter(|&&c| c).count();
            prop_assert!(hidden == 0 || hidden == l as usize, "unit at {} (n-gram: {}) split: {} of {}", a, g, hidden, l);
            if g {
                let tokens = &r.ids[a as usize..(a + l) as usize];
                prop_assert!(NGRAMS.iter().any(|(t, _)| *t == tokens), "{:?} is no vocabulary n-gram", tokens);
            }
        }
        for i in 0..t {
            prop_assert!(!chosen[i] || eligible[i]);
            if i > 0 && eligible[i] && eligible[i - 1] && !r.word_starts[i] {
                prop_assert_eq!(chosen[i], chosen[i - 1], "word split at {}", i);
            }
        }
    }
}

#[test]
fn pmi_rate_is_on_target_and_ngrams_take_their_share() {
    let rows: Vec<TokenRowBuf> = (0..400)
        .map(|i| pmi_row(128, 100 + (i % 28) as usize, i))
        .collect();
    for count in [CountRule::Exact, CountRule::Bernoulli] {
        for rate in [0.15f32, 0.3] {
            let p = plan(&config(StrategyKind::Pmi, count, rate), 3);
            let s = collect_stats(&p, &rows, 2);
            assert!(
                (s.mask_rate - rate as f64).abs() < 0.01,
                "{count:?} rate {rate}: realised {}",
                s.mask_rate
            );
            assert_eq!(s.chosen_ineligible, 0);
            let g = collect_ngram_stats(&p, &rows, 2).unwrap();
            assert_eq!(g.ngrams_split, 0);
            assert!(g.ngram_units > 1000 && g.ngrams_masked > 100, "{g:?}");
            // Units are chosen uniformly, so n-grams take about their share of the row's tokens.
            assert!((g.ngram_share - g.ngram_coverage).abs() < 0.1, "{g:?}");
            assert!(g.ngram_coverage > 0.3, "{g:?}");
        }
    }
    // Other strategies have no n-gram statistics.
    assert!(collect_ngram_stats(&plan(&MaskingConfig::default(), 3), &rows, 1).is_none());
}

#[test]
fn pmi_without_a_vocabulary_is_an_error_naming_the_key() {
    let v = Vocab {
        ngrams: None,
        ..vocab(&SPECIALS)
    };
    let e = Masker::new(&config(StrategyKind::Pmi, CountRule::Exact, 0.15), &v)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("masking.strategy") && e.contains("pmi"), "{e}");
    // Zero and negative rates are refused naming the key, for PMI as for every strategy.
    for rate in [0.0f32, -0.1] {
        let e = Masker::new(
            &config(StrategyKind::Pmi, CountRule::Exact, rate),
            &vocab(&SPECIALS),
        )
        .err()
        .unwrap()
        .to_string();
        assert!(e.contains("masking.rate"), "{e}");
    }
}

#[test]
fn realised_rates_and_replacement_shares_within_tolerance() {
    let rows: Vec<TokenRowBuf> = (0..300)
        .map(|i| row(128, 100 + (i % 28) as usize, i))
        .collect();
    for (strategy, count) in [
        (StrategyKind::Token, CountRule::Exact),
        (StrategyKind::Token, CountRule::Bernoulli),
        (StrategyKind::WholeWord, CountRule::Exact),
        (StrategyKind::WholeWord, CountRule::Bernoulli),
        (StrategyKind::Span, CountRule::Exact),
        (StrategyKind::Span, CountRule::Bernoulli),
    ] {
        for rate in [0.15f32, 0.4] {
            let cfg = MaskingConfig {
                mask_share: 0.7,
                random_share: 0.2,
                unchanged_share: 0.1,
                ..config(strategy, count, rate)
            };
            let s = collect_stats(&plan(&cfg, 9), &rows, 2);
            // Exact token counts hit the rate up to rounding; word-based budgets may fall a little
            // short when the next word does not fit.
            let tol = match (strategy, count) {
                (StrategyKind::Token, CountRule::Exact) => 0.002,
                (StrategyKind::Token, _) => 0.01,
                _ => 0.02,
            };
            assert!(
                (s.mask_rate - rate as f64).abs() < tol,
                "{strategy:?} {count:?} rate {rate}: realised {}",
                s.mask_rate
            );
            assert_eq!(s.chosen_ineligible, 0);
            assert!(
                (s.mask_token_share - 0.7).abs() < 0.02,
                "{strategy:?}: {s:?}"
            );
            assert!(
                (s.random_token_share - 0.2).abs() < 0.02,
                "{strategy:?}: {s:?}"
            );
            assert!(
                (s.unchanged_share - 0.1).abs() < 0.02,
                "{strategy:?}: {s:?}"
            );
            assert!(
                (s.epoch_overlap - rate as f64).abs() < 0.05,
                "dynamic overlap ≈ rate: {s:?}"
            );
        }
    }
}

#[test]
fn exact_count_is_probabilistically_rounded() {
    // 126 eligible tokens at rate 0.15 → 18.9: 18 or 19 chosen, 19 about 90% of the time.
    let r = row(128, 128, 1);
    let m = masker(&config(StrategyKind::Token, CountRule::Exact, 0.15));
    let mut nineteen = 0;
    for i in 0..2000 {
        let n = mask(&m, &r, 0.15, (1, 0, i), None)
            .2
            .iter()
            .filter(|&&c| c)
            .count();
        assert!(n == 18 || n == 19, "{n}");
        nineteen += usize::from(n == 19);
    }
    assert!((nineteen as f64 / 2000.0 - 0.9).abs() < 0.03, "{nineteen}");
}

#[test]
fn static_masks_repeat_every_k_epochs() {
    let rows: Vec<TokenRowBuf> = (0..50).map(|i| row(128, 128, i)).collect();
    let one = MaskingConfig {
        when: When::Static { dupe_factor: 1 },
        ..Default::default()
    };
    assert_eq!(collect_stats(&plan(&one, 1), &rows, 3).epoch_overlap, 1.0);
    let two = MaskingConfig {
        when: When::Static { dupe_factor: 2 },
        ..Default::default()
    };
    let p = plan(&two, 1);
    assert!(collect_stats(&p, &rows, 3).epoch_overlap < 0.3);
    assert_eq!(p.key_epoch(4), 0);
    assert_eq!(p.key_epoch(5), 1);
    // Computed static masks are the dynamic masks of the key epoch (what `prepare` stores as copy k):
    // epoch 5 with K = 2 shows copy 1.
    let m = masker(&MaskingConfig::default());
    let mut scratch = MaskScratch::default();
    for (r, x) in rows.iter().enumerate().take(5) {
        let (mut input, mut labels) = (vec![0u32; 128], vec![0i32; 128]);
        p.mask_train(
            x.view(),
            r as u64,
            5,
            0.3,
            MaskedRow {
                input: &mut input,
                labels: &mut labels,
            },
            &mut scratch,
        );
        let dynamic_epoch_1 = mask(&m, x, 0.15, (1, 1, r as u64), None);
        assert_eq!((input, labels, scratch.chosen.clone()), dynamic_epoch_1);
    }
}

#[test]
fn span_lengths_follow_the_truncated_geometric() {
    let (p, max) = (0.2f64, 10u32);
    let mut rng = KeyedRng::new(3, Purpose::Other, 0, 0);
    let n = 200_000;
    let mut hist = vec![0usize; max as usize + 1];
    for _ in 0..n {
        hist[sample_span_length(p as f32, max, &mut rng) as usize] += 1;
    }
    assert_eq!(hist[0], 0);
    let z = 1.0 - (1.0 - p).powi(max as i32);
    let mut mean = 0.0;
    for k in 1..=max as usize {
        let want = p * (1.0 - p).powi(k as i32 - 1) / z;
        let got = hist[k] as f64 / n as f64;
        assert!(
            (got - want).abs() < 0.005,
            "P(L={k}) = {got}, expected {want}"
        );
        mean += k as f64 * got;
    }
    // SpanBERT reports a mean span of 3.8 words for p = 0.2, max 10.
    assert!((mean - 3.8).abs() < 0.05, "mean {mean}");
}

#[test]
fn span_masking_chooses_runs_of_words() {
    // Every token starts a word here, so a span of L words is L adjacent tokens: runs much longer than
    // single tokens appear (token masking at this rate would average about 1.2).
    let mut r = row(512, 512, 5);
    r.word_starts.iter_mut().for_each(|w| *w = true);
    let m = masker(&config(StrategyKind::Span, CountRule::Exact, 0.15));
    let (mut runs, mut tokens) = (0, 0);
    for i in 0..200 {
        let chosen = mask(&m, &r, 0.15, (2, 0, i), None).2;
        for k in 0..chosen.len() {
            if chosen[k] {
                tokens += 1;
                if k == 0 || !chosen[k - 1] {
                    runs += 1;
                }
            }
        }
    }
    let mean_run = tokens as f64 / runs as f64;
    assert!(mean_run > 3.0 && mean_run < 5.0, "mean run {mean_run}");
}

#[test]
fn adaptive_weights_keep_the_budget_and_prefer_hard_tokens() {
    let r = row(128, 128, 11);
    let mut stats = AdaptiveStats::new(V as usize, 0.9);
    // Tokens below 500 are "hard" (loss 8), the rest easy (loss 1).
    for id in 5..V as usize {
        stats.loss[id] = if id < 500 { 8.0 } else { 1.0 };
    }
    stats.mean = 4.0;
    stats.updates = 1;
    let eligible: Vec<bool> = (0..128).map(|i| !SPECIALS.contains(&r.ids[i])).collect();
    let mut w = vec![0f32; 128];
    stats.row_weights(&mut w, &r.ids, &eligible, 1.0, 0.2);
    let mean_w: f32 = w
        .iter()
        .zip(&eligible)
        .filter(|x| *x.1)
        .map(|x| *x.0)
        .sum::<f32>()
        / 126.0;
    assert!((mean_w - 1.0).abs() < 1e-4, "{mean_w}");
    // The masker computes the same weights from the statistics, over the eligible positions it finds.
    let adaptive = Adaptive {
        stats: stats.clone(),
        temperature: 1.0,
        uniform_mix: 0.2,
    };
    for count in [CountRule::Exact, CountRule::Bernoulli] {
        let m = masker(&config(StrategyKind::Token, count, 0.15));
        let (mut hard, mut easy, mut total) = (0usize, 0usize, 0usize);
        for i in 0..2000 {
            let c = mask(&m, &r, 0.15, (4, 0, i), Some(&adaptive)).2;
            for k in 0..128 {
                if c[k] {
                    total += 1;
                    if r.ids[k] < 500 {
                        hard += 1
                    } else {
                        easy += 1
                    }
                }
            }
        }
        let rate = total as f64 / (2000.0 * 126.0);
        assert!(
            (rate - 0.15).abs() < 0.01,
            "{count:?}: adaptive rate {rate}"
        );
        let hard_share_of_tokens =
            r.ids[1..127].iter().filter(|&&x| x < 500).count() as f64 / 126.0;
        assert!(
            hard as f64 / (hard + easy) as f64 > hard_share_of_tokens + 0.2,
            "{count:?}: hard tokens not preferred"
        );
    }
    // Round trip through JSON (checkpoint state).
    let back = AdaptiveStats::from_json(&stats.to_json(), V as usize).unwrap();
    assert_eq!(back, stats);
}

#[test]
fn frequency_weighted_random_follows_counts_and_skips_specials() {
    let mut counts = vec![0u64; V as usize];
    counts[0] = 1_000_000; // A special token with a huge count is still never drawn.
    counts[10] = 300;
    counts[20] = 100;
    let shares = [0.0, 1.0, 0.0];
    let rep = Replacement::weighted(MASK, shares, &counts, &SPECIALS).unwrap();
    let mut rng = KeyedRng::new(1, Purpose::Other, 0, 0);
    let mut ten = 0;
    for _ in 0..10_000 {
        let x = rep.random_token(&mut rng);
        assert!(x == 10 || x == 20, "{x}");
        ten += usize::from(x == 10);
    }
    assert!((ten as f64 / 10_000.0 - 0.75).abs() < 0.02);
}

/// Eligibility is a range test when the special ids form one block and a table lookup otherwise: both
/// layouts hide exactly the non-special, in-vocabulary real tokens (at a row rate of 1, all of them).
#[test]
fn eligibility_is_the_same_for_block_and_scattered_special_ids() {
    let ids: Vec<u32> = vec![2, 5, 4, 500, V, V + 7, u32::MAX, 0, 999, 3, 1, 17];
    let length = ids.len() - 1;
    let word_starts = vec![true; ids.len()];
    for specials in [
        &[0u32, 1, 2, 3, 4][..],
        &[0, 1, 2, 3, 4, 500][..],
        &[3, 4, 5][..],
    ] {
        let m = Masker::new(
            &config(StrategyKind::Token, CountRule::Exact, 0.5),
            &vocab(specials),
        )
        .unwrap();
        let r = TokenRowBuf {
            ids: ids.clone(),
            word_starts: word_starts.clone(),
            length,
        };
        let (_, labels, chosen) = mask(&m, &r, 1.0, (1, 0, 0), None);
        for (i, &id) in ids.iter().enumerate() {
            let want = i < length && id < V && !specials.contains(&id);
            assert_eq!(
                chosen[i], want,
                "specials {specials:?}: position {i} (id {id})"
            );
            assert_eq!(labels[i] != IGNORE_INDEX, want);
        }
    }
}

/// Per-token-id statistics for the `token-id` tests: running losses spread over two orders of
/// magnitude (keyed by `seed`), every seventh id never seen, running mean 2.
fn token_id_adaptive(seed: u64, floor: f32, ceiling: f32) -> TokenIdAdaptive {
    let mut a = TokenIdAdaptive::new(V as usize, 0.9, floor, ceiling);
    let mut rng = KeyedRng::new(seed, Purpose::Other, 2, 0);
    for id in 0..V as usize {
        a.stats.loss[id] = if id % 7 == 3 {
            -1.0
        } else {
            0.05 * (100.0f32).powf(rng.next_f32())
        };
    }
    a.stats.mean = 2.0;
    a.stats.updates = 1;
    a
}

fn mask_token_id(
    m: &Masker,
    r: &TokenRowBuf,
    rate: f32,
    (seed, epoch, index): (u64, u64, u64),
    a: &TokenIdAdaptive,
) -> (Vec<u32>, Vec<i32>, Vec<bool>) {
    let t = r.ids.len();
    let (mut input, mut labels) = (vec![0u32; t], vec![0i32; t]);
    let mut s = MaskScratch::default();
    let out = MaskedRow {
        input: &mut input,
        labels: &mut labels,
    };
    m.mask_row_token_id(
        r.view(),
        out,
        rate,
        MaskKey { seed, epoch, index },
        a,
        &mut s,
    );
    (input, labels, s.chosen)
}

fn token_id_config(count: CountRule, rate: f32, floor: f32, ceiling: f32) -> MaskingConfig {
    MaskingConfig {
        count,
        rate,
        when: When::TokenId {
            decay: 0.9,
            floor,
            ceiling,
        },
        ..Default::default()
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// `token-id`: every eligible position's probability lies in [floor · r, ceiling · r] and they sum
    /// to r · n; with `exact` the count is r · n rounded down or up; only eligible positions are
    /// chosen, labels match; the same key gives the same mask.
    #[test]
    fn token_id_probabilities_are_bounded_and_the_rate_is_on_target(
        count in prop_oneof![Just(CountRule::Exact), Just(CountRule::Bernoulli)],
        rate in 0.02f32..0.45,
        floor in 0.05f32..1.0,
        ceiling in 1.0f32..2.2,
        t in 4usize..200,
        fill in 0.0f64..1.0,
        seed in any::<u64>(),
        epoch in 0u64..100,
    ) {
        let length = 2 + ((t - 2) as f64 * fill) as usize;
        let r = row(t, length, seed);
        let a = token_id_adaptive(seed ^ 5, floor, ceiling);
        let m = masker(&token_id_config(count, rate, floor, ceiling));
        let mut eligible = Vec::new();
        m.eligible(r.view(), &mut eligible);
        let n = eligible.iter().filter(|&&e| e).count();
        let mut p = vec![0f32; t];
        let target = a.row_probabilities(&mut p, &r.ids, &eligible, rate);
        let (lo, hi) = (floor * rate, (ceiling * rate).min(1.0));
        let mut sum = 0.0f64;
        for i in 0..t {
            if eligible[i] {
                prop_assert!(p[i] >= lo * (1.0 - 1e-5) && p[i] <= hi * (1.0 + 1e-5), "p {} outside [{}, {}]", p[i], lo, hi);
                sum += p[i] as f64;
            } else {
                prop_assert_eq!(p[i], 0.0);
            }
        }
        prop_assert!((sum - rate as f64 * n as f64).abs() < 1e-4 * (n as f64 + 1.0), "Σp {} for r·n {}", sum, target);
        let (input, labels, chosen) = mask_token_id(&m, &r, rate, (seed, epoch, 3), &a);
        for i in 0..t {
            prop_assert!(!chosen[i] || eligible[i], "position {i} chosen but ineligible");
            if chosen[i] {
                prop_assert_eq!(labels[i], r.ids[i] as i32);
                prop_assert!(input[i] == MASK || !SPECIALS.contains(&input[i]));
            } else {
                prop_assert_eq!(labels[i], IGNORE_INDEX);
            }
        }
        if count == CountRule::Exact {
            let k = chosen.iter().filter(|&&c| c).count();
            let x = rate * n as f32;
            prop_assert!(k == x.floor() as usize || k == x.ceil() as usize, "{k} chosen for r·n = {x}");
        }
        prop_assert_eq!(mask_token_id(&m, &r, rate, (seed, epoch, 3), &a), (input, labels, chosen));
    }
}

/// `token-id` over many draws: each position is chosen as often as its probability says, hard tokens
/// (running loss above the mean) more often than easy ones, the realised rate is the configured one
/// under both count rules, and without feedback the masks are uniform (every position at the rate).
#[test]
fn token_id_follows_its_probabilities_and_prefers_hard_tokens() {
    let r = row(128, 128, 11);
    let mut a = TokenIdAdaptive::new(V as usize, 0.9, 0.5, 2.0);
    // Tokens below 500 are "hard" (loss 8), the rest easy (loss 1): scores 2 and 0.25.
    for id in 5..V as usize {
        a.stats.loss[id] = if id < 500 { 8.0 } else { 1.0 };
    }
    a.stats.mean = 4.0;
    a.stats.updates = 1;
    let fresh = TokenIdAdaptive::new(V as usize, 0.9, 0.5, 2.0);
    let mut eligible = Vec::new();
    masker(&MaskingConfig::default()).eligible(r.view(), &mut eligible);
    let n = eligible.iter().filter(|&&e| e).count();
    let draws = 4000;
    for stats in [&a, &fresh] {
        let mut p = vec![0f32; 128];
        stats.row_probabilities(&mut p, &r.ids, &eligible, 0.15);
        for count in [CountRule::Exact, CountRule::Bernoulli] {
            let m = masker(&token_id_config(count, 0.15, 0.5, 2.0));
            let mut hits = vec![0usize; 128];
            for i in 0..draws {
                let c = mask_token_id(&m, &r, 0.15, (4, 0, i), stats).2;
                c.iter()
                    .zip(&mut hits)
                    .for_each(|(&c, h)| *h += usize::from(c));
            }
            let rate = hits.iter().sum::<usize>() as f64 / (draws as f64 * n as f64);
            assert!(
                (rate - 0.15).abs() < 0.005,
                "{count:?}: realised rate {rate}"
            );
            for k in 0..128 {
                let f = hits[k] as f64 / draws as f64;
                let sd = (p[k] as f64 * (1.0 - p[k] as f64) / draws as f64).sqrt();
                assert!(
                    (f - p[k] as f64).abs() <= 5.0 * sd + 1e-9,
                    "{count:?}: position {k} chosen {f}, probability {}",
                    p[k]
                );
            }
        }
        if std::ptr::eq(stats, &fresh) {
            assert!(
                p.iter().zip(&eligible).all(|(&p, &e)| if e {
                    (p - 0.15).abs() < 1e-6
                } else {
                    p == 0.0
                }),
                "{p:?}"
            );
        } else {
            let hard = (0..128).filter(|&k| eligible[k] && r.ids[k] < 500);
            let easy = (0..128).filter(|&k| eligible[k] && r.ids[k] >= 500);
            assert!(
                hard.clone().all(|k| p[k] > 0.15)
                    && easy.clone().all(|k| (p[k] - 0.075).abs() < 1e-6),
                "{p:?}"
            );
            assert!(hard.count() > 20 && easy.count() > 20);
        }
    }
}
