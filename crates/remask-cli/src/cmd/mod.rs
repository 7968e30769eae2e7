pub mod eval;
pub mod train;
