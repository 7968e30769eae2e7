//! The library's error type. Every variant says what failed and, where it can, what to do about it.
//! Only the CLI prints errors and chooses exit codes.

use std::path::PathBuf;

/// Result alias used across the library.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An IO operation on a named file failed. The cause is part of the message (not a `source`), so
    /// an error chain prints it once.
    #[error("{path}: {cause}")]
    Io {
        path: PathBuf,
        cause: std::io::Error,
    },

    /// A configuration value is invalid. `key` is the dotted path (e.g. `masking.rate`).
    #[error("config `{key}`: {message}")]
    Config { key: String, message: String },

    /// Input data is unusable (empty, binary, not UTF-8, missing field, ...).
    #[error("{path}: {message}")]
    Data { path: PathBuf, message: String },

    /// A tensor or buffer has the wrong shape or size.
    #[error("shape mismatch for `{name}`: expected {expected}, got {got}")]
    Shape {
        name: String,
        expected: String,
        got: String,
    },

    /// A checkpoint is missing, incomplete or does not fit the model.
    #[error("checkpoint {path}: {message}")]
    Checkpoint { path: PathBuf, message: String },

    /// Another live process holds the directory's lock ([`crate::dir_lock`]).
    #[error("{dir} is in use by another remask process ({holder}); wait for it to finish or stop it, or choose another directory")]
    Locked { dir: PathBuf, holder: String },

    /// Anything else, with enough context to act on.
    #[error("{0}")]
    Other(String),
}

impl Error {
    /// Wraps an IO error with the path it concerns.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            cause: source,
        }
    }

    /// A config error for the dotted key path.
    pub fn config(key: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Config {
            key: key.into(),
            message: message.into(),
        }
    }

    /// A data error for a file.
    pub fn data(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Error::Data {
            path: path.into(),
            message: message.into(),
        }
    }

    /// A shape error for a named tensor.
    pub fn shape(name: impl Into<String>, expected: impl ToString, got: impl ToString) -> Self {
        Error::Shape {
            name: name.into(),
            expected: expected.to_string(),
            got: got.to_string(),
        }
    }
}
