//! Reading a batch's token ids from Python into one flat, padded `[B, T]` buffer, without
//! per-element overhead where the input allows:
//!
//! - a list of exact `int`s: the stable ABI's `PyList_GetItem` (a borrowed item: no reference
//!   counting) and `PyLong_AsLongLong`, two C calls per id; other items (`bool`, NumPy scalars) take
//!   pyo3's general conversion;
//! - a 1-D int64 NumPy array (a row of a `datasets` dataset in NumPy format, a torch tensor's
//!   `.numpy()`): read in place, one bounds pass and one copy;
//! - a `[B, T]` int64 NumPy array as the whole batch: the same, per row.
//!
//! Anything else goes through the Python `convert(item, r)` callback first, which returns one of the
//! above (or raises). Values are checked as they are copied ([`IdRange`]: ids against the
//! vocabulary).
//!
//! NumPy arrays are read with the `numpy` crate's unchecked views: its dynamic borrow tracking (a
//! registry lookup per acquire and release) costs more than copying a 128-id row. That is sound
//! here because the GIL is held and no Python code runs while a view is alive; the ids are copied
//! out before the GIL is released.

use numpy::{PyArray1, PyArray2, PyArrayMethods, PyUntypedArrayMethods};
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::PyList;

use crate::error::value_error;

/// One feature's ids, as given.
pub enum RowSource<'py> {
    List(Bound<'py, PyList>),
    Array(Bound<'py, PyArray1<i64>>),
}

impl RowSource<'_> {
    /// Its number of ids.
    pub fn length(&self) -> usize {
        match self {
            RowSource::List(l) => l.len(),
            RowSource::Array(a) => a.len(),
        }
    }
}

/// A batch's rows, as given.
pub enum Rows<'py> {
    /// One source per feature (rows of any length, padded when gathered).
    Each(Vec<RowSource<'py>>),
    /// A `[B, T]` int64 array: B rows of T ids, no padding.
    Matrix(Bound<'py, PyArray2<i64>>),
}

impl<'py> Rows<'py> {
    /// The rows of `features`: a list of features (each a list of ints or a 1-D int64 array, or
    /// whatever `convert(item, r)` turns into one), or a `[B, T]` int64 array.
    pub fn of(features: &Bound<'py, PyAny>, convert: Option<&Bound<'py, PyAny>>) -> PyResult<Self> {
        if let Ok(m) = features.cast::<PyArray2<i64>>() {
            return Ok(Rows::Matrix(m.clone()));
        }
        let list = features.cast::<PyList>().map_err(|_| {
            value_error(format!("features: expected a list of features or a [B, T] int64 array, got {}", type_name(features)))
        })?;
        let mut rows = Vec::with_capacity(list.len());
        for (r, item) in list.iter().enumerate() {
            let source = match source_of(&item) {
                Some(s) => s,
                None => {
                    let Some(convert) = convert else {
                        return Err(value_error(format!("feature {r}: expected a list of token ids or a 1-D int64 array, got {}", type_name(&item))));
                    };
                    let converted = convert.call1((&item, r))?;
                    source_of(&converted).ok_or_else(|| {
                        value_error(format!("feature {r}: converted to {}, not a list of token ids or a 1-D int64 array", type_name(&converted)))
                    })?
                }
            };
            rows.push(source);
        }
        Ok(Rows::Each(rows))
    }

    /// B.
    pub fn count(&self) -> usize {
        match self {
            Rows::Each(v) => v.len(),
            Rows::Matrix(m) => m.shape()[0],
        }
    }

    /// The length of row `r`.
    pub fn len_of(&self, r: usize) -> usize {
        match self {
            Rows::Each(v) => v[r].length(),
            Rows::Matrix(m) => m.shape()[1],
        }
    }

    /// Copies row `r` into `out` (`out.len()` = its length), checking every id against `range`.
    pub fn read(&self, r: usize, out: &mut [u32], range: IdRange) -> PyResult<()> {
        match self {
            Rows::Each(v) => match &v[r] {
                RowSource::List(l) => read_list(l, out, range, r),
                // SAFETY: see the module doc (GIL held, no Python code runs while the view lives).
                RowSource::Array(a) => match unsafe { a.as_slice() } {
                    Ok(ids) => copy_checked(ids, out, range, r),
                    Err(_) => copy_checked_iter(unsafe { a.as_array() }.iter().copied(), out, range, r),
                },
            },
            Rows::Matrix(m) => {
                // SAFETY: as above.
                let view = unsafe { m.as_array() };
                let row = view.row(r);
                match row.as_slice() {
                    Some(ids) => copy_checked(ids, out, range, r),
                    None => copy_checked_iter(row.iter().copied(), out, range, r),
                }
            }
        }
    }
}

fn source_of<'py>(item: &Bound<'py, PyAny>) -> Option<RowSource<'py>> {
    if let Ok(l) = item.cast::<PyList>() {
        return Some(RowSource::List(l.clone()));
    }
    item.cast::<PyArray1<i64>>().ok().map(|a| RowSource::Array(a.clone()))
}

