//! `streams-sql`: the SQL frontend.
//!
//! Parses Flink-dialect streaming SQL (`CREATE TABLE ... WATERMARK FOR ...`, window table
//! functions with `TABLE t` arguments, `INSERT INTO`), plans it with DataFusion's planner
//! extended by streaming nodes, and keeps the catalog of tables, views and sinks. Its output is
//! the logical plan of `streams-core`.
//!
//! Built so far: [`parse_script`] (statements, with Flink's `CREATE TABLE` parsed here and
//! everything else by sqlparser through [`FlinkDialect`]); errors carry line and column. The
//! catalog and planning are the rest of the SQL frontend issue.

mod catalog;
mod dialect;
mod engine;
mod error;
mod joins;
mod parser;
mod rewrite;
mod windows;

pub use catalog::{Catalog, TableDef};
pub use dialect::FlinkDialect;
pub use engine::{Outcome, SqlEngine};
pub use error::{Error, Result};
pub use parser::{CreateTable, StreamStatement, WatermarkDef, parse_script};
