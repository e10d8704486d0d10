//! `streams-sql`: the SQL frontend.
//!
//! Parses Flink-dialect streaming SQL (`CREATE TABLE ... WATERMARK FOR ...`, window table
//! functions, `INSERT INTO`), plans it with DataFusion's planner extended by streaming nodes, and
//! keeps the catalog of tables, views and sinks. Its output is the logical plan of `streams-core`.
//!
//! Not built yet: it is the subject of the SQL frontend issue.
