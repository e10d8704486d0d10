//! What the store's read and describe calls take and return.

use std::path::PathBuf;

use crate::config::TopicConfig;

/// How a read below the first retained offset behaves.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum IfTrimmed {
    /// Fail with [`Error::OffsetOutOfRange`].
    #[default]
    Error,
    /// Read from the first retained offset instead.
    Earliest,
}

/// Limits of one read call.
#[derive(Clone, Copy, Debug)]
pub struct ReadOptions {
    /// Most records to return. Default 1000.
    pub max_records: usize,
    /// Most bytes (keys, payloads, tags, headers) to return; the first record is returned
    /// whatever its size. Default 4 MiB.
    pub max_bytes: usize,
    /// What a read below the retained start does. Default: error.
    pub if_trimmed: IfTrimmed,
}

impl Default for ReadOptions {
    fn default() -> Self {
        ReadOptions {
            max_records: 1000,
            max_bytes: 4 << 20,
            if_trimmed: IfTrimmed::Error,
        }
    }
}

/// A topic as `describe_topic` reports it.
#[derive(Clone, Debug)]
pub struct TopicDescription {
    /// Name.
    pub name: String,
    /// Configuration (with the current queue count).
    pub config: TopicConfig,
    /// One entry per logical queue.
    pub queues: Vec<QueueDescription>,
}

/// A logical queue as `describe_topic` reports it.
#[derive(Clone, Debug)]
pub struct QueueDescription {
    /// Queue index.
    pub queue: u32,
    /// First retained offset.
    pub start_offset: u64,
    /// Next offset to be written (as readers see it).
    pub end_offset: u64,
    /// Bytes on disk (frames and segment headers).
    pub bytes: u64,
    /// Physical segments, oldest first.
    pub segments: Vec<SegmentDescription>,
}

/// A physical segment of a logical queue.
#[derive(Clone, Debug)]
pub struct SegmentDescription {
    /// Its file.
    pub path: PathBuf,
    /// Offset of its first record.
    pub base_offset: u64,
    /// Offset after its last record.
    pub end_offset: u64,
    /// Bytes used.
    pub bytes: u64,
    /// Whether it is sealed (only the newest segment of a queue is not).
    pub sealed: bool,
}

/// What a retention pass deleted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RetentionReport {
    /// Segments deleted.
    pub segments: usize,
    /// Bytes freed.
    pub bytes: u64,
}
