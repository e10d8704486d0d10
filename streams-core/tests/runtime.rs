//! Runtime behaviour: late rows, idle splits, backpressure, cancellation, metrics, EXPLAIN.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use streams_core::datafusion::functions_aggregate::expr_fn::{count, sum};
use streams_core::datafusion::prelude::{col, lit};
use streams_core::plan::{SinkRef, StreamPlanBuilder, WindowOptions, compile};
use streams_core::runtime::{Exchange, JobGraph, RuntimeConfig, WatermarkSpec, launch};
use streams_core::testing::{CollectSink, MemorySource, Step};
use streams_core::window::WindowSpec;
use streams_core::{Error, SourceFactory};

const T0: i64 = 1_700_000_000_000;

fn ev(key: u32, value: i64, offset_ms: i64) -> Event {
    Event {
        key,
        value,
        ts: T0 + offset_ms,
    }
}

/// TUMBLE(10 s) count and sum per key over a one-split source with `bound` out of orderness.
fn tumble_job(
    steps: Vec<Step>,
    bound: Duration,
    lateness: Duration,
    late: Option<Arc<CollectSink>>,
) -> (
    streams_core::datafusion::logical_expr::LogicalPlan,
    Arc<CollectSink>,
) {
    let out = collect_sink();
    let options = WindowOptions {
        allowed_lateness: lateness,
        late_sink: late.map(|s| SinkRef(s)),
        ..WindowOptions::default()
    };
    let plan = StreamPlanBuilder::scan(
        "t",
        Arc::new(MemorySource::new("t", schema()).with_split(steps)),
    )
    .unwrap()
    .watermark("ts", bound, None)
    .unwrap()
    .window_aggregate(
        WindowSpec::Tumble {
            size: 10_000,
            offset: 0,
        },
        "ts",
        vec![col("k")],
        vec![count(lit(1)).alias("n"), sum(col("v")).alias("s")],
        options,
    )
    .unwrap()
    .sink("out", out.clone())
    .unwrap();
    (plan, out)
}

fn results(sink: &CollectSink) -> Vec<String> {
    let b: Vec<_> = sink
        .batches()
        .iter()
        .map(|b| b.project(&[0, 3, 4, 5]).unwrap())
        .collect();
    lines(&b)
}

#[tokio::test]
async fn late_rows_are_counted_routed_and_left_out() {
    // First batch reaches 29 s: the watermark (28 s) closes [0, 10) and [10, 20).
    let on_time = batch(&[ev(1, 1, 1_000), ev(1, 2, 12_000), ev(2, 4, 29_000)]);
    // 5 s and 15 s are late; 25 s is on time.
    let second = batch(&[ev(1, 100, 5_000), ev(2, 200, 15_000), ev(2, 8, 25_000)]);
    let late = collect_sink();
    let (plan, out) = tumble_job(
        vec![Step::Batch(on_time), Step::Batch(second)],
        Duration::from_secs(1),
        Duration::ZERO,
        Some(late.clone()),
    );
    let graph = compile(&[plan], &config(1)).unwrap();
    let handle = launch(graph, &RuntimeConfig::default()).unwrap();
    let metrics = handle.metrics();
    handle.wait().await.unwrap();
    assert_eq!(
        results(&out),
        vec![
            format!("{} | k1 | 1 | 1", T0),
            format!("{} | k1 | 1 | 2", T0 + 10_000),
            format!("{} | k2 | 2 | 12", T0 + 20_000),
        ]
    );
    assert_eq!(late.rows(), 2);
    let late_values: Vec<String> = lines(&late.batches());
    assert!(
        late_values[0].contains("| 100 |") && late_values[1].contains("| 200 |"),
        "{late_values:?}"
    );
    let window = metrics
        .snapshot()
        .into_iter()
        .filter(|m| m.name == "window aggregate")
        .collect::<Vec<_>>();
    assert_eq!(window.iter().map(|m| m.late_rows).sum::<u64>(), 2);
}

