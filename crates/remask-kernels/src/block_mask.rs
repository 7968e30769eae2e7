//! BlockMask: an attention mask compiled into tiles, the form the fused attention kernel consumes.
//!
//! Shapes: B = batch rows, Hm = mask heads (1 when every head shares the mask, else H),
//! Tq = query positions, Tk = key positions. The (Tq, Tk) plane of each (b, h) is cut into tiles of
//! `tile_q × tile_k` elements (the last row/column of tiles may be cut short by Tq/Tk). Each tile is
//! - `Empty`: no query of the tile may read any key of the tile; the kernel skips it entirely;
//! - `Full`: every (q, k) inside the tile is allowed; the kernel skips the per-element mask;
//! - `Partial`: a bitmap of `tile_q` rows × `tile_k` bits says which pairs are allowed.
//!
//! A BlockMask is plain data (no closures): it can be built from a dense `[B, Hm, Tq, Tk]` boolean
//! array, from a per-element closure (evaluated once, at build time), or, cheapest, from per-query
//! sorted key intervals (how the built-in masks describe themselves). `true` = may attend.

use std::fmt;
use std::ops::Range;

/// Default tile edge (queries and keys), tuned for the CPU kernel.
pub const DEFAULT_TILE: usize = 64;

/// Classification of one tile.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TileKind {
    /// Nothing allowed: skipped in forward and backward.
    Empty,
    /// Some pairs allowed: a bitmap says which.
    Partial,
    /// Every pair allowed: no per-element mask.
    Full,
}

/// An attention mask compiled into tiles, per batch row and optionally per head.
#[derive(Clone, Debug, PartialEq)]
pub struct BlockMask {
    batch: usize,
    heads: usize,
    tq: usize,
    tk: usize,
    tile_q: usize,
    tile_k: usize,
    n_qt: usize,
    n_kt: usize,
    /// Bitmap words per tile row: ceil(tile_k / 64).
    words: usize,
    /// Tile kinds. `[B, Hm, n_qt, n_kt]`
    kinds: Vec<TileKind>,
    /// For partial tiles the index of their bitmap in `bits`, else `u32::MAX`. `[B, Hm, n_qt, n_kt]`
    bitmap_index: Vec<u32>,
    /// Bitmaps of the partial tiles, each `tile_q × words` u64 words; bit `c` of row `r` (word
    /// `c / 64`, bit `c % 64`) is key `kt*tile_k + c` for query `qt*tile_q + r`. Bits outside
    /// `Tq × Tk` are 0.
    bits: Vec<u64>,
}

impl BlockMask {
    /// A mask of all-`Empty` tiles (nothing allowed) for `batch` rows and `heads` mask heads (1 = shared
    /// by every attention head), `tq` queries, `tk` keys, tiles of `tile_q × tile_k`.
    pub fn empty(
        batch: usize,
        heads: usize,
        tq: usize,
        tk: usize,
        tile_q: usize,
        tile_k: usize,
    ) -> Self {
        assert!(
            tile_q > 0 && tile_k > 0,
            "BlockMask tiles must be at least 1×1"
        );
        assert!(heads > 0, "BlockMask needs at least one mask head");
        let n_qt = tq.div_ceil(tile_q);
        let n_kt = tk.div_ceil(tile_k);
        let n = batch * heads * n_qt * n_kt;
        BlockMask {
            batch,
            heads,
            tq,
            tk,
            tile_q,
            tile_k,
            n_qt,
            n_kt,
            words: tile_k.div_ceil(64),
            kinds: vec![TileKind::Empty; n],
            bitmap_index: vec![u32::MAX; n],
            bits: Vec::new(),
        }
    }

    /// A mask that allows everything.
    pub fn full(
        batch: usize,
        heads: usize,
        tq: usize,
        tk: usize,
        tile_q: usize,
        tile_k: usize,
    ) -> Self {
        let mut m = Self::empty(batch, heads, tq, tk, tile_q, tile_k);
        m.kinds.iter_mut().for_each(|k| *k = TileKind::Full);
        m
    }

