//! Building PMI masking's n-gram vocabulary from corpus counts (Levine et al., ICLR 2021,
//! "PMI-Masking: Principled masking of correlated spans").
//!
//! Two passes over the training documents, in bounded memory:
//!
//! 1. **Count** every n-gram of 1–5 whole words inside a document, by hash ([`super::ngram_vocab`]),
//!    in one table of at most `cap` entries. When it overflows, the rarest entries are pruned (every
//!    count ≤ a floor that rises until the table is at ¾ of the cap); the floor is recorded as
//!    `pruned_below`. An n-gram whose count stayed above the floor whenever pruning ran is counted
//!    exactly; with the default cap, corpora of up to a few million words are never pruned.
//! 2. **Score** each n-gram of 2–5 words seen at least `min_count` times, once, by PMI_n, the paper's
//!    measure: the minimum over the n-gram's segmentations σ into two or more contiguous parts of
//!
//!    ```text
//!    PMI_n(w1..wn) = min_σ log [ p(w1..wn) / Π_{s ∈ σ} p(s) ],   p(x) = count(x) / N,
//!    ```
//!
//!    N the number of words. Taking the minimum means an n-gram scores high only when no split of it
//!    explains its frequency (so "the united states of" does not inherit "united states"' score). Only
//!    n-grams with PMI_n > 0 are kept, and of those the `ngrams` best (PMI_n, then count, then hash
//!    descending/ascending: a total order, so the result is deterministic), in a bounded heap.
//!
//! Words are runs of non-special tokens from a word start; a special token (e.g. [UNK]) ends a run,
//! so no n-gram spans it, as no masking unit does.

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;

use super::config::PmiConfig;
use super::ngram_vocab::{
    extend, word_hash, HashKeyed, Ngram, NgramStats, NgramVocab, MAX_N, NGRAM_SEED,
};

/// Entries of the counting table before pruning (about 16 bytes each, so ~70 MB at most).
pub const COUNT_CAP: usize = 1 << 22;

/// Marks a table entry whose n-gram was already scored (pass 2).
const SCORED: u32 = 1 << 31;

/// Feeds documents (token ids, word starts) to a sink; called once per pass, with the same
/// documents in the same order each time.
pub type DocSource<'a> = dyn FnMut(&mut dyn FnMut(&[u32], &[bool])) + 'a;

/// The words of a document, split into runs that no special token interrupts.
#[derive(Default)]
struct Words {
    /// (start token, tokens) per word.
    spans: Vec<(u32, u32)>,
    hashes: Vec<u64>,
    /// Word index where each run starts, and one past the last word at the end.
    runs: Vec<usize>,
}

impl Words {
    fn split(&mut self, ids: &[u32], word_starts: &[bool], special: &[u32]) {
        self.spans.clear();
        self.hashes.clear();
        self.runs.clear();
        self.runs.push(0);
        let mut open = false;
        for (i, &id) in ids.iter().enumerate() {
            if special.contains(&id) {
                if open {
                    self.runs.push(self.spans.len());
                }
                open = false;
                continue;
            }
            let starts = word_starts.get(i).copied().unwrap_or(true);
            match self.spans.last_mut() {
                Some(last) if open && !starts && last.1 < u16::MAX as u32 => last.1 += 1,
                _ => {
                    self.spans.push((i as u32, 1));
                    open = true;
                }
            }
        }
        self.runs.push(self.spans.len());
        self.runs.dedup();
        for &(s, l) in &self.spans {
            self.hashes
                .push(word_hash(&ids[s as usize..(s + l) as usize]));
        }
    }

    /// Word ranges `[a, b)` of the runs.
    fn run_ranges(&self) -> impl Iterator<Item = (usize, usize)> + '_ {
        self.runs.windows(2).map(|w| (w[0], w[1]))
    }
}

