//! The fused block-sparse attention of `remask_kernels::attention` over NumPy-compatible float32
//! buffers. The caller (`remask.torch`) passes views of its tensors' memory (`Tensor.numpy()`), and
//! the outputs it allocated, so nothing is copied; the GIL is released while the kernel runs.
//!
//! Shapes: B = batch, H = heads, T = positions, D = head dimension. q, k, v, out, dout, dq, dk, dv
//! are `[B, H, T, D]`, lse is `[B, H, T]`; all C-contiguous float32.

use numpy::{PyReadonlyArray3, PyReadonlyArray4, PyReadwriteArray3, PyReadwriteArray4, PyUntypedArrayMethods};
use pyo3::prelude::*;
use remask_kernels::attention::{self as kernels, AttnShape};

use crate::block_mask::BlockMask;
use crate::error::value_error;

/// A C-contiguous array's data, or an error naming the argument.
fn slice<'a, T>(name: &str, s: Result<&'a [T], numpy::NotContiguousError>) -> PyResult<&'a [T]> {
    s.map_err(|_| value_error(format!("{name} must be C-contiguous (call .contiguous() first)")))
}

fn slice_mut<'a, T>(name: &str, s: Result<&'a mut [T], numpy::NotContiguousError>) -> PyResult<&'a mut [T]> {
    s.map_err(|_| value_error(format!("{name} must be C-contiguous")))
}

/// Checks that q, k, v agree and returns the shape; `q` `[B, H, T, D]`, `k`, `v` `[B, H, T, D]`.
fn shape_of(q: &[usize], k: &[usize], v: &[usize]) -> PyResult<AttnShape> {
    let [b, h, tq, d] = [q[0], q[1], q[2], q[3]];
    if k != v {
        return Err(value_error(format!("k {k:?} and v {v:?} must have the same shape")));
    }
    if k[0] != b || k[1] != h || k[3] != d {
        return Err(value_error(format!("q {q:?} and k {k:?} must agree on batch, heads and head dimension")));
    }
    if b == 0 || h == 0 || tq == 0 || d == 0 || k[2] == 0 {
        return Err(value_error(format!("empty attention input: q {q:?}, k {k:?}")));
    }
    Ok(AttnShape { batch: b, heads: h, tq, tk: k[2], head_dim: d })
}

fn check_same(name: &str, got: &[usize], want: &[usize]) -> PyResult<()> {
    if got != want {
        return Err(value_error(format!("{name} has shape {got:?}, expected {want:?}")));
    }
    Ok(())
}

/// Forward: writes `out` `[B, H, T, D]` and `lse` `[B, H, T]` (log-sum-exp of each query's masked,
/// scaled scores; -inf for a query that may read nothing, whose output is 0).
#[pyfunction]
#[pyo3(signature = (q, k, v, mask, scale, out, lse, tile))]
#[allow(clippy::too_many_arguments)]
pub fn attention_forward(
    py: Python<'_>,
    q: PyReadonlyArray4<'_, f32>,
    k: PyReadonlyArray4<'_, f32>,
    v: PyReadonlyArray4<'_, f32>,
    mask: &Bound<'_, BlockMask>,
    scale: f32,
    mut out: PyReadwriteArray4<'_, f32>,
    mut lse: PyReadwriteArray3<'_, f32>,
    tile: usize,
) -> PyResult<()> {
    let shape = shape_of(q.shape(), k.shape(), v.shape())?;
    check_same("out", out.shape(), q.shape())?;
    check_same("lse", lse.shape(), &q.shape()[..3])?;
    let tiles = mask.get().tiles(shape.batch, shape.tq, shape.tk, tile)?;
    let (q, k, v) = (slice("q", q.as_slice())?, slice("k", k.as_slice())?, slice("v", v.as_slice())?);
    let (out, lse) = (slice_mut("out", out.as_slice_mut())?, slice_mut("lse", lse.as_slice_mut())?);
    py.detach(|| kernels::attention_forward(out, lse, q, k, v, &tiles, shape, scale));
    Ok(())
}

/// Backward: from `dout` and the forward's `out` and `lse`, OVERWRITES `dq`, `dk`, `dv`.
#[pyfunction]
#[pyo3(signature = (dout, q, k, v, out, lse, mask, scale, dq, dk, dv, tile))]
#[allow(clippy::too_many_arguments)]
pub fn attention_backward(
    py: Python<'_>,
    dout: PyReadonlyArray4<'_, f32>,
    q: PyReadonlyArray4<'_, f32>,
    k: PyReadonlyArray4<'_, f32>,
    v: PyReadonlyArray4<'_, f32>,
    out: PyReadonlyArray4<'_, f32>,
    lse: PyReadonlyArray3<'_, f32>,
    mask: &Bound<'_, BlockMask>,
    scale: f32,
    mut dq: PyReadwriteArray4<'_, f32>,
    mut dk: PyReadwriteArray4<'_, f32>,
    mut dv: PyReadwriteArray4<'_, f32>,
    tile: usize,
) -> PyResult<()> {
    let shape = shape_of(q.shape(), k.shape(), v.shape())?;
    for (name, s) in [("dout", dout.shape()), ("out", out.shape()), ("dq", dq.shape())] {
        check_same(name, s, q.shape())?;
    }
    check_same("dk", dk.shape(), k.shape())?;
    check_same("dv", dv.shape(), v.shape())?;
    check_same("lse", lse.shape(), &q.shape()[..3])?;
    let tiles = mask.get().tiles(shape.batch, shape.tq, shape.tk, tile)?;
    let (dout, q, k, v) = (slice("dout", dout.as_slice())?, slice("q", q.as_slice())?, slice("k", k.as_slice())?, slice("v", v.as_slice())?);
    let (out, lse) = (slice("out", out.as_slice())?, slice("lse", lse.as_slice())?);
    let (dq, dk, dv) = (slice_mut("dq", dq.as_slice_mut())?, slice_mut("dk", dk.as_slice_mut())?, slice_mut("dv", dv.as_slice_mut())?);
    py.detach(|| kernels::attention_backward(dq, dk, dv, dout, q, k, v, out, lse, &tiles, shape, scale));
    Ok(())
}