    /// Compiles a dense boolean mask `[B, Hm, Tq, Tk]` (`true` = may attend).
    pub fn from_dense(
        dense: &[bool],
        batch: usize,
        heads: usize,
        tq: usize,
        tk: usize,
        tile_q: usize,
        tile_k: usize,
    ) -> Self {
        assert_eq!(
            dense.len(),
            batch * heads * tq * tk,
            "dense mask must be [B, Hm, Tq, Tk]"
        );
        Self::from_fn(batch, heads, tq, tk, tile_q, tile_k, |b, h, q, k| {
            dense[((b * heads + h) * tq + q) * tk + k]
        })
    }

    /// Compiles a predicate by evaluating it on every element once (the generic path for user
    /// closures). `allow(b, h, q, k)` is called with `h < heads`.
    pub fn from_fn<F>(
        batch: usize,
        heads: usize,
        tq: usize,
        tk: usize,
        tile_q: usize,
        tile_k: usize,
        allow: F,
    ) -> Self
    where
        F: Fn(usize, usize, usize, usize) -> bool,
    {
        let mut m = Self::empty(batch, heads, tq, tk, tile_q, tile_k);
        let mut tile_bits = vec![0u64; tile_q * m.words];
        for b in 0..batch {
            for h in 0..heads {
                for qt in 0..m.n_qt {
                    let (q0, q1) = (qt * tile_q, ((qt + 1) * tile_q).min(tq));
                    for kt in 0..m.n_kt {
                        let (k0, k1) = (kt * tile_k, ((kt + 1) * tile_k).min(tk));
                        tile_bits.iter_mut().for_each(|w| *w = 0);
                        let mut count = 0usize;
                        for q in q0..q1 {
                            let row = &mut tile_bits[(q - q0) * m.words..(q - q0 + 1) * m.words];
                            for k in k0..k1 {
                                if allow(b, h, q, k) {
                                    let c = k - k0;
                                    row[c / 64] |= 1u64 << (c % 64);
                                    count += 1;
                                }
                            }
                        }
                        m.set_tile_from_bits(
                            b,
                            h,
                            qt,
                            kt,
                            count,
                            (q1 - q0) * (k1 - k0),
                            &tile_bits,
                        );
                    }
                }
            }
        }
        m
    }

