//! One module per CLI command.

pub mod bench;
pub mod bench_attention;
pub mod bench_train;
pub mod dist_check;
pub mod inspect;
pub mod inspect_attention;
pub mod eval;
pub mod train;
