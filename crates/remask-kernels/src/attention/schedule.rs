//! How the fused kernels' backward (f32 and bf16) splits its work over the rayon pool: units of
//! unequal cost, handed out largest first to whichever thread is free.
//!
//! A unit is one head, or a contiguous range of a head's key tiles. Its cost is the number of
//! (query, key) elements in its non-empty tiles. Under a document mask the heads' costs follow the
//! documents' lengths of their batch row (Σ length²), and under a causal mask a head's first key
//! tiles are read by many more queries than its last; rayon's halving of an index range into
//! contiguous pieces, or key chunks of equal tile counts, can leave one thread with the expensive
//! end while the other waits. Handing out the units largest first to whichever thread is free
//! (greedy longest-first scheduling) ends the threads within about one of the last, cheapest units
//! of each other. (The forward needs none of this: its tasks are single query tiles, small enough
//! for rayon's work stealing; a version of it on this schedule, with every head's Kᵀ prepared
//! first, cost 2–7% more CPU time from lost cache locality.)
//!
//! Which thread runs a unit, and when, never changes what the unit computes: each unit writes only
//! its own outputs, and the dQ parts (when heads are cut into key ranges) are summed afterwards in
//! range order. So the backward gives the same bits for any thread count while it runs whole heads;
//! it cuts heads into key ranges only when there are fewer than two heads per thread, and the number
//! of ranges follows the thread count, so there the last bits of dQ depend on the thread count
//! (never on the run).
//!
//! Per call this allocates the list of units (a few words per head or key range); the units' own
//! scratch is made once per thread that takes a unit.

use std::ops::Range;
use std::sync::{Mutex, PoisonError};

use rayon::prelude::*;

use super::scratch::with_scratch;
use super::AttnShape;
use crate::block_mask::{BlockMask, TileKind};

/// Calls `run(state, unit)` once for every unit on the current rayon pool: units sorted by their key,
/// largest first (equal keys keep their order), each taken by the next thread that is free.
/// `init` makes a thread's state the first time that thread takes a unit (in this call).
pub(super) fn for_each_largest_first<K: Ord + Send, U: Send, S>(
    mut units: Vec<(K, U)>,
    init: impl Fn() -> S + Sync,
    run: impl Fn(&mut S, U) + Sync,
) {
    units.sort_by(|a, b| b.0.cmp(&a.0));
    let workers = rayon::current_num_threads().min(units.len());
    let queue = Mutex::new(units.into_iter());
    let work = || {
        let mut state: Option<S> = None;
        loop {
            // The lock is held only to take the next unit, never while running it.
            let next = queue.lock().unwrap_or_else(PoisonError::into_inner).next();
            let Some((_, unit)) = next else { return };
            run(state.get_or_insert_with(&init), unit);
        }
    };
    if workers <= 1 {
        work();
        return;
    }
    rayon::scope(|s| {
        for _ in 1..workers {
            s.spawn(|_| work());
        }
        work();
    });
}

/// Elements of tile (qt, kt) of (b, h) the kernels compute: its area, or 0 when it is empty.
fn tile_cost(mask: &BlockMask, b: usize, h: usize, qt: usize, kt: usize) -> u64 {
    match mask.kind(b, h, qt, kt) {
        TileKind::Empty => 0,
        TileKind::Partial | TileKind::Full => (mask.tile_rows(qt) * mask.tile_cols(kt)) as u64,
    }
}

/// One head, or a contiguous range of its key tiles: the backward's unit.
pub(super) struct KeyRange<'a> {
    /// Head index b·H + h.
    pub bh: usize,
    /// Key tiles of the unit.
    pub kts: Range<usize>,
    /// This unit's part of the head's dQ, `[Tq, D]` (old contents unspecified): the unit overwrites it.
    pub dq: &'a mut [f32],
    /// The range's rows of dK and dV, `[rows, D]`: the unit overwrites them.
    pub dk: &'a mut [f32],
    pub dv: &'a mut [f32],
}