    /// Compiles a mask described per query row as sorted, disjoint key intervals (the fast path of
    /// the built-in masks: cost O(rows × intervals + tiles + partial-tile bits), no per-element
    /// predicate on full or empty tiles). `row_intervals(b, h, q, out)` appends the allowed key ranges
    /// of query `q` to `out` (which arrives empty), in any order; they are clipped to `0..tk`, and
    /// overlapping or touching ranges are merged.
    pub fn from_intervals<F>(
        batch: usize,
        heads: usize,
        tq: usize,
        tk: usize,
        tile_q: usize,
        tile_k: usize,
        mut row_intervals: F,
    ) -> Self
    where
        F: FnMut(usize, usize, usize, &mut Vec<Range<usize>>),
    {
        let mut m = Self::empty(batch, heads, tq, tk, tile_q, tile_k);
        let n_kt = m.n_kt;
        // Intervals of the current query tile, flattened, with per-row offsets.
        let mut ivs: Vec<Range<usize>> = Vec::with_capacity(tile_q * 2);
        let mut row_start: Vec<usize> = Vec::with_capacity(tile_q + 1);
        let mut scratch: Vec<Range<usize>> = Vec::with_capacity(4);
        // Difference arrays over key tiles: rows touching the tile, rows covering it entirely.
        let mut touch = vec![0i32; n_kt + 1];
        let mut cover = vec![0i32; n_kt + 1];
        let mut tile_bits = vec![0u64; tile_q * m.words];
        for b in 0..batch {
            for h in 0..heads {
                for qt in 0..m.n_qt {
                    let (q0, q1) = (qt * tile_q, ((qt + 1) * tile_q).min(tq));
                    ivs.clear();
                    row_start.clear();
                    touch.iter_mut().for_each(|x| *x = 0);
                    cover.iter_mut().for_each(|x| *x = 0);
                    for q in q0..q1 {
                        row_start.push(ivs.len());
                        scratch.clear();
                        row_intervals(b, h, q, &mut scratch);
                        normalize_intervals(&mut scratch, tk);
                        for r in scratch.drain(..) {
                            let (a, e) = (r.start, r.end);
                            ivs.push(a..e);
                            // Key tiles overlapping [a, e): a/tile_k ..= (e-1)/tile_k.
                            let (t0, t1) = (a / tile_k, (e - 1) / tile_k + 1);
                            touch[t0] += 1;
                            touch[t1] -= 1;
                            // Key tiles entirely inside [a, e).
                            let c0 = a.div_ceil(tile_k);
                            let c1 = if e == tk { n_kt } else { e / tile_k };
                            if c0 < c1 {
                                cover[c0] += 1;
                                cover[c1] -= 1;
                            }
                        }
                    }
                    row_start.push(ivs.len());
                    let rows = (q1 - q0) as i32;
                    let (mut t_acc, mut c_acc) = (0i32, 0i32);
                    for kt in 0..n_kt {
                        t_acc += touch[kt];
                        c_acc += cover[kt];
                        let idx = m.tile_index(b, h, qt, kt);
                        if t_acc == 0 {
                            continue;
                        }
                        if c_acc == rows {
                            m.kinds[idx] = TileKind::Full;
                            continue;
                        }
                        // Partial (or, if intervals only touched the tile in rows that miss it, empty).
                        let (k0, k1) = (kt * tile_k, ((kt + 1) * tile_k).min(tk));
                        tile_bits.iter_mut().for_each(|w| *w = 0);
                        let mut count = 0usize;
                        for r in 0..(q1 - q0) {
                            let row = &mut tile_bits[r * m.words..(r + 1) * m.words];
                            for iv in &ivs[row_start[r]..row_start[r + 1]] {
                                let (a, e) = (iv.start.max(k0), iv.end.min(k1));
                                if a < e {
                                    set_bit_range(row, a - k0, e - k0);
                                    count += e - a;
                                }
                            }
                        }
                        m.set_tile_from_bits(
                            b,
                            h,
                            qt,
                            kt,
                            count,
                            (q1 - q0) * (k1 - k0),
                            &tile_bits,
                        );
                    }
                }
            }
        }
        m
    }

    #[allow(clippy::too_many_arguments)]
    fn set_tile_from_bits(
        &mut self,
        b: usize,
        h: usize,
        qt: usize,
        kt: usize,
        count: usize,
        area: usize,
        tile_bits: &[u64],
    ) {
        let idx = self.tile_index(b, h, qt, kt);
        if count == 0 {
            self.kinds[idx] = TileKind::Empty;
        } else if count == area {
            self.kinds[idx] = TileKind::Full;
        } else {
            self.kinds[idx] = TileKind::Partial;
            self.bitmap_index[idx] = (self.bits.len() / (self.tile_q * self.words)) as u32;
            self.bits.extend_from_slice(tile_bits);
        }
    }

    #[inline]
    fn tile_index(&self, b: usize, h: usize, qt: usize, kt: usize) -> usize {
        let h = if self.heads == 1 { 0 } else { h };
        ((b * self.heads + h) * self.n_qt + qt) * self.n_kt + kt
    }

