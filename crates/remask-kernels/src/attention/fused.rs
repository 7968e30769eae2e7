//! Fused tiled attention (FlashAttention-2 style) over a BlockMask.
//!
//! Forward: one rayon task per (b, h, query tile). For each non-empty key tile: S = scale·Q_t·K_tᵀ
//! (a small GEMM), drop masked elements of partial tiles, an online-softmax step (running max and
//! sum per query), rescale the output accumulator, O_t += P·V_t. Only a tile_q × tile_k score block
//! exists at any time.
//!
//! Backward: one unit per (b, h) (per (b, h, key-tile range) when there are fewer than two pairs
//! per thread), key tiles outer, query tiles inner; P is recomputed from the saved lse, so
//! nothing T×T is stored:
//!   P = exp(scale·Q_t·K_tᵀ − lse)        (forward: out = P·V)
//!   dV_t += Pᵀ·dO_t                       (from out = P·V)
//!   dP = dO_t·V_tᵀ                        (from out = P·V)
//!   dS = P ∘ (dP − D), D_i = dO_i·out_i   (softmax backward)
//!   dQ_t += scale·dS·K_t, dK_t += scale·dSᵀ·Q_t   (from S = scale·Q·Kᵀ)
//!
//! The backward's units are costed by their live tiles and handed out largest first to whichever
//! thread is free ([`super::schedule`]), so heads of very different cost (documents of very
//! different lengths) keep every thread busy; no unit's result depends on the thread that runs it.
//! The forward's tasks are already small (a query tile each) and rayon's work stealing spreads them.

use rayon::prelude::*;

use super::microkernel::tile_mm;
use super::schedule::{backward_units, zero_key_rows, zero_unwritten_queries};
use super::scratch::with_scratch;
use super::simd::{dot, softmax_grad};
use super::tile_softmax::{backward_probs, forward_step};
use super::transpose::transpose;
use super::AttnShape;
use crate::block_mask::{BlockMask, TileKind};
use crate::prefetch::{prefetch_l2, prefetch_row_ahead};

struct FwdScratch {
    groups: Vec<Group>,
    s: Vec<f32>,
    mrow: Vec<f32>,
    lrow: Vec<f32>,
}