#[tokio::test]
async fn allowed_lateness_keeps_windows_open() {
    let first = batch(&[ev(1, 1, 1_000), ev(1, 2, 12_000), ev(2, 4, 29_000)]);
    let second = batch(&[ev(1, 100, 5_000), ev(1, 200, 15_000)]);
    // With 10 s of lateness, [10, 20) fires only at a watermark of 29.999 s: 15 s still counts.
    let (plan, out) = tumble_job(
        vec![Step::Batch(first), Step::Batch(second)],
        Duration::from_secs(1),
        Duration::from_secs(10),
        None,
    );
    let graph = compile(&[plan], &config(1)).unwrap();
    let handle = launch(graph, &RuntimeConfig::default()).unwrap();
    let metrics = handle.metrics();
    handle.wait().await.unwrap();
    assert_eq!(
        results(&out),
        vec![
            format!("{} | k1 | 1 | 1", T0),
            format!("{} | k1 | 2 | 202", T0 + 10_000),
            format!("{} | k2 | 1 | 4", T0 + 20_000),
        ]
    );
    let late: u64 = metrics.snapshot().iter().map(|m| m.late_rows).sum();
    assert_eq!(late, 1, "only the 5 s row is beyond the lateness");
}

#[tokio::test]
async fn idle_split_does_not_stall_windows() {
    // Split 0 produces 30 s of rows and then goes quiet without ending; split 1 never produces.
    let rows: Vec<Event> = (0..300).map(|i| ev(i % 3, 1, i as i64 * 100)).collect();
    let source = MemorySource::new("t", schema())
        .with_split(vec![Step::Batch(batch(&rows)), Step::Pending])
        .with_split(vec![Step::Pending]);
    let out = collect_sink();
    let plan = StreamPlanBuilder::scan("t", Arc::new(source))
        .unwrap()
        .watermark(
            "ts",
            Duration::from_secs(1),
            Some(Duration::from_millis(50)),
        )
        .unwrap()
        .window_aggregate(
            WindowSpec::Tumble {
                size: 10_000,
                offset: 0,
            },
            "ts",
            vec![col("k")],
            vec![count(lit(1)).alias("n")],
            WindowOptions::default(),
        )
        .unwrap()
        .sink("out", out.clone())
        .unwrap();
    let handle = launch(
        compile(&[plan], &config(1)).unwrap(),
        &RuntimeConfig::default(),
    )
    .unwrap();
    // Windows [0, 10) and [10, 20) for 3 keys close once split 1 counts as idle.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while out.rows() < 6 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(out.rows(), 6);
    handle.cancel();
    assert!(matches!(handle.wait().await, Err(Error::Cancelled)));
}

#[tokio::test]
async fn slow_sink_bounds_buffering() {
    // A source that could produce 400 batches at once feeds a sink taking 2 ms per batch
    // through a channel of 2: the gap between produced and written stays a few batches.
    let rows: Vec<Event> = (0..100).map(|i| ev(i % 7, 1, i as i64)).collect();
    let b = batch(&rows);
    let source: Arc<dyn SourceFactory> =
        Arc::new(MemorySource::new("t", schema()).with_batches((0..400).map(|_| b.clone())));
    let sink = Arc::new(CollectSink::slow(Duration::from_millis(2)));
    let mut g = JobGraph::new();
    let src = g.add_source("source", "t", source, WatermarkSpec::default(), 1);
    let out = g.add_sink("sink", "slow", sink.clone(), schema(), 1);
    g.connect(src, 0, out, Exchange::Rebalance);
    let config = RuntimeConfig {
        channel_capacity: 2,
        ..RuntimeConfig::default()
    };
    let handle = launch(g, &config).unwrap();
    let metrics = handle.metrics();
    let mut worst = 0u64;
    let waiter = tokio::spawn(handle.wait());
    while !waiter.is_finished() {
        let snap = metrics.snapshot();
        let produced = snap.iter().find(|m| m.name == "source").unwrap().rows_out;
        let written = snap.iter().find(|m| m.name == "sink").unwrap().rows_in;
        worst = worst.max(produced.saturating_sub(written));
        assert!(snap.iter().all(|m| m.queued <= m.capacity));
        tokio::time::sleep(Duration::from_millis(3)).await;
    }
    waiter.await.unwrap().unwrap();
    assert_eq!(sink.rows(), 40_000);
    // Channel of 2 + one batch being written + one being sent.
    assert!(worst <= 4 * 100, "{worst} rows buffered");
}

