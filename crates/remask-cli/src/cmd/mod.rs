//! One module per CLI command.

pub mod bench;
pub mod bench_kernels;