/// q `[B,H,Tq,D]`, k, v `[B,H,Tk,D]` → out `[B,H,Tq,D]`, lse `[B,H,Tq]` (overwritten).
#[allow(clippy::too_many_arguments)]
pub(super) fn forward(
    out: &mut [f32],
    lse: &mut [f32],
    q: &[f32],
    k: &[f32],
    v: &[f32],
    mask: &BlockMask,
    shape: AttnShape,
    scale: f32,
) {
    shape.check(mask, q.len(), k.len(), v.len());
    assert_eq!(
        out.len(),
        shape.q_len(),
        "attention_forward: out must be [B,H,Tq,D]"
    );
    assert_eq!(
        lse.len(),
        shape.lse_len(),
        "attention_forward: lse must be [B,H,Tq]"
    );
    let AttnShape {
        heads,
        tq,
        tk,
        head_dim: d,
        ..
    } = shape;
    if shape.lse_len() == 0 {
        return;
    }
    if d == 0 {
        lse.iter_mut().for_each(|x| *x = f32::NEG_INFINITY);
        return;
    }
    let (bq, bk) = (mask.tile_q(), mask.tile_k());
    let words = mask.words_per_row();
    let ldt = transposed_stride(tk);
    out.par_chunks_mut(tq * d)
        .zip(lse.par_chunks_mut(tq))
        .enumerate()
        .for_each(|(bh, (out_bh, lse_bh))| {
            let (b, h) = (bh / heads, bh % heads);
            let q_bh = &q[bh * tq * d..(bh + 1) * tq * d];
            let v_bh = &v[bh * tk * d..(bh + 1) * tk * d];
            with_scratch(d * ldt, |kt_bh| {
                // Kᵀ of this head, [D × Tk], so score tiles are plain row-major products.
                transpose(kt_bh, ldt, &k[bh * tk * d..(bh + 1) * tk * d], tk, d);
                let kt_bh = &*kt_bh;
                // One task per query tile.
                out_bh
                    .par_chunks_mut(bq * d)
                    .zip(lse_bh.par_chunks_mut(bq))
                    .enumerate()
                    .for_each_init(
                        || FwdScratch {
                            groups: Vec::new(),
                            s: vec![0.0; bq * bk],
                            mrow: vec![0.0; bq],
                            lrow: vec![0.0; bq],
                        },
                        |sc, (qt, (o, l))| {
                            let m = l.len();
                            let q0 = qt * bq;
                            let q_t = &q_bh[q0 * d..(q0 + m) * d];
                            // The next query tile's Q and the value tile of the same index
                            // (the next one on the diagonal, where document, causal and sliding
                            // masks live), into L2 while this tile computes: the first reads of a
                            // head's Q and V usually come from memory.
                            prefetch_l2(q_bh, (q0 + bq) * d, bq * d);
                            prefetch_l2(v_bh, (qt + 1) * bk * d, bk * d);
                            sc.mrow[..m].iter_mut().for_each(|x| *x = f32::NEG_INFINITY);
                            sc.lrow[..m].iter_mut().for_each(|x| *x = 0.0);
                            o.iter_mut().for_each(|x| *x = 0.0);
                            for kt in 0..mask.n_k_tiles() {
                                let kind = mask.kind(b, h, qt, kt);
                                if kind == TileKind::Empty {
                                    continue;
                                }
                                let (k0, n) = (kt * bk, mask.tile_cols(kt));
                                let bits = if kind == TileKind::Partial {
                                    mask.tile_bits(b, h, qt, kt)
                                } else {
                                    None
                                };
                                row_groups(&mut sc.groups, bits, words, m, n);
                                // pass 1: S = scale · Q_t · K_tᵀ   [m × n], per row group only on its key span
                                for g in &sc.groups {
                                    let (r, w) = (g.r1 - g.r0, g.c1 - g.c0);
                                    tile_mm(
                                        &mut sc.s[g.r0 * bk + g.c0..],
                                        bk,
                                        &q_t[g.r0 * d..],
                                        d,
                                        1,
                                        &kt_bh[k0 + g.c0..],
                                        ldt,
                                        r,
                                        d,
                                        w,
                                        false,
                                        scale,
                                    );
                                }
                                // pass 2: mask (which also overwrites whatever lies outside the spans), online
                                // softmax; S becomes exp(S − m_new) and O's rows are rescaled
                                forward_step(
                                    &mut sc.s,
                                    bk,
                                    m,
                                    n,
                                    bits,
                                    words,
                                    &mut sc.mrow[..m],
                                    &mut sc.lrow[..m],
                                    o,
                                    d,
                                );
                                // pass 3: O_t += P · V_t   [m × d]
                                for g in &sc.groups {
                                    let (r, w) = (g.r1 - g.r0, g.c1 - g.c0);
                                    tile_mm(
                                        &mut o[g.r0 * d..],
                                        d,
                                        &sc.s[g.r0 * bk + g.c0..],
                                        bk,
                                        1,
                                        &v_bh[(k0 + g.c0) * d..],
                                        d,
                                        r,
                                        w,
                                        d,
                                        true,
                                        1.0,
                                    );
                                }
                            }
                            // pass 4: normalise; fully masked rows stay 0 with lse = −∞
                            for i in 0..m {
                                let li = sc.lrow[i];
                                if li > 0.0 {
                                    let inv = 1.0 / li;
                                    o[i * d..(i + 1) * d].iter_mut().for_each(|x| *x *= inv);
                                    l[i] = sc.mrow[i] + li.ln();
                                } else {
                                    o[i * d..(i + 1) * d].iter_mut().for_each(|x| *x = 0.0);
                                    l[i] = f32::NEG_INFINITY;
                                }
                            }
                        },
                    );
            });
        });
}

struct BwdScratch {
    groups: Vec<Group>,
    p: Vec<f32>,
    dp: Vec<f32>,
    drow: Vec<f32>,
    /// Query tiles whose rows of dQ this unit has written (see `backward_keys`).
    dq_written: Vec<bool>,
}

