//! The state crate's errors: what failed and at which path.

use std::path::PathBuf;

/// Everything that can go wrong with state and checkpoints.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// RocksDB refused an operation.
    #[error("state store {path}: {source}")]
    Rocks {
        /// The store's directory.
        path: PathBuf,
        /// RocksDB's error.
        source: rocksdb::Error,
    },
    /// A file or directory operation failed.
    #[error("{path}: {source}")]
    Io {
        /// What was being read or written.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A checkpoint is incomplete or damaged.
    #[error("checkpoint {path} is unusable: {reason}")]
    Corrupt {
        /// The checkpoint's directory.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// No checkpoint could be restored.
    #[error("no usable checkpoint in {0}")]
    NoCheckpoint(PathBuf),
}

/// The state crate's result.
pub type Result<T, E = Error> = std::result::Result<T, E>;

pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Error {
    let path = path.into();
    move |source| Error::Io { path, source }
}
