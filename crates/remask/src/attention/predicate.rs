//! Attention masks as predicates `(batch, head, q, kv) -> bool` (`true` = may attend), their
//! combinators, and their compilation into a [`BlockMask`].
//!
//! Every built-in mask also describes itself analytically: for a query row it lists the allowed keys
//! as a few sorted intervals (padding `[0, len)`, causal `[0, q]`, a document's run, a window, a
//! prefix). Compilation then classifies tiles from those bounds without evaluating the predicate on
//! each element; combinations of built-ins (and / or / not) stay analytic. Only a user closure
//! ([`MaskFn::custom`]) is evaluated element by element.

use std::fmt;
use std::ops::Range;
use std::sync::Arc;

use remask_kernels::block_mask::{normalize_intervals, BlockMask};

use crate::batch::PAD_DOC;

/// A user predicate `(b, h, q, k) -> may attend`.
pub type MaskClosure = Arc<dyn Fn(usize, usize, usize, usize) -> bool + Send + Sync>;

/// An attention-mask predicate over `(batch row, head, query, key)`.
#[derive(Clone)]
pub enum MaskFn {
    /// Everything allowed.
    All,
    /// Keys restricted to the first `key_lengths[b]` positions of row `b` (padding at the end).
    Padding { key_lengths: Vec<u32> },
    /// Query `q` reads keys `0..=q`.
    Causal,
    /// Packed documents: query and key in the same document of row `b` (never padding, whose id is
    /// [`PAD_DOC`]); with `causal`, also key ≤ query.
    Document(Arc<DocumentRuns>, bool),
    /// Sliding window of `window` keys: causal `q-window < k ≤ q`, else centred
    /// `q-(window-1)/2 ≤ k ≤ q+window/2`.
    SlidingWindow { window: usize, causal: bool },
    /// Prefix-LM: keys `k < prefix_lengths[b]` bidirectionally, causal (`k ≤ q`) after.
    PrefixLm { prefix_lengths: Vec<u32> },
    /// Both allow.
    And(Box<MaskFn>, Box<MaskFn>),
    /// Either allows.
    Or(Box<MaskFn>, Box<MaskFn>),
    /// The complement.
    Not(Box<MaskFn>),
    /// A user closure; `per_head` says whether it depends on the head.
    Custom { f: MaskClosure, per_head: bool },
}

/// Document ids of a packed batch, with each position's run of equal ids precomputed.
#[derive(Clone, Debug, PartialEq)]
pub struct DocumentRuns {
    seq_len: usize,
    doc_ids: Vec<u32>,
    /// Start and end of the run of equal ids around each position. `[B, T]`
    runs: Vec<(u32, u32)>,
    /// Whether every document id occupies a single contiguous run in its row (then a run *is* the
    /// document and the analytic path applies).
    contiguous: bool,
}

impl DocumentRuns {
    /// From row-major `[B, T]` document ids (`T = seq_len`); [`PAD_DOC`] marks padding.
    pub fn new(doc_ids: &[u32], seq_len: usize) -> Self {
        let t = seq_len.max(1);
        let rows = doc_ids.len() / t;
        let mut runs = vec![(0u32, 0u32); rows * t];
        let mut contiguous = true;
        let mut seen: Vec<u32> = Vec::new();
        for b in 0..rows {
            let row = &doc_ids[b * t..(b + 1) * t];
            seen.clear();
            let mut s = 0;
            while s < t {
                let mut e = s + 1;
                while e < t && row[e] == row[s] {
                    e += 1;
                }
                if row[s] != PAD_DOC {
                    if seen.contains(&row[s]) {
                        contiguous = false;
                    }
                    seen.push(row[s]);
                }
                for r in &mut runs[b * t + s..b * t + e] {
                    *r = (s as u32, e as u32);
                }
                s = e;
            }
        }
        DocumentRuns {
            seq_len: t,
            doc_ids: doc_ids[..rows * t].to_vec(),
            runs,
            contiguous,
        }
    }

    fn doc(&self, b: usize, t: usize) -> u32 {
        if t >= self.seq_len {
            return PAD_DOC;
        }
        self.doc_ids
            .get(b * self.seq_len + t)
            .copied()
            .unwrap_or(PAD_DOC)
    }
}

impl fmt::Debug for MaskFn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MaskFn::All => write!(f, "all"),
            MaskFn::Padding { key_lengths } => write!(f, "padding{key_lengths:?}"),
            MaskFn::Causal => write!(f, "causal"),
            MaskFn::Document(_, c) => write!(f, "document(causal={c})"),
            MaskFn::SlidingWindow { window, causal } => {
                write!(f, "sliding(window={window}, causal={causal})")
            }
            MaskFn::PrefixLm { prefix_lengths } => write!(f, "prefix-lm{prefix_lengths:?}"),
            MaskFn::And(a, b) => write!(f, "({a:?} & {b:?})"),
            MaskFn::Or(a, b) => write!(f, "({a:?} | {b:?})"),
            MaskFn::Not(a) => write!(f, "!{a:?}"),
            MaskFn::Custom { per_head, .. } => write!(f, "custom(per_head={per_head})"),
        }
    }
}