/// A scored n-gram; greater is better (PMI_n, then count, then the smaller hash).
struct Candidate {
    score: f32,
    count: u64,
    hash: u64,
    tokens: Vec<u32>,
    word_lens: Vec<u16>,
}

impl Ord for Candidate {
    fn cmp(&self, o: &Self) -> Ordering {
        self.score
            .total_cmp(&o.score)
            .then(self.count.cmp(&o.count))
            .then(o.hash.cmp(&self.hash))
    }
}
impl PartialOrd for Candidate {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl PartialEq for Candidate {
    fn eq(&self, o: &Self) -> bool {
        self.cmp(o) == Ordering::Equal
    }
}
impl Eq for Candidate {}

/// Counts n-grams of 1–5 words in a table of at most `cap` entries (pass 1).
struct Counter {
    table: HashKeyed<u32>,
    cap: usize,
    pruned_below: u32,
    words: u64,
}

impl Counter {
    fn add(&mut self, w: &Words) {
        self.words += w.hashes.len() as u64;
        for (a, b) in w.run_ranges() {
            for i in a..b {
                let mut h = NGRAM_SEED;
                for j in i..b.min(i + MAX_N) {
                    h = extend(h, w.hashes[j]);
                    let c = self.table.entry(h).or_insert(0);
                    *c = (*c + 1).min(SCORED - 1);
                }
            }
        }
        if self.table.len() > self.cap {
            while self.table.len() > self.cap / 4 * 3 {
                self.pruned_below += 1;
                let floor = self.pruned_below;
                self.table.retain(|_, c| *c > floor);
            }
        }
    }
}

/// PMI_n of the n-gram of words `w[i..i + n]` with count `c`, or `None` when a part's count was
/// pruned. `log_n` = ln N.
fn pmi_n(table: &HashKeyed<u32>, hashes: &[u64], c: u32, log_n: f64) -> Option<f64> {
    let n = hashes.len();
    // ln count of every sub-span [a, b) of the n-gram, b - a < n.
    let mut ln = [[0f64; MAX_N + 1]; MAX_N];
    for a in 0..n {
        let mut h = NGRAM_SEED;
        for b in a + 1..=n {
            h = extend(h, hashes[b - 1]);
            if b - a < n {
                let cnt = table.get(&h).map_or(0, |&x| x & !SCORED);
                if cnt == 0 {
                    return None;
                }
                ln[a][b] = (cnt as f64).ln();
            }
        }
    }
    let whole = (c as f64).ln() - log_n;
    let mut best = f64::INFINITY;
    // Each non-zero mask of the n - 1 gaps is a segmentation into two or more parts.
    for cuts in 1u32..(1 << (n - 1)) {
        let mut parts = 0.0;
        let mut start = 0;
        for end in 1..=n {
            if end == n || cuts & (1 << (end - 1)) != 0 {
                parts += ln[start][end] - log_n;
                start = end;
            }
        }
        best = best.min(whole - parts);
    }
    Some(best)
}

/// Builds the vocabulary of `cfg` from the documents `docs` feeds (twice), never choosing across
/// `special` tokens, counting in a table of at most `cap` entries. Deterministic: the same documents
/// in the same order give the same vocabulary.
pub fn build_vocab(
    cfg: &PmiConfig,
    special: &[u32],
    cap: usize,
    docs: &mut DocSource<'_>,
) -> NgramVocab {
    let mut words = Words::default();
    let mut counter = Counter {
        table: HashKeyed::default(),
        cap: cap.max(16),
        pruned_below: 0,
        words: 0,
    };
    docs(&mut |ids, starts| {
        words.split(ids, starts, special);
        counter.add(&words);
    });
    let Counter {
        mut table,
        pruned_below,
        words: n_words,
        ..
    } = counter;
    let stats = NgramStats {
        words: n_words,
        min_count: cfg.min_count,
        pruned_below,
    };
    if n_words == 0 {
        return NgramVocab::new(Vec::new(), stats);
    }
    let log_n = (n_words as f64).ln();
    let keep = cfg.ngrams as usize;
    let mut heap: BinaryHeap<Reverse<Candidate>> = BinaryHeap::with_capacity(keep + 1);
    let mut scored: Vec<u64> = Vec::new();
    docs(&mut |ids, starts| {
        words.split(ids, starts, special);
        for (a, b) in words.run_ranges() {
            for i in a..b {
                let mut h = NGRAM_SEED;
                for j in i..b.min(i + MAX_N) {
                    h = extend(h, words.hashes[j]);
                    if j == i {
                        continue;
                    }
                    let Some(&c) = table.get(&h) else { continue };
                    if c & SCORED != 0 || c < cfg.min_count {
                        continue;
                    }
                    scored.push(h);
                    if let Some(x) = table.get_mut(&h) {
                        *x |= SCORED;
                    }
                    let Some(score) = pmi_n(&table, &words.hashes[i..=j], c, log_n) else {
                        continue;
                    };
                    if score <= 0.0 {
                        continue;
                    }
                    let cand = Candidate {
                        score: score as f32,
                        count: c as u64,
                        hash: h,
                        tokens: Vec::new(),
                        word_lens: Vec::new(),
                    };
                    if heap.len() >= keep
                        && heap.peek().is_some_and(|Reverse(worst)| cand <= *worst)
                    {
                        continue;
                    }
                    let (s0, _) = words.spans[i];
                    let (sl, ll) = words.spans[j];
                    let cand = Candidate {
                        tokens: ids[s0 as usize..(sl + ll) as usize].to_vec(),
                        word_lens: words.spans[i..=j].iter().map(|&(_, l)| l as u16).collect(),
                        ..cand
                    };
                    heap.push(Reverse(cand));
                    if heap.len() > keep {
                        heap.pop();
                    }
                }
            }
        }
    });
    // Clear the marks, in case the table is reused.
    for h in scored {
        if let Some(x) = table.get_mut(&h) {
            *x &= !SCORED;
        }
    }
    let entries = heap
        .into_sorted_vec()
        .into_iter()
        .map(|Reverse(c)| Ngram {
            tokens: c.tokens,
            word_lens: c.word_lens,
            score: c.score,
            count: c.count,
        })
        .collect();
    NgramVocab::new(entries, stats)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Documents of single-token words.
    fn feed(docs: &[Vec<u32>]) -> impl FnMut(&mut dyn FnMut(&[u32], &[bool])) + '_ {
        move |sink| {
            for d in docs {
                sink(d, &vec![true; d.len()]);
            }
        }
    }

