//! Small helpers for the preallocated activation buffers and the glue between kernels.
//!
//! Activation buffers are `Vec`s sized exactly to the current shape with [`fit`]. Shrinking keeps the
//! capacity, so after the largest shape has been seen once no step allocates again. The copies and
//! element-wise passes run on rayon's pool when large: run serially they left the other cores idle
//! for a fifth of a bf16 training step.

use rayon::prelude::*;

/// Resizes `v` to exactly `n` elements (new elements are zero); never releases capacity.
#[inline]
pub fn fit<T: Copy + Default>(v: &mut Vec<T>, n: usize) {
    if v.len() != n {
        v.resize(n, T::default());
    }
}

/// Elements per rayon task of the element-wise helpers below (256 KiB of f32): small buffers stay
/// on the calling thread, large ones split over the pool. Every element is computed the same way
/// wherever it runs, so the split changes no bit.
const ELEMS_PER_TASK: usize = 1 << 16;

/// out[i] = a[i] + b[i].
pub fn add(out: &mut [f32], a: &[f32], b: &[f32]) {
    assert!(
        out.len() == a.len() && a.len() == b.len(),
        "add: lengths differ"
    );
    out.par_chunks_mut(ELEMS_PER_TASK)
        .zip(a.par_chunks(ELEMS_PER_TASK))
        .zip(b.par_chunks(ELEMS_PER_TASK))
        .for_each(|((o, a), b)| {
            for ((o, &x), &y) in o.iter_mut().zip(a).zip(b) {
                *o = x + y;
            }
        });
}

/// out[i] += a[i].
pub fn add_assign(out: &mut [f32], a: &[f32]) {
    assert_eq!(out.len(), a.len(), "add_assign: lengths differ");
    out.par_chunks_mut(ELEMS_PER_TASK)
        .zip(a.par_chunks(ELEMS_PER_TASK))
        .for_each(|(o, a)| {
            for (o, &x) in o.iter_mut().zip(a) {
                *o += x;
            }
        });
}

/// out[i] = 0, split over the pool when large (gradient buffers are zeroed every step).
pub fn zero(out: &mut [f32]) {
    out.par_chunks_mut(ELEMS_PER_TASK).for_each(|o| o.fill(0.0));
}

/// dst[i] = src[i], split over the pool when large.
pub fn copy(dst: &mut [f32], src: &[f32]) {
    assert_eq!(dst.len(), src.len(), "copy: lengths differ");
    dst.par_chunks_mut(ELEMS_PER_TASK)
        .zip(src.par_chunks(ELEMS_PER_TASK))
        .for_each(|(d, s)| d.copy_from_slice(s));
}

/// Maps the rows of a compacted `[N', width]` buffer (padding rows dropped) to their index `b·T + t`
/// in the full `[B, T]` grid; `None` when the buffer holds every row (N' = B·T).
pub type RowMap<'a> = Option<&'a [u32]>;

/// Which rows of a B × T grid a `[N, width]` buffer holds: all of them in order, or the ones its
/// row map lists.
#[derive(Clone, Copy, Debug)]
pub struct Grid<'a> {
    pub b: usize,
    pub t: usize,
    pub map: RowMap<'a>,
}

impl Grid<'_> {
    /// N: rows the buffer has (the mapped rows, or B·T).
    pub fn n(&self) -> usize {
        self.map.map_or(self.b * self.t, <[u32]>::len)
    }

    /// The buffer rows of sequence `bi` (a contiguous range: mapped rows are in grid order).
    fn batch_rows(&self, bi: usize) -> std::ops::Range<usize> {
        let (lo, hi) = (bi * self.t, (bi + 1) * self.t);
        match self.map {
            None => lo..hi,
            Some(rows) => {
                rows.partition_point(|&r| (r as usize) < lo)
                    ..rows.partition_point(|&r| (r as usize) < hi)
            }
        }
    }

    /// The grid position of buffer row `i`.
    fn position(&self, i: usize) -> usize {
        self.map.map_or(i, |rows| rows[i] as usize)
    }
}

/// H heads of D channels, side by side in a row (`H·D` columns).
#[derive(Clone, Copy, Debug)]
pub struct Heads {
    pub h: usize,
    pub d: usize,
}