fn type_name(obj: &Bound<'_, PyAny>) -> String {
    obj.get_type().name().map(|n| n.to_string()).unwrap_or_else(|_| "?".into())
}

/// What the values of a row must lie in, and what they are (for errors).
#[derive(Clone, Copy, Debug)]
pub enum IdRange {
    /// Token ids: `0..V`.
    Vocab(u32),
    /// Token type (segment) ids: `0..2^31`.
    TokenTypes,
}

impl IdRange {
    fn end(self) -> i64 {
        match self {
            IdRange::Vocab(v) => v as i64,
            IdRange::TokenTypes => i32::MAX as i64 + 1,
        }
    }

    /// The error for value `id` at position `i` of feature `r`.
    fn error(self, r: usize, i: usize, id: impl std::fmt::Display) -> PyErr {
        match self {
            IdRange::Vocab(v) => value_error(format!(
                "input_ids of feature {r}, position {i}: id {id} is outside the tokenizer's vocabulary (0..{v}); was the collator given the tokenizer that made these ids?"
            )),
            IdRange::TokenTypes => value_error(format!("token_type_ids of feature {r}, position {i}: {id} is not a token type id (0..2^31)")),
        }
    }
}

/// Reads the first `out.len()` items of `list`.
fn read_list(list: &Bound<'_, PyList>, out: &mut [u32], range: IdRange, r: usize) -> PyResult<()> {
    let py = list.py();
    let v = range.end();
    for (i, slot) in out.iter_mut().enumerate() {
        // SAFETY: the GIL is held (`list` is bound). `PyList_GetItem` checks the index and returns a
        // borrowed reference, which is read before any Python code can run; the general path below
        // takes its own reference first, since converting may run Python code (`__index__`).
        let item = unsafe { ffi::PyList_GetItem(list.as_ptr(), i as ffi::Py_ssize_t) };
        if item.is_null() {
            return Err(PyErr::fetch(py));
        }
        let id = if unsafe { ffi::PyLong_CheckExact(item) } != 0 {
            let x = unsafe { ffi::PyLong_AsLongLong(item) };
            if x == -1 {
                if let Some(e) = PyErr::take(py) {
                    return Err(range.error(r, i, format!("({e})")));
                }
            }
            x
        } else {
            let obj = unsafe { Bound::from_borrowed_ptr(py, item) };
            obj.extract::<i64>().map_err(|e| range.error(r, i, format!("({e})")))?
        };
        if !(0..v).contains(&id) {
            return Err(range.error(r, i, id));
        }
        *slot = id as u32;
    }
    Ok(())
}

/// `out[i] = ids[i]`, after one branch-free bounds pass (it vectorizes); the error path finds the
/// culprit.
pub fn copy_checked(ids: &[i64], out: &mut [u32], range: IdRange, r: usize) -> PyResult<()> {
    let v = range.end();
    let ids = &ids[..out.len()];
    if ids.iter().fold(true, |ok, &id| ok & (0..v).contains(&id)) {
        for (o, &id) in out.iter_mut().zip(ids) {
            *o = id as u32;
        }
        return Ok(());
    }
    let (i, id) = ids.iter().enumerate().find(|(_, &id)| !(0..v).contains(&id)).map_or((0, 0), |(i, &id)| (i, id));
    Err(range.error(r, i, id))
}

fn copy_checked_iter(ids: impl Iterator<Item = i64>, out: &mut [u32], range: IdRange, r: usize) -> PyResult<()> {
    for (i, (o, id)) in out.iter_mut().zip(ids).enumerate() {
        if !(0..range.end()).contains(&id) {
            return Err(range.error(r, i, id));
        }
        *o = id as u32;
    }
    Ok(())
}
