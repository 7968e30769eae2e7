//! The fused attention kernel in mixed precision: the same tiling, online softmax, recomputation and
//! task split (the backward's through [`super::schedule`]) as [`super::fused`], with every tile
//! product on bf16 operands accumulating in f32 (the kernels of [`crate::gemm_bf16`]: AMX where
//! present, else `vdpbf16ps`). Softmax, the log-sum-exp, the row terms D_i and all accumulators
//! (O, dQ, dK, dV) stay f32.
//!
//! Operands are packed once per head (or per key range of a backward unit) into the bf16 GEMM
//! layouts: Q and dO as left factors (rows), Kᵀ and Vᵀ as right factors (pairs along D), and K, V,
//! Q, dO as right factors with pairs along positions (for P·V, dS·K, dSᵀ·Q and Pᵀ·dO). The
//! per-tile factors P, Pᵀ, dS, dSᵀ are rounded to bf16 as they are packed; `scale` is applied to
//! the score products in f32 (alpha) and folded into dS before it is rounded.
//!
//! Partial tiles are computed whole (no row groups): masked entries are exactly 0 in P and dS, so
//! they add nothing, and whole-tile products suit the 32 × 32 AMX blocks.

use rayon::prelude::*;

use super::schedule::{backward_units, zero_key_rows, zero_unwritten_queries};
use super::scratch::with_bf16_scratch;
use super::simd::{dot, softmax_grad};
use super::tile_softmax::{backward_probs, forward_step};
use super::AttnShape;
use crate::bf16::{Bf16, Bf16Buf};
use crate::block_mask::{BlockMask, TileKind};
use crate::cpu::Bf16Kernel;
use crate::gemm_bf16::pack::{self, Split};
use crate::gemm_bf16::{
    kernel_product, lhs_len, lhs_stride, rhs_len, rhs_panel_len, LhsView, Product, RhsView, Start,
    BLOCK, K_STEP, PANEL,
};
use crate::prefetch::prefetch_row_ahead;
use crate::strided_gemm::MatRef;

fn round_up(x: usize, to: usize) -> usize {
    x.div_ceil(to) * to
}

/// A packed left factor: its buffer and row stride.
#[derive(Clone, Copy)]
struct Lhs<'a> {
    data: &'a [Bf16],
    ld: usize,
}

impl<'a> Lhs<'a> {
    /// The factor from row `r` on.
    fn rows_from(self, r: usize) -> LhsView<'a> {
        LhsView {
            data: &self.data[r * self.ld..],
            ld: self.ld,
        }
    }
}

/// A packed right factor: its buffer and panel length.
#[derive(Clone, Copy)]
struct Rhs<'a> {
    data: &'a [Bf16],
    panel_len: usize,
}

impl<'a> Rhs<'a> {
    /// The factor from K value `p` (even) on: every panel starts at pair-row p / 2.
    fn depth_from(self, p: usize) -> RhsView<'a> {
        debug_assert_eq!(p % 2, 0);
        RhsView {
            data: &self.data[p * PANEL..],
            panel_len: self.panel_len,
        }
    }
}

/// Right factors with pairs along D (Kᵀ, Vᵀ) packed per key tile, so that every tile starts on a
/// panel whatever the tile size: tile i occupies `tile_len` values from `i · tile_len`.
#[derive(Clone, Copy)]
struct TileRhs<'a> {
    data: &'a [Bf16],
    panel_len: usize,
    tile_len: usize,
}

impl<'a> TileRhs<'a> {
    /// Length of the pack of `rows` keys in tiles of `bk`.
    fn len(rows: usize, bk: usize, panel_len: usize) -> usize {
        rows.div_ceil(bk) * Self::tile_len(bk, panel_len)
    }

    fn tile_len(bk: usize, panel_len: usize) -> usize {
        round_up(bk, BLOCK) / PANEL * panel_len
    }

