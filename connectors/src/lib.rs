//! `streams-connectors`: sources and sinks.
//!
//! The integrated queue store, files (CSV, JSON lines, Parquet), the Nexmark generator,
//! print and blackhole, each registered in `streams-core`'s connector registry with typed,
//! validated options.
//!
//! Not built yet: it is the subject of the connectors issue.
