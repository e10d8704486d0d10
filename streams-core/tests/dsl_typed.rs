//! Typed DSL steps: rows of serde structs to Arrow and back through `from_iter`, `map`,
//! `filter_rows`, `flat_map`, `for_each` and `collect`, for every column type the DSL claims:
//! integers, floats, booleans, strings, options, nested structs, lists and timestamps.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use streams_core::arrow::array::{Int64Array, RecordBatch, TimestampMillisecondArray};
use streams_core::arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use streams_core::datafusion::functions_aggregate::count::count_all;
use streams_core::datafusion::prelude::col;
use streams_core::dsl::{Pipeline, Tumble};
use streams_core::testing::MemorySource;

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, PartialOrd)]
struct Inner {
    a: i32,
    b: Option<String>,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, PartialOrd)]
struct Row {
    id: i64,
    small: i8,
    short: i16,
    int: i32,
    unsigned: u32,
    big: u64,
    ratio: f32,
    value: f64,
    flag: bool,
    name: String,
    maybe: Option<i64>,
    label: Option<String>,
    nested: Inner,
    tags: Vec<i64>,
}

fn rows(n: i64) -> Vec<Row> {
    (0..n)
        .map(|i| Row {
            id: i,
            small: (i % 100) as i8 - 50,
            short: (i * 7 % 3000) as i16,
            int: (i * 31) as i32 - 1000,
            unsigned: (i * 13) as u32,
            big: u64::MAX - i as u64,
            ratio: i as f32 / 4.0,
            value: i as f64 * 1.5 - 7.25,
            flag: i % 3 == 0,
            name: format!("row-{i}"),
            maybe: (i % 4 != 0).then_some(i * i),
            label: (i % 5 == 0).then(|| format!("l{i}")),
            nested: Inner {
                a: i as i32,
                b: (i % 2 == 0).then(|| "even".to_string()),
            },
            tags: (0..i % 4).collect(),
        })
        .collect()
}