impl MaskFn {
    /// Keys limited to each row's real tokens: `k < key_lengths[b]`.
    pub fn padding(key_lengths: &[u32]) -> Self {
        MaskFn::Padding {
            key_lengths: key_lengths.to_vec(),
        }
    }
    /// `k ≤ q`.
    pub fn causal() -> Self {
        MaskFn::Causal
    }
    /// Same document (from `[B, T]` ids, [`PAD_DOC`] = padding), optionally causal inside it.
    pub fn document(doc_ids: &[u32], seq_len: usize, causal: bool) -> Self {
        MaskFn::Document(Arc::new(DocumentRuns::new(doc_ids, seq_len)), causal)
    }
    /// Sliding window of `window` keys (see [`MaskFn::SlidingWindow`]).
    pub fn sliding_window(window: usize, causal: bool) -> Self {
        MaskFn::SlidingWindow { window, causal }
    }
    /// Bidirectional prefix of `prefix_lengths[b]` keys, causal after.
    pub fn prefix_lm(prefix_lengths: &[u32]) -> Self {
        MaskFn::PrefixLm {
            prefix_lengths: prefix_lengths.to_vec(),
        }
    }
    /// A user predicate shared by every head.
    pub fn custom(f: impl Fn(usize, usize, usize, usize) -> bool + Send + Sync + 'static) -> Self {
        MaskFn::Custom {
            f: Arc::new(f),
            per_head: false,
        }
    }
    /// A user predicate that differs between heads.
    pub fn custom_per_head(
        f: impl Fn(usize, usize, usize, usize) -> bool + Send + Sync + 'static,
    ) -> Self {
        MaskFn::Custom {
            f: Arc::new(f),
            per_head: true,
        }
    }
    /// Allowed where both allow.
    pub fn and(self, other: MaskFn) -> Self {
        MaskFn::And(Box::new(self), Box::new(other))
    }
    /// Allowed where either allows.
    pub fn or(self, other: MaskFn) -> Self {
        MaskFn::Or(Box::new(self), Box::new(other))
    }

    /// Whether query `q` of row `b`, head `h` may attend to key `k`.
    pub fn allows(&self, b: usize, h: usize, q: usize, k: usize) -> bool {
        match self {
            MaskFn::All => true,
            MaskFn::Padding { key_lengths } => {
                k < key_lengths.get(b).map_or(usize::MAX, |&l| l as usize)
            }
            MaskFn::Causal => k <= q,
            MaskFn::Document(d, causal) => {
                let dq = d.doc(b, q);
                dq != PAD_DOC && dq == d.doc(b, k) && (!causal || k <= q)
            }
            MaskFn::SlidingWindow { window, causal } => {
                window_range(q, *window, *causal).contains(&k)
            }
            MaskFn::PrefixLm { prefix_lengths } => {
                k <= q || k < prefix_lengths.get(b).map_or(0, |&p| p as usize)
            }
            MaskFn::And(a, c) => a.allows(b, h, q, k) && c.allows(b, h, q, k),
            MaskFn::Or(a, c) => a.allows(b, h, q, k) || c.allows(b, h, q, k),
            MaskFn::Not(a) => !a.allows(b, h, q, k),
            MaskFn::Custom { f, .. } => f(b, h, q, k),
        }
    }

    /// Whether the predicate depends on the head (then it compiles to one mask per head).
    pub fn per_head(&self) -> bool {
        match self {
            MaskFn::Custom { per_head, .. } => *per_head,
            MaskFn::And(a, b) | MaskFn::Or(a, b) => a.per_head() || b.per_head(),
            MaskFn::Not(a) => a.per_head(),
            _ => false,
        }
    }

    /// Whether allowed keys can be listed as intervals (everything but user closures and documents
    /// whose ids repeat in separate runs).
    pub fn is_analytic(&self) -> bool {
        match self {
            MaskFn::Custom { .. } => false,
            MaskFn::Document(d, _) => d.contiguous,
            MaskFn::And(a, b) | MaskFn::Or(a, b) => a.is_analytic() && b.is_analytic(),
            MaskFn::Not(a) => a.is_analytic(),
            _ => true,
        }
    }

