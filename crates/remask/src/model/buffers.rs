//! Small helpers for the preallocated activation buffers and the glue between kernels.
//!
//! Activation buffers are `Vec`s sized exactly to the current shape with [`fit`]. Shrinking keeps the
//! capacity, so after the largest shape has been seen once no step allocates again.

/// Resizes `v` to exactly `n` elements (new elements are zero); never releases capacity.
#[inline]
pub fn fit<T: Copy + Default>(v: &mut Vec<T>, n: usize) {
    if v.len() != n {
        v.resize(n, T::default());
    }
}

/// out[i] = a[i] + b[i].
#[inline]
pub fn add(out: &mut [f32], a: &[f32], b: &[f32]) {
    debug_assert!(out.len() == a.len() && a.len() == b.len());
    for ((o, &x), &y) in out.iter_mut().zip(a).zip(b) {
        *o = x + y;
    }
}

/// out[i] += a[i].
#[inline]
pub fn add_assign(out: &mut [f32], a: &[f32]) {
    debug_assert_eq!(out.len(), a.len());
    for (o, &x) in out.iter_mut().zip(a) {
        *o += x;
    }
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

    /// Calls `f(buffer row, grid position)` for every row of the buffer.
    fn for_each_row(&self, mut f: impl FnMut(usize, usize)) {
        match self.map {
            None => (0..self.b * self.t).for_each(|i| f(i, i)),
            Some(rows) => rows.iter().enumerate().for_each(|(i, &r)| f(i, r as usize)),
        }
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
    debug_assert_eq!(dst.len(), grid.b * h * t * d);
    if let Some(rows) = grid.map {
        // Zero the grid positions the buffer has no row for (the map lists positions in order).
        let mut zero = |full: usize| {
            let (bi, ti) = (full / t, full % t);
            for hi in 0..h {
                let o = ((bi * h + hi) * t + ti) * d;
                dst[o..o + d].fill(0.0);
            }
        };
        let mut next = 0;
        for &r in rows {
            (next..r as usize).for_each(&mut zero);
            next = r as usize + 1;
        }
        (next..grid.b * t).for_each(zero);
    }
    grid.for_each_row(|i, full| {
        let (bi, ti) = (full / t, full % t);
        for hi in 0..h {
            let s = i * width + col + hi * d;
            let o = ((bi * h + hi) * t + ti) * d;
            dst[o..o + d].copy_from_slice(&src[s..s + d]);
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
    debug_assert_eq!(src.len(), grid.b * h * t * d);
    grid.for_each_row(|i, full| {
        let (bi, ti) = (full / t, full % t);
        for hi in 0..h {
            let s = i * width + col + hi * d;
            let o = ((bi * h + hi) * t + ti) * d;
            dst[s..s + d].copy_from_slice(&src[o..o + d]);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

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
