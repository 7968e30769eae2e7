//! The plain twin of the bf16 GEMM: f32 inputs rounded to bf16 one by one, products summed in f32
//! in the order the module doc of [`super`] fixes (the order `vdpbf16ps` uses).

use super::{Start, K_CHUNK};
use crate::bf16::round_bf16;

/// `c[M×N]` (row stride `ldc`) `= start + alpha·bf16(A)·bf16(B)`, where
/// `A[i,p] = a[i·a_rs + p·a_cs]` and `B[p,j] = b[p·b_rs + j·b_cs]` are f32.
#[allow(clippy::too_many_arguments)] // llm.c-style kernel signature: buffers first, sizes last.
pub fn gemm_bf16_reference(
    c: &mut [f32],
    ldc: usize,
    a: &[f32],
    a_rs: usize,
    a_cs: usize,
    b: &[f32],
    b_rs: usize,
    b_cs: usize,
    m: usize,
    k: usize,
    n: usize,
    alpha: f32,
    start: Start<'_>,
) {
    let a_at = |i: usize, p: usize| {
        if p < k {
            round_bf16(a[i * a_rs + p * a_cs])
        } else {
            0.0
        }
    };
    let b_at = |p: usize, j: usize| {
        if p < k {
            round_bf16(b[p * b_rs + j * b_cs])
        } else {
            0.0
        }
    };
    let pairs = |acc: &mut f32, i: usize, j: usize, p0: usize, p1: usize| {
        for p in (p0..p1).step_by(2) {
            *acc += a_at(i, p + 1) * b_at(p + 1, j);
            *acc += a_at(i, p) * b_at(p, j);
        }
    };
    for i in 0..m {
        for j in 0..n {
            let cij = &mut c[i * ldc + j];
            if alpha == 1.0 {
                let mut acc = match start {
                    Start::Zero => 0.0,
                    Start::C => *cij,
                    Start::Bias(bias) => bias[j],
                };
                pairs(&mut acc, i, j, 0, k);
                *cij = acc;
            } else {
                for (chunk, p0) in (0..k.max(1)).step_by(K_CHUNK).enumerate() {
                    let mut s = 0.0f32;
                    pairs(&mut s, i, j, p0, (p0 + K_CHUNK).min(k));
                    *cij = match start {
                        _ if chunk > 0 => *cij + alpha * s,
                        Start::C => *cij + alpha * s,
                        Start::Zero => alpha * s,
                        Start::Bias(_) => {
                            panic!("gemm_bf16_reference: a bias start needs alpha = 1")
                        }
                    };
                }
            }
        }
    }
}
