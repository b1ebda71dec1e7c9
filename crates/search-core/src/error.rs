//! The one error type of `search-core`, shared by every engine through [`crate::SearchIndex`].

use std::path::PathBuf;

/// Result alias used throughout the workspace.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong while reading, writing, building or querying a gallery or index.
///
/// Messages are written for a person: they say what was expected and what was found, and
/// carry the path of the file when one is involved.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An I/O operation on `path` failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file being read or written.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A file is not what it claims to be: truncated, corrupt or of another format.
    #[error("{}: {message}", path.display())]
    Format {
        /// The offending file.
        path: PathBuf,
        /// What was expected and what was found.
        message: String,
    },
    /// An index answered what no sound index can (a row it does not hold, a similarity
    /// outside [-1, 1], hits out of order): its file or memory is damaged.
    #[error("the {engine} index is damaged: {message}")]
    Damaged {
        /// The engine's name.
        engine: &'static str,
        /// What it answered.
        message: String,
    },
    /// A vector has the wrong number of components.
    #[error("vector has {found} dimensions, expected {expected}")]
    Dimension {
        /// The dimension of the gallery or index.
        expected: usize,
        /// The dimension of the vector handed in.
        found: usize,
    },
    /// A vector cannot be used for cosine similarity (NaN, infinite or zero).
    #[error("{what}: {reason}")]
    BadVector {
        /// Which vector, e.g. "query" or "gallery row 17".
        what: String,
        /// Why it was rejected.
        reason: &'static str,
    },
    /// The operation was stopped on request ([`crate::Progress::cancelled`]).
    #[error("cancelled")]
    Cancelled,
    /// The engine does not offer this operation (adding to an exact index's file, say).
    #[error("the {engine} engine cannot {what}")]
    Unsupported {
        /// The engine's name.
        engine: &'static str,
        /// What was asked of it.
        what: &'static str,
    },
    /// An argument is outside its valid range (k = 0, τ outside [-1, 1], empty gallery, ...).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
}

impl Error {
    /// Wraps an I/O error with the path it happened on.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    /// A format error for `path`.
    pub fn format(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Error::Format {
            path: path.into(),
            message: message.into(),
        }
    }
}
