//! Projection push-down into JSON sources: a job reading some of a table's columns gets a
//! source narrowed to them (shown in EXPLAIN), the same rows as reading everything, and one
//! reader for all the scans of a table, reading the union of their columns.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use streams_connectors::filesystem::Filesystem;
use streams_core::arrow::array::{AsArray, RecordBatch};
use streams_core::arrow::datatypes::{DataType, Field, Int64Type, Schema, SchemaRef, TimeUnit};
use streams_core::connector::{Connector, Options};
use streams_core::datafusion::logical_expr::LogicalPlan;
use streams_core::datafusion::prelude::col;
use streams_core::plan::{JobConfig, StreamPlanBuilder, compile, explain_job};
use streams_core::runtime::launch;
use streams_core::testing::CollectSink;
use streams_core::{SinkFactory, SourceFactory};

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("name", DataType::Utf8, true),
        Field::new("score", DataType::Int64, true),
        Field::new(
            "ts",
            DataType::Timestamp(TimeUnit::Millisecond, None),
            false,
        ),
    ]))
}

/// `lines` records in two files; record 7's `score` is not a number.
fn write(dir: &Path, lines: i64) {
    for file in 0..2 {
        let mut f = std::fs::File::create(dir.join(format!("part-{file}.json"))).unwrap();
        for i in (0..lines).filter(|i| i % 2 == file) {
            let score = if i == 7 {
                "\"high\"".to_string()
            } else {
                (i * 3).to_string()
            };
            writeln!(
                f,
                r#"{{"id": {i}, "name": "name-{i}-{}", "score": {score}, "ts": "2026-01-01 00:00:{:02}"}}"#,
                "x".repeat(20),
                i % 60
            )
            .unwrap();
        }
    }
}

fn source(dir: &Path) -> Arc<dyn SourceFactory> {
    let options = Options::new([
        ("path".to_string(), dir.to_str().unwrap().to_string()),
        ("format".to_string(), "json".to_string()),
        ("format.on-error".to_string(), "skip".to_string()),
    ]);
    Filesystem::new(None)
        .source("t", schema(), &options)
        .unwrap()
}

/// `t` with a watermark on `ts`, then `columns` of it, into `sink`.
fn read(
    source: &Arc<dyn SourceFactory>,
    columns: &[&str],
    sink: Arc<dyn SinkFactory>,
) -> LogicalPlan {
    StreamPlanBuilder::scan("t", Arc::clone(source))
        .unwrap()
        .watermark("ts", std::time::Duration::from_secs(1), None)
        .unwrap()
        .project(columns.iter().map(|c| col(*c)).collect())
        .unwrap()
        .sink("out", sink)
        .unwrap()
}

async fn run(plans: &[LogicalPlan]) {
    let config = JobConfig {
        parallelism: 2,
        ..JobConfig::default()
    };
    let graph = compile(plans, &config).unwrap();
    launch(graph, &config.runtime)
        .unwrap()
        .wait()
        .await
        .unwrap();
}

fn sorted_ids(batch: &RecordBatch) -> Vec<i64> {
    let mut ids: Vec<i64> = batch
        .column(0)
        .as_primitive::<Int64Type>()
        .values()
        .to_vec();
    ids.sort_unstable();
    ids
}

#[tokio::test]
async fn a_job_reading_some_columns_reads_only_those_and_gets_the_same_rows() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), 100);
    let source = source(dir.path());

    let sink = Arc::new(CollectSink::new());
    let plan = read(&source, &["id", "name"], sink.clone());
    let explained = explain_job(std::slice::from_ref(&plan), &JobConfig::default()).unwrap();
    assert!(
        explained.contains("StreamScan: t (t) columns=[id, name, ts]"),
        "{explained}"
    );
    run(&[plan]).await;
    let narrowed = sink.concat(&sink.batches()[0].schema()).unwrap();
    // `score` is not read, so record 7's bad score does not make it a bad record.
    assert_eq!(sorted_ids(&narrowed), (0..100).collect::<Vec<_>>());
    let names = narrowed.column(1).as_string::<i32>();
    let ids = narrowed.column(0).as_primitive::<Int64Type>();
    for r in 0..narrowed.num_rows() {
        assert_eq!(
            names.value(r),
            format!("name-{}-{}", ids.value(r), "x".repeat(20))
        );
    }

    // Reading `score` too reads every column, and record 7 is skipped as bad.
    let sink = Arc::new(CollectSink::new());
    let plan = read(&source, &["id", "name", "score", "ts"], sink.clone());
    let explained = explain_job(std::slice::from_ref(&plan), &JobConfig::default()).unwrap();
    assert!(!explained.contains("columns=["), "{explained}");
    run(&[plan]).await;
    let all = sink.concat(&sink.batches()[0].schema()).unwrap();
    let want: Vec<i64> = (0..100).filter(|&i| i != 7).collect();
    assert_eq!(sorted_ids(&all), want);
}

#[tokio::test]
async fn scans_of_one_table_share_one_reader_of_the_columns_they_read_together() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), 40);
    let source = source(dir.path());
    let (a, b) = (Arc::new(CollectSink::new()), Arc::new(CollectSink::new()));
    let plans = [
        read(&source, &["id"], a.clone()),
        read(&source, &["id", "name"], b.clone()),
    ];
    let explained = explain_job(&plans, &JobConfig::default()).unwrap();
    assert_eq!(
        explained.matches("columns=[id, name, ts]").count(),
        2,
        "{explained}"
    );
    assert_eq!(explained.matches("source: t").count(), 1, "{explained}");
    run(&plans).await;
    let all: Vec<i64> = (0..40).collect();
    assert_eq!(
        sorted_ids(&a.concat(&a.batches()[0].schema()).unwrap()),
        all
    );
    assert_eq!(
        sorted_ids(&b.concat(&b.batches()[0].schema()).unwrap()),
        all
    );
}