    /// B: batch rows.
    pub fn batch(&self) -> usize {
        self.batch
    }
    /// Hm: mask heads (1 = one mask shared by every attention head).
    pub fn heads(&self) -> usize {
        self.heads
    }
    /// Tq: query positions.
    pub fn tq(&self) -> usize {
        self.tq
    }
    /// Tk: key positions.
    pub fn tk(&self) -> usize {
        self.tk
    }
    /// Queries per tile.
    pub fn tile_q(&self) -> usize {
        self.tile_q
    }
    /// Keys per tile.
    pub fn tile_k(&self) -> usize {
        self.tile_k
    }
    /// Number of query tiles: ceil(Tq / tile_q).
    pub fn n_q_tiles(&self) -> usize {
        self.n_qt
    }
    /// Number of key tiles: ceil(Tk / tile_k).
    pub fn n_k_tiles(&self) -> usize {
        self.n_kt
    }
    /// u64 words per row of a partial tile's bitmap: ceil(tile_k / 64).
    pub fn words_per_row(&self) -> usize {
        self.words
    }

    /// The kind of tile (qt, kt) for batch row `b` and attention head `h` (any `h` when Hm = 1).
    #[inline]
    pub fn kind(&self, b: usize, h: usize, qt: usize, kt: usize) -> TileKind {
        self.kinds[self.tile_index(b, h, qt, kt)]
    }

    /// The bitmap of a partial tile (`tile_q × words_per_row` words), `None` for empty / full tiles.
    #[inline]
    pub fn tile_bits(&self, b: usize, h: usize, qt: usize, kt: usize) -> Option<&[u64]> {
        let i = self.bitmap_index[self.tile_index(b, h, qt, kt)];
        if i == u32::MAX {
            return None;
        }
        let n = self.tile_q * self.words;
        Some(&self.bits[i as usize * n..(i as usize + 1) * n])
    }

    /// Whether query `q` may read key `k` in batch row `b`, attention head `h`.
    pub fn allows(&self, b: usize, h: usize, q: usize, k: usize) -> bool {
        assert!(
            b < self.batch && q < self.tq && k < self.tk,
            "BlockMask::allows out of range"
        );
        assert!(
            self.heads == 1 || h < self.heads,
            "BlockMask::allows head out of range"
        );
        let (qt, kt) = (q / self.tile_q, k / self.tile_k);
        match self.kind(b, h, qt, kt) {
            TileKind::Empty => false,
            TileKind::Full => true,
            TileKind::Partial => {
                let bits = self.tile_bits(b, h, qt, kt).unwrap_or(&[]);
                let (r, c) = (q - qt * self.tile_q, k - kt * self.tile_k);
                bits[r * self.words + c / 64] >> (c % 64) & 1 == 1
            }
        }
    }

    /// The mask as a dense boolean array `[B, Hm, Tq, Tk]`.
    pub fn to_dense(&self) -> Vec<bool> {
        let mut out = vec![false; self.batch * self.heads * self.tq * self.tk];
        for b in 0..self.batch {
            for h in 0..self.heads {
                for q in 0..self.tq {
                    for k in 0..self.tk {
                        out[((b * self.heads + h) * self.tq + q) * self.tk + k] =
                            self.allows(b, h, q, k);
                    }
                }
            }
        }
        out
    }

    /// Fraction of the (q, k) plane, over all rows and mask heads, that lies in `Empty` tiles and is
    /// therefore skipped by the kernel (FlexAttention's notion of sparsity, weighted by tile area).
    pub fn sparsity(&self) -> f64 {
        let total = (self.batch * self.heads * self.tq * self.tk) as f64;
        if total == 0.0 {
            return 0.0;
        }
        let mut skipped = 0usize;
        for (i, kind) in self.kinds.iter().enumerate() {
            if *kind == TileKind::Empty {
                let kt = i % self.n_kt;
                let qt = (i / self.n_kt) % self.n_qt;
                skipped += self.tile_rows(qt) * self.tile_cols(kt);
            }
        }
        skipped as f64 / total
    }