/// Backward; dq `[B,H,Tq,D]`, dk, dv `[B,H,Tk,D]` are overwritten.
///
/// Units are (b, h) pairs, key tiles outer so dK_t and dV_t accumulate in cache. When there are fewer
/// than two pairs per thread, each head's key tiles are also cut into contiguous ranges of about
/// equal cost, one unit per (b, h, range): a range owns its rows of dK and dV, and writes its part of
/// dQ into a buffer of its own; the parts are summed at the end (the extra work per range: its row
/// terms D_i = dO_i·out_i, and one `[Tq × D]` sum). See [`super::schedule`].
#[allow(clippy::too_many_arguments)]
pub(super) fn backward(
    dq: &mut [f32],
    dk: &mut [f32],
    dv: &mut [f32],
    dout: &[f32],
    q: &[f32],
    k: &[f32],
    v: &[f32],
    out: &[f32],
    lse: &[f32],
    mask: &BlockMask,
    shape: AttnShape,
    scale: f32,
) {
    shape.check(mask, q.len(), k.len(), v.len());
    assert_eq!(
        dq.len(),
        shape.q_len(),
        "attention_backward: dq must be [B,H,Tq,D]"
    );
    assert_eq!(
        dk.len(),
        shape.kv_len(),
        "attention_backward: dk must be [B,H,Tk,D]"
    );
    assert_eq!(
        dv.len(),
        shape.kv_len(),
        "attention_backward: dv must be [B,H,Tk,D]"
    );
    assert_eq!(
        dout.len(),
        shape.q_len(),
        "attention_backward: dout must be [B,H,Tq,D]"
    );
    assert_eq!(
        out.len(),
        shape.q_len(),
        "attention_backward: out must be [B,H,Tq,D]"
    );
    assert_eq!(
        lse.len(),
        shape.lse_len(),
        "attention_backward: lse must be [B,H,Tq]"
    );
    let AttnShape {
        batch,
        heads,
        tq,
        tk,
        head_dim: d,
    } = shape;
    if batch * heads == 0 || d == 0 || tq == 0 || tk == 0 {
        dq.iter_mut()
            .chain(dk.iter_mut())
            .chain(dv.iter_mut())
            .for_each(|x| *x = 0.0);
        return;
    }
    let (bq, bk) = (mask.tile_q(), mask.tile_k());
    let head = |bh: usize| HeadInputs {
        b: bh / heads,
        h: bh % heads,
        q: &q[bh * tq * d..(bh + 1) * tq * d],
        k: &k[bh * tk * d..(bh + 1) * tk * d],
        v: &v[bh * tk * d..(bh + 1) * tk * d],
        dout: &dout[bh * tq * d..(bh + 1) * tq * d],
        out: &out[bh * tq * d..(bh + 1) * tq * d],
        lse: &lse[bh * tq..(bh + 1) * tq],
    };
    let init = || BwdScratch {
        groups: Vec::new(),
        p: vec![0.0; bq * bk],
        dp: vec![0.0; bq * bk],
        drow: vec![0.0; tq],
        dq_written: vec![false; mask.n_q_tiles()],
    };
    backward_units(dq, dk, dv, mask, shape, init, |sc, u| {
        backward_keys(sc, mask, &head(u.bh), u.kts, u.dq, u.dk, u.dv, d, scale)
    });
}

/// One head's inputs to the backward.
struct HeadInputs<'a> {
    b: usize,
    h: usize,
    /// `[Tq, D]`
    q: &'a [f32],
    /// `[Tk, D]`
    k: &'a [f32],
    /// `[Tk, D]`
    v: &'a [f32],
    /// `[Tq, D]`
    dout: &'a [f32],
    /// `[Tq, D]`
    out: &'a [f32],
    /// `[Tq]`
    lse: &'a [f32],
}

