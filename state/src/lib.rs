//! `streams-state`: operator state and checkpoints.
//!
//! The state backend trait and its RocksDB implementation (a column family per operator, keyed
//! state scoped by key and window), incremental checkpoint storage and restore, which together
//! with replayable sources and transactional sinks make job results exactly-once.
//!
//! Not built yet: it is the subject of the state and checkpoint issue.
