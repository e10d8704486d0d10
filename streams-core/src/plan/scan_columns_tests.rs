//! Which scans are narrowed, to which columns.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::col;

use super::narrow_scans;
use crate::plan::compile::{downcast, optimize};
use crate::plan::{StreamPlanBuilder, StreamScan};
use crate::source::{Source, SourceFactory};
use crate::testing::{CollectSink, MemorySource};

/// A source that can be narrowed, remembering what it was asked for.
#[derive(Debug)]
struct Narrowable {
    inner: MemorySource,
    asked: Mutex<Vec<Vec<usize>>>,
}

impl SourceFactory for Narrowable {
    fn name(&self) -> &str {
        self.inner.name()
    }
    fn schema(&self) -> SchemaRef {
        self.inner.schema()
    }
    fn splits(&self) -> usize {
        self.inner.splits()
    }
    fn create(&self, subtask: usize, parallelism: usize) -> crate::Result<Box<dyn Source>> {
        self.inner.create(subtask, parallelism)
    }
    fn with_projection(&self, columns: &[usize]) -> Option<Arc<dyn SourceFactory>> {
        self.asked.lock().ok()?.push(columns.to_vec());
        let schema = Arc::new(self.schema().project(columns).ok()?);
        Some(Arc::new(MemorySource::new(self.name(), schema)))
    }
}

fn table() -> Arc<Narrowable> {
    let schema = Arc::new(Schema::new(vec![
        Field::new("a", DataType::Int64, false),
        Field::new("b", DataType::Utf8, true),
        Field::new("c", DataType::Int64, true),
        Field::new(
            "ts",
            DataType::Timestamp(TimeUnit::Millisecond, None),
            false,
        ),
    ]));
    Arc::new(Narrowable {
        inner: MemorySource::new("t", schema),
        asked: Mutex::new(Vec::new()),
    })
}

/// `t`, watermarked on `ts`, then `columns` (all of them when empty), into a sink.
fn job(t: &Arc<Narrowable>, columns: &[&str]) -> LogicalPlan {
    let source: Arc<dyn SourceFactory> = Arc::clone(t) as _;
    let mut b = StreamPlanBuilder::scan("t", source)
        .and_then(|b| b.watermark("ts", Duration::from_secs(1), None))
        .unwrap();
    if !columns.is_empty() {
        b = b
            .project(columns.iter().map(|c| col(*c)).collect())
            .unwrap();
    }
    b.sink("out", Arc::new(CollectSink::new())).unwrap()
}

/// The columns each scan of the narrowed plans reads.
fn scans(plans: &[LogicalPlan]) -> Vec<Vec<String>> {
    let narrowed = narrow_scans(plans.iter().map(|p| optimize(p).unwrap()).collect()).unwrap();
    let mut found = Vec::new();
    for plan in &narrowed {
        datafusion::common::tree_node::TreeNode::apply(plan, |node| {
            if let Some(scan) = downcast::<StreamScan>(node) {
                found.push(
                    scan.schema
                        .fields()
                        .iter()
                        .map(|f| f.name().clone())
                        .collect(),
                );
            }
            Ok(datafusion::common::tree_node::TreeNodeRecursion::Continue)
        })
        .unwrap();
    }
    found
}

#[test]
fn a_scan_is_narrowed_to_what_is_read_and_the_event_time() {
    let t = table();
    assert_eq!(scans(&[job(&t, &["b"])]), vec![vec!["b", "ts"]]);
    assert_eq!(*t.asked.lock().unwrap(), vec![vec![1, 3]]);
}

#[test]
fn a_job_reading_every_column_keeps_the_source_as_it_is() {
    let t = table();
    assert_eq!(scans(&[job(&t, &[])]), vec![vec!["a", "b", "c", "ts"]]);
    assert_eq!(
        scans(&[job(&t, &["c", "b", "ts", "a"])]),
        vec![vec!["a", "b", "c", "ts"]]
    );
    assert!(t.asked.lock().unwrap().is_empty());
}

#[test]
fn scans_of_one_source_read_the_union_and_one_reading_all_keeps_all() {
    let t = table();
    let both = scans(&[job(&t, &["a"]), job(&t, &["c"])]);
    assert_eq!(both, vec![vec!["a", "c", "ts"]; 2]);
    let with_all = scans(&[job(&t, &["a"]), job(&t, &[])]);
    assert_eq!(with_all, vec![vec!["a", "b", "c", "ts"]; 2]);
}

#[test]
fn a_source_that_cannot_be_narrowed_is_read_whole() {
    let plain: Arc<dyn SourceFactory> = Arc::new(table().inner.clone());
    let plan = StreamPlanBuilder::scan("t", plain)
        .and_then(|b| b.project(vec![col("a")]))
        .and_then(|b| b.sink("out", Arc::new(CollectSink::new())))
        .unwrap();
    assert_eq!(scans(&[plan]), vec![vec!["a", "b", "c", "ts"]]);
}

#[test]
fn a_job_reading_no_column_keeps_the_source_as_it_is() {
    let t = table();
    let source: Arc<dyn SourceFactory> = Arc::clone(&t) as _;
    let plan = StreamPlanBuilder::scan("t", source)
        .and_then(|b| b.project(vec![datafusion::prelude::lit(1i64)]))
        .and_then(|b| b.sink("out", Arc::new(CollectSink::new())))
        .unwrap();
    assert_eq!(scans(&[plan]), vec![vec!["a", "b", "c", "ts"]]);
    assert!(t.asked.lock().unwrap().is_empty());
}