/// The backward's split. Normally one unit per (b, h), writing that head's dq directly. When there
/// are fewer than two heads per thread, each head's key tiles are cut into up to `2·threads / heads`
/// contiguous ranges of about equal cost; each range writes its part of dQ into a buffer of its own
/// and the parts are summed in range order at the end. `run` must overwrite `unit.dq` with its part
/// of dQ, and `unit.dk`, `unit.dv` (none of them arrives zeroed: a kernel that accumulates zeroes
/// them first, one that can start its first product from zero skips that pass).
/// dq `[B,H,Tq,D]`, dk, dv `[B,H,Tk,D]`; needs every size > 0.
pub(super) fn backward_units<S>(
    dq: &mut [f32],
    dk: &mut [f32],
    dv: &mut [f32],
    mask: &BlockMask,
    shape: AttnShape,
    init: impl Fn() -> S + Sync,
    run: impl Fn(&mut S, KeyRange<'_>) + Sync,
) {
    let AttnShape {
        batch,
        heads,
        tq,
        tk,
        head_dim: d,
    } = shape;
    let (bk, n_qt, n_kt) = (mask.tile_k(), mask.n_q_tiles(), mask.n_k_tiles());
    let pairs = batch * heads;
    let key_costs = |bh: usize| -> Vec<u64> {
        let (b, h) = (bh / heads, bh % heads);
        (0..n_kt)
            .map(|kt| (0..n_qt).map(|qt| tile_cost(mask, b, h, qt, kt)).sum())
            .collect()
    };
    let wanted = 2 * rayon::current_num_threads();
    if pairs >= wanted || n_kt == 1 {
        let units = dq
            .chunks_mut(tq * d)
            .zip(dk.chunks_mut(tk * d))
            .zip(dv.chunks_mut(tk * d))
            .enumerate()
            .map(|(bh, ((dq, dk), dv))| {
                (
                    key_costs(bh).iter().sum::<u64>(),
                    KeyRange {
                        bh,
                        kts: 0..n_kt,
                        dq,
                        dk,
                        dv,
                    },
                )
            })
            .collect();
        for_each_largest_first(units, init, &run);
        return;
    }
    let per_head = wanted.div_ceil(pairs);
    let ranges: Vec<Vec<(u64, Range<usize>)>> = (0..pairs)
        .map(|bh| {
            let costs = key_costs(bh);
            balanced_ranges(&costs, per_head)
                .into_iter()
                .map(|r| (costs[r.clone()].iter().sum(), r))
                .collect()
        })
        .collect();
    // First range of each head in the list of all ranges; dQ parts `[ranges, Tq, D]`.
    let first: Vec<usize> = ranges
        .iter()
        .scan(0, |n, r| Some(std::mem::replace(n, *n + r.len())))
        .collect();
    let total: usize = ranges.iter().map(Vec::len).sum();
    with_scratch(total * tq * d, |parts| {
        let mut units = Vec::with_capacity(total);
        let mut parts_left = &mut *parts;
        for (bh, ((dk_bh, dv_bh), head_ranges)) in dk
            .chunks_mut(tk * d)
            .zip(dv.chunks_mut(tk * d))
            .zip(&ranges)
            .enumerate()
        {
            let (mut dk_left, mut dv_left) = (dk_bh, dv_bh);
            for (cost, kts) in head_ranges {
                let rows = (kts.end * bk).min(tk) - kts.start * bk;
                let (dk, rest) = std::mem::take(&mut dk_left).split_at_mut(rows * d);
                dk_left = rest;
                let (dv, rest) = std::mem::take(&mut dv_left).split_at_mut(rows * d);
                dv_left = rest;
                let (dq, rest) = std::mem::take(&mut parts_left).split_at_mut(tq * d);
                parts_left = rest;
                units.push((
                    *cost,
                    KeyRange {
                        bh,
                        kts: kts.clone(),
                        dq,
                        dk,
                        dv,
                    },
                ));
            }
        }
        for_each_largest_first(units, init, &run);
        let parts = &*parts;
        dq.par_chunks_mut(tq * d)
            .enumerate()
            .for_each(|(bh, dq_bh)| {
                let mine = &parts[first[bh] * tq * d..(first[bh] + ranges[bh].len()) * tq * d];
                dq_bh.copy_from_slice(&mine[..tq * d]);
                for part in mine.chunks(tq * d).skip(1) {
                    dq_bh.iter_mut().zip(part).for_each(|(x, y)| *x += y);
                }
            });
    });
}

/// Zeroes rows `first..first + n` of a unit's dK and dV (`d` values per row): a key tile that no
/// live tile reached, since units overwrite their outputs without a zeroing pass first.
pub(super) fn zero_key_rows(dk: &mut [f32], dv: &mut [f32], first: usize, n: usize, d: usize) {
    let rows = first * d..(first + n) * d;
    dk[rows.clone()]
        .iter_mut()
        .chain(dv[rows].iter_mut())
        .for_each(|x| *x = 0.0);
}

/// Zeroes the rows of a unit's dQ `[Tq, D]` in every query tile that `written` marks false: the
/// tiles no product of the unit wrote.
pub(super) fn zero_unwritten_queries(dq: &mut [f32], written: &[bool], mask: &BlockMask, d: usize) {
    for (qt, _) in written.iter().enumerate().filter(|(_, w)| !**w) {
        let q0 = qt * mask.tile_q();
        dq[q0 * d..(q0 + mask.tile_rows(qt)) * d]
            .iter_mut()
            .for_each(|x| *x = 0.0);
    }
}

/// Cuts `0..costs.len()` into at most `parts` contiguous, non-empty ranges of about equal total cost:
/// the j-th cut goes at the tile boundary nearest to j/parts of the total. All in one range when the
/// total is 0.
pub(super) fn balanced_ranges(costs: &[u64], parts: usize) -> Vec<Range<usize>> {
    let n = costs.len();
    let mut prefix = Vec::with_capacity(n + 1);
    prefix.push(0u64);
    for &c in costs {
        prefix.push(prefix[prefix.len() - 1] + c);
    }
    let total = prefix[n];
    let parts = parts.min(n);
    if total == 0 || parts <= 1 {
        return vec![0..n];
    }
    let p = parts as u64;
    let mut cuts = vec![0];
    for j in 1..parts {
        // Compare prefix[i]·parts with total·j (no division); leave at least one tile per range.
        let target = total * j as u64;
        let (lo, hi) = (cuts[cuts.len() - 1] + 1, n - (parts - j));
        let mut i = lo;
        while i < hi && prefix[i] * p < target {
            i += 1;
        }
        if i > lo && prefix[i] * p >= target && target - prefix[i - 1] * p < prefix[i] * p - target
        {
            i -= 1;
        }
        cuts.push(i);
    }
    cuts.push(n);
    cuts.windows(2).map(|w| w[0]..w[1]).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_unit_runs_once_largest_first() {
        let units: Vec<(u64, usize)> = [3u64, 9, 1, 9, 4, 0, 7]
            .iter()
            .enumerate()
            .map(|(i, &c)| (c, i))
            .collect();
        // One thread: the order is the schedule itself (largest first, ties in their order).
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .expect("thread pool");
        let order = Mutex::new(Vec::new());
        pool.install(|| {
            for_each_largest_first(
                units.clone(),
                || (),
                |_, i| order.lock().expect("lock").push(i),
            )
        });
        assert_eq!(order.into_inner().expect("lock"), vec![1, 3, 6, 4, 0, 2, 5]);
        // Several threads: each unit exactly once, and each thread's state made at most once.
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(4)
            .build()
            .expect("thread pool");
        let (seen, inits) = (
            Mutex::new(Vec::new()),
            std::sync::atomic::AtomicUsize::new(0),
        );
        pool.install(|| {
            for_each_largest_first(
                units,
                || inits.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
                |_, i| {
                    std::thread::sleep(std::time::Duration::from_millis(1));
                    seen.lock().expect("lock").push(i)
                },
            )
        });
        let mut seen = seen.into_inner().expect("lock");
        seen.sort_unstable();
        assert_eq!(seen, (0..7).collect::<Vec<_>>());
        assert!((1..=4).contains(&inits.into_inner()));
    }

    #[test]
    fn balanced_ranges_cover_in_order_and_split_the_cost() {
        // A causal head's key tiles: the first is read by every query tile.
        let costs = [8u64, 7, 6, 5, 4, 3, 2, 1];
        let r = balanced_ranges(&costs, 2);
        assert_eq!(r, vec![0..3, 3..8]); // 21 | 15 (cutting after 2 tiles would give 15 | 21, as far off)
        let r = balanced_ranges(&costs, 4);
        assert_eq!(r.len(), 4);
        assert_eq!(r.first().map(|x| x.start), Some(0));
        assert_eq!(r.last().map(|x| x.end), Some(8));
        assert!(r
            .windows(2)
            .all(|w| w[0].end == w[1].start && !w[1].is_empty()));
        let heaviest: u64 = r
            .iter()
            .map(|x| costs[x.clone()].iter().sum::<u64>())
            .max()
            .unwrap_or(0);
        assert!(heaviest <= 36 / 4 + 8, "heaviest range {heaviest}");
        // A long document at the end: the cut moves right, past the cheap tiles.
        assert_eq!(
            balanced_ranges(&[1, 1, 1, 1, 1, 1, 10, 10], 2),
            vec![0..7, 7..8]
        );
        // More parts than tiles, nothing live, one tile, no tiles.
        assert_eq!(balanced_ranges(&[5, 5, 5], 8), vec![0..1, 1..2, 2..3]);
        assert_eq!(balanced_ranges(&[0, 0, 0], 2), vec![0..3]);
        assert_eq!(balanced_ranges(&[4], 3), vec![0..1]);
        assert_eq!(balanced_ranges(&[], 3), vec![0..0]);
    }
}
