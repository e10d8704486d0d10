//! `streams-state`: operator state and its checkpoints, the part of exactly-once that lives
//! with the operators (sources' offsets and sinks' commits are the other parts).
//!
//! - [`StateStore`]: an operator subtask's state in RocksDB, a column family per state table,
//!   keys prefixed by their key group ([`Table`]).
//! - [`Checkpoints`]: checkpoint storage in a directory. A checkpoint is a RocksDB checkpoint
//!   (SST files hard-linked: incremental in space), the caller's metadata, and a manifest with
//!   each file's size and CRC32C, written last and renamed into place. Restore takes the
//!   newest checkpoint that verifies; older ones beyond a retained number are deleted.
//! - [`LocalStorage`]: a job's checkpoint storage (the engine's
//!   `streams_core::state::CheckpointStorage`): a RocksDB store per operator subtask (its state
//!   and the keyed state it spills), captured at each barrier, checkpoints and savepoints, and
//!   the restore a job starts from ([`StartFrom`]).

mod checkpoint;
mod error;
mod job;
mod store;

pub use checkpoint::{Checkpoints, FileEntry, Manifest};
pub use error::{Error, Result};
pub use job::{LocalStorage, StartFrom};
pub use store::{StateStore, Table};
