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

/// Copies the columns `col..col+H*D` of `src[B,T,width]` into `dst[B,H,T,D]` (split heads).
#[allow(clippy::too_many_arguments)]
pub fn split_heads(dst: &mut [f32], src: &[f32], b: usize, t: usize, h: usize, d: usize, width: usize, col: usize) {
    debug_assert_eq!(dst.len(), b * h * t * d);
    for bi in 0..b {
        for hi in 0..h {
            let dst_bh = &mut dst[(bi * h + hi) * t * d..(bi * h + hi + 1) * t * d];
            for ti in 0..t {
                let s = (bi * t + ti) * width + col + hi * d;
                dst_bh[ti * d..(ti + 1) * d].copy_from_slice(&src[s..s + d]);
            }
        }
    }
}

/// Writes `src[B,H,T,D]` into the columns `col..col+H*D` of `dst[B,T,width]` (merge heads), overwriting.
#[allow(clippy::too_many_arguments)]
pub fn merge_heads(dst: &mut [f32], src: &[f32], b: usize, t: usize, h: usize, d: usize, width: usize, col: usize) {
    debug_assert_eq!(src.len(), b * h * t * d);
    for bi in 0..b {
        for hi in 0..h {
            let src_bh = &src[(bi * h + hi) * t * d..(bi * h + hi + 1) * t * d];
            for ti in 0..t {
                let s = (bi * t + ti) * width + col + hi * d;
                dst[s..s + d].copy_from_slice(&src_bh[ti * d..(ti + 1) * d]);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_then_merge_is_identity_on_the_columns() {
        let (b, t, h, d, width) = (2, 3, 2, 4, 3 * 8);
        let src: Vec<f32> = (0..b * t * width).map(|i| i as f32).collect();
        let mut heads = vec![0.0; b * h * t * d];
        split_heads(&mut heads, &src, b, t, h, d, width, 8);
        // Element (b=1, h=1, t=2, d=3) comes from row 1*3+2, column 8 + 1*4 + 3.
        assert_eq!(heads[((h + 1) * t + 2) * d + 3], src[5 * width + 8 + 4 + 3]);
        let mut back = vec![-1.0; b * t * width];
        merge_heads(&mut back, &heads, b, t, h, d, width, 8);
        for r in 0..b * t {
            for c in 0..width {
                let want = if (8..16).contains(&c) { src[r * width + c] } else { -1.0 };
                assert_eq!(back[r * width + c], want);
            }
        }
    }
}