    /// A corpus where "20 21" always occur together, "30 31 32" always together, and every other
    /// word is drawn at random from 100..400.
    fn corpus() -> Vec<Vec<u32>> {
        let mut rng =
            remask_kernels::rng::KeyedRng::new(7, remask_kernels::rng::Purpose::Other, 0, 0);
        (0..300)
            .map(|d| {
                let mut doc = Vec::new();
                for k in 0..30 {
                    match (d + k) % 10 {
                        0 => doc.extend([20, 21]),
                        5 => doc.extend([30, 31, 32]),
                        _ => doc.push(100 + rng.below(300) as u32),
                    }
                }
                doc
            })
            .collect()
    }

    #[test]
    fn collocations_rank_first_and_the_measure_is_the_minimum_over_segmentations() {
        let docs = corpus();
        let cfg = PmiConfig {
            ngrams: 50,
            min_count: 5,
        };
        let v = build_vocab(&cfg, &[0, 1, 2, 3, 4], COUNT_CAP, &mut feed(&docs));
        assert!(!v.is_empty() && v.len() <= 50);
        let top: Vec<&[u32]> = v.entries().iter().take(3).map(|e| &e.tokens[..]).collect();
        assert!(
            top.contains(&&[20, 21][..]) && top.contains(&&[30, 31, 32][..]),
            "{top:?}"
        );
        assert!(v.entries().windows(2).all(|w| w[0].score >= w[1].score));
        assert_eq!(v.stats.pruned_below, 0);
        assert_eq!(
            v.stats.words,
            docs.iter().map(|d| d.len() as u64).sum::<u64>()
        );
        // PMI_3 of "30 31 32" by hand: min over {30|31 32, 30 31|32, 30|31|32}.
        let n = v.stats.words as f64;
        let c = |g: &[u32]| {
            docs.iter()
                .map(|d| d.windows(g.len()).filter(|w| *w == g).count())
                .sum::<usize>() as f64
        };
        let p = |g: &[u32]| c(g) / n;
        let whole = p(&[30, 31, 32]);
        let want = [
            whole / (p(&[30]) * p(&[31, 32])),
            whole / (p(&[30, 31]) * p(&[32])),
            whole / (p(&[30]) * p(&[31]) * p(&[32])),
        ]
        .iter()
        .map(|x| x.ln())
        .fold(f64::INFINITY, f64::min);
        let got = v
            .entries()
            .iter()
            .find(|e| e.tokens == [30, 31, 32])
            .unwrap();
        assert!(
            (got.score as f64 - want).abs() < 1e-4,
            "{} vs {want}",
            got.score
        );
        assert_eq!(got.count as f64, c(&[30, 31, 32]));
    }