/// Copies the columns `col..col+H*D` of `src[rows, width]` (the rows `grid` says) into
/// `dst[B,H,T,D]` (split heads). With a row map (in increasing grid order), positions without a
/// source row are zeroed.
pub fn split_heads(
    dst: &mut [f32],
    src: &[f32],
    grid: Grid<'_>,
    heads: Heads,
    width: usize,
    col: usize,
) {
    let (Heads { h, d }, t) = (heads, grid.t);
    assert_eq!(
        dst.len(),
        grid.b * h * t * d,
        "split_heads: dst is not [B,H,T,D]"
    );
    if dst.is_empty() {
        return;
    }
    // A task per sequence: its [H,T,D] block of dst and its contiguous run of source rows.
    dst.par_chunks_mut(h * t * d)
        .enumerate()
        .for_each(|(bi, dst)| {
            let mut next = 0; // the first position of this sequence not written yet
            for i in grid.batch_rows(bi) {
                let ti = grid.position(i) - bi * t;
                for hi in 0..h {
                    // Positions without a source row (a row map's gaps) are zeroed.
                    dst[(hi * t + next) * d..(hi * t + ti) * d].fill(0.0);
                    let s = i * width + col + hi * d;
                    let o = (hi * t + ti) * d;
                    dst[o..o + d].copy_from_slice(&src[s..s + d]);
                }
                next = ti + 1;
            }
            for hi in 0..h {
                dst[(hi * t + next) * d..(hi + 1) * t * d].fill(0.0);
            }
        });
}

