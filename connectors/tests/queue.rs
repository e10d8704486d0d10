//! The queue connector: a job reading a topic and writing a topic, crashed and resumed from
//! checkpoints again and again, leaves each result in the output topic exactly once; a commit
//! repeated after a crash appends only what is missing; bad records and bad options are
//! reported.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use streams_connectors::Queue;
use streams_core::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use streams_core::connector::{Connector, Options};
use streams_core::datafusion::prelude::{col, lit};
use streams_core::plan::{JobConfig, StreamPlanBuilder, compile};
use streams_core::runtime::{CheckpointConfig, launch};
use streams_core::testing::MemoryCheckpoints;
use streams_queue::{Record, Store, TopicConfig};

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("user", DataType::Utf8, false),
        Field::new("amount", DataType::Int64, false),
    ]))
}

fn store_with_input(dir: &std::path::Path, rows: usize) -> Arc<Store> {
    let store = Store::open(dir).unwrap();
    let config = |queues| TopicConfig {
        queues,
        segment_bytes: 1 << 20,
        ..TopicConfig::default()
    };
    store.create_topic("in", config(3)).unwrap();
    store.create_topic("out", config(2)).unwrap();
    for chunk in (0..rows).collect::<Vec<_>>().chunks(100) {
        let records: Vec<Record> = chunk
            .iter()
            .map(|i| {
                Record::new(format!(
                    r#"{{"id": {i}, "user": "u{}", "amount": {}}}"#,
                    i % 17,
                    (i * 7919) % 1000
                ))
            })
            .collect();
        store
            .append("in", (chunk[0] / 100 % 3) as u32, &records)
            .unwrap();
    }
    Arc::new(store)
}

fn options(pairs: &[(&str, &str)]) -> Options {
    Options::new(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())))
}

fn job(queue: &Queue, storage: MemoryCheckpoints) -> (streams_core::runtime::JobGraph, JobConfig) {
    let source = queue
        .source(
            "in",
            schema(),
            &options(&[("topic", "in"), ("scan.bounded.mode", "latest-offset")]),
        )
        .unwrap();
    let sink = queue
        .sink("out", schema(), &options(&[("topic", "out")]))
        .unwrap();
    let plan = StreamPlanBuilder::scan("in", source)
        .unwrap()
        .filter(col("amount").gt(lit(100)))
        .unwrap()
        .sink("out", sink)
        .unwrap();
    let mut config = JobConfig {
        parallelism: 2,
        ..JobConfig::default()
    };
    config.runtime.checkpointing = Some(CheckpointConfig::new(
        Some(Duration::from_millis(3)),
        Arc::new(storage),
    ));
    (compile(&[plan], &config).unwrap(), config)
}

/// Every record of `topic` as (payload, count).
fn contents(store: &Store, topic: &str) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for q in 0..store.queue_count(topic).unwrap() {
        let mut offset = 0;
        loop {
            let rs = store.read(topic, q, offset, &Default::default()).unwrap();
            let Some(last) = rs.last() else { break };
            offset = last.offset + 1;
            for r in rs {
                *out.entry(String::from_utf8(r.payload.to_vec()).unwrap())
                    .or_default() += 1;
            }
        }
    }
    out
}