    #[test]
    fn deterministic_bounded_and_never_across_special_tokens() {
        let mut docs = corpus();
        let cfg = PmiConfig {
            ngrams: 20,
            min_count: 3,
        };
        let a = build_vocab(&cfg, &[1], COUNT_CAP, &mut feed(&docs));
        let b = build_vocab(&cfg, &[1], COUNT_CAP, &mut feed(&docs));
        assert_eq!(a.entries(), b.entries());
        assert!(a.len() <= 20);
        // A special token between 20 and 21 everywhere: "20 21" is no longer an n-gram.
        for d in &mut docs {
            let mut i = 0;
            while i + 1 < d.len() {
                if d[i] == 20 && d[i + 1] == 21 {
                    d.insert(i + 1, 1);
                }
                i += 1;
            }
        }
        let c = build_vocab(&cfg, &[1], COUNT_CAP, &mut feed(&docs));
        assert!(c
            .entries()
            .iter()
            .all(|e| !e.tokens.contains(&1) && !e.tokens.windows(2).any(|w| w == [20, 21])));
        assert!(c.entries().iter().any(|e| e.tokens == [30, 31, 32]));
    }

    #[test]
    fn a_small_cap_prunes_rare_counts_and_keeps_the_collocations() {
        let docs = corpus();
        let cfg = PmiConfig {
            ngrams: 10,
            min_count: 5,
        };
        let v = build_vocab(&cfg, &[], 2000, &mut feed(&docs));
        assert!(v.stats.pruned_below > 0);
        assert!(
            v.entries().iter().any(|e| e.tokens == [20, 21])
                && v.entries().iter().any(|e| e.tokens == [30, 31, 32])
        );
    }

    #[test]
    fn subword_pieces_stay_inside_their_words() {
        // Word "20 ##21" (two tokens) followed by word 22, always together.
        let docs: Vec<Vec<u32>> = (0..50)
            .map(|d| vec![100 + d, 20, 21, 22, 200 + d])
            .collect();
        let starts = [true, true, false, true, true];
        let mut feed = |sink: &mut dyn FnMut(&[u32], &[bool])| {
            for d in &docs {
                sink(d, &starts);
            }
        };
        let v = build_vocab(
            &PmiConfig {
                ngrams: 10,
                min_count: 5,
            },
            &[],
            COUNT_CAP,
            &mut feed,
        );
        let e = v
            .entries()
            .iter()
            .find(|e| e.tokens == [20, 21, 22])
            .expect("the two-word n-gram");
        assert_eq!(e.word_lens, [2, 1]);
        assert_eq!(e.count, 50);
    }
}
