//! The linear layer in mixed precision: bf16 operands, f32 accumulation and f32 results.
//!
//! Shapes as in [`crate::matmul`]: N = rows, C = input channels, OC = output channels, W `[OC, C]`.
//!
//! - forward `out[N,OC] = inp · Wᵀ + bias`: A = inp (packed per call), B = Wᵀ (packed once per
//!   optimizer step into [`PackedWeight`]).
//! - backward `dinp[N,C] += dout · W` (A = dout per call, B = W from [`PackedWeight`]),
//!   `dW[OC,C] += doutᵀ · inp` (both packed per call; dW accumulates in f32), `dbias += Σ dout` (f32).
//!
//! The per-call packs reuse a buffer per thread, so a training step allocates nothing once the
//! largest shape has been seen.

#![allow(clippy::too_many_arguments)] // Kernel signatures follow llm.c: buffers first, sizes last.

use std::cell::Cell;

use crate::gemm_bf16::{gemm_bf16, gemm_bf16_reference, PackedLhs, PackedRhs, Start};
use crate::matmul::bias_backward;

/// A weight `W[OC, C]` cast to bf16 and packed both ways the linear layer reads it. Pack it once
/// after every update of W (once per optimizer step), not per use.
#[derive(Clone, Debug, Default)]
pub struct PackedWeight {
    /// Wᵀ `[C × OC]`: the forward's right factor.
    fwd: PackedRhs,
    /// W `[OC × C]`: the input gradient's right factor.
    bwd: PackedRhs,
}

impl PackedWeight {
    pub fn new() -> Self {
        Self::default()
    }

    /// Packs `w[OC, C]` (row-major), replacing what was there.
    pub fn pack(&mut self, w: &[f32], c: usize, oc: usize) {
        assert!(w.len() >= oc * c, "PackedWeight::pack: w must be [OC, C]");
        self.fwd.pack(w, c, true, c, oc);
        self.bwd.pack(w, c, false, oc, c);
    }

    /// (C, OC) of the packed weight.
    pub fn shape(&self) -> (usize, usize) {
        (self.fwd.depth(), self.fwd.cols())
    }
}

thread_local! {
    static PACKS: Cell<Option<Box<(PackedLhs, PackedRhs)>>> = const { Cell::new(None) };
}

/// Runs `f` on this thread's reusable activation packs (a nested call gets fresh ones).
fn with_packs<R>(f: impl FnOnce(&mut PackedLhs, &mut PackedRhs) -> R) -> R {
    let mut packs = PACKS.with(Cell::take).unwrap_or_default();
    let r = f(&mut packs.0, &mut packs.1);
    PACKS.with(|p| p.set(Some(packs)));
    r
}

/// out[N,OC] = bias[OC] + bf16(inp[N,C]) · bf16(W)ᵀ, accumulated in f32 from the bias (no
/// separate pass over out). Overwrites out.
pub fn matmul_forward_bf16(
    out: &mut [f32],
    inp: &[f32],
    w: &PackedWeight,
    bias: Option<&[f32]>,
    n: usize,
    c: usize,
    oc: usize,
) {
    assert!(
        out.len() >= n * oc && inp.len() >= n * c,
        "matmul_forward_bf16: buffers too small"
    );
    assert_eq!(
        w.shape(),
        (c, oc),
        "matmul_forward_bf16: packed weight is not [OC, C]"
    );
    if n == 0 || oc == 0 {
        return;
    }
    let out = &mut out[..n * oc];
    let start = bias.map_or(Start::Zero, |b| Start::Bias(&b[..oc]));
    with_packs(|a, _| {
        a.pack(inp, c, false, n, c);
        gemm_bf16(out, oc, a, &w.fwd, 1.0, start);
    });
}

/// Reference twin of [`matmul_forward_bf16`] (on the f32 weight): the bf16 GEMM twin plus bias.
pub fn matmul_forward_bf16_reference(
    out: &mut [f32],
    inp: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
    n: usize,
    c: usize,
    oc: usize,
) {
    assert!(out.len() >= n * oc && inp.len() >= n * c && weight.len() >= oc * c);
    let start = bias.map_or(Start::Zero, |b| Start::Bias(&b[..oc]));
    gemm_bf16_reference(out, oc, inp, c, 1, weight, 1, c, n, c, oc, 1.0, start);
}

