//! Window and interval joins against DataFusion's batch engine on the same rows: inner and left
//! outer, with and without a residual condition, in-order and disordered, parallelism 1 and 4.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use streams_core::datafusion::prelude::{Expr, col};
use streams_core::ops::join::JoinType;
use streams_core::plan::{StreamJoinKind, StreamPlanBuilder, WindowOptions};
use streams_core::testing::{MemorySource, Step};
use streams_core::window::WindowSpec;

async fn engine(
    left: &[Event],
    right: &[Event],
    kind: StreamJoinKind,
    join_type: JoinType,
    filter: Option<Expr>,
    bound: i64,
    parallelism: usize,
) -> Vec<String> {
    let sink = collect_sink();
    let side = |name: &str, events: &[Event]| {
        StreamPlanBuilder::scan(name, Arc::new(source(events, 3, 64)))
            .unwrap()
            .watermark("ts", Duration::from_millis(bound as u64), None)
            .unwrap()
    };
    let plan = side("l", left)
        .join(
            side("r", right),
            kind,
            join_type,
            ("ts", "ts"),
            vec![(col("l.k"), col("r.k"))],
            filter,
            WindowOptions::default(),
        )
        .unwrap()
        .sink("out", sink.clone())
        .unwrap();
    run(plan, parallelism).await.unwrap();
    lines(&sink.batches())
}

async fn check(kind: StreamJoinKind, reference_sql: &str, residual: Option<Expr>) {
    for join_type in [JoinType::Inner, JoinType::Left] {
        let sql = reference_sql.replace(
            "{JOIN}",
            if join_type == JoinType::Inner {
                "JOIN"
            } else {
                "LEFT JOIN"
            },
        );
        for (jitter, seed) in [(0, 5), (300, 6)] {
            let left = events(2_000, 50, 7, jitter, seed);
            let right = events(2_000, 50, 7, jitter, seed + 100);
            let expected = reference_tables(&[("l", &left), ("r", &right)], &sql).await;
            assert!(!expected.is_empty());
            for parallelism in [1, 4] {
                let got = engine(
                    &left,
                    &right,
                    kind,
                    join_type,
                    residual.clone(),
                    jitter.max(1),
                    parallelism,
                )
                .await;
                assert_same(
                    &got,
                    &expected,
                    &format!("{kind:?} {join_type:?} jitter {jitter} parallelism {parallelism}"),
                );
            }
        }
    }
}

#[tokio::test]
async fn tumble_window_join_matches_datafusion() {
    check(
        StreamJoinKind::Window(WindowSpec::Tumble { size: 2_000, offset: 0 }),
        "SELECT l.tms - l.tms % 2000, l.tms - l.tms % 2000 + 2000, l.k, l.v, l.tms, r.k, r.v, r.tms \
         FROM l {JOIN} r ON l.k = r.k AND l.tms - l.tms % 2000 = r.tms - r.tms % 2000",
        None,
    )
    .await;
}

#[tokio::test]
async fn hop_window_join_with_condition_matches_datafusion() {
    // HOP(size 3 s, slide 1 s): each row is in three windows; join per window.
    check(
        StreamJoinKind::Window(WindowSpec::Hop {
            size: 3_000,
            slide: 1_000,
        }),
        "WITH lw AS (SELECT l.*, l.tms - l.tms % 1000 - o.i * 1000 AS ws FROM l \
           CROSS JOIN (VALUES (0), (1), (2)) AS o(i)), \
         rw AS (SELECT r.*, r.tms - r.tms % 1000 - o.i * 1000 AS ws FROM r \
           CROSS JOIN (VALUES (0), (1), (2)) AS o(i)) \
         SELECT lw.ws, lw.ws + 3000, lw.k, lw.v, lw.tms, rw.k, rw.v, rw.tms \
         FROM lw {JOIN} rw ON lw.k = rw.k AND lw.ws = rw.ws AND lw.v > rw.v",
        Some(col("l.v").gt(col("r.v"))),
    )
    .await;
}

#[tokio::test]
async fn interval_join_matches_datafusion() {
    check(
        StreamJoinKind::Interval {
            lower: -1_000,
            upper: 500,
        },
        "SELECT l.k, l.v, l.tms, r.k, r.v, r.tms FROM l {JOIN} r \
         ON l.k = r.k AND l.tms >= r.tms - 1000 AND l.tms <= r.tms + 500",
        None,
    )
    .await;
}

#[tokio::test]
async fn interval_join_with_condition_matches_datafusion() {
    check(
        StreamJoinKind::Interval {
            lower: 0,
            upper: 2_000,
        },
        "SELECT l.k, l.v, l.tms, r.k, r.v, r.tms FROM l {JOIN} r \
         ON l.k = r.k AND l.tms >= r.tms AND l.tms <= r.tms + 2000 AND l.v < r.v",
        Some(col("l.v").lt(col("r.v"))),
    )
    .await;
}

