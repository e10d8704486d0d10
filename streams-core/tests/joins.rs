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