/// dinp[N,C] (+)= bf16(dout)·bf16(W); dweight[OC,C] += bf16(dout)ᵀ·bf16(inp); dbias[OC] += Σ_rows
/// dout (f32). `inp` is the forward's input. `dinp_start` is [`Start::C`] to add into dinp (llm.c's
/// convention) or [`Start::Zero`] to overwrite it (no pass to zero it first, nothing read).
pub fn matmul_backward_bf16(
    dinp: Option<&mut [f32]>,
    dinp_start: Start<'_>,
    dweight: &mut [f32],
    dbias: Option<&mut [f32]>,
    dout: &[f32],
    inp: &[f32],
    w: &PackedWeight,
    n: usize,
    c: usize,
    oc: usize,
) {
    assert!(
        dout.len() >= n * oc && inp.len() >= n * c && dweight.len() >= oc * c,
        "matmul_backward_bf16: buffers too small"
    );
    assert_eq!(
        w.shape(),
        (c, oc),
        "matmul_backward_bf16: packed weight is not [OC, C]"
    );
    assert!(
        matches!(dinp_start, Start::C | Start::Zero),
        "matmul_backward_bf16: dinp starts from itself or from 0"
    );
    if n == 0 {
        return;
    }
    with_packs(|a, b| {
        // Forward: out = inp · Wᵀ + bias.
        // dinp[N,C] (+)= dout[N,OC] · W[OC,C].
        if let Some(dinp) = dinp {
            assert!(dinp.len() >= n * c, "matmul_backward_bf16: dinp too small");
            a.pack(dout, oc, false, n, oc);
            gemm_bf16(&mut dinp[..n * c], c, a, &w.bwd, 1.0, dinp_start);
        }
        // dW[OC,C] += doutᵀ[OC,N] · inp[N,C].
        a.pack(dout, oc, true, oc, n);
        b.pack(inp, c, false, n, c);
        gemm_bf16(&mut dweight[..oc * c], c, a, b, 1.0, Start::C);
    });
    if let Some(dbias) = dbias {
        bias_backward(dbias, dout, n, oc);
    }
}

