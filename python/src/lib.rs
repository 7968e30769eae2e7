//! `remask._native`: the Rust side of the `remask` Python package (PyO3, abi3).
//!
//! The Python package (`python/remask/`) wraps these classes and functions; users import `remask`,
//! never `remask._native`. Everything here calls the remask library's own code paths:
//!
//! - [`masker::NativeMasker`]: a tokenizer plus a `remask::masking::MaskPlan`; masks padded batches
//!   keyed by (seed, epoch, sample index), exactly as `remask` training does (`remask.MaskingCollator`).
//!   [`batch_input`] reads the features (lists of ints, NumPy rows) into its flat buffers cheaply.
//! - [`block_mask::BlockMask`]: a `remask::attention::MaskFn` with `&`, `|`, `~`, compiled per call
//!   into the kernels' `BlockMask` tiles.
//! - [`attention`]: the fused block-sparse forward and backward of `remask_kernels::attention` over
//!   NumPy-compatible float32 buffers, without copies for contiguous inputs
//!   (`remask.torch.flex_attention`).
//!
//! Library errors become Python `ValueError`s with the library's message ([`error`]); nothing a
//! Python caller passes may panic.

use pyo3::prelude::*;

mod attention;
mod batch_input;
mod block_mask;
mod error;
mod masker;

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<masker::NativeMasker>()?;
    m.add_class::<block_mask::BlockMask>()?;
    m.add_function(wrap_pyfunction!(attention::attention_forward, m)?)?;
    m.add_function(wrap_pyfunction!(attention::attention_backward, m)?)?;
    m.add("DEFAULT_TILE", remask::attention::DEFAULT_TILE)?;
    Ok(())
}
