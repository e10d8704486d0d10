//! `streams-queue`: rstreams' embedded, durable logical-queue stream store.
//!
//! Sources read from it and sinks write to it; the CLI (`rstreams topic`, `produce`, `consume`)
//! and the engine open it directly as a library. It is not a server and not a Kafka clone: one
//! process opens a data directory at a time (a lock file enforces it).
//!
//! # Model
//! A **topic** has N **logical queues**. A logical queue has dense offsets `0..n` and is an
//! ordered list of **physical segments** (storage location, base offset, end offset). This is
//! RocketMQ 5's logical queue (its "static topic"): there, a logical queue is a list of
//! `LogicQueueMappingItem`s, each mapping a logical offset range onto a physical queue on some
//! broker, so that moving a queue to another broker never changes logical offsets. Here a
//! *placement* (metadata: storage directory, first offset) plays the mapping item's part and a
//! directory plays the broker's: [`Store::move_queue`] starts a new placement, new segments go
//! to the new directory (another disk, say), older segments stay readable where they are, and
//! reads cross the boundary without the reader noticing. [`Store::add_queues`] adds queues
//! without touching existing queues' offsets or order.
//!
//! # Threads and async code
//! [`Store`], [`Producer`] and records are `Send + Sync`; many threads may append and read at
//! once. Calls are blocking: an append under `always` durability waits for an fsync (about
//! 0.1–1 ms here), so async callers should make it from a blocking task (for example
//! `tokio::task::spawn_blocking`). Two background threads per store seal segments, run
//! `interval` fsyncs, prepare the next segment and fault in pages ahead of each writer.
//!
//! # Main types
//! [`Store`] (open, topics, append, read, seek, retention), [`Producer`] (append handle),
//! [`Consumer`] with [`ConsumerOptions`] (reads all queues, commits group offsets),
//! [`Record`] / [`StoredRecord`], [`TopicConfig`] with [`Durability`] and [`Retention`].
//!
//! # Durability
//! Per topic: `always` fsyncs before an append returns, and appenders that overlap share one
//! fsync (group commit); readers see records only once durable. `interval:MS` fsyncs in the
//! background; `os` leaves write-back to the kernel (records survive a process crash, not a
//! machine crash). Every frame carries a CRC32C. On open, the tail of each queue's newest
//! segment is checked: a torn or corrupt tail is truncated with a warning naming the file and
//! position; damage followed by valid frames is an [`Error::Corrupt`] naming file and position,
//! and so is any damage found in a sealed segment, on open or on read. Nothing is skipped
//! silently.
//!
//! # On-disk format (version 1)
//! ```text
//! <data dir>/LOCK                       lock file held while the store is open
//! <data dir>/store.json                 {"format_version": 1}
//! <data dir>/meta/topics/<topic>.json   config, topic id, each queue's placements
//! <data dir>/meta/groups/<group>.json   committed offsets: topic -> queue -> next offset
//! <storage>/<topic>-<id>/<queue>/<base offset, 20 digits>.seg   frames
//! <storage>/<topic>-<id>/<queue>/<base offset, 20 digits>.idx   index of a sealed segment
//! ```
//! `<storage>` is `<data dir>/segments` unless a queue was moved. Metadata files are JSON,
//! replaced atomically. Segment files are described in `segment/mod.rs` and `segment/recover.rs`
//! (header and durable watermark), frames in [`codec`] and
//! index files in `index.rs`; each carries a version number, and a file of an unknown version
//! is refused with [`Error::UnsupportedVersion`].

pub mod codec;
mod config;
mod error;
mod fsutil;
mod group;
mod health;
mod index;
mod meta;
mod queue;
mod record;
mod segment;
mod spare;
mod store;
mod topic;

pub use config::{
    Durability, MAX_QUEUES, Retention, StoreOptions, TimestampType, TopicConfig, parse_size,
};
pub use error::{Error, Result};
pub use group::{Consumer, ConsumerOptions, QueueLag, StartFrom};
pub use record::{Record, StoredRecord};
pub use store::{
    IfTrimmed, Producer, QueueDescription, ReadOptions, RetentionReport, SegmentDescription, Store,
    TopicDescription,
};