/// The backward of one head over the key tiles `kts` (contiguous): OVERWRITES `dq` `[Tq, D]` with
/// this range's part of dQ, and `dk`, `dv` (the range's key rows only, `[rows, D]`).
///
/// None of them is zeroed first: a full tile's products into rows of dV, dK or dQ that nothing has
/// written yet overwrite them (`accumulate = false`, the same values as adding to zeros), a partial
/// tile zeroes such rows just before adding to them, and rows no live tile reaches are zeroed at the
/// end. (A zeroing pass over these outputs, usually not in cache, was 4% of this backward's samples
/// on a document mask, AMD Zen 5, and the first products' reads of C more.)
#[allow(clippy::too_many_arguments)]
fn backward_keys(
    sc: &mut BwdScratch,
    mask: &BlockMask,
    x: &HeadInputs<'_>,
    kts: std::ops::Range<usize>,
    dq: &mut [f32],
    dk: &mut [f32],
    dv: &mut [f32],
    d: usize,
    scale: f32,
) {
    let (bq, bk, words) = (mask.tile_q(), mask.tile_k(), mask.words_per_row());
    let (b, h, tq) = (x.b, x.h, x.lse.len());
    // Key rows of the range: [first, first + len).
    let first = kts.start * bk;
    let len = dk.len() / d;
    sc.dq_written.iter_mut().for_each(|w| *w = false);
    // D_i = dO_i · out_i (equals Σ_j P_ij dP_ij)
    for i in 0..tq {
        // The first reads of dO and out: usually from memory (see `crate::prefetch`).
        prefetch_row_ahead(x.dout, d, i, d);
        prefetch_row_ahead(x.out, d, i, d);
        prefetch_row_ahead(x.q, d, i, d);
        sc.drow[i] = dot(&x.dout[i * d..(i + 1) * d], &x.out[i * d..(i + 1) * d]);
    }
    let ldt = transposed_stride(len);
    with_scratch(2 * d * ldt, |kvt| {
        // Kᵀ and Vᵀ of the range, [D × len] each.
        let (kt_r, vt_r) = kvt.split_at_mut(d * ldt);
        transpose(kt_r, ldt, &x.k[first * d..(first + len) * d], len, d);
        transpose(vt_r, ldt, &x.v[first * d..(first + len) * d], len, d);
        let (kt_r, vt_r) = (&*kt_r, &*vt_r);
        for kt in kts {
            // k0: first key of the tile in the head, kl: in the range.
            let (k0, n) = (kt * bk, mask.tile_cols(kt));
            let kl = k0 - first;
            // Whether this key tile's rows of dK and dV have been written yet.
            let mut kv_written = false;
            for qt in 0..mask.n_q_tiles() {
                let kind = mask.kind(b, h, qt, kt);
                if kind == TileKind::Empty {
                    continue;
                }
                let (q0, m) = (qt * bq, mask.tile_rows(qt));
                let q_t = &x.q[q0 * d..(q0 + m) * d];
                let do_t = &x.dout[q0 * d..(q0 + m) * d];
                let bits = if kind == TileKind::Partial {
                    mask.tile_bits(b, h, qt, kt)
                } else {
                    None
                };
                row_groups(&mut sc.groups, bits, words, m, n);
                // A full tile is one group over all its rows and columns: its products may
                // overwrite rows not written yet. A partial tile's groups may leave some out, so
                // such rows are zeroed first.
                let whole = kind == TileKind::Full;
                if !kv_written && !whole {
                    zero_key_rows(dk, dv, kl, n, d);
                }
                if !sc.dq_written[qt] && !whole {
                    dq[q0 * d..(q0 + m) * d].iter_mut().for_each(|x| *x = 0.0);
                }
                let (kv_add, q_add) = (kv_written || !whole, sc.dq_written[qt] || !whole);
                kv_written = true;
                sc.dq_written[qt] = true;
                // P = exp(scale · Q_t · K_tᵀ − lse), 0 where masked   [m × n]
                for g in &sc.groups {
                    let (r, w) = (g.r1 - g.r0, g.c1 - g.c0);
                    tile_mm(
                        &mut sc.p[g.r0 * bk + g.c0..],
                        bk,
                        &q_t[g.r0 * d..],
                        d,
                        1,
                        &kt_r[kl + g.c0..],
                        ldt,
                        r,
                        d,
                        w,
                        false,
                        scale,
                    );
                }
                backward_probs(&mut sc.p, bk, m, n, bits, words, &x.lse[q0..q0 + m]);
                for g in &sc.groups {
                    let (r0, r, c0, w) = (g.r0, g.r1 - g.r0, g.c0, g.c1 - g.c0);
                    let (p_g, dp_g) = (&sc.p[r0 * bk + c0..], &mut sc.dp[r0 * bk + c0..]);
                    // dV_t += Pᵀ · dO_t   [n × d]
                    tile_mm(
                        &mut dv[(kl + c0) * d..],
                        d,
                        p_g,
                        1,
                        bk,
                        &do_t[r0 * d..],
                        d,
                        w,
                        r,
                        d,
                        kv_add,
                        1.0,
                    );
                    // dP = dO_t · V_tᵀ   [m × n]
                    tile_mm(
                        dp_g,
                        bk,
                        &do_t[r0 * d..],
                        d,
                        1,
                        &vt_r[kl + c0..],
                        ldt,
                        r,
                        d,
                        w,
                        false,
                        1.0,
                    );
                    // dS = P ∘ (dP − D)
                    softmax_grad(dp_g, p_g, bk, r, w, &sc.drow[q0 + r0..q0 + r0 + r]);
                    let dp_g = &sc.dp[r0 * bk + c0..];
                    // dQ_t += scale · dS · K_t   [m × d]
                    tile_mm(
                        &mut dq[(q0 + r0) * d..],
                        d,
                        dp_g,
                        bk,
                        1,
                        &x.k[(k0 + c0) * d..],
                        d,
                        r,
                        w,
                        d,
                        q_add,
                        scale,
                    );
                    // dK_t += scale · dSᵀ · Q_t   [n × d]
                    tile_mm(
                        &mut dk[(kl + c0) * d..],
                        d,
                        dp_g,
                        1,
                        bk,
                        &q_t[r0 * d..],
                        d,
                        w,
                        r,
                        d,
                        kv_add,
                        scale,
                    );
                }
            }
            if !kv_written {
                zero_key_rows(dk, dv, kl, n, d);
            }
        }
    });
    zero_unwritten_queries(dq, &sc.dq_written, mask, d);
}