fn sorted(mut v: Vec<Row>) -> Vec<Row> {
    v.sort_by_key(|r| r.id);
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_type_round_trips_through_map_filter_and_flat_map() {
    let input = rows(5_000);
    let p = Pipeline::new().parallelism(2);
    let source = p.from_iter("rows", input.clone()).unwrap();
    let same = source
        .clone()
        .map(|r: Row| r)
        .unwrap()
        .collect::<Row>()
        .unwrap();

    // `filter_rows` sees only the fields it names and keeps every column.
    #[derive(Deserialize)]
    struct Id {
        id: i64,
    }
    let even = source
        .clone()
        .filter_rows(|r: &Id| r.id % 2 == 0)
        .unwrap()
        .collect::<Row>()
        .unwrap();
    let doubled = source
        .flat_map(|r: Row| {
            let mut twin = r.clone();
            twin.id += 1_000_000;
            twin.nested.b = None;
            [r, twin]
        })
        .unwrap()
        .collect::<Row>()
        .unwrap();
    p.execute().unwrap().wait().await.unwrap();

    assert_eq!(sorted(same.rows().unwrap()), input);
    let want_even: Vec<Row> = input.iter().filter(|r| r.id % 2 == 0).cloned().collect();
    assert_eq!(sorted(even.rows().unwrap()), want_even);
    let got = sorted(doubled.rows().unwrap());
    assert_eq!(got.len(), 10_000);
    assert_eq!(&got[..5_000], input.as_slice());
    assert!(
        got[5_000..]
            .iter()
            .all(|r| r.nested.b.is_none() && r.id >= 1_000_000)
    );
}

#[derive(Deserialize)]
struct Reading {
    ts: i64,
    sensor: i64,
}

#[derive(Serialize, Deserialize)]
struct Scaled {
    ts: i64,
    sensor: i64,
    tenfold: i64,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_time_survives_a_map_and_windows_after_it() {
    let schema = Arc::new(Schema::new(vec![
        Field::new(
            "ts",
            DataType::Timestamp(TimeUnit::Millisecond, None),
            false,
        ),
        Field::new("sensor", DataType::Int64, false),
    ]));
    let batch = RecordBatch::try_new(
        Arc::clone(&schema),
        vec![
            Arc::new(TimestampMillisecondArray::from_iter_values(
                (0..1_000).map(|i| i * 10),
            )),
            Arc::new(Int64Array::from_iter_values((0..1_000).map(|i| i % 4))),
        ],
    )
    .unwrap();
    let p = Pipeline::new().parallelism(2);
    let mapped = p
        .source(
            "readings",
            Arc::new(MemorySource::new("readings", schema).with_batches([batch])),
        )
        .unwrap()
        .event_time("ts", Duration::ZERO)
        .unwrap()
        .map(|r: Reading| Scaled {
            ts: r.ts,
            sensor: r.sensor,
            tenfold: r.sensor * 10,
        })
        .unwrap();
    // The output's `ts` is still a timestamp column, so it still carries event time.
    assert_eq!(
        mapped.schema().field_with_name("ts").unwrap().data_type(),
        &DataType::Timestamp(TimeUnit::Millisecond, None)
    );
    let total = Arc::new(AtomicI64::new(0));
    let seen = Arc::clone(&total);
    mapped
        .key_by([col("sensor")])
        .window(Tumble::of(Duration::from_secs(1)))
        .aggregate([count_all().alias("n")])
        .unwrap()
        .select([col("sensor"), col("n")])
        .unwrap()
        .for_each(move |w: Window| {
            assert!(w.sensor < 4);
            seen.fetch_add(w.n, Ordering::Relaxed);
        })
        .unwrap();
    p.execute().unwrap().wait().await.unwrap();
    assert_eq!(total.load(Ordering::Relaxed), 1_000);
}

#[derive(Deserialize)]
struct Window {
    sensor: i64,
    n: i64,
}

#[test]
fn typed_steps_refuse_update_streams_and_name_bad_types() {
    let p = Pipeline::new();
    let counts = p
        .from_iter("rows", rows(10))
        .unwrap()
        .key_by([col("small")])
        .aggregate([count_all().alias("n")])
        .unwrap();
    let err = counts.map(|r: Inner| r).unwrap_err().to_string();
    assert!(err.contains("over an update stream"), "{err}");

    #[derive(Serialize, Deserialize)]
    struct Unit;
    let err = p.from_iter("units", [Unit, Unit]).unwrap_err().to_string();
    assert!(err.contains("cannot derive columns"), "{err}");
}

#[derive(Deserialize, Debug, PartialEq)]
struct PerKey {
    small: i8,
    count: i64,
}

#[tokio::test]
async fn grouped_shortcuts_name_their_column() {
    let p = Pipeline::new();
    let counts = p
        .from_iter("rows", rows(400))
        .unwrap()
        .filter(col("small").lt(streams_core::datafusion::prelude::lit(-45i8)))
        .unwrap()
        .key_by([col("small")])
        .count()
        .unwrap()
        .collect::<PerKey>()
        .unwrap();
    p.execute().unwrap().wait().await.unwrap();
    let mut got = counts.rows().unwrap();
    got.sort_by_key(|r| r.small);
    // small = i % 100 - 50: each of -50..-46 four times in 400 rows.
    let want: Vec<PerKey> = (-50..-45).map(|small| PerKey { small, count: 4 }).collect();
    assert_eq!(got, want);
}

#[tokio::test]
async fn a_running_job_stops_on_request() {
    // One split that never ends: the job runs until stopped.
    let schema = Arc::new(Schema::new(vec![Field::new("v", DataType::Int64, false)]));
    let source = MemorySource::new("forever", Arc::clone(&schema)).with_split(vec![
        streams_core::testing::Step::Batch(
            RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from(vec![1, 2, 3]))]).unwrap(),
        ),
        streams_core::testing::Step::Pending,
    ]);
    let p = Pipeline::new();
    let seen = Arc::new(AtomicI64::new(0));
    let count = Arc::clone(&seen);
    #[derive(Deserialize)]
    struct V {
        v: i64,
    }
    p.source("forever", Arc::new(source))
        .unwrap()
        .for_each(move |r: V| {
            count.fetch_add(r.v, Ordering::Relaxed);
        })
        .unwrap();
    let job = p.execute().unwrap();
    while seen.load(Ordering::Relaxed) < 6 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    job.stop().await.unwrap();
}
