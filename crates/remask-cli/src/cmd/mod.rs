//! One module per CLI command.

pub mod bench;
pub mod bench_masking;
pub mod inspect;
pub mod inspect_masking;
pub mod prepare;
