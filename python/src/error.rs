//! Library errors as Python exceptions: the library's message, which names what to fix.

use pyo3::exceptions::PyValueError;
use pyo3::PyErr;

/// A remask library error as a `ValueError` with its message.
pub fn to_py(e: remask::Error) -> PyErr {
    PyValueError::new_err(e.to_string())
}

/// A `ValueError` with `msg`.
pub fn value_error(msg: impl Into<String>) -> PyErr {
    PyValueError::new_err(msg.into())
}