    /// Fraction of (q, k) pairs that are allowed.
    pub fn density(&self) -> f64 {
        let total = self.batch * self.heads * self.tq * self.tk;
        if total == 0 {
            return 0.0;
        }
        let mut allowed = 0usize;
        for (i, kind) in self.kinds.iter().enumerate() {
            let kt = i % self.n_kt;
            let qt = (i / self.n_kt) % self.n_qt;
            allowed += match kind {
                TileKind::Empty => 0,
                TileKind::Full => self.tile_rows(qt) * self.tile_cols(kt),
                TileKind::Partial => {
                    let j = self.bitmap_index[i] as usize;
                    let n = self.tile_q * self.words;
                    self.bits[j * n..(j + 1) * n]
                        .iter()
                        .map(|w| w.count_ones() as usize)
                        .sum()
                }
            };
        }
        allowed as f64 / total as f64
    }

    /// Counts of (empty, partial, full) tiles.
    pub fn tile_counts(&self) -> (usize, usize, usize) {
        let mut c = (0, 0, 0);
        for k in &self.kinds {
            match k {
                TileKind::Empty => c.0 += 1,
                TileKind::Partial => c.1 += 1,
                TileKind::Full => c.2 += 1,
            }
        }
        c
    }

    /// Queries in query tile `qt` (the last one may be short).
    pub fn tile_rows(&self, qt: usize) -> usize {
        ((qt + 1) * self.tile_q).min(self.tq) - qt * self.tile_q
    }

    /// Keys in key tile `kt` (the last one may be short).
    pub fn tile_cols(&self, kt: usize) -> usize {
        ((kt + 1) * self.tile_k).min(self.tk) - kt * self.tile_k
    }

    /// The element mask of row `b`, head `h` as text: one line per query, `■` where the query may
    /// attend, `·` where it may not.
    pub fn render_dense(&self, b: usize, h: usize) -> String {
        let mut s = String::with_capacity(self.tq * (self.tk * 3 + 1));
        for q in 0..self.tq {
            for k in 0..self.tk {
                s.push(if self.allows(b, h, q, k) { '■' } else { '·' });
            }
            s.push('\n');
        }
        s
    }

    /// The tile map of row `b`, head `h` as text: one line per query tile, `█` full, `▒` partial,
    /// `·` empty.
    pub fn render_tiles(&self, b: usize, h: usize) -> String {
        let mut s = String::new();
        for qt in 0..self.n_qt {
            for kt in 0..self.n_kt {
                s.push(match self.kind(b, h, qt, kt) {
                    TileKind::Empty => '·',
                    TileKind::Partial => '▒',
                    TileKind::Full => '█',
                });
            }
            s.push('\n');
        }
        s
    }
}

/// Clips ranges to `0..tk`, drops empty ones, sorts them and merges overlapping or touching ones.
pub fn normalize_intervals(ivs: &mut Vec<Range<usize>>, tk: usize) {
    ivs.iter_mut()
        .for_each(|r| *r = r.start.min(tk)..r.end.min(tk));
    ivs.retain(|r| r.start < r.end);
    if ivs.len() <= 1 {
        return;
    }
    ivs.sort_unstable_by_key(|r| r.start);
    let mut w = 0;
    for i in 1..ivs.len() {
        if ivs[i].start <= ivs[w].end {
            ivs[w].end = ivs[w].end.max(ivs[i].end);
        } else {
            w += 1;
            ivs[w] = ivs[i].clone();
        }
    }
    ivs.truncate(w + 1);
}

/// Sets bits `a..e` of a bitmap row.
fn set_bit_range(row: &mut [u64], a: usize, e: usize) {
    let mut c = a;
    while c < e {
        let w = c / 64;
        let lo = c % 64;
        let hi = (e - w * 64).min(64);
        let span = hi - lo;
        let m = if span == 64 {
            u64::MAX
        } else {
            ((1u64 << span) - 1) << lo
        };
        row[w] |= m;
        c = w * 64 + hi;
    }
}

