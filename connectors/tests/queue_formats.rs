//! Record formats and bad-record policies of the queue connector: rows written as CSV or raw
//! payloads read back equal; unreadable records are skipped and counted, or sent to a
//! dead-letter topic with their bytes and the error; wrong options are refused by name.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

use std::sync::Arc;

use streams_connectors::Queue;
use streams_connectors::format::{ERROR_HEADER, SOURCE_HEADER};
use streams_core::arrow::array::{AsArray, RecordBatch};
use streams_core::arrow::compute::concat_batches;
use streams_core::arrow::datatypes::{DataType, Field, Int64Type, Schema, SchemaRef};
use streams_core::connector::{Connector, Options};
use streams_core::plan::{JobConfig, StreamPlanBuilder, compile};
use streams_core::runtime::launch;
use streams_core::testing::CollectSink;
use streams_queue::{Record, Store, StoredRecord, TopicConfig};

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("name", DataType::Utf8, true),
        Field::new(
            "ts",
            DataType::Timestamp(streams_core::arrow::datatypes::TimeUnit::Millisecond, None),
            false,
        ),
    ]))
}

fn options(pairs: &[(&str, &str)]) -> Options {
    Options::new(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())))
}

/// A store with topic `in` holding `rows` JSON rows (names with commas, quotes and line
/// breaks, and NULLs, to exercise CSV quoting), plus topics `mid` and `out`.
fn store(dir: &std::path::Path, rows: i64) -> Arc<Store> {
    let store = Store::open(dir).unwrap();
    for (topic, queues) in [("in", 2), ("mid", 2), ("out", 1)] {
        let config = TopicConfig {
            queues,
            segment_bytes: 1 << 20,
            ..TopicConfig::default()
        };
        store.create_topic(topic, config).unwrap();
    }
    let records: Vec<Record> = (0..rows)
        .map(|i| {
            let name = match i % 4 {
                0 => "null".to_string(),
                1 => format!(r#""a, \"quoted\" {i}""#),
                2 => format!(r#""two\nlines {i}""#),
                _ => format!(r#""plain{i}""#),
            };
            Record::new(format!(
                r#"{{"id": {i}, "name": {name}, "ts": "2024-05-01T00:00:{:02}.{:03}"}}"#,
                i % 60,
                i % 1000
            ))
        })
        .collect();
    store.append("in", 0, &records).unwrap();
    Arc::new(store)
}

async fn run(
    queue: &Queue,
    from: (&str, &[(&str, &str)]),
    to: Option<(&str, &[(&str, &str)])>,
    schema: SchemaRef,
) -> (Vec<RecordBatch>, u64) {
    let mut source_options = vec![("topic", from.0), ("scan.bounded.mode", "latest-offset")];
    source_options.extend_from_slice(from.1);
    let source = queue
        .source("src", Arc::clone(&schema), &options(&source_options))
        .unwrap();
    let collect = Arc::new(CollectSink::new());
    let sink: Arc<dyn streams_core::SinkFactory> = match to {
        Some((topic, extra)) => {
            let mut o = vec![("topic", topic)];
            o.extend_from_slice(extra);
            queue
                .sink("dst", Arc::clone(&schema), &options(&o))
                .unwrap()
        }
        None => collect.clone(),
    };
    let plan = StreamPlanBuilder::scan("src", source)
        .unwrap()
        .sink("dst", sink)
        .unwrap();
    let config = JobConfig {
        parallelism: 2,
        ..JobConfig::default()
    };
    let graph = compile(&[plan], &config).unwrap();
    let handle = launch(graph, &config.runtime).unwrap();
    let metrics = handle.metrics();
    handle.wait().await.unwrap();
    let bad = metrics.snapshot().iter().map(|m| m.bad_records).sum();
    (collect.batches(), bad)
}

fn sorted(schema: &SchemaRef, batches: &[RecordBatch]) -> RecordBatch {
    let all = concat_batches(schema, batches).unwrap();
    let order = streams_core::arrow::compute::sort_to_indices(all.column(0), None, None).unwrap();
    streams_core::arrow::compute::take_record_batch(&all, &order).unwrap()
}

#[tokio::test]
async fn rows_survive_a_round_trip_through_csv_and_raw() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path(), 200);
    let queue = Queue::with_store(Arc::clone(&store));
    let (reference, _) = run(&queue, ("in", &[]), None, schema()).await;
    let reference = sorted(&schema(), &reference);
    assert_eq!(reference.num_rows(), 200);

    for csv in [
        &[("format", "csv")][..],
        &[
            ("format", "csv"),
            ("csv.field-delimiter", "\\t"),
            ("csv.null-literal", "NULL"),
        ][..],
    ] {
        store.delete_topic("mid").unwrap();
        store
            .create_topic(
                "mid",
                TopicConfig {
                    queues: 2,
                    ..TopicConfig::default()
                },
            )
            .unwrap();
        run(&queue, ("in", &[]), Some(("mid", csv)), schema()).await;
        let (back, bad) = run(&queue, ("mid", csv), None, schema()).await;
        assert_eq!(bad, 0);
        assert_eq!(sorted(&schema(), &back), reference, "{csv:?}");
    }
    // One record per row, NULLs as the null literal.
    let payloads = all(&store, "mid");
    assert_eq!(payloads.len(), 200);
    assert!(
        payloads.iter().any(|r| r.payload.starts_with(b"0\tNULL\t")),
        "{:?}",
        payloads[0]
    );

    // raw: the payload itself is the column, both ways.
    let text = Arc::new(Schema::new(vec![Field::new("line", DataType::Utf8, true)]));
    let raw: &[(&str, &str)] = &[("format", "raw")];
    run(&queue, ("in", raw), Some(("out", raw)), Arc::clone(&text)).await;
    let mut copied: Vec<Vec<u8>> = all(&store, "out")
        .into_iter()
        .map(|r| r.payload.to_vec())
        .collect();
    let mut original: Vec<Vec<u8>> = all(&store, "in")
        .into_iter()
        .map(|r| r.payload.to_vec())
        .collect();
    copied.sort();
    original.sort();
    assert_eq!(copied, original);
}

fn all(store: &Store, topic: &str) -> Vec<StoredRecord> {
    let mut out = Vec::new();
    for q in 0..store.queue_count(topic).unwrap() {
        let mut offset = 0;
        loop {
            let rs = store.read(topic, q, offset, &Default::default()).unwrap();
            let Some(last) = rs.last() else { break };
            offset = last.offset + 1;
            out.extend(rs);
        }
    }
    out
}

#[tokio::test]
async fn bad_records_are_counted_skipped_or_dead_lettered() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path(), 50);
    let bad = [
        &b"{not json"[..],
        br#"{"id": "seven", "name": "x", "ts": "2024-05-01T00:00:00"}"#,
        br#"{"id": 1, "name": "x", "ts": "yesterday"}"#,
    ];
    let records: Vec<Record> = bad.iter().map(|b| Record::new(b.to_vec())).collect();
    store.append("in", 1, &records).unwrap();
    let queue = Queue::with_store(Arc::clone(&store));

    let (rows, skipped) = run(
        &queue,
        ("in", &[("format.on-error", "skip")]),
        None,
        schema(),
    )
    .await;
    assert_eq!(rows.iter().map(RecordBatch::num_rows).sum::<usize>(), 50);
    assert_eq!(skipped, 3, "skipped records are counted in the metrics");

    let dead: &[(&str, &str)] = &[
        ("format.on-error", "dead-letter"),
        ("format.dead-letter.topic", "bad-in"),
    ];
    let (rows, counted) = run(&queue, ("in", dead), None, schema()).await;
    assert_eq!(rows.iter().map(RecordBatch::num_rows).sum::<usize>(), 50);
    assert_eq!(counted, 3);
    let letters = all(&store, "bad-in");
    let payloads: Vec<&[u8]> = letters.iter().map(|r| &r.payload[..]).collect();
    assert_eq!(payloads, bad.to_vec(), "the raw bytes, in order");
    let header = |r: &StoredRecord, name: &str| {
        r.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| String::from_utf8_lossy(v).to_string())
            .unwrap()
    };
    assert!(
        header(&letters[1], ERROR_HEADER).contains("seven")
            || header(&letters[1], ERROR_HEADER)
                .to_lowercase()
                .contains("int64"),
        "{}",
        header(&letters[1], ERROR_HEADER)
    );
    assert!(
        header(&letters[2], ERROR_HEADER).contains("yesterday"),
        "{}",
        header(&letters[2], ERROR_HEADER)
    );
    assert_eq!(
        header(&letters[0], SOURCE_HEADER),
        "table `src`, topic 'in', queue 1, offset 0"
    );
    let ids: Vec<i64> = rows
        .iter()
        .flat_map(|b| b.column(0).as_primitive::<Int64Type>().values().to_vec())
        .collect();
    assert_eq!(ids.len(), 50);
}

