//! `streams-state`: operator state and its checkpoints, the part of exactly-once that lives
//! with the operators (sources' offsets and sinks' commits are the other parts).
//!
//! - [`StateStore`]: an operator subtask's state in RocksDB, a column family per state table,
//!   keys prefixed by their key group ([`Table`]).
//! - [`Checkpoints`]: checkpoint storage in a directory. A checkpoint is a RocksDB checkpoint
//!   (SST files hard-linked: incremental in space), the caller's metadata, and a manifest with
//!   each file's size and CRC32C, written last and renamed into place. Restore takes the
//!   newest checkpoint that verifies; older ones beyond a retained number are deleted.
//!
//! Not yet: wiring into the operators and the checkpoint coordinator (the state and checkpoint
//! issue is under way).

mod checkpoint;
mod error;
mod store;

pub use checkpoint::{Checkpoints, FileEntry, Manifest};
pub use error::{Error, Result};
pub use store::{StateStore, Table};
