//! Software prefetch for loops that stream a matrix from memory the first time it is touched.
//!
//! The packs of the bf16 kernels and the fused attention's first reads (the backward's row terms,
//! the forward's next tile) read a head's Q, K, V, dO and out front to back, usually straight from
//! DRAM (the layer before wrote them, or other work evicted them). The transposes of K and V
//! prefetch on their own, one 16-row block ahead (`attention/transpose.rs`). The hardware
//! prefetcher followed those short streams too late: packing one 512 × 64 head ran at about
//! 5 GB/s, 24 µs, against 3–4 µs when it was in cache (AMD Zen 5, measured). Asking for the lines a fixed number of bytes ahead keeps enough misses in flight:
//! with 8 KiB ahead the same pack took about 5 µs from DRAM (4 KiB: 8 µs; 16 KiB: 6 µs).
//!
//! Prefetching is only a hint: it never faults and never changes a result.

/// How far ahead of the current row the streaming loops ask for lines.
pub(crate) const AHEAD_BYTES: usize = 8 << 10;

/// Bytes per cache line (the step between prefetches of one row).
const LINE: usize = 64;

/// Rows of `row_len` f32 values that make up [`AHEAD_BYTES`] (at least 1).
#[inline(always)]
pub(crate) fn rows_ahead(row_len: usize) -> usize {
    (AHEAD_BYTES / (4 * row_len.max(1))).max(1)
}

/// Asks for the cache lines of `data[from..from + len]` (clamped to `data`) into L1, for reads
/// that follow within a few hundred nanoseconds.
#[inline(always)]
pub(crate) fn prefetch(data: &[f32], from: usize, len: usize) {
    #[cfg(target_arch = "x86_64")]
    lines::<{ std::arch::x86_64::_MM_HINT_T0 }>(data, from, len);
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (data, from, len);
}

/// [`prefetch`] into L2 only: for a block that the next task reads (it would crowd the L1 that the
/// current task works in).
#[inline(always)]
pub(crate) fn prefetch_l2(data: &[f32], from: usize, len: usize) {
    #[cfg(target_arch = "x86_64")]
    lines::<{ std::arch::x86_64::_MM_HINT_T1 }>(data, from, len);
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (data, from, len);
}

#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn lines<const HINT: i32>(data: &[f32], from: usize, len: usize) {
    let end = from.saturating_add(len).min(data.len());
    let mut i = from;
    while i < end {
        // SAFETY: `i < data.len()`, so the pointer is inside `data`; a prefetch reads nothing
        // architecturally and cannot fault (SSE, part of the x86-64 baseline).
        unsafe { std::arch::x86_64::_mm_prefetch::<HINT>(data.as_ptr().add(i) as *const i8) };
        i += LINE / 4;
    }
}

/// Asks for row `row + rows_ahead(row_len)` of a row-major matrix `data` with row stride `rs`
/// (its first `row_len` values), if that row lies inside `data`. Called once per row of a loop that
/// streams the rows in order.
#[inline(always)]
pub(crate) fn prefetch_row_ahead(data: &[f32], rs: usize, row: usize, row_len: usize) {
    let ahead = row + rows_ahead(row_len);
    if let Some(start) = ahead.checked_mul(rs) {
        prefetch(data, start, row_len);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The distance is about AHEAD_BYTES whatever the row length, and at least one row.
    #[test]
    fn rows_ahead_covers_the_distance() {
        assert_eq!(rows_ahead(64), AHEAD_BYTES / 256);
        assert_eq!(rows_ahead(1 << 20), 1);
        assert_eq!(rows_ahead(0), AHEAD_BYTES / 4);
        // Prefetching past the end, or from an empty slice, is a no-op rather than a fault.
        let v = vec![1f32; 100];
        prefetch(&v, 90, 1000);
        prefetch(&v, 5000, 10);
        prefetch(&[], 0, 10);
        prefetch_l2(&v, 0, 1000);
        prefetch_row_ahead(&v, 10, 9, 10);
        prefetch_row_ahead(&v, usize::MAX, 2, 10);
        assert!(v.iter().all(|&x| x == 1.0));
    }
}
