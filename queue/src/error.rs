//! The store's error type.

use std::path::PathBuf;

/// Everything that can go wrong in the store. Variants say what the caller did wrong (unknown
/// topic, bad offset, bad config) or what failed outside (I/O, corruption), and where.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The topic does not exist (or was deleted while a handle to it was held).
    #[error("topic `{0}` does not exist")]
    TopicNotFound(String),
    /// A consumer group that has no committed offsets.
    #[error("group `{0}` does not exist")]
    GroupNotFound(String),
    /// `create_topic` with a name that is taken.
    #[error("topic `{0}` already exists")]
    TopicExists(String),
    /// A queue index past the topic's queue count.
    #[error("topic `{topic}` has no queue {queue} (it has {queues} queues: 0..{queues})")]
    QueueNotFound {
        /// Topic name.
        topic: String,
        /// The queue asked for.
        queue: u32,
        /// How many queues the topic has.
        queues: u32,
    },
    /// A topic or group name that cannot be used.
    #[error("invalid name `{name}`: {reason}")]
    InvalidName {
        /// The name given.
        name: String,
        /// Why it is refused.
        reason: &'static str,
    },
    /// A configuration value that cannot be used.
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),
    /// A read or reset at an offset the queue does not hold.
    #[error(
        "offset {offset} is out of range for {topic}/{queue}: the queue holds offsets {start}..{end}"
    )]
    OffsetOutOfRange {
        /// Topic name.
        topic: String,
        /// Queue index.
        queue: u32,
        /// The offset asked for.
        offset: u64,
        /// First retained offset.
        start: u64,
        /// Next offset to be written.
        end: u64,
    },
    /// Stored bytes that fail their checksum or do not decode, in the middle of the data where
    /// truncating would lose acknowledged records.
    #[error("corrupt data in {} at byte {position}: {reason}", path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// Byte position in the file.
        position: u64,
        /// What is wrong.
        reason: String,
    },
    /// A file written by a newer (or unknown) format version.
    #[error(
        "{} has on-disk format version {found}; this build reads version {supported}",
        path.display()
    )]
    UnsupportedVersion {
        /// The file.
        path: PathBuf,
        /// Version found.
        found: u32,
        /// Version this build understands.
        supported: u32,
    },
    /// An I/O operation failed.
    #[error("{op} {}: {source}", path.display())]
    Io {
        /// What was being done ("open", "fsync", ...).
        op: &'static str,
        /// On which path.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A metadata file that is not valid JSON of the expected shape.
    #[error("metadata {}: {source}", path.display())]
    Metadata {
        /// The file.
        path: PathBuf,
        /// The parse error.
        source: serde_json::Error,
    },
    /// Another process holds the store's lock file.
    #[error("the store in {} is in use by another process (lock file {}/LOCK)", .0.display(), .0.display())]
    Locked(PathBuf),
    /// An append batch larger than one segment may hold.
    #[error("a batch of {bytes} bytes is larger than the limit of {limit} bytes")]
    BatchTooLarge {
        /// Encoded size of the batch.
        bytes: u64,
        /// The limit.
        limit: u64,
    },
    /// A thread panicked while holding a lock of this store; its state can no longer be trusted.
    #[error("the store is unusable after a panic in another thread; reopen it")]
    Poisoned,
    /// Background work (an fsync, sealing a segment) failed earlier; what was appended since may
    /// not be durable, so the store refuses appends until it is reopened.
    #[error("the store's background work failed: {0}; reopen the store")]
    BackgroundFailed(String),
    /// A bug in the store.
    #[error("internal error: {0}")]
    Internal(String),
}

/// The store's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            op,
            path: path.into(),
            source,
        }
    }

    pub(crate) fn corrupt(
        path: impl Into<PathBuf>,
        position: u64,
        reason: impl Into<String>,
    ) -> Self {
        Error::Corrupt {
            path: path.into(),
            position,
            reason: reason.into(),
        }
    }
}

impl<T> From<std::sync::PoisonError<T>> for Error {
    fn from(_: std::sync::PoisonError<T>) -> Self {
        Error::Poisoned
    }
}
