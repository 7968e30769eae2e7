//! f32 CPU kernels for remask.
//!
//! Shape legend used across this crate (llm.c style):
//! B = batch, T = time (sequence length), C = channels (d_model), OC = output channels,
//! V = vocabulary, H = heads, D = head dimension, N = rows (usually B*T).
//!
//! Conventions:
//! - Kernels are plain functions over slices: outputs first, inputs next, sizes last.
//! - Gradients are prefixed `d` and are *accumulated* (`+=`) unless a doc comment says otherwise.
//! - Kernels never allocate in their hot loops, never log and never do IO.
//! - Every fast kernel has a plain `_reference` twin beside it and a test against it; the reference
//!   twins are checked against finite differences in f64.

pub mod adamw;
pub mod attention;
pub mod bf16;
pub mod block_mask;
pub mod clip;
pub mod cpu;
pub mod cross_entropy;
pub mod dropout;
pub mod embedding;
pub mod gelu;
pub mod gemm_bf16;
pub mod layernorm;
pub mod matmul;
pub mod matmul_bf16;
mod prefetch;
pub mod rng;
mod simd;
pub mod softmax;
mod strided_gemm;
#[cfg(test)]
mod testing;