/// Writes `src[B,H,T,D]` into the columns `col..col+H*D` of `dst[rows, width]` (merge heads),
/// overwriting; with a row map only the mapped positions are read.
pub fn merge_heads(
    dst: &mut [f32],
    src: &[f32],
    grid: Grid<'_>,
    heads: Heads,
    width: usize,
    col: usize,
) {
    let (Heads { h, d }, t) = (heads, grid.t);
    assert_eq!(
        src.len(),
        grid.b * h * t * d,
        "merge_heads: src is not [B,H,T,D]"
    );
    // A task per sequence, writing its contiguous run of dst rows.
    let mut parts = Vec::with_capacity(grid.b);
    let mut rest = &mut dst[..grid.n() * width];
    for bi in 0..grid.b {
        let rows = grid.batch_rows(bi);
        let (part, tail) = std::mem::take(&mut rest).split_at_mut(rows.len() * width);
        parts.push((bi, rows, part));
        rest = tail;
    }
    parts.into_par_iter().for_each(|(bi, rows, dst)| {
        let src = &src[bi * h * t * d..(bi + 1) * h * t * d];
        for (r, i) in rows.enumerate() {
            let ti = grid.position(i) - bi * t;
            for hi in 0..h {
                let s = r * width + col + hi * d;
                let o = (hi * t + ti) * d;
                dst[s..s + d].copy_from_slice(&src[o..o + d]);
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The pairs (start in the `[rows, width]` buffer, start in `[B,H,T,D]`) of every D-value
    /// head slice, one row at a time: what both reference twins below copy.
    fn head_slices(grid: Grid<'_>, heads: Heads, width: usize, col: usize) -> Vec<(usize, usize)> {
        let (Heads { h, d }, t) = (heads, grid.t);
        let mut out = Vec::new();
        for i in 0..grid.n() {
            let (bi, ti) = (grid.position(i) / t, grid.position(i) % t);
            for hi in 0..h {
                out.push((i * width + col + hi * d, ((bi * h + hi) * t + ti) * d));
            }
        }
        out
    }

    /// Reference twin of [`split_heads`]: one row at a time, gaps zeroed first.
    fn split_heads_reference(
        dst: &mut [f32],
        src: &[f32],
        grid: Grid<'_>,
        heads: Heads,
        width: usize,
        col: usize,
    ) {
        dst.fill(0.0);
        for (s, o) in head_slices(grid, heads, width, col) {
            dst[o..o + heads.d].copy_from_slice(&src[s..s + heads.d]);
        }
    }

    /// Reference twin of [`merge_heads`].
    fn merge_heads_reference(
        dst: &mut [f32],
        src: &[f32],
        grid: Grid<'_>,
        heads: Heads,
        width: usize,
        col: usize,
    ) {
        for (s, o) in head_slices(grid, heads, width, col) {
            dst[s..s + heads.d].copy_from_slice(&src[o..o + heads.d]);
        }
    }

    /// The parallel split and merge (a task per sequence) equal their row-by-row twins, with and
    /// without a row map, including sequences with no rows at all and maps that end early.
    #[test]
    fn parallel_split_and_merge_equal_their_twins() {
        let (b, t, h, d) = (6, 37, 3, 8);
        let width = 3 * h * d + 5;
        let heads = Heads { h, d };
        // Keep about two thirds of the positions; sequence 2 keeps none, sequence 5 only its first.
        let rows: Vec<u32> = (0..(b * t) as u32)
            .filter(|&r| {
                let (bi, ti) = (r as usize / t, r as usize % t);
                match bi {
                    2 => false,
                    5 => ti == 0,
                    _ => (r * 7919) % 3 != 0,
                }
            })
            .collect();
        for map in [None, Some(&rows[..])] {
            let grid = Grid { b, t, map };
            let n = grid.n();
            let src: Vec<f32> = (0..n * width).map(|i| i as f32 * 0.5 - 3.0).collect();
            for col in [0, h * d, 2 * h * d + 5] {
                let mut fast = vec![f32::NAN; b * h * t * d];
                let mut want = vec![f32::NAN; b * h * t * d];
                split_heads(&mut fast, &src, grid, heads, width, col);
                split_heads_reference(&mut want, &src, grid, heads, width, col);
                assert_eq!(fast, want, "split, map {}, col {col}", map.is_some());
                let mut back = vec![-1.0; n * width];
                let mut back_want = vec![-1.0; n * width];
                merge_heads(&mut back, &fast, grid, heads, width, col);
                merge_heads_reference(&mut back_want, &fast, grid, heads, width, col);
                assert_eq!(back, back_want, "merge, map {}, col {col}", map.is_some());
            }
        }
    }

    /// The element-wise helpers on buffers large enough to be split over the pool.
    #[test]
    fn elementwise_helpers_cover_every_element() {
        let n = 3 * ELEMS_PER_TASK + 17;
        let a: Vec<f32> = (0..n).map(|i| (i % 1000) as f32).collect();
        let b: Vec<f32> = (0..n).map(|i| (i % 7) as f32 * 0.25).collect();
        let mut out = vec![f32::NAN; n];
        add(&mut out, &a, &b);
        assert!(out
            .iter()
            .zip(a.iter().zip(&b))
            .all(|(&o, (&x, &y))| o == x + y));
        add_assign(&mut out, &b);
        assert!(out
            .iter()
            .zip(a.iter().zip(&b))
            .all(|(&o, (&x, &y))| o == (x + y) + y));
        copy(&mut out, &a);
        assert_eq!(out, a);
        zero(&mut out);
        assert!(out.iter().all(|&x| x == 0.0 && x.is_sign_positive()));
    }

    #[test]
    fn split_then_merge_is_identity_on_the_columns() {
        let (b, t, h, d, width) = (2, 3, 2, 4, 3 * 8);
        let (all, heads_of) = (Grid { b, t, map: None }, Heads { h, d });
        let src: Vec<f32> = (0..b * t * width).map(|i| i as f32).collect();
        let mut heads = vec![0.0; b * h * t * d];
        split_heads(&mut heads, &src, all, heads_of, width, 8);
        // Element (b=1, h=1, t=2, d=3) comes from row 1*3+2, column 8 + 1*4 + 3.
        assert_eq!(heads[((h + 1) * t + 2) * d + 3], src[5 * width + 8 + 4 + 3]);
        let mut back = vec![-1.0; b * t * width];
        merge_heads(&mut back, &heads, all, heads_of, width, 8);
        for r in 0..b * t {
            for c in 0..width {
                let want = if (8..16).contains(&c) {
                    src[r * width + c]
                } else {
                    -1.0
                };
                assert_eq!(back[r * width + c], want);
            }
        }
        // With a row map: compact rows 0, 1 are full rows 1 and 4; the others are zero.
        let rows = [1u32, 4];
        let compact: Vec<f32> = (0..2 * width).map(|i| i as f32 + 1.0).collect();
        let some = Grid {
            b,
            t,
            map: Some(&rows),
        };
        split_heads(&mut heads, &compact, some, heads_of, width, 8);
        assert_eq!(heads[(h * t + 1) * d], compact[width + 8]);
        assert_eq!(heads.iter().filter(|&&x| x != 0.0).count(), 2 * h * d);
        let mut back2 = vec![0.0; 2 * width];
        merge_heads(&mut back2, &heads, some, heads_of, width, 8);
        assert_eq!(back2[8..16], compact[8..16]);
        assert_eq!(back2[width + 8..width + 16], compact[width + 8..width + 16]);
    }
}
