//! Unbounded aggregates: an update stream whose applied result equals DataFusion's GROUP BY,
//! and sinks that only append refuse it at plan time.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

mod common;

use std::sync::Arc;

use common::*;
use streams_core::changelog::{UPDATE_AFTER, UPDATE_BEFORE, materialize};
use streams_core::datafusion::functions_aggregate::expr_fn::{count, max, sum};
use streams_core::datafusion::prelude::{col, lit};
use streams_core::plan::{StreamPlanBuilder, compile};
use streams_core::{Sink, SinkFactory};

#[tokio::test]
async fn unbounded_group_by_matches_datafusion_once_applied() {
    let evs = events(3_000, 25, 3, 0, 9);
    let expected = reference(&evs, "SELECT k, count(*), sum(v), max(v) FROM t GROUP BY k").await;
    for parallelism in [1, 3] {
        let sink = collect_sink();
        let plan = StreamPlanBuilder::scan("t", Arc::new(source(&evs, 2, 50)))
            .unwrap()
            .aggregate(
                vec![col("k")],
                vec![
                    count(lit(1)).alias("n"),
                    sum(col("v")).alias("s"),
                    max(col("v")).alias("hi"),
                ],
            )
            .unwrap()
            .sink("out", sink.clone())
            .unwrap();
        let schema = Arc::new(plan.schema().as_arrow().clone());
        run(plan, parallelism).await.unwrap();
        let applied = materialize(&schema, &sink.batches()).unwrap();
        assert_eq!(lines(&[applied]), expected, "parallelism {parallelism}");
    }
}

#[tokio::test]
async fn updates_retract_the_previous_result() {
    // One key, two batches far apart: +I (1), then -U (1) and +U (2).
    let steps = vec![
        streams_core::testing::Step::Batch(batch(&[Event {
            key: 1,
            value: 5,
            ts: 0,
        }])),
        streams_core::testing::Step::Sleep(std::time::Duration::from_millis(30)),
        streams_core::testing::Step::Batch(batch(&[Event {
            key: 1,
            value: 7,
            ts: 1,
        }])),
    ];
    let sink = collect_sink();
    let plan = StreamPlanBuilder::scan(
        "t",
        Arc::new(streams_core::testing::MemorySource::new("t", schema()).with_split(steps)),
    )
    .unwrap()
    .aggregate(vec![col("k")], vec![count(lit(1)).alias("n")])
    .unwrap()
    .sink("out", sink.clone())
    .unwrap();
    let mut config = config(1);
    config.watermark_interval = std::time::Duration::from_millis(10);
    let graph = compile(&[plan], &config).unwrap();
    streams_core::runtime::launch(graph, &config.runtime)
        .unwrap()
        .wait()
        .await
        .unwrap();
    let rows = lines(&sink.batches());
    assert_eq!(
        rows,
        vec![
            "k1 | 1 | 0".to_string(),
            format!("k1 | 1 | {UPDATE_BEFORE}"),
            format!("k1 | 2 | {UPDATE_AFTER}"),
        ]
    );
}

#[derive(Debug)]
struct AppendOnly;

impl SinkFactory for AppendOnly {
    fn name(&self) -> &str {
        "append-only"
    }
    fn create(&self, _: usize, _: usize) -> streams_core::Result<Box<dyn Sink>> {
        Err(streams_core::Error::plan("not used"))
    }
}

#[test]
fn append_only_sinks_refuse_updates_at_plan_time() {
    let plan = StreamPlanBuilder::scan("t", Arc::new(source(&events(10, 2, 1, 0, 1), 1, 5)))
        .unwrap()
        .aggregate(vec![col("k")], vec![count(lit(1))])
        .unwrap()
        .sink("out", Arc::new(AppendOnly))
        .unwrap();
    let err = compile(&[plan], &config(1)).unwrap_err().to_string();
    assert!(
        err.contains("sink `out` (append-only) only appends rows, but the query produces updates"),
        "{err}"
    );
}