/// Row stride of a transposed `[D × Tk]` head: padded so rows do not sit 4 KiB apart (which would make
/// the transpose's column writes and the tile reads collide in the same cache sets).
fn transposed_stride(tk: usize) -> usize {
    tk + 16
}

/// Query rows per group when a partial tile is cut into groups that each touch only their span of keys.
const GROUP_ROWS: usize = 16;

/// A block of tile rows `r0..r1` whose allowed keys all lie in tile columns `c0..c1`.
#[derive(Clone, Copy, Debug)]
struct Group {
    r0: usize,
    r1: usize,
    c0: usize,
    c1: usize,
}

/// Cuts an `m × n` tile into row groups with their key spans: one group for a full tile; for a partial
/// tile groups of [`GROUP_ROWS`] rows, each limited to the columns between its first and last allowed
/// key (groups with none are dropped). On a causal diagonal tile this skips ~3/8 of the products.
fn row_groups(groups: &mut Vec<Group>, bits: Option<&[u64]>, words: usize, m: usize, n: usize) {
    groups.clear();
    let Some(bits) = bits else {
        groups.push(Group {
            r0: 0,
            r1: m,
            c0: 0,
            c1: n,
        });
        return;
    };
    for r0 in (0..m).step_by(GROUP_ROWS) {
        let r1 = (r0 + GROUP_ROWS).min(m);
        let (mut c0, mut c1) = (usize::MAX, 0);
        for r in r0..r1 {
            let row = &bits[r * words..(r + 1) * words];
            if let Some(w) = row.iter().position(|&x| x != 0) {
                c0 = c0.min(w * 64 + row[w].trailing_zeros() as usize);
            }
            if let Some(w) = row.iter().rposition(|&x| x != 0) {
                c1 = c1.max(w * 64 + 64 - row[w].leading_zeros() as usize);
            }
        }
        if c0 < c1 {
            groups.push(Group {
                r0,
                r1,
                c0,
                c1: c1.min(n),
            });
        }
    }
}