/// Reference twin of [`matmul_backward_bf16`] (on the f32 weight).
pub fn matmul_backward_bf16_reference(
    dinp: Option<&mut [f32]>,
    dweight: &mut [f32],
    dbias: Option<&mut [f32]>,
    dout: &[f32],
    inp: &[f32],
    weight: &[f32],
    n: usize,
    c: usize,
    oc: usize,
) {
    assert!(
        dout.len() >= n * oc
            && inp.len() >= n * c
            && weight.len() >= oc * c
            && dweight.len() >= oc * c
    );
    if let Some(dinp) = dinp {
        gemm_bf16_reference(dinp, c, dout, oc, 1, weight, c, 1, n, oc, c, 1.0, Start::C);
    }
    gemm_bf16_reference(dweight, c, dout, 1, oc, inp, c, 1, oc, n, c, 1.0, Start::C);
    if let Some(dbias) = dbias {
        for i in 0..n {
            for o in 0..oc {
                dbias[o] += dout[i * oc + o];
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{assert_close, rand_vec};

    /// Fast (AMX or AVX-512, whichever this CPU runs) against the twin on the model's kinds of
    /// shapes; tolerances: any f32 summation order of K products differs by at most about
    /// K·2⁻²⁴·Σ|a·b| (Σ|a·b| ≤ K·|a|max·|b|max here).
    #[test]
    fn fast_matches_reference() {
        if crate::cpu::bf16_kernel().is_none() {
            return;
        }
        for &(n, c, oc) in &[(1, 1, 1), (37, 19, 23), (100, 64, 192), (300, 256, 40)] {
            let inp = rand_vec(n * c, 1, 1.0);
            let weight = rand_vec(oc * c, 2, 0.5);
            let bias = rand_vec(oc, 3, 1.0);
            let mut w = PackedWeight::new();
            w.pack(&weight, c, oc);
            let (mut out, mut out_r) = (vec![f32::NAN; n * oc], vec![0.0; n * oc]);
            matmul_forward_bf16(&mut out, &inp, &w, Some(&bias), n, c, oc);
            matmul_forward_bf16_reference(&mut out_r, &inp, &weight, Some(&bias), n, c, oc);
            let k_tol = |k: usize| 4e-7 * (k * k) as f32 * 0.5 + 1e-6;
            assert_close(
                &out,
                &out_r,
                k_tol(c),
                0.0,
                &format!("forward {n}x{c}x{oc}"),
            );

            let dout = rand_vec(n * oc, 4, 1.0);
            let (dinp0, dw0, db0) = (
                rand_vec(n * c, 5, 1.0),
                rand_vec(oc * c, 6, 1.0),
                rand_vec(oc, 7, 1.0),
            );
            let (mut dinp, mut dw, mut db) = (dinp0.clone(), dw0.clone(), db0.clone());
            let (mut dinp_r, mut dw_r, mut db_r) = (dinp0.clone(), dw0.clone(), db0.clone());
            matmul_backward_bf16(
                Some(&mut dinp),
                Start::C,
                &mut dw,
                Some(&mut db),
                &dout,
                &inp,
                &w,
                n,
                c,
                oc,
            );
            // Overwriting dinp equals adding into zeros.
            let mut dinp_set = vec![f32::NAN; n * c];
            let (mut dw2, mut db2) = (dw0.clone(), db0.clone());
            matmul_backward_bf16(
                Some(&mut dinp_set),
                Start::Zero,
                &mut dw2,
                Some(&mut db2),
                &dout,
                &inp,
                &w,
                n,
                c,
                oc,
            );
            let mut dinp_zero = vec![0.0; n * c];
            let (mut dw3, mut db3) = (dw0.clone(), db0.clone());
            matmul_backward_bf16(
                Some(&mut dinp_zero),
                Start::C,
                &mut dw3,
                Some(&mut db3),
                &dout,
                &inp,
                &w,
                n,
                c,
                oc,
            );
            assert_eq!(dinp_set, dinp_zero, "dinp overwritten {n}x{c}x{oc}");
            matmul_backward_bf16_reference(
                Some(&mut dinp_r),
                &mut dw_r,
                Some(&mut db_r),
                &dout,
                &inp,
                &weight,
                n,
                c,
                oc,
            );
            assert_close(&dinp, &dinp_r, k_tol(oc) + 1e-6, 0.0, "dinp");
            assert_close(&dw, &dw_r, 2.0 * k_tol(n) + 1e-6, 0.0, "dweight");
            assert_close(&db, &db_r, 1e-5 * n as f32, 0.0, "dbias");
        }
    }

    /// bf16 changes a product by bf16's rounding of the operands (at most 2⁻⁸ relative each), not more.
    #[test]
    fn reference_is_within_bf16_rounding_of_f32() {
        let (n, c, oc) = (8, 64, 16);
        let inp = rand_vec(n * c, 11, 1.0);
        let weight = rand_vec(oc * c, 12, 1.0);
        let (mut out, mut out32) = (vec![0.0; n * oc], vec![0.0; n * oc]);
        matmul_forward_bf16_reference(&mut out, &inp, &weight, None, n, c, oc);
        crate::matmul::matmul_forward_reference(&mut out32, &inp, &weight, None, n, c, oc);
        let mut differs = false;
        for i in 0..n {
            for o in 0..oc {
                let scale: f32 = (0..c)
                    .map(|k| (inp[i * c + k] * weight[o * c + k]).abs())
                    .sum();
                let d = (out[i * oc + o] - out32[i * oc + o]).abs();
                assert!(d <= scale * 2.0 / 256.0, "({i},{o}) {d} vs {scale}");
                differs |= d > 0.0;
            }
        }
        assert!(differs, "bf16 rounding must show somewhere");
    }
}