#[test]
fn format_options_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path(), 1);
    let queue = Queue::with_store(store);
    let err = |pairs: &[(&str, &str)], schema: SchemaRef| {
        let mut o = vec![("topic", "in")];
        o.extend_from_slice(pairs);
        queue
            .source("t", schema, &options(&o))
            .unwrap_err()
            .to_string()
    };
    let e = err(&[("format", "avro")], schema());
    assert!(
        e.contains("'format' = 'avro'") && e.contains("json, csv, raw"),
        "{e}"
    );
    let e = err(&[("csv.field-delimiter", ";")], schema());
    assert!(
        e.contains("'csv.field-delimiter' applies to 'format' = 'csv' only"),
        "{e}"
    );
    let e = err(
        &[("format", "csv"), ("csv.field-delimiter", ";;")],
        schema(),
    );
    assert!(e.contains("one ASCII character"), "{e}");
    let e = err(&[("format", "raw")], schema());
    assert!(e.contains("exactly one column"), "{e}");
    let e = err(&[("format.on-error", "dead-letter")], schema());
    assert!(e.contains("needs 'format.dead-letter.topic'"), "{e}");
    let e = err(&[("format.dead-letter.topic", "x")], schema());
    assert!(e.contains("is not 'dead-letter'"), "{e}");
    let e = err(&[("format.on-error", "ignore")], schema());
    assert!(e.contains("fail, skip or dead-letter"), "{e}");
    queue
        .sink(
            "t",
            schema(),
            &options(&[("topic", "out"), ("format.on-error", "skip")]),
        )
        .expect("a table may be read and written: the sink accepts the reading options");
}