#[tokio::test]
async fn cancel_stops_every_task() {
    let source = MemorySource::new("t", schema()).with_split(vec![Step::Pending]);
    let out = collect_sink();
    let plan = StreamPlanBuilder::scan("t", Arc::new(source))
        .unwrap()
        .filter(col("v").gt(lit(0)))
        .unwrap()
        .sink("out", out)
        .unwrap();
    let handle = launch(
        compile(&[plan], &config(2)).unwrap(),
        &RuntimeConfig::default(),
    )
    .unwrap();
    handle.cancel();
    let r = tokio::time::timeout(Duration::from_secs(5), handle.wait()).await;
    assert!(matches!(r, Ok(Err(Error::Cancelled))));
}

#[tokio::test]
async fn filter_project_union_and_explain() {
    let a: Vec<Event> = (0..1000).map(|i| ev(i % 10, i as i64, i as i64)).collect();
    let b: Vec<Event> = (0..500).map(|i| ev(i % 10, i as i64, i as i64)).collect();
    let out = collect_sink();
    let left = StreamPlanBuilder::scan("a", Arc::new(source(&a, 2, 64))).unwrap();
    let right = StreamPlanBuilder::scan("b", Arc::new(source(&b, 1, 64))).unwrap();
    let plan = left
        .union(right)
        .unwrap()
        .filter(col("v").gt(lit(899)).or(col("v").lt(lit(10))))
        .unwrap()
        .project(vec![col("k"), (col("v") * lit(2)).alias("double")])
        .unwrap()
        .sink("out", out.clone())
        .unwrap();
    let graph = compile(&[plan], &config(2)).unwrap();
    let explain = graph.topology().render();
    assert!(explain.contains("] union: 2 inputs"), "{explain}");
    assert!(
        explain.contains("] filter: v > Int64(899) OR v < Int64(10)"),
        "{explain}"
    );
    assert!(explain.contains("] sink: out"), "{explain}");
    assert!(explain.contains("--rebalance--> task 2"), "{explain}");
    launch(graph, &RuntimeConfig::default())
        .unwrap()
        .wait()
        .await
        .unwrap();
    // 100 rows >= 900 from a, 10 rows < 10 from each input.
    assert_eq!(out.rows(), 120);
    let doubled: i64 = lines(&out.batches())
        .iter()
        .map(|l| l.split(" | ").nth(1).unwrap().parse::<i64>().unwrap())
        .sum();
    assert_eq!(
        doubled,
        2 * ((900..1000).sum::<i64>() + 2 * (0..10).sum::<i64>())
    );
}

#[tokio::test]
async fn window_without_watermark_is_a_plan_error() {
    let plan = StreamPlanBuilder::scan("t", Arc::new(MemorySource::new("t", schema())))
        .unwrap()
        .window_aggregate(
            WindowSpec::Tumble {
                size: 1000,
                offset: 0,
            },
            "ts",
            vec![col("k")],
            vec![count(lit(1))],
            WindowOptions::default(),
        )
        .unwrap()
        .sink("out", collect_sink())
        .unwrap();
    let err = compile(&[plan], &config(1)).unwrap_err().to_string();
    assert!(err.contains("needs event time"), "{err}");
}