fn expected(rows: usize) -> BTreeMap<String, usize> {
    (0..rows)
        .filter(|i| (i * 7919) % 1000 > 100)
        .map(|i| {
            (
                format!(
                    r#"{{"id":{i},"user":"u{}","amount":{}}}"#,
                    i % 17,
                    (i * 7919) % 1000
                ),
                1,
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queue_to_queue_job_is_exactly_once_across_crashes() {
    let dir = tempfile::tempdir().unwrap();
    let rows = 30_000;
    let store = store_with_input(dir.path(), rows);
    let queue = Queue::with_store(Arc::clone(&store));
    let storage = MemoryCheckpoints::new();
    let mut crashes = 0;
    for delay_ms in [3u64, 7, 2, 11, 5, 9, 4, 13] {
        let (graph, config) = job(&queue, storage.resume());
        let mut handle = launch(graph, &config.runtime).unwrap();
        tokio::select! {
            r = handle.join() => { r.unwrap(); break; }
            _ = tokio::time::sleep(Duration::from_millis(delay_ms)) => {}
        }
        // The crash: tasks stop at their next step and commit nothing more.
        handle.cancel();
        let _ = handle.join().await;
        crashes += 1;
    }
    let (graph, config) = job(&queue, storage.resume());
    launch(graph, &config.runtime)
        .unwrap()
        .wait()
        .await
        .unwrap();
    assert!(crashes > 0 && !storage.completed().is_empty());
    let got = contents(&store, "out");
    let want = expected(rows);
    let dupes: Vec<_> = got.iter().filter(|(_, n)| **n > 1).take(3).collect();
    assert!(
        dupes.is_empty(),
        "duplicates after {crashes} crashes: {dupes:?}"
    );
    assert_eq!(got.len(), want.len(), "rows after {crashes} crashes");
    assert_eq!(got, want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resumed_commit_appends_only_what_a_crash_left_out() {
    use streams_core::arrow::array::{Int64Array, RecordBatch, StringArray};
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_input(dir.path(), 0);
    let queue = Queue::with_store(Arc::clone(&store));
    let factory = queue
        .sink("out", schema(), &options(&[("topic", "out")]))
        .unwrap();
    let ctx = streams_core::SinkContext {
        node: 4,
        subtask: 1,
        parallelism: 2,
        schema: schema(),
        checkpointing: true,
    };
    let batch = RecordBatch::try_new(
        schema(),
        vec![
            Arc::new(Int64Array::from(vec![1, 2, 3])),
            Arc::new(StringArray::from(vec!["a", "b", "c"])),
            Arc::new(Int64Array::from(vec![10, 20, 30])),
        ],
    )
    .unwrap();
    let mut first = factory.create(1, 2).unwrap();
    first.start(&ctx).await.unwrap();
    first.write(batch.clone()).await.unwrap();
    let state = first.pre_commit(7).await.unwrap().expect("staged rows");
    assert!(
        contents(&store, "out").is_empty(),
        "nothing visible before the commit"
    );
    // The crash came after the checkpoint, half-way through the commit: one record made it.
    let mut r = Record::new(r#"{"id":1,"user":"a","amount":10}"#);
    r.headers.push((
        streams_connectors::queue::TXN_HEADER.to_string(),
        "out/4/1/7/0".into(),
    ));
    store.append("out", 1, &[r]).unwrap();
    let bytes = state.encode().unwrap();
    let mut second = factory.create(1, 2).unwrap();
    second
        .restore(
            7,
            Some(streams_core::state::OperatorState::decode(&bytes).unwrap()),
        )
        .await
        .unwrap();
    second.start(&ctx).await.unwrap();
    second.commit(7).await.unwrap();
    // And the commit is repeated once more (a crash right after it): nothing changes.
    let mut third = factory.create(1, 2).unwrap();
    third
        .restore(
            7,
            Some(streams_core::state::OperatorState::decode(&bytes).unwrap()),
        )
        .await
        .unwrap();
    third.start(&ctx).await.unwrap();
    third.commit(7).await.unwrap();
    let got = contents(&store, "out");
    assert_eq!(got.len(), 3, "{got:?}");
    assert!(got.values().all(|n| *n == 1), "{got:?}");
}

#[tokio::test]
async fn bad_records_fail_the_job_or_are_skipped_and_options_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_input(dir.path(), 10);
    store
        .append(
            "in",
            0,
            &[Record::new("{not json"), Record::new(r#"{"id": "x"}"#)],
        )
        .unwrap();
    let queue = Queue::with_store(Arc::clone(&store));
    let run = |on_error: &str| {
        let source = queue
            .source(
                "in",
                schema(),
                &options(&[
                    ("topic", "in"),
                    ("scan.bounded.mode", "latest-offset"),
                    ("format.on-error", on_error),
                ]),
            )
            .unwrap();
        let sink = Arc::new(streams_core::testing::CollectSink::new());
        let plan = StreamPlanBuilder::scan("in", source)
            .unwrap()
            .sink("out", sink.clone())
            .unwrap();
        let graph = compile(&[plan], &JobConfig::default()).unwrap();
        (graph, sink)
    };
    let (graph, _) = run("fail");
    let err = launch(graph, &Default::default())
        .unwrap()
        .wait()
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("offset 10") && err.to_string().contains("topic 'in'"),
        "{err}"
    );
    let (graph, sink) = run("skip");
    launch(graph, &Default::default())
        .unwrap()
        .wait()
        .await
        .unwrap();
    assert_eq!(sink.rows(), 10, "the good rows, without the two bad ones");

    let err = queue
        .source("in", schema(), &options(&[("topic", "nope")]))
        .unwrap_err();
    assert!(err.to_string().contains("topic 'nope'"), "{err}");
    let err = queue
        .source(
            "in",
            schema(),
            &options(&[("topic", "in"), ("scan.startup.mode", "group-offsets")]),
        )
        .unwrap_err();
    assert!(err.to_string().contains("properties.group.id"), "{err}");
    let err = queue
        .sink(
            "out",
            schema(),
            &options(&[("topic", "out"), ("key.fields", "nope")]),
        )
        .unwrap_err();
    assert!(err.to_string().contains("`nope`"), "{err}");
}