    /// Appends the allowed keys of query `q` (row `b`, head `h`) as sorted disjoint ranges within
    /// `0..tk` to `out`. Only for [`is_analytic`](Self::is_analytic) predicates. `pool` is reusable
    /// scratch for the combinators (no allocation once warm).
    pub fn intervals(
        &self,
        b: usize,
        h: usize,
        q: usize,
        tk: usize,
        out: &mut Vec<Range<usize>>,
        pool: &mut Vec<Vec<Range<usize>>>,
    ) {
        match self {
            MaskFn::All => out.push(0..tk),
            MaskFn::Padding { key_lengths } => {
                out.push(0..key_lengths.get(b).map_or(tk, |&l| (l as usize).min(tk)));
            }
            MaskFn::Causal => out.push(0..(q + 1).min(tk)),
            MaskFn::Document(d, causal) => {
                if d.doc(b, q) != PAD_DOC {
                    let (s, e) = d.runs[b * d.seq_len + q];
                    let e = if *causal { q + 1 } else { e as usize };
                    out.push(s as usize..e.min(tk));
                }
            }
            MaskFn::SlidingWindow { window, causal } => {
                let r = window_range(q, *window, *causal);
                out.push(r.start.min(tk)..r.end.min(tk));
            }
            MaskFn::PrefixLm { prefix_lengths } => {
                let p = prefix_lengths.get(b).map_or(0, |&p| p as usize);
                out.push(0..p.max(q + 1).min(tk));
            }
            MaskFn::And(a, c) | MaskFn::Or(a, c) => {
                let mut x = pool.pop().unwrap_or_default();
                let mut y = pool.pop().unwrap_or_default();
                x.clear();
                y.clear();
                a.intervals(b, h, q, tk, &mut x, pool);
                c.intervals(b, h, q, tk, &mut y, pool);
                if matches!(self, MaskFn::And(..)) {
                    normalize_intervals(&mut x, tk);
                    normalize_intervals(&mut y, tk);
                    intersect(&x, &y, out);
                } else {
                    x.extend_from_slice(&y);
                    normalize_intervals(&mut x, tk);
                    out.extend_from_slice(&x);
                }
                pool.push(x);
                pool.push(y);
            }
            MaskFn::Not(a) => {
                let mut x = pool.pop().unwrap_or_default();
                x.clear();
                a.intervals(b, h, q, tk, &mut x, pool);
                normalize_intervals(&mut x, tk);
                let mut at = 0;
                for r in &x {
                    if r.start > at {
                        out.push(at..r.start);
                    }
                    at = r.end;
                }
                if at < tk {
                    out.push(at..tk);
                }
                pool.push(x);
            }
            MaskFn::Custom { .. } => {
                // Not analytic: callers check `is_analytic` first; list allowed keys one by one.
                let mut k = 0;
                while k < tk {
                    if self.allows(b, h, q, k) {
                        let s = k;
                        while k < tk && self.allows(b, h, q, k) {
                            k += 1;
                        }
                        out.push(s..k);
                    } else {
                        k += 1;
                    }
                }
            }
        }
    }

    /// Compiles the predicate for `batch` rows, `heads` attention heads, `tq` queries and `tk` keys
    /// into square tiles of `tile` (clamped to ≥ 1). Head-independent predicates give one mask head.
    pub fn compile(
        &self,
        batch: usize,
        heads: usize,
        tq: usize,
        tk: usize,
        tile: usize,
    ) -> BlockMask {
        let tile = tile.max(1);
        let mh = if self.per_head() { heads.max(1) } else { 1 };
        if self.is_analytic() {
            let mut pool = Vec::new();
            BlockMask::from_intervals(batch, mh, tq, tk, tile, tile, |b, h, q, out| {
                self.intervals(b, h, q, tk, out, &mut pool)
            })
        } else {
            BlockMask::from_fn(batch, mh, tq, tk, tile, tile, |b, h, q, k| {
                self.allows(b, h, q, k)
            })
        }
    }

    /// The predicate evaluated on every element: `[B, Hm, Tq, Tk]` with Hm = heads if
    /// [`per_head`](Self::per_head) else 1. For tests and for people.
    pub fn to_dense(&self, batch: usize, heads: usize, tq: usize, tk: usize) -> Vec<bool> {
        let mh = if self.per_head() { heads.max(1) } else { 1 };
        let mut out = Vec::with_capacity(batch * mh * tq * tk);
        for b in 0..batch {
            for h in 0..mh {
                for q in 0..tq {
                    for k in 0..tk {
                        out.push(self.allows(b, h, q, k));
                    }
                }
            }
        }
        out
    }
}

impl std::ops::Not for MaskFn {
    type Output = MaskFn;
    /// Allowed where `self` does not allow.
    fn not(self) -> MaskFn {
        MaskFn::Not(Box::new(self))
    }
}

impl std::ops::BitAnd for MaskFn {
    type Output = MaskFn;
    fn bitand(self, rhs: MaskFn) -> MaskFn {
        self.and(rhs)
    }
}

impl std::ops::BitOr for MaskFn {
    type Output = MaskFn;
    fn bitor(self, rhs: MaskFn) -> MaskFn {
        self.or(rhs)
    }
}

/// Keys a sliding window lets query `q` read.
fn window_range(q: usize, window: usize, causal: bool) -> Range<usize> {
    if window == 0 {
        return 0..0;
    }
    if causal {
        (q + 1).saturating_sub(window)..q + 1
    } else {
        q.saturating_sub((window - 1) / 2)..q + window / 2 + 1
    }
}

/// Intersection of two sorted disjoint range lists, appended to `out`.
fn intersect(x: &[Range<usize>], y: &[Range<usize>], out: &mut Vec<Range<usize>>) {
    let (mut i, mut j) = (0, 0);
    while i < x.len() && j < y.len() {
        let (s, e) = (x[i].start.max(y[j].start), x[i].end.min(y[j].end));
        if s < e {
            out.push(s..e);
        }
        if x[i].end < y[j].end {
            i += 1;
        } else {
            j += 1;
        }
    }
}
