//! `remask bench masking`: tokens/s of dynamic masking (choose + corrupt, keyed per row) for each
//! strategy on a synthetic batch of B × T ids (vocab V, about 3 words in 4 tokens start a word), and,
//! with `--data`, of whole `Loader::batch` calls on a prepared directory. Prints one JSON object.

use std::path::PathBuf;
use std::time::Instant;

use remask::data::{Loader, Split, Task};
use remask::masking::{
    Adaptive, AdaptiveStats, CountRule, MaskKey, MaskScratch, MaskedRow, Masker, MaskingConfig,
    StrategyKind, TokenRow, Vocab, When,
};
use remask::BatchSource;
use remask_kernels::rng::{KeyedRng, Purpose};

#[derive(clap::Args)]
pub struct Args {
    /// B, rows per batch.
    #[arg(long, default_value_t = 16)]
    pub batch_size: usize,
    /// T, tokens per row.
    #[arg(long, default_value_t = 128)]
    pub seq_len: usize,
    /// V, vocabulary size.
    #[arg(long, default_value_t = 8192)]
    pub vocab: u32,
    /// Seconds to spend per strategy.
    #[arg(long, default_value_t = 0.5)]
    pub seconds: f64,
    /// Also time `Loader::batch` (dynamic masking) on this prepared directory.
    #[arg(long)]
    pub data: Option<PathBuf>,
}

const SPECIALS: [u32; 5] = [0, 1, 2, 3, 4];

pub fn run(args: Args) -> anyhow::Result<()> {
    let (b, t, v) = (
        args.batch_size.max(1),
        args.seq_len.max(4),
        args.vocab.max(16),
    );
    // Synthetic rows: [CLS] words… [SEP], full length.
    let mut rng = KeyedRng::new(1, Purpose::Other, 0, 0);
    let mut ids = vec![0u32; b * t];
    let mut words = vec![false; b * t];
    for r in 0..b {
        for i in 0..t {
            let k = r * t + i;
            ids[k] = if i == 0 {
                2
            } else if i == t - 1 {
                3
            } else {
                5 + rng.below((v - 5) as u64) as u32
            };
            words[k] = i == 0 || i == t - 1 || rng.next_f32() < 0.75;
        }
    }
    let cases: Vec<(&str, MaskingConfig)> = vec![
        ("token-exact", MaskingConfig::default()),
        (
            "token-bernoulli",
            MaskingConfig {
                count: CountRule::Bernoulli,
                ..Default::default()
            },
        ),
        (
            "whole-word",
            MaskingConfig {
                strategy: StrategyKind::WholeWord,
                ..Default::default()
            },
        ),
        (
            "span",
            MaskingConfig {
                strategy: StrategyKind::Span,
                ..Default::default()
            },
        ),
        (
            "adaptive-token",
            MaskingConfig {
                when: When::Adaptive {
                    temperature: 1.0,
                    decay: 0.9,
                    uniform_mix: 0.5,
                },
                ..Default::default()
            },
        ),
        (
            "token-frequency-random",
            MaskingConfig {
                frequency_weighted_random: true,
                ..Default::default()
            },
        ),
    ];
    let counts: Vec<u64> = (0..v as u64).map(|i| 1 + 100_000 / (i + 1)).collect();
    let mut stats = AdaptiveStats::new(v as usize, 0.9);
    for id in 0..v as usize {
        stats.loss[id] = 1.0 + (id % 7) as f32;
    }
    stats.mean = 4.0;
    stats.updates = 1;
    let mut results = serde_json::Map::new();
    let mut input = vec![0u32; t];
    let mut labels = vec![0i32; t];
    for (name, cfg) in cases {
        let masker = Masker::new(
            &cfg,
            &Vocab {
                size: v,
                mask_id: 4,
                special_ids: &SPECIALS,
                counts: Some(&counts),
                ngrams: None,
            },
        )?;
        let adaptive = match cfg.when {
            When::Adaptive {
                temperature,
                uniform_mix,
                ..
            } => Some(Adaptive {
                stats: stats.clone(),
                temperature,
                uniform_mix,
            }),
            _ => None,
        };
        let mut scratch = MaskScratch::default();
        // One batch: every row masked under its own key. With `count` it returns the number of
        // chosen positions (used outside the timed batches, which do nothing but mask), else 0.
        let mut mask_batch = |batch: u64, count: bool| -> u64 {
            let mut chosen = 0u64;
            for r in 0..b {
                let row = TokenRow {
                    ids: &ids[r * t..(r + 1) * t],
                    word_starts: &words[r * t..(r + 1) * t],
                    length: t,
                };
                let out = MaskedRow {
                    input: &mut input,
                    labels: &mut labels,
                };
                let key = MaskKey {
                    seed: 7,
                    epoch: 0,
                    index: batch * b as u64 + r as u64,
                };
                masker.mask_row(row, out, cfg.rate, key, adaptive.as_ref(), &mut scratch);
                if count {
                    chosen += scratch.chosen.iter().filter(|&&c| c).count() as u64;
                }
            }
            chosen
        };
        let mut batches = 0u64;
        let start = Instant::now();
        let mut per_batch = Vec::new();
        while start.elapsed().as_secs_f64() < args.seconds || batches < 10 {
            let t0 = Instant::now();
            mask_batch(batches, false);
            per_batch.push(t0.elapsed().as_secs_f64());
            batches += 1;
        }
        // The realised masking rate, over (at most) the first 1000 batches again.
        let counted = batches.min(1000);
        let chosen: u64 = (0..counted).map(|batch| mask_batch(batch, true)).sum();
        per_batch.sort_by(f64::total_cmp);
        let median = per_batch[per_batch.len() / 2];
        results.insert(
            name.to_string(),
            serde_json::json!({
                "tokens_per_s": (b * t) as f64 / median,
                "us_per_batch": median * 1e6,
                "batches": batches,
                "realised_rate": chosen as f64 / (counted as f64 * b as f64 * (t - 2) as f64),
            }),
        );
    }
    if let Some(dir) = &args.data {
        let mut loader = Loader::open(dir, Split::Train, Task::Mlm, &MaskingConfig::default())?;
        let bs = args.batch_size;
        let mut per_batch = Vec::new();
        let start = Instant::now();
        let mut g = 0u64;
        while start.elapsed().as_secs_f64() < args.seconds || per_batch.len() < 10 {
            let t0 = Instant::now();
            let batch = loader.batch(g, bs, 0.0)?;
            per_batch.push(t0.elapsed().as_secs_f64());
            g += bs as u64;
            std::hint::black_box(batch);
        }
        per_batch.sort_by(f64::total_cmp);
        let median = per_batch[per_batch.len() / 2];
        results.insert(
            "loader-batch-dynamic".to_string(),
            serde_json::json!({
                "tokens_per_s": (bs * loader.seq_len()) as f64 / median,
                "us_per_batch": median * 1e6,
                "batches": per_batch.len(),
                "seq_len": loader.seq_len(),
            }),
        );
    }
    let out = serde_json::json!({
        "bench": "masking",
        "batch_size": b,
        "seq_len": t,
        "vocab": v,
        "threads": 1,
        "strategies": results,
    });
    println!("{out}");
    Ok(())
}