#[tokio::test]
async fn join_results_are_not_late_for_a_window_downstream() {
    // Each left row meets the right row 5 s later; the pair comes out when the right row
    // arrives, 5 s behind the watermark. The join holds its watermark back by that much, so a
    // window over the left time downstream loses nothing.
    let left: Vec<Event> = (0..1000)
        .map(|i| Event {
            key: i % 10,
            value: i as i64,
            ts: i as i64 * 10,
        })
        .collect();
    let right: Vec<Event> = left
        .iter()
        .map(|e| Event {
            ts: e.ts + 5_000,
            ..*e
        })
        .collect();
    let sink = collect_sink();
    // The right side starts late, so the left side is far ahead and the join's watermark is
    // the right side's.
    let side = |name: &str, events: &[Event], pause: u64| {
        let mut steps = vec![Step::Sleep(Duration::from_millis(pause))];
        steps.extend(events.chunks(50).map(|c| Step::Batch(batch(c))));
        StreamPlanBuilder::scan(
            name,
            Arc::new(MemorySource::new(name, schema()).with_split(steps)),
        )
        .unwrap()
        .watermark("ts", Duration::from_millis(1), None)
        .unwrap()
    };
    let plan = side("l", &left, 0)
        .join(
            side("r", &right, 200),
            StreamJoinKind::Interval {
                lower: -5_000,
                upper: -5_000,
            },
            JoinType::Inner,
            ("ts", "ts"),
            vec![(col("l.k"), col("r.k")), (col("l.v"), col("r.v"))],
            None,
            WindowOptions::default(),
        )
        .unwrap()
        .project(vec![col("l.k").alias("key"), col("l.ts").alias("time")])
        .unwrap()
        .window_aggregate(
            WindowSpec::Tumble {
                size: 1_000,
                offset: 0,
            },
            "time",
            vec![col("key")],
            vec![
                streams_core::datafusion::functions_aggregate::expr_fn::count(
                    streams_core::datafusion::prelude::lit(1),
                )
                .alias("n"),
            ],
            WindowOptions::default(),
        )
        .unwrap()
        .sink("out", sink.clone())
        .unwrap();
    let graph = streams_core::plan::compile(&[plan], &config(2)).unwrap();
    let handle = streams_core::runtime::launch(graph, &Default::default()).unwrap();
    let metrics = handle.metrics();
    handle.wait().await.unwrap();
    let total: i64 = sink
        .batches()
        .iter()
        .map(|b| {
            let n = b
                .column(4)
                .as_any()
                .downcast_ref::<streams_core::arrow::array::Int64Array>()
                .unwrap();
            n.values().iter().sum::<i64>()
        })
        .sum();
    let late: u64 = metrics.snapshot().iter().map(|m| m.late_rows).sum();
    assert_eq!((total, late), (1000, 0));
}

#[tokio::test]
async fn null_keys_never_match() {
    use streams_core::arrow::array::{
        Int64Array, RecordBatch, StringArray, TimestampMillisecondArray,
    };
    use streams_core::arrow::datatypes::{DataType, Field, Schema, TimeUnit};
    let schema = Arc::new(Schema::new(vec![
        Field::new("k", DataType::Utf8, true),
        Field::new("v", DataType::Int64, false),
        Field::new(
            "ts",
            DataType::Timestamp(TimeUnit::Millisecond, None),
            false,
        ),
    ]));
    let rows = |v: i64| {
        RecordBatch::try_new(
            Arc::clone(&schema),
            vec![
                Arc::new(StringArray::from(vec![None, Some("a")])),
                Arc::new(Int64Array::from(vec![v, v + 1])),
                Arc::new(TimestampMillisecondArray::from(vec![100, 200])),
            ],
        )
        .unwrap()
    };
    for (join_type, expected) in [(JoinType::Inner, 1), (JoinType::Left, 2)] {
        let sink = collect_sink();
        let side = |name: &str, v: i64| {
            StreamPlanBuilder::scan(
                name,
                Arc::new(MemorySource::new(name, Arc::clone(&schema)).with_batches([rows(v)])),
            )
            .unwrap()
            .watermark("ts", Duration::ZERO, None)
            .unwrap()
        };
        let plan = side("l", 0)
            .join(
                side("r", 10),
                StreamJoinKind::Window(WindowSpec::Tumble {
                    size: 1_000,
                    offset: 0,
                }),
                join_type,
                ("ts", "ts"),
                vec![(col("l.k"), col("r.k"))],
                None,
                WindowOptions::default(),
            )
            .unwrap()
            .sink("out", sink.clone())
            .unwrap();
        run(plan, 1).await.unwrap();
        assert_eq!(sink.rows(), expected, "{join_type:?}");
    }
}