#[tokio::test]
async fn pending_updates_go_out_on_the_timer_when_input_stops() {
    // A source without event time that produces one batch and then nothing: the update must
    // not wait for more rows.
    let steps = vec![
        streams_core::testing::Step::Batch(batch(&[Event {
            key: 1,
            value: 5,
            ts: 0,
        }])),
        streams_core::testing::Step::Pending,
    ];
    let sink = collect_sink();
    let plan = StreamPlanBuilder::scan(
        "t",
        Arc::new(streams_core::testing::MemorySource::new("t", schema()).with_split(steps)),
    )
    .unwrap()
    .aggregate(vec![col("k")], vec![count(lit(1)).alias("n")])
    .unwrap()
    .sink("out", sink.clone())
    .unwrap();
    let mut config = config(1);
    config.watermark_interval = std::time::Duration::from_millis(20);
    let handle =
        streams_core::runtime::launch(compile(&[plan], &config).unwrap(), &config.runtime).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while sink.rows() == 0 && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(lines(&sink.batches()), vec!["k1 | 1 | 0".to_string()]);
    handle.cancel();
    assert!(handle.wait().await.is_err());
}

#[tokio::test]
async fn top_n_per_key_matches_datafusion_once_applied() {
    let evs = events(2_000, 15, 3, 0, 21);
    let expected = reference(
        &evs,
        "SELECT k, v, tms, rn FROM (SELECT k, v, tms, ROW_NUMBER() OVER (PARTITION BY k ORDER BY v DESC, tms ASC) AS rn FROM t) WHERE rn <= 3",
    )
    .await;
    for parallelism in [1, 2] {
        let sink = collect_sink();
        let plan = StreamPlanBuilder::scan("t", Arc::new(source(&evs, 2, 40)))
            .unwrap()
            .top_n(
                vec![col("k")],
                vec![col("v").sort(false, true), col("ts").sort(true, true)],
                3,
                "rn",
            )
            .unwrap()
            .sink("out", sink.clone())
            .unwrap();
        let schema = Arc::new(plan.schema().as_arrow().clone());
        run(plan, parallelism).await.unwrap();
        let applied = materialize(&schema, &sink.batches()).unwrap();
        assert_eq!(lines(&[applied]), expected, "parallelism {parallelism}");
    }
}

#[tokio::test]
async fn a_group_whose_result_did_not_change_emits_nothing() {
    // Every row of key 0 has v = 5, so max(v) never changes after the first: one insert.
    let schema = Arc::new(streams_core::arrow::datatypes::Schema::new(vec![
        streams_core::arrow::datatypes::Field::new(
            "k",
            streams_core::arrow::datatypes::DataType::Int64,
            false,
        ),
        streams_core::arrow::datatypes::Field::new(
            "v",
            streams_core::arrow::datatypes::DataType::Int64,
            false,
        ),
    ]));
    let batch = |v: i64| {
        streams_core::arrow::array::RecordBatch::try_new(
            Arc::clone(&schema),
            vec![
                Arc::new(streams_core::arrow::array::Int64Array::from(vec![0, 0])),
                Arc::new(streams_core::arrow::array::Int64Array::from(vec![v, 5])),
            ],
        )
        .unwrap()
    };
    let source =
        streams_core::testing::MemorySource::new("t", Arc::clone(&schema)).with_split(vec![
            streams_core::testing::Step::Batch(batch(5)),
            streams_core::testing::Step::Watermark(1),
            streams_core::testing::Step::Batch(batch(3)),
            streams_core::testing::Step::Watermark(2),
            streams_core::testing::Step::Batch(batch(9)),
        ]);
    let sink = collect_sink();
    let plan = StreamPlanBuilder::scan("t", Arc::new(source))
        .unwrap()
        .aggregate(vec![col("k")], vec![max(col("v")).alias("hi")])
        .unwrap()
        .sink("out", sink.clone())
        .unwrap();
    run(plan, 1).await.unwrap();
    let ops: Vec<i8> = sink
        .batches()
        .iter()
        .flat_map(|b| {
            streams_core::arrow::array::AsArray::as_primitive::<
                streams_core::arrow::datatypes::Int8Type,
            >(b.column(b.num_columns() - 1))
            .values()
            .to_vec()
        })
        .collect();
    // +I(5); the batch of 3s changes nothing; the 9 gives -U(5) +U(9).
    assert_eq!(
        ops,
        vec![streams_core::changelog::INSERT, UPDATE_BEFORE, UPDATE_AFTER]
    );
}