#[tokio::test]
async fn early_firing_emits_updates_before_the_final_result() {
    let steps = vec![
        Step::Batch(batch(&[ev(1, 1, 1_000), ev(1, 1, 2_000)])),
        Step::Sleep(Duration::from_millis(60)),
        Step::Batch(batch(&[ev(1, 1, 3_000)])),
        Step::Sleep(Duration::from_millis(60)),
        Step::Batch(batch(&[ev(1, 1, 4_000)])),
    ];
    let out = collect_sink();
    let plan = StreamPlanBuilder::scan(
        "t",
        Arc::new(MemorySource::new("t", schema()).with_split(steps)),
    )
    .unwrap()
    .watermark("ts", Duration::from_secs(1), None)
    .unwrap()
    .window_aggregate(
        WindowSpec::Tumble {
            size: 10_000,
            offset: 0,
        },
        "ts",
        vec![col("k")],
        vec![count(lit(1)).alias("n")],
        WindowOptions {
            early_fire: Some(Duration::from_millis(30)),
            ..WindowOptions::default()
        },
    )
    .unwrap()
    .sink("out", out.clone())
    .unwrap();
    run(plan, 1).await.unwrap();
    // In arrival order: early updates while rows arrive (each at least the one before), then
    // the final count.
    let counts: Vec<i64> = out
        .batches()
        .iter()
        .map(|b| {
            b.column(4)
                .as_any()
                .downcast_ref::<streams_core::arrow::array::Int64Array>()
                .unwrap()
                .value(0)
        })
        .collect();
    assert!(counts.len() >= 2, "{counts:?}");
    assert!(counts.windows(2).all(|w| w[0] <= w[1]), "{counts:?}");
    assert_eq!(counts.last(), Some(&4), "{counts:?}");
    assert!(
        counts[..counts.len() - 1].iter().any(|c| *c < 4),
        "no early result: {counts:?}"
    );
}

#[tokio::test]
async fn a_late_arriving_row_bridges_two_sessions() {
    // Key k1 at 0 s and 10 s: two sessions with a 5 s gap, until 5 s arrives and joins them.
    let steps = vec![
        Step::Batch(batch(&[ev(1, 1, 0), ev(1, 10, 10_000), ev(2, 100, 1_000)])),
        Step::Batch(batch(&[ev(1, 1_000, 5_000)])),
    ];
    let out = collect_sink();
    let plan = StreamPlanBuilder::scan(
        "t",
        Arc::new(MemorySource::new("t", schema()).with_split(steps)),
    )
    .unwrap()
    .watermark("ts", Duration::from_secs(20), None)
    .unwrap()
    .window_aggregate(
        WindowSpec::Session { gap: 5_000 },
        "ts",
        vec![col("k")],
        vec![count(lit(1)).alias("n"), sum(col("v")).alias("s")],
        WindowOptions::default(),
    )
    .unwrap()
    .sink("out", out.clone())
    .unwrap();
    run(plan, 2).await.unwrap();
    let got: Vec<String> = lines(
        &out.batches()
            .iter()
            .map(|b| b.project(&[0, 1, 3, 4, 5]).unwrap())
            .collect::<Vec<_>>(),
    );
    assert_eq!(
        got,
        vec![
            format!("{} | {} | k1 | 3 | 1011", T0, T0 + 15_000),
            format!("{} | {} | k2 | 1 | 100", T0 + 1_000, T0 + 6_000),
        ]
    );
}

#[tokio::test]
async fn an_operator_error_fails_the_job_and_names_the_operator() {
    let rows: Vec<Event> = (0..100).map(|i| ev(i % 3, i as i64, i as i64)).collect();
    let out = collect_sink();
    let plan = StreamPlanBuilder::scan("t", Arc::new(source(&rows, 2, 10)))
        .unwrap()
        .project(vec![
            col("k"),
            (col("v") / (col("v") - col("v"))).alias("boom"),
        ])
        .unwrap()
        .sink("out", out)
        .unwrap();
    let handle = launch(
        compile(&[plan], &config(2)).unwrap(),
        &RuntimeConfig::default(),
    )
    .unwrap();
    let metrics = handle.metrics();
    let err = tokio::time::timeout(Duration::from_secs(10), handle.wait())
        .await
        .expect("the job stops")
        .unwrap_err()
        .to_string();
    assert!(err.contains("project [1] subtask"), "{err}");
    assert!(err.to_lowercase().contains("divide by zero"), "{err}");
    let table = metrics.render();
    assert!(table.contains("[1] project"), "{table}");
}

