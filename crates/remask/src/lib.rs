//! remask: train Transformers with the mask as a first-class, swappable part.
//!
//! Two different things are both called "mask"; their names stay apart everywhere:
//! - **masking** ([`masking`]): which input tokens are hidden and must be predicted (MLM corruption);
//! - **attention mask** ([`attention`]): which key positions each query position may read.
//!
//! See ARCHITECTURE.md at the repository root for the data flow and the code map.

pub mod atomic_write;
pub mod attention;
pub mod audit;
pub mod batch;
pub mod data;
pub mod dir_lock;
pub mod dist;
pub mod error;
pub mod eval;
pub mod experiment;
pub mod fault;
#[cfg(any(test, feature = "testing"))]
pub mod fuzz;
pub mod guard;
pub mod infer;
pub mod masking;
pub mod model;
pub mod precision;
pub mod tensor_file;
pub mod train;

pub use batch::{Batch, BatchSource, DecoderBatch, RowMut, IGNORE_INDEX, PAD_DOC};
pub use error::{Error, Result};
