//! `rstreams`: a stream processing engine. This facade re-exports the workspace's crates so that
//! a Rust program needs one dependency; the `rstreams` binary (`src/main.rs`) is the CLI.
//!
//! - [`queue`]: the embedded logical-queue stream store.
//! - [`core`], [`sql`], [`state`], [`connectors`]: the engine, its SQL frontend, operator state
//!   and checkpoints, and connectors (being built; see `DESIGN.md`).

pub use streams_connectors as connectors;
pub use streams_core as core;
pub use streams_queue as queue;
pub use streams_sql as sql;
pub use streams_state as state;
