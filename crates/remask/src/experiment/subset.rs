//! Training on a corpus subset in a seed's own order: how the comparison makes its repetition
//! regimes and its paired runs.
//!
//! - The subset of a regime is the first N rows of one fixed permutation of the training rows (keyed
//!   by the data seed), so the subsets of the regimes are nested and the same for every strategy
//!   and seed.
//! - The order is a keyed permutation of the subset per epoch, keyed by the run seed: the same seed
//!   gives every strategy the same data order.
//! - Masks stay keyed by the data seed (`Loader::batch_of_rows`): a dynamic run draws the mask of
//!   (data seed, epoch, row), and static copy k holds exactly that mask for epoch k. So a static run
//!   whose training never reaches epoch K is the dynamic run of the same seed, bit for bit
//!   ([`super::plan`] uses that instead of training it twice).

use remask_kernels::rng::{KeyedRng, Purpose};

use crate::data::Loader;
use crate::{Batch, BatchSource, Error, Result};

/// The epoch key of the subset permutation (no training epoch reaches it; evaluation uses `u64::MAX`).
const SUBSET_EPOCH: u64 = u64::MAX - 1;

/// The first `n` rows of the fixed permutation of `total` training rows keyed by `data_seed`, in
/// increasing row order.
pub fn subset_rows(total: u64, n: u64, data_seed: u64) -> Result<Vec<u32>> {
    if n == 0 || n > total {
        return Err(Error::Other(format!(
            "a subset of {n} rows out of {total} training rows"
        )));
    }
    let mut p = permutation(total as usize, data_seed, SUBSET_EPOCH);
    p.truncate(n as usize);
    p.sort_unstable();
    Ok(p)
}

/// The epoch key of the training-sample draw (see [`sample_rows`]).
const SAMPLE_EPOCH: u64 = u64::MAX - 2;

/// At most `n` rows of `rows` drawn without replacement by a permutation keyed by `data_seed`: the
/// fixed-mask training sample of a regime, spread over its whole subset (not its first rows, which
/// would all come from the start of the corpus).
pub fn sample_rows(rows: &[u32], n: usize, data_seed: u64) -> Vec<u32> {
    let p = permutation(rows.len(), data_seed, SAMPLE_EPOCH);
    p.iter().take(n).map(|&i| rows[i as usize]).collect()
}

/// A keyed Fisher–Yates permutation of 0..n (the loader's shuffle, keyed by `seed` and `epoch`).
fn permutation(n: usize, seed: u64, epoch: u64) -> Vec<u32> {
    let mut p: Vec<u32> = (0..n as u32).collect();
    let mut rng = KeyedRng::new(seed, Purpose::Shuffle, epoch, 0);
    for i in (1..n).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        p.swap(i, j);
    }
    p
}

/// A [`BatchSource`] over a subset of a loader's training rows, in an order keyed by `order_seed`.
pub struct SubsetSource {
    loader: Loader,
    rows: Vec<u32>,
    order_seed: u64,
    /// The permutation of the last epoch asked for.
    perm: Option<(u64, Vec<u32>)>,
}

impl SubsetSource {
    pub fn new(loader: Loader, rows: Vec<u32>, order_seed: u64) -> Self {
        Self {
            loader,
            rows,
            order_seed,
            perm: None,
        }
    }

    /// The (epoch, row) of global sample index g.
    fn locate(&mut self, g: u64) -> (u64, u64) {
        let n = self.rows.len() as u64;
        let epoch = g / n;
        if self.perm.as_ref().is_none_or(|(e, _)| *e != epoch) {
            self.perm = Some((epoch, permutation(n as usize, self.order_seed, epoch)));
        }
        let i = self.perm.as_ref().map_or(0, |(_, p)| p[(g % n) as usize]);
        (epoch, self.rows[i as usize] as u64)
    }
}

impl BatchSource for SubsetSource {
    fn num_samples(&self) -> u64 {
        self.rows.len() as u64
    }

    fn batch(&mut self, first_sample: u64, batch_size: usize, progress: f32) -> Result<Batch> {
        if self.rows.is_empty() {
            return Err(Error::Other("the training subset has no rows".into()));
        }
        let rows: Vec<(u64, u64, u64)> = (first_sample..first_sample + batch_size as u64)
            .map(|g| {
                let (e, r) = self.locate(g);
                (g, e, r)
            })
            .collect();
        self.loader.batch_of_rows(&rows, progress)
    }

    fn feedback(&mut self, batch: &Batch, label_losses: &[f32]) {
        self.loader.feedback(batch, label_losses);
    }

