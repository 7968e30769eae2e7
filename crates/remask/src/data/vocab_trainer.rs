//! A deterministic BPE merge learner, used to train both WordPiece (with `##` continuations, as
//! Hugging Face's WordPiece trainer does) and byte-level BPE vocabularies.
//!
//! Why not the `tokenizers` crate's trainers: they iterate hash maps seeded randomly per process, so
//! tie-breaking between equally frequent pairs (and the ids of the initial alphabet) differ from run
//! to run, and `remask prepare` must give byte-identical output for identical input. Here words are
//! counted in a `BTreeMap`, ids are assigned in sorted order, and ties between equally frequent pairs
//! go to the pair of smaller ids. The learned vocabulary is then loaded into the crate's own
//! `WordPiece` / `BPE` models, so encoding is exactly Hugging Face's.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap, HashSet};

/// The learned vocabulary: tokens in id order (specials first) and, for BPE, the merges in rank order.
pub struct LearnedVocab {
    pub tokens: Vec<String>,
    pub merges: Vec<(String, String)>,
}

/// Learns merges from `word_counts` until the vocabulary holds `vocab_size` tokens or no pair occurs
/// at least `min_frequency` times.
///
/// - `prefix`: the continuation prefix (`Some("##")` for WordPiece): symbols after the first of a word
///   carry it, and a merge drops it from its right part.
/// - `initial_alphabet`: characters always in the vocabulary (the 256 byte characters for byte-level
///   BPE). Other characters enter by frequency, at most `limit_alphabet` of them.
pub fn learn(
    word_counts: &BTreeMap<String, u64>,
    specials: &[String],
    vocab_size: usize,
    min_frequency: u64,
    prefix: Option<&str>,
    initial_alphabet: &[char],
    limit_alphabet: usize,
) -> LearnedVocab {
    let mut tokens: Vec<String> = specials.to_vec();
    let mut index: HashMap<String, u32> = tokens
        .iter()
        .enumerate()
        .map(|(i, t)| (t.clone(), i as u32))
        .collect();
    let mut add = |tokens: &mut Vec<String>, t: String| -> u32 {
        if let Some(&id) = index.get(&t) {
            return id;
        }
        let id = tokens.len() as u32;
        index.insert(t.clone(), id);
        tokens.push(t);
        id
    };

    // Pass 1: the alphabet, by frequency (ties by character), plus the required characters.
    let mut char_counts: BTreeMap<char, u64> = BTreeMap::new();
    for (w, &c) in word_counts {
        for ch in w.chars() {
            *char_counts.entry(ch).or_default() += c;
        }
    }
    let mut by_freq: Vec<(char, u64)> = char_counts.into_iter().collect();
    by_freq.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let mut alphabet: Vec<char> = initial_alphabet.to_vec();
    let extra = limit_alphabet.saturating_sub(alphabet.len());
    alphabet.extend(
        by_freq
            .iter()
            .map(|&(c, _)| c)
            .filter(|c| !initial_alphabet.contains(c))
            .take(extra),
    );
    alphabet.sort_unstable();
    alphabet.dedup();
    let allowed: HashSet<char> = alphabet.iter().copied().collect();
    for &c in &alphabet {
        add(&mut tokens, c.to_string());
    }

    // Pass 2: words as symbol sequences (words with characters outside the alphabet are dropped).
    let mut words: Vec<Vec<u32>> = Vec::new();
    let mut counts: Vec<u64> = Vec::new();
    for (w, &c) in word_counts {
        if w.is_empty() || !w.chars().all(|ch| allowed.contains(&ch)) {
            continue;
        }
        let syms = w
            .chars()
            .enumerate()
            .map(|(i, ch)| match (i, prefix) {
                (0, _) | (_, None) => add(&mut tokens, ch.to_string()),
                (_, Some(p)) => add(&mut tokens, format!("{p}{ch}")),
            })
            .collect();
        words.push(syms);
        counts.push(c);
    }

    // Pass 3: merges, with pair counts kept up to date incrementally.
    let mut pair_counts: HashMap<(u32, u32), u64> = HashMap::new();
    let mut where_: HashMap<(u32, u32), Vec<usize>> = HashMap::new();
    for (wi, w) in words.iter().enumerate() {
        for p in w.windows(2) {
            *pair_counts.entry((p[0], p[1])).or_default() += counts[wi];
            where_.entry((p[0], p[1])).or_default().push(wi);
        }
    }
    let mut heap: BinaryHeap<(u64, Reverse<(u32, u32)>)> =
        pair_counts.iter().map(|(&p, &c)| (c, Reverse(p))).collect();
    let mut merges = Vec::new();
    while tokens.len() < vocab_size {
        let Some((c, Reverse(pair))) = heap.pop() else {
            break;
        };
        let current = pair_counts.get(&pair).copied().unwrap_or(0);
        if c != current {
            // A stale entry: its up-to-date count was pushed when it changed.
            continue;
        }
        if c < min_frequency {
            break;
        }
        let (a, b) = pair;
        let right = match prefix {
            Some(p) => tokens[b as usize]
                .strip_prefix(p)
                .unwrap_or(&tokens[b as usize])
                .to_string(),
            None => tokens[b as usize].clone(),
        };
        let merged = format!("{}{}", tokens[a as usize], right);
        merges.push((tokens[a as usize].clone(), tokens[b as usize].clone()));
        let n = add(&mut tokens, merged);
        let mut ws = where_.remove(&pair).unwrap_or_default();
        ws.sort_unstable();
        ws.dedup();
        let mut changed: Vec<(u32, u32)> = Vec::new();
        for wi in ws {
            let w = &words[wi];
            if !w.windows(2).any(|p| p[0] == a && p[1] == b) {
                continue;
            }
            let cnt = counts[wi];
            for p in w.windows(2) {
                let e = pair_counts.entry((p[0], p[1])).or_default();
                *e = e.saturating_sub(cnt);
                changed.push((p[0], p[1]));
            }
            let mut new = Vec::with_capacity(w.len());
            let mut i = 0;
            while i < w.len() {
                if i + 1 < w.len() && w[i] == a && w[i + 1] == b {
                    new.push(n);
                    i += 2;
                } else {
                    new.push(w[i]);
                    i += 1;
                }
            }
            for p in new.windows(2) {
                *pair_counts.entry((p[0], p[1])).or_default() += cnt;
                where_.entry((p[0], p[1])).or_default().push(wi);
                changed.push((p[0], p[1]));
            }
            words[wi] = new;
        }
        pair_counts.remove(&pair);
        changed.sort_unstable();
        changed.dedup();
        for p in changed {
            if let Some(&c) = pair_counts.get(&p) {
                if c > 0 && p != pair {
                    heap.push((c, Reverse(p)));
                }
            }
        }
    }
    LearnedVocab { tokens, merges }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merges_most_frequent_pairs_first_and_is_deterministic() {
        let mut wc = BTreeMap::new();
        wc.insert("hug".to_string(), 10);
        wc.insert("pug".to_string(), 5);
        wc.insert("pun".to_string(), 12);
        wc.insert("bun".to_string(), 4);
        wc.insert("hugs".to_string(), 5);
        let specials = vec!["<pad>".to_string()];
        let v = learn(&wc, &specials, 100, 1, None, &[], 100);
        // u+g occurs 10+5+5 = 20 times, u+n 16 times: "ug" is the first merge, then "un".
        assert_eq!(v.merges[0], ("u".to_string(), "g".to_string()));
        assert_eq!(v.merges[1], ("u".to_string(), "n".to_string()));
        assert_eq!(v.tokens[0], "<pad>");
        let again = learn(&wc, &specials, 100, 1, None, &[], 100);
        assert_eq!(
            (v.tokens.clone(), v.merges.clone()),
            (again.tokens, again.merges)
        );
        let wp = learn(&wc, &specials, 100, 1, Some("##"), &[], 100);
        assert!(wp.tokens.contains(&"##ug".to_string()) && wp.tokens.contains(&"hug".to_string()));
        let small = learn(&wc, &specials, 9, 1, None, &[], 100);
        assert_eq!(small.tokens.len(), 9);
    }
}