    /// Packs `src` (`[rows × d]` row-major: keys or values) transposed, tile by tile.
    fn pack(
        dst: &'a mut [Bf16],
        src: &[f32],
        rows: usize,
        d: usize,
        bk: usize,
        panel_len: usize,
    ) -> Self {
        let tile_len = Self::tile_len(bk, panel_len);
        for (i, k0) in (0..rows).step_by(bk).enumerate() {
            let n = bk.min(rows - k0);
            pack::rhs(
                &mut dst[i * tile_len..(i + 1) * tile_len],
                panel_len,
                MatRef::transposed(&src[k0 * d..rows * d], d),
                d,
                n,
                Split::Caller,
            );
        }
        TileRhs {
            data: dst,
            panel_len,
            tile_len,
        }
    }

    /// Tile `i`'s factor.
    fn tile(self, i: usize) -> RhsView<'a> {
        RhsView {
            data: &self.data[i * self.tile_len..],
            panel_len: self.panel_len,
        }
    }
}

/// Sizes of the packs of one head.
struct Layouts {
    /// A pack of `rows × d` (Q, dO): row stride.
    ld_rows: usize,
    /// B pack with pairs along d (Kᵀ, Vᵀ): panel length.
    pl_d: usize,
}

impl Layouts {
    fn new(d: usize) -> Self {
        Layouts {
            ld_rows: lhs_stride(d),
            pl_d: rhs_panel_len(d),
        }
    }
}

/// `f(buffers)` on `lens.len()` bf16 scratch buffers of the given lengths (one thread-local block).
fn with_packs<R>(lens: &[usize], f: impl FnOnce(&mut [&mut [Bf16]]) -> R) -> R {
    let total: usize = lens.iter().sum();
    with_bf16_scratch(total, |buf| {
        let mut parts: Vec<&mut [Bf16]> = Vec::with_capacity(lens.len());
        let mut rest = buf;
        for &l in lens {
            let (a, b) = rest.split_at_mut(l);
            parts.push(a);
            rest = b;
        }
        f(&mut parts)
    })
}

struct FwdScratch {
    s: Vec<f32>,
    mrow: Vec<f32>,
    lrow: Vec<f32>,
    /// P as a left factor.
    p: Bf16Buf,
}