    fn state(&self) -> serde_json::Value {
        self.loader.state()
    }

    fn restore(&mut self, state: &serde_json::Value) -> Result<()> {
        self.loader.restore(state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subsets_are_nested_sorted_and_keyed() {
        let big = subset_rows(1000, 400, 7).unwrap();
        let small = subset_rows(1000, 100, 7).unwrap();
        assert_eq!(big.len(), 400);
        assert!(big.windows(2).all(|w| w[0] < w[1]));
        assert!(
            small.iter().all(|r| big.binary_search(r).is_ok()),
            "regime subsets must be nested"
        );
        assert_ne!(subset_rows(1000, 100, 8).unwrap(), small);
        assert_eq!(
            subset_rows(1000, 1000, 7).unwrap(),
            (0..1000).collect::<Vec<u32>>()
        );
        assert!(subset_rows(10, 11, 7).is_err());
        assert!(subset_rows(10, 0, 7).is_err());
    }

    /// The invariant the comparison's plan relies on: with masks keyed by the data seed, a static
    /// source (K = 2 copies) gives exactly the dynamic source's batches in epochs 0 and 1, and from
    /// epoch 2 on rereads its copies.
    #[test]
    fn static_batches_are_dynamic_ones_until_epoch_k() {
        use crate::data::{prepare, DataConfig, Split, Task};
        use crate::masking::{MaskingConfig, When};
        let tmp = tempfile::tempdir().unwrap();
        let corpus = tmp.path().join("corpus.txt");
        let text: String = (0..80)
            .map(|i| {
                format!(
                    "the word {i} and the other word number {} stand here\n",
                    i * 7
                )
            })
            .collect();
        std::fs::write(&corpus, text).unwrap();
        let mut data = DataConfig {
            inputs: vec![corpus],
            seq_len: 16,
            validation_share: 0.1,
            ..DataConfig::default()
        };
        data.tokenizer.vocab_size = 120;
        let fixed = MaskingConfig {
            when: When::Static { dupe_factor: 2 },
            ..MaskingConfig::default()
        };
        let dynamic = MaskingConfig::default();
        let meta = prepare(&data, &fixed, &tmp.path().join("static")).unwrap();
        prepare(&data, &dynamic, &tmp.path().join("dynamic")).unwrap();
        let rows = subset_rows(meta.train.rows, 10, meta.data.seed).unwrap();
        let open = |dir: &str, m: &MaskingConfig| {
            Loader::open(&tmp.path().join(dir), Split::Train, Task::Mlm, m).unwrap()
        };
        let mut s = SubsetSource::new(open("static", &fixed), rows.clone(), 5);
        let mut d = SubsetSource::new(open("dynamic", &dynamic), rows, 5);
        for first in (0..20).step_by(5) {
            assert_eq!(
                s.batch(first, 5, 0.5).unwrap(),
                d.batch(first, 5, 0.5).unwrap(),
                "epochs 0 and 1, sample {first}"
            );
        }
        let (a, b) = (s.batch(20, 10, 0.5).unwrap(), d.batch(20, 10, 0.5).unwrap());
        assert!(a.labels.iter().any(|&l| l >= 0));
        assert_ne!(
            a.input_ids, b.input_ids,
            "epoch 2: static rereads copy 0, dynamic draws new masks"
        );
    }

    #[test]
    fn the_training_sample_is_spread_over_the_subset() {
        let rows = subset_rows(10_000, 4_000, 3).unwrap();
        let sample = sample_rows(&rows, 256, 3);
        assert_eq!(sample.len(), 256);
        assert!(sample.iter().all(|r| rows.binary_search(r).is_ok()));
        // Spread: a quarter of the sample lies in each quarter of the subset, give or take.
        let in_first_quarter = sample.iter().filter(|&&r| r < rows[1_000]).count();
        assert!((40..90).contains(&in_first_quarter), "{in_first_quarter}");
        assert_eq!(
            sample_rows(&rows[..10], 256, 3).len(),
            10,
            "a small subset is sampled whole"
        );
    }

    #[test]
    fn permutations_cover_every_row_once() {
        let mut p = permutation(257, 3, 5);
        assert_ne!(p, (0..257).collect::<Vec<u32>>());
        p.sort_unstable();
        assert_eq!(p, (0..257).collect::<Vec<u32>>());
        assert_eq!(permutation(257, 3, 5), permutation(257, 3, 5));
        assert_ne!(permutation(257, 3, 5), permutation(257, 3, 6));
    }
}
