//! `streams-sql`: the SQL frontend.
//!
//! Parses Flink-dialect streaming SQL (`CREATE TABLE ... WATERMARK FOR ...`, window table
//! functions with `TABLE t` arguments, `INSERT INTO`), plans it with DataFusion's planner
//! extended by streaming nodes, and keeps the catalog of tables, views and sinks. Its output is
//! the logical plan of `streams-core`.
//!
//! The entry point is [`SqlEngine`]: `execute` runs a script and returns an [`Outcome`] per
//! statement (`INSERT INTO` gives a job plan, `SELECT` a plan whose rows go back to the caller,
//! `EXPLAIN` the optimized plan and the topology). How it works:
//! - [`parse_script`] splits the script; Flink's `CREATE TABLE` (watermark, computed columns,
//!   `WITH` options) is parsed here, everything else by sqlparser through [`FlinkDialect`],
//!   which also accepts `TABLE t [PARTITION BY ...]` as a window function argument. Errors
//!   carry line and column.
//! - `CREATE TABLE` checks its options against the connector registry at once.
//! - A query's window table functions are replaced by synthetic relations before DataFusion's
//!   `SqlToRel` plans it; the rewrite then turns scans into sources with their watermarks,
//!   `GROUP BY window_start, window_end` over a window function into a window aggregate,
//!   `ON l.window_start = r.window_start AND l.window_end = r.window_end` into a window join,
//!   joins with time bounds into interval joins, and any other `GROUP BY` into an unbounded
//!   aggregate whose output is an update stream (`streams_core::changelog`).
//!
//!   `ROW_NUMBER() OVER (...)` filtered to `rn <= N` becomes a Top-N (deduplication for N = 1).
//!   Joins without time bounds are regular joins, whose output is an update stream too.
//! - Window columns keep their meaning through `GROUP BY` and renaming (`attributes`), so a
//!   join or `GROUP BY` on them over window aggregates stays windowed, as in Flink.
//!
//! Not yet: session windows without aggregation. See `docs/design/sql.md`.

mod attributes;
mod catalog;
mod checkpoints;
mod dialect;
mod engine;
mod error;
mod functions;
mod joins;
mod names;
mod parser;
mod rewrite;
mod windows;

pub use catalog::{Catalog, TableDef};
pub use checkpoints::CheckpointSettings;
pub use dialect::FlinkDialect;
pub use engine::{Outcome, SqlEngine};
pub use error::{Error, Result};
pub use parser::{CreateTable, StreamStatement, WatermarkDef, parse_script, split_script};