/// q `[B,H,Tq,D]`, k, v `[B,H,Tk,D]` → out `[B,H,Tq,D]`, lse `[B,H,Tq]` (overwritten).
#[allow(clippy::too_many_arguments)]
pub(super) fn forward(
    kernel: Bf16Kernel,
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
    let lay = Layouts::new(d);
    // Packs along positions are padded by one step, so a tile's product may read whole blocks of
    // rows or pair-rows past its last position (they are zero).
    let pl_keys = rhs_panel_len(tk + K_STEP);
    let q_len = lhs_len(tq + BLOCK, lay.ld_rows);
    let kt_len = TileRhs::len(tk, bk, lay.pl_d);
    let v_len = rhs_len(d, pl_keys);
    let ld_p = lhs_stride(bk);
    let kpad_d = round_up(d, K_STEP);
    out.par_chunks_mut(tq * d)
        .zip(lse.par_chunks_mut(tq))
        .enumerate()
        .for_each(|(bh, (out_bh, lse_bh))| {
            let (b, h) = (bh / heads, bh % heads);
            let q_bh = &q[bh * tq * d..(bh + 1) * tq * d];
            let (k_bh, v_bh) = (
                &k[bh * tk * d..(bh + 1) * tk * d],
                &v[bh * tk * d..(bh + 1) * tk * d],
            );
            with_packs(&[q_len, kt_len, v_len], |packs| {
                // Q rows (left factor), Kᵀ (pairs along D, per key tile), V (pairs along keys).
                let [q_pack, kt_pack, v_pack] = packs else {
                    unreachable!("three packs asked for")
                };
                pack::lhs(
                    q_pack,
                    lay.ld_rows,
                    MatRef::rows(q_bh, d),
                    tq,
                    d,
                    1.0,
                    Split::Caller,
                );
                let kt_b = TileRhs::pack(kt_pack, k_bh, tk, d, bk, lay.pl_d);
                pack::rhs(v_pack, pl_keys, MatRef::rows(v_bh, d), tk, d, Split::Caller);
                let q_a = Lhs {
                    data: q_pack,
                    ld: lay.ld_rows,
                };
                let v_b = Rhs {
                    data: v_pack,
                    panel_len: pl_keys,
                };
                out_bh
                    .par_chunks_mut(bq * d)
                    .zip(lse_bh.par_chunks_mut(bq))
                    .enumerate()
                    .for_each_init(
                        || FwdScratch {
                            s: vec![0.0; bq * bk],
                            mrow: vec![0.0; bq],
                            lrow: vec![0.0; bq],
                            p: Bf16Buf::zeroed(lhs_len(bq, ld_p)),
                        },
                        |sc, (qt, (o, l))| {
                            let m = l.len();
                            let q0 = qt * bq;
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
                                // pass 1: S = scale · Q_t · K_tᵀ   [m × n]
                                let sp = Product {
                                    a: q_a.rows_from(q0),
                                    b: kt_b.tile(kt),
                                    m,
                                    n,
                                    kpad: kpad_d,
                                    alpha: scale,
                                    start: Start::Zero,
                                };
                                kernel_product(kernel, &mut sc.s, bk, &sp);
                                // pass 2: mask, online softmax; S becomes exp(S − m_new), O's rows rescaled
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
                                pack::lhs(
                                    sc.p.as_mut_slice(),
                                    ld_p,
                                    MatRef::rows(&sc.s, bk),
                                    m,
                                    n,
                                    1.0,
                                    Split::Caller,
                                );
                                let op = Product {
                                    a: Lhs {
                                        data: sc.p.as_slice(),
                                        ld: ld_p,
                                    }
                                    .rows_from(0),
                                    b: v_b.depth_from(k0),
                                    m,
                                    n: d,
                                    kpad: round_up(n, K_STEP),
                                    alpha: 1.0,
                                    start: Start::C,
                                };
                                kernel_product(kernel, o, d, &op);
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
    p: Vec<f32>,
    dp: Vec<f32>,
    drow: Vec<f32>,
    /// Pᵀ, scale·dS and scale·dSᵀ as left factors.
    pt: Bf16Buf,
    ds: Bf16Buf,
    dst: Bf16Buf,
    /// Query tiles whose rows of dQ this unit has written (see `backward_keys`).
    dq_written: Vec<bool>,
}

/// One head's inputs to the backward.
struct HeadInputs<'a> {
    b: usize,
    h: usize,
    q: &'a [f32],
    k: &'a [f32],
    v: &'a [f32],
    dout: &'a [f32],
    out: &'a [f32],
    lse: &'a [f32],
}

/// Backward; dq `[B,H,Tq,D]`, dk, dv `[B,H,Tk,D]` are overwritten. Units as in [`super::fused`]:
/// (b, h) pairs, cut further into contiguous key-tile ranges of about equal cost when there are fewer
/// than two pairs per thread (their dQ parts summed at the end), largest first.
#[allow(clippy::too_many_arguments)]
pub(super) fn backward(
    kernel: Bf16Kernel,
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
    let (ld_q, ld_k) = (lhs_stride(bq), lhs_stride(bk));
    let init = || BwdScratch {
        p: vec![0.0; bq * bk],
        dp: vec![0.0; bq * bk],
        drow: vec![0.0; tq],
        pt: Bf16Buf::zeroed(lhs_len(bk, ld_q)),
        ds: Bf16Buf::zeroed(lhs_len(bq, ld_k)),
        dst: Bf16Buf::zeroed(lhs_len(bk, ld_q)),
        dq_written: vec![false; mask.n_q_tiles()],
    };
    let ctx = Ctx {
        kernel,
        mask,
        d,
        scale,
    };
    backward_units(dq, dk, dv, mask, shape, init, |sc, u| {
        ctx.backward_keys(sc, &head(u.bh), u.kts, u.dq, u.dk, u.dv)
    });
}

/// What every backward unit shares.
struct Ctx<'a> {
    kernel: Bf16Kernel,
    mask: &'a BlockMask,
    d: usize,
    scale: f32,
}

impl Ctx<'_> {
    /// The backward of one head over the key tiles `kts` (contiguous): OVERWRITES `dq` `[Tq, D]` with
    /// this range's part of dQ, and `dk`, `dv` (the range's key rows only, `[rows, D]`).
    ///
    /// None of them is zeroed first: the first product into a tile of dV, dK or dQ starts from zero
    /// (`Start::Zero`, the same sums as adding to zeros), later ones add to it, and the tiles no live
    /// tile reaches are zeroed at the end. A zeroing pass over these outputs, usually not in cache,
    /// was 7% of this backward's samples on a document mask (AMD Zen 5).
    fn backward_keys(
        &self,
        sc: &mut BwdScratch,
        x: &HeadInputs<'_>,
        kts: std::ops::Range<usize>,
        dq: &mut [f32],
        dk: &mut [f32],
        dv: &mut [f32],
    ) {
        let (mask, d, scale, kernel) = (self.mask, self.d, self.scale, self.kernel);
        let (bq, bk, words) = (mask.tile_q(), mask.tile_k(), mask.words_per_row());
        let (b, h, tq) = (x.b, x.h, x.lse.len());
        let first = kts.start * bk;
        let len = dk.len() / d;
        sc.dq_written.iter_mut().for_each(|w| *w = false);
        // D_i = dO_i · out_i (equals Σ_j P_ij dP_ij)
        for i in 0..tq {
            // The first reads of dO and out: usually from memory (see `crate::prefetch`).
            prefetch_row_ahead(x.dout, d, i, d);
            prefetch_row_ahead(x.out, d, i, d);
            sc.drow[i] = dot(&x.dout[i * d..(i + 1) * d], &x.out[i * d..(i + 1) * d]);
        }
        let lay = Layouts::new(d);
        // Packs along positions are padded by one step (see `forward`).
        let (pl_q, pl_len) = (rhs_panel_len(tq + K_STEP), rhs_panel_len(len + K_STEP));
        let rows_len = lhs_len(tq + BLOCK, lay.ld_rows);
        let lens = [
            rows_len,                        // Q rows
            rows_len,                        // dO rows
            rhs_len(d, pl_q),                // Q, pairs along queries
            rhs_len(d, pl_q),                // dO, pairs along queries
            TileRhs::len(len, bk, lay.pl_d), // Kᵀ of the range, per tile
            TileRhs::len(len, bk, lay.pl_d), // Vᵀ of the range, per tile
            rhs_len(d, pl_len),              // K of the range, pairs along keys
        ];
        let (kr, vr) = (
            &x.k[first * d..(first + len) * d],
            &x.v[first * d..(first + len) * d],
        );
        with_packs(&lens, |packs| {
            let [q_pack, do_pack, q_rhs, do_rhs, kt_pack, vt_pack, k_rhs] = packs else {
                unreachable!("seven packs asked for")
            };
            pack::lhs(
                q_pack,
                lay.ld_rows,
                MatRef::rows(x.q, d),
                tq,
                d,
                1.0,
                Split::Caller,
            );
            pack::lhs(
                do_pack,
                lay.ld_rows,
                MatRef::rows(x.dout, d),
                tq,
                d,
                1.0,
                Split::Caller,
            );
            pack::rhs(q_rhs, pl_q, MatRef::rows(x.q, d), tq, d, Split::Caller);
            pack::rhs(do_rhs, pl_q, MatRef::rows(x.dout, d), tq, d, Split::Caller);
            let kt_b = TileRhs::pack(kt_pack, kr, len, d, bk, lay.pl_d);
            let vt_b = TileRhs::pack(vt_pack, vr, len, d, bk, lay.pl_d);
            pack::rhs(k_rhs, pl_len, MatRef::rows(kr, d), len, d, Split::Caller);
            let q_a = Lhs {
                data: q_pack,
                ld: lay.ld_rows,
            };
            let do_a = Lhs {
                data: do_pack,
                ld: lay.ld_rows,
            };
            let q_b = Rhs {
                data: q_rhs,
                panel_len: pl_q,
            };
            let do_b = Rhs {
                data: do_rhs,
                panel_len: pl_q,
            };
            let k_b = Rhs {
                data: k_rhs,
                panel_len: pl_len,
            };
            let kpad_d = round_up(d, K_STEP);
            let (ld_q, ld_k) = (lhs_stride(bq), lhs_stride(bk));
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
                    let bits = if kind == TileKind::Partial {
                        mask.tile_bits(b, h, qt, kt)
                    } else {
                        None
                    };
                    // P = exp(scale · Q_t · K_tᵀ − lse), 0 where masked   [m × n]
                    let sp = Product {
                        a: q_a.rows_from(q0),
                        b: kt_b.tile(kt - first / bk),
                        m,
                        n,
                        kpad: kpad_d,
                        alpha: scale,
                        start: Start::Zero,
                    };
                    kernel_product(kernel, &mut sc.p, bk, &sp);
                    backward_probs(&mut sc.p, bk, m, n, bits, words, &x.lse[q0..q0 + m]);
                    // dV_t += Pᵀ · dO_t   [n × d]
                    pack::lhs(
                        sc.pt.as_mut_slice(),
                        ld_q,
                        MatRef::transposed(&sc.p, bk),
                        n,
                        m,
                        1.0,
                        Split::Caller,
                    );
                    let vp = Product {
                        a: Lhs {
                            data: sc.pt.as_slice(),
                            ld: ld_q,
                        }
                        .rows_from(0),
                        b: do_b.depth_from(q0),
                        m: n,
                        n: d,
                        kpad: round_up(m, K_STEP),
                        alpha: 1.0,
                        start: if kv_written { Start::C } else { Start::Zero },
                    };
                    kernel_product(kernel, &mut dv[kl * d..], d, &vp);
                    // dP = dO_t · V_tᵀ   [m × n]
                    let dpp = Product {
                        a: do_a.rows_from(q0),
                        b: vt_b.tile(kt - first / bk),
                        m,
                        n,
                        kpad: kpad_d,
                        alpha: 1.0,
                        start: Start::Zero,
                    };
                    kernel_product(kernel, &mut sc.dp, bk, &dpp);
                    // dS = P ∘ (dP − D)
                    softmax_grad(&mut sc.dp, &sc.p, bk, m, n, &sc.drow[q0..q0 + m]);
                    // scale · dS, rounded to bf16, as left factor and transposed
                    pack::lhs(
                        sc.ds.as_mut_slice(),
                        ld_k,
                        MatRef::rows(&sc.dp, bk),
                        m,
                        n,
                        scale,
                        Split::Caller,
                    );
                    pack::lhs(
                        sc.dst.as_mut_slice(),
                        ld_q,
                        MatRef::transposed(&sc.dp, bk),
                        n,
                        m,
                        scale,
                        Split::Caller,
                    );
                    // dQ_t += scale · dS · K_t   [m × d]
                    let qp = Product {
                        a: Lhs {
                            data: sc.ds.as_slice(),
                            ld: ld_k,
                        }
                        .rows_from(0),
                        b: k_b.depth_from(kl),
                        m,
                        n: d,
                        kpad: round_up(n, K_STEP),
                        alpha: 1.0,
                        start: if sc.dq_written[qt] {
                            Start::C
                        } else {
                            Start::Zero
                        },
                    };
                    kernel_product(kernel, &mut dq[q0 * d..], d, &qp);
                    // dK_t += scale · dSᵀ · Q_t   [n × d]
                    let kp = Product {
                        a: Lhs {
                            data: sc.dst.as_slice(),
                            ld: ld_q,
                        }
                        .rows_from(0),
                        b: q_b.depth_from(q0),
                        m: n,
                        n: d,
                        kpad: round_up(m, K_STEP),
                        alpha: 1.0,
                        start: if kv_written { Start::C } else { Start::Zero },
                    };
                    kernel_product(kernel, &mut dk[kl * d..], d, &kp);
                    kv_written = true;
                    sc.dq_written[qt] = true;
                }
                if !kv_written {
                    zero_key_rows(dk, dv, kl, n, d);
                }
            }
        });
        zero_unwritten_queries(dq, &sc.dq_written, mask, d);
    }
}
