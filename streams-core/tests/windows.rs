//! Window aggregates against DataFusion's batch engine on the same rows: every window kind, a
//! set of aggregates, in-order and disordered input, parallelism 1 and 4.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

mod common;

use std::time::Duration;

use common::*;
use streams_core::datafusion::functions_aggregate::expr_fn::{
    approx_distinct, approx_percentile_cont, avg, count, count_distinct, max, median, min, sum,
};
use streams_core::datafusion::prelude::{col, lit};
use streams_core::plan::{StreamPlanBuilder, WindowOptions};
use streams_core::window::WindowSpec;

const AGGS_SQL: &str = "count(*), sum(v), avg(v), min(v), max(v), count(DISTINCT v), \
                        approx_distinct(v), median(v), \
                        approx_percentile_cont(0.5) WITHIN GROUP (ORDER BY v), sum_sq(v)";

fn aggs() -> Vec<streams_core::datafusion::prelude::Expr> {
    vec![
        count(lit(1)).alias("n"),
        sum(col("v")).alias("s"),
        avg(col("v")).alias("a"),
        min(col("v")).alias("lo"),
        max(col("v")).alias("hi"),
        count_distinct(col("v")).alias("d"),
        approx_distinct(col("v")).alias("ad"),
        median(col("v")).alias("med"),
        approx_percentile_cont(col("v").sort(true, false), lit(0.5), None).alias("p50"),
        sum_of_squares().call(vec![col("v")]).alias("sq"),
    ]
}

/// Runs a window over `events` and returns rows as `start | end | key | aggregates`.
async fn engine(
    events: &[Event],
    window: WindowSpec,
    bound: i64,
    parallelism: usize,
) -> Vec<String> {
    let sink = collect_sink();
    let plan = StreamPlanBuilder::scan("t", std::sync::Arc::new(source(events, 4, 97)))
        .unwrap()
        .watermark("ts", Duration::from_millis(bound as u64), None)
        .unwrap()
        .window_aggregate(
            window,
            "ts",
            vec![col("k")],
            aggs(),
            WindowOptions::default(),
        )
        .unwrap()
        .sink("out", sink.clone())
        .unwrap();
    run(plan, parallelism).await.unwrap();
    let batches: Vec<_> = sink
        .batches()
        .iter()
        .map(|b| {
            b.project(&[0, 1, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13])
                .unwrap()
        })
        .collect();
    lines(&batches)
}

fn reference_sql(window: WindowSpec) -> String {
    match window {
        WindowSpec::Tumble { size, .. } => format!(
            "SELECT tms - tms % {size} AS ws, tms - tms % {size} + {size} AS we, k, {AGGS_SQL} \
             FROM t GROUP BY 1, 2, k"
        ),
        WindowSpec::Hop { size, slide } => {
            let offsets: Vec<String> = (0..size / slide).map(|i| format!("({i})")).collect();
            format!(
                "SELECT tms - tms % {slide} - o.i * {slide} AS ws, \
                 tms - tms % {slide} - o.i * {slide} + {size} AS we, k, {AGGS_SQL} \
                 FROM t CROSS JOIN (VALUES {}) AS o(i) GROUP BY 1, 2, k",
                offsets.join(", ")
            )
        }
        WindowSpec::Cumulate { step, max } => {
            let steps: Vec<String> = (1..=max / step).map(|i| format!("({i})")).collect();
            format!(
                "SELECT tms - tms % {max} AS ws, tms - tms % {max} + o.i * {step} AS we, k, \
                 {AGGS_SQL} FROM t CROSS JOIN (VALUES {}) AS o(i) \
                 WHERE tms - tms % {max} + o.i * {step} > tms GROUP BY 1, 2, k",
                steps.join(", ")
            )
        }
        WindowSpec::Session { gap } => format!(
            "WITH s AS (SELECT *, CASE WHEN tms - lag(tms) OVER (PARTITION BY k ORDER BY tms) \
             <= {gap} THEN 0 ELSE 1 END AS new FROM t), \
             g AS (SELECT *, sum(new) OVER (PARTITION BY k ORDER BY tms ROWS BETWEEN \
             UNBOUNDED PRECEDING AND CURRENT ROW) AS sid FROM s) \
             SELECT min(tms) AS ws, max(tms) + {gap} AS we, k, {AGGS_SQL} FROM g GROUP BY k, sid"
        ),
    }
}

async fn check(window: WindowSpec) {
    check_keys(window, 20).await;
}

async fn check_keys(window: WindowSpec, keys: u32) {
    // 4 000 events, one every 7 ms: windows of a few seconds hold a few hundred.
    for (jitter, seed) in [(0, 1), (500, 2)] {
        let evs = events(4_000, keys, 7, jitter, seed);
        let expected = reference(&evs, &reference_sql(window)).await;
        assert!(!expected.is_empty());
        for parallelism in [1, 4] {
            let got = engine(&evs, window, jitter.max(1), parallelism).await;
            assert_same(
                &got,
                &expected,
                &format!("{window:?}, jitter {jitter}, parallelism {parallelism}"),
            );
        }
    }
}

#[tokio::test]
async fn tumble_matches_datafusion() {
    check(WindowSpec::Tumble {
        size: 2_000,
        offset: 0,
    })
    .await;
}

#[tokio::test]
async fn hop_matches_datafusion() {
    check(WindowSpec::Hop {
        size: 5_000,
        slide: 1_000,
    })
    .await;
}

#[tokio::test]
async fn cumulate_matches_datafusion() {
    check(WindowSpec::Cumulate {
        step: 1_000,
        max: 4_000,
    })
    .await;
}

#[tokio::test]
async fn session_matches_datafusion() {
    // 20 keys, an event every 7 ms: a key's gaps average 140 ms, so a 300 ms gap both splits
    // and merges sessions.
    check(WindowSpec::Session { gap: 300 }).await;
}

#[tokio::test]
async fn session_over_many_short_lived_keys_matches_datafusion() {
    // 1 500 keys: most see one short session, so idle keys are forgotten as sessions fire.
    check_keys(WindowSpec::Session { gap: 300 }, 1_500).await;
}