impl fmt::Display for BlockMask {
    /// Summary line plus the tile map of every (row, mask head).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (e, p, fu) = self.tile_counts();
        writeln!(
            f,
            "BlockMask B={} Hm={} Tq={} Tk={} tile={}x{}: {} empty, {} partial, {} full tiles, sparsity {:.3}",
            self.batch, self.heads, self.tq, self.tk, self.tile_q, self.tile_k, e, p, fu, self.sparsity()
        )?;
        for b in 0..self.batch {
            for h in 0..self.heads {
                writeln!(f, "row {b} head {h}:")?;
                f.write_str(&self.render_tiles(b, h))?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn causal_len(q: usize, k: usize, len: usize) -> bool {
        k <= q && k < len
    }

    #[test]
    fn intervals_and_fn_paths_agree_on_odd_sizes() {
        for &(tq, tk, tile_q, tile_k) in &[
            (37, 37, 8, 8),
            (50, 70, 16, 64),
            (5, 130, 4, 65),
            (64, 64, 64, 64),
        ] {
            let lens = [tk, tk / 2 + 1, 1];
            let a = BlockMask::from_fn(3, 1, tq, tk, tile_q, tile_k, |b, _, q, k| {
                causal_len(q, k, lens[b])
            });
            let b = BlockMask::from_intervals(3, 1, tq, tk, tile_q, tile_k, |b, _, q, out| {
                out.push(0..(q + 1).min(lens[b]))
            });
            assert_eq!(a, b, "tq={tq} tk={tk} tile={tile_q}x{tile_k}");
            let dense = a.to_dense();
            for bb in 0..3 {
                for q in 0..tq {
                    for k in 0..tk {
                        assert_eq!(dense[(bb * tq + q) * tk + k], causal_len(q, k, lens[bb]));
                    }
                }
            }
        }
    }

    #[test]
    fn classification_is_tight() {
        // Causal 16×16 with tiles of 4: diagonal tiles partial, below full, above empty.
        let m = BlockMask::from_intervals(1, 1, 16, 16, 4, 4, |_, _, q, out| out.push(0..q + 1));
        for qt in 0..4 {
            for kt in 0..4 {
                let want = if kt < qt {
                    TileKind::Full
                } else if kt == qt {
                    TileKind::Partial
                } else {
                    TileKind::Empty
                };
                assert_eq!(m.kind(0, 0, qt, kt), want);
            }
        }
        assert_eq!(m.tile_counts(), (6, 4, 6));
        assert!((m.sparsity() - 6.0 / 16.0).abs() < 1e-12);
        assert!((m.density() - 136.0 / 256.0).abs() < 1e-12);
    }

    #[test]
    fn multi_interval_rows_and_heads() {
        // Per head: head 0 reads keys [0,3) ∪ [q, q+2); head 1 reads everything but key q.
        let f = |_: usize, h: usize, q: usize, k: usize| {
            if h == 0 {
                k < 3 || (k >= q && k < q + 2)
            } else {
                k != q
            }
        };
        let a = BlockMask::from_fn(2, 2, 29, 31, 8, 8, f);
        let b = BlockMask::from_intervals(2, 2, 29, 31, 8, 8, |_, h, q, out| {
            if h == 0 {
                out.push(0..3);
                out.push(q.max(3)..q + 2);
            } else {
                out.push(0..q);
                out.push(q + 1..31);
            }
        });
        assert_eq!(a.to_dense(), b.to_dense());
        assert_eq!(a.tile_counts(), b.tile_counts());
    }

    #[test]
    fn set_bit_range_spans_words() {
        let mut row = [0u64; 3];
        set_bit_range(&mut row, 60, 130);
        assert_eq!(row[0], 0xF << 60);
        assert_eq!(row[1], u64::MAX);
        assert_eq!(row[2], 0b11);
    }
}