#[tokio::test]
async fn explicit_source_watermarks_fire_windows_and_make_rows_late() {
    // An hour of allowed disorder: only the source's own watermark (20 s) closes windows.
    let steps = vec![
        Step::Batch(batch(&[ev(1, 1, 1_000), ev(1, 2, 12_000)])),
        Step::Watermark(T0 + 20_000),
        Step::Batch(batch(&[ev(1, 100, 5_000), ev(1, 4, 25_000)])),
    ];
    let (plan, out) = tumble_job(steps, Duration::from_secs(3600), Duration::ZERO, None);
    let handle = launch(
        compile(&[plan], &config(1)).unwrap(),
        &RuntimeConfig::default(),
    )
    .unwrap();
    let metrics = handle.metrics();
    handle.wait().await.unwrap();
    assert_eq!(
        results(&out),
        vec![
            format!("{} | k1 | 1 | 1", T0),
            format!("{} | k1 | 1 | 2", T0 + 10_000),
            format!("{} | k1 | 1 | 4", T0 + 20_000),
        ]
    );
    assert_eq!(
        metrics.snapshot().iter().map(|m| m.late_rows).sum::<u64>(),
        1
    );
}

/// A sink that keeps the watermarks it is given before the end of input.
#[derive(Debug, Default)]
struct WatermarkLog(std::sync::Mutex<Vec<i64>>);

#[derive(Debug)]
struct WatermarkLogSink(Arc<WatermarkLog>);

#[async_trait::async_trait]
impl streams_core::Sink for WatermarkLogSink {
    async fn write(
        &mut self,
        _batch: streams_core::datafusion::arrow::record_batch::RecordBatch,
    ) -> streams_core::Result<()> {
        Ok(())
    }

    async fn watermark(&mut self, wm: i64) -> streams_core::Result<()> {
        if wm < i64::MAX {
            self.0.0.lock().unwrap().push(wm);
        }
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn an_always_ready_source_still_emits_periodic_watermarks() {
    // 20,000 one-row batches from memory into a sink in the same task: nothing in the chain
    // ever waits, so only the source task's yielding lets its watermark tick fire.
    let evs = events(20_000, 10, 1, 0, 3);
    let log = Arc::new(WatermarkLogFactory(Arc::new(WatermarkLog::default())));
    let plan = StreamPlanBuilder::scan("t", Arc::new(source(&evs, 1, 1)))
        .unwrap()
        .watermark("ts", Duration::ZERO, None)
        .unwrap()
        .sink("out", log.clone())
        .unwrap();
    let mut config = config(1);
    config.watermark_interval = Duration::from_millis(1);
    let graph = compile(&[plan], &config).unwrap();
    launch(graph, &config.runtime)
        .unwrap()
        .wait()
        .await
        .unwrap();
    let seen = log.0.0.lock().unwrap().len();
    assert!(seen > 0, "no watermark before the end of input");
}

#[derive(Debug)]
struct WatermarkLogFactory(Arc<WatermarkLog>);

impl streams_core::SinkFactory for WatermarkLogFactory {
    fn name(&self) -> &str {
        "watermarks"
    }

    fn create(
        &self,
        _subtask: usize,
        _parallelism: usize,
    ) -> streams_core::Result<Box<dyn streams_core::Sink>> {
        Ok(Box::new(WatermarkLogSink(Arc::clone(&self.0))))
    }
}
