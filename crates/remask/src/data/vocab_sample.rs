//! The sample a vocabulary is learnt from, in bounded memory.
//!
//! Rule (deterministic, whatever the thread count or batch sizes): every training document i gets the
//! keyed hash `key(seed, Split, 1, i)` (epoch 1; the split itself uses epoch 0, so the two are
//! independent); the sample is the documents of smallest hash whose texts (both sides of a pair)
//! total at most `data.tokenizer.sample_bytes`, or the single smallest one if even that one is
//! larger. A corpus no larger than the limit is learnt from whole, as before. The sample is kept in a
//! heap keyed by the hash while the corpus streams past: it never holds more than the limit plus one
//! document. `meta.json` records what the vocabulary was learnt from ([`VocabSource`]).

use std::collections::BinaryHeap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::reader::Document;

/// What a prepared directory's vocabulary came from (`meta.json`'s `vocabulary`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum VocabSource {
    /// A given `tokenizer.json`.
    Loaded { path: PathBuf },
    /// Learnt from a sample of the training documents (see the module docs).
    Learnt {
        /// Documents and bytes of text in the sample.
        documents: u64,
        bytes: u64,
        /// Training documents and bytes of text they had to choose from.
        corpus_documents: u64,
        corpus_bytes: u64,
        /// `data.tokenizer.sample_bytes`.
        limit_bytes: u64,
    },
}

struct Entry {
    hash: u64,
    index: u64,
    doc: Document,
}

impl Entry {
    fn bytes(&self) -> u64 {
        doc_bytes(&self.doc)
    }
}

fn doc_bytes(d: &Document) -> u64 {
    (d.text.len() + d.target.as_ref().map_or(0, String::len)) as u64
}

impl PartialEq for Entry {
    fn eq(&self, o: &Self) -> bool {
        (self.hash, self.index) == (o.hash, o.index)
    }
}
impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Entry {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (self.hash, self.index).cmp(&(o.hash, o.index))
    }
}

/// The sample being drawn (see the module docs).
pub struct VocabSample {
    limit: u64,
    heap: BinaryHeap<Entry>,
    bytes: u64,
    seen_documents: u64,
    seen_bytes: u64,
}

impl VocabSample {
    pub fn new(limit_bytes: u64) -> Self {
        Self {
            limit: limit_bytes,
            heap: BinaryHeap::new(),
            bytes: 0,
            seen_documents: 0,
            seen_bytes: 0,
        }
    }

    /// Offers training document `index` with its keyed `hash`.
    pub fn offer(&mut self, index: u64, hash: u64, doc: Document) {
        let e = Entry { hash, index, doc };
        self.seen_documents += 1;
        self.seen_bytes += e.bytes();
        self.bytes += e.bytes();
        self.heap.push(e);
        while self.bytes > self.limit && self.heap.len() > 1 {
            if let Some(top) = self.heap.pop() {
                self.bytes -= top.bytes();
            }
        }
    }

    /// Withdraws document `index` of `bytes` bytes, offered earlier (it turned out to be a validation
    /// document: `prepare` moves the last document there when no other went).
    pub fn withdraw(&mut self, index: u64, bytes: u64) {
        let before = self.heap.len();
        let kept: Vec<Entry> = std::mem::take(&mut self.heap)
            .into_vec()
            .into_iter()
            .filter(|e| e.index != index)
            .collect();
        if kept.len() != before {
            self.bytes -= bytes;
        }
        self.heap = kept.into();
        self.seen_documents = self.seen_documents.saturating_sub(1);
        self.seen_bytes = self.seen_bytes.saturating_sub(bytes);
    }

    /// The sampled documents in corpus order, and the record of what they are.
    pub fn finish(self) -> (Vec<Document>, VocabSource) {
        let mut entries = self.heap.into_vec();
        entries.sort_unstable_by_key(|e| e.index);
        let source = VocabSource::Learnt {
            documents: entries.len() as u64,
            bytes: self.bytes,
            corpus_documents: self.seen_documents,
            corpus_bytes: self.seen_bytes,
            limit_bytes: self.limit,
        };
        (entries.into_iter().map(|e| e.doc).collect(), source)
    }
}

/// The bytes of text of a document, as the sample counts them.
pub fn document_bytes(d: &Document) -> u64 {
    doc_bytes(d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use remask_kernels::rng::{key, Purpose};

    fn doc(i: u64) -> Document {
        Document {
            text: "x".repeat(1 + (i % 7) as usize),
            target: None,
        }
    }

    #[test]
    fn the_sample_is_the_smallest_hashes_that_fit_whatever_the_order() {
        let n = 500u64;
        let hash = |i: u64| key(9, Purpose::Split, 1, i);
        let mut forward = VocabSample::new(300);
        (0..n).for_each(|i| forward.offer(i, hash(i), doc(i)));
        let mut backward = VocabSample::new(300);
        (0..n)
            .rev()
            .for_each(|i| backward.offer(i, hash(i), doc(i)));
        let (a, sa) = forward.finish();
        let (b, sb) = backward.finish();
        assert_eq!(a, b);
        assert_eq!(sa, sb);
        // The rule, computed directly: sort by hash, take the longest prefix within the limit.
        let mut order: Vec<u64> = (0..n).collect();
        order.sort_by_key(|&i| (hash(i), i));
        let (mut total, mut want) = (0u64, Vec::new());
        for i in order {
            let b = document_bytes(&doc(i));
            if total + b > 300 {
                break;
            }
            total += b;
            want.push(i);
        }
        want.sort_unstable();
        assert_eq!(a, want.iter().map(|&i| doc(i)).collect::<Vec<_>>());
        let VocabSource::Learnt {
            bytes,
            documents,
            corpus_documents,
            ..
        } = sa
        else {
            panic!()
        };
        assert!(
            bytes <= 300 && bytes > 250 && documents == want.len() as u64 && corpus_documents == n
        );
        // Everything fits: the whole corpus.
        let mut all = VocabSample::new(1 << 30);
        (0..n).for_each(|i| all.offer(i, hash(i), doc(i)));
        assert_eq!(all.finish().0.len(), n as usize);
    }
}
