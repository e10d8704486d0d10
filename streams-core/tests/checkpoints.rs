//! Checkpoints and recovery in the runtime: jobs are crashed (every task aborted at a random
//! moment, in-memory state lost) and relaunched from the newest complete checkpoint, again and
//! again; what the transactional sink published must equal DataFusion's batch result exactly:
//! nothing missing, nothing twice. Also: a stop takes a savepoint to resume from, and a
//! checkpoint of another query is refused.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use rand::{Rng, SeedableRng};
use streams_core::datafusion::functions_aggregate::expr_fn::{count, max, sum};
use streams_core::datafusion::logical_expr::LogicalPlan;
use streams_core::datafusion::prelude::{col, lit};
use streams_core::ops::join::JoinType;
use streams_core::plan::{JobConfig, StreamJoinKind, StreamPlanBuilder, WindowOptions, compile};
use streams_core::runtime::{CheckpointConfig, launch};
use streams_core::testing::{MemoryCheckpoints, MemorySource, Step, TransactionalSink};
use streams_core::window::WindowSpec;

/// A source that takes a while: `splits` splits of `batch_rows`-row batches, a pause after each.
fn paced(events: &[Event], splits: usize, batch_rows: usize) -> MemorySource {
    let mut per: Vec<Vec<Step>> = vec![Vec::new(); splits];
    for (i, chunk) in events.chunks(batch_rows).enumerate() {
        per[i % splits].push(Step::Batch(batch(chunk)));
        per[i % splits].push(Step::Sleep(Duration::from_millis(1)));
    }
    per.into_iter()
        .fold(MemorySource::new("events", schema()), |s, steps| {
            s.with_split(steps)
        })
}

fn job_config(storage: MemoryCheckpoints, interval_ms: u64) -> JobConfig {
    let mut c = config(2);
    // Unbounded aggregates keep 8 groups in memory per subtask; the rest spill.
    c.state_cache = Some(8);
    c.runtime.checkpointing = Some(CheckpointConfig::new(
        Some(Duration::from_millis(interval_ms)),
        Arc::new(storage),
    ));
    c
}

/// Runs the job made by `plan` until it finishes, crashing it `crashes` times at random
/// moments first; returns what the sink published.
async fn crash_and_resume(
    plan: impl Fn(TransactionalSink) -> LogicalPlan,
    crashes: usize,
    seed: u64,
) -> Vec<String> {
    let storage = MemoryCheckpoints::new();
    let sink = TransactionalSink::new();
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut crashed = 0;
    let mut runs = 0;
    loop {
        runs += 1;
        assert!(runs < 200, "the job never finished");
        let config = job_config(storage.resume(), 5);
        let graph = compile(&[plan(sink.clone())], &config).unwrap();
        let mut handle = launch(graph, &config.runtime).unwrap();
        if crashed == crashes {
            handle.wait().await.unwrap();
            break;
        }
        let delay = Duration::from_millis(rng.random_range(5..60));
        tokio::select! {
            r = handle.join() => {
                // Finished before the crash: fine, that run counts as the last.
                r.unwrap();
                break;
            }
            _ = tokio::time::sleep(delay) => {}
        }
        // The crash: every task stops at its next step, committing nothing more. (Waiting
        // for them to stop stands for the process being gone.)
        handle.cancel();
        let _ = handle.join().await;
        crashed += 1;
    }
    assert!(
        !storage.completed().is_empty(),
        "no checkpoint completed: the test exercised nothing"
    );
    lines(&sink.batches())
}

fn scan(events: &[Event]) -> StreamPlanBuilder {
    StreamPlanBuilder::scan("t", Arc::new(paced(events, 2, 50)))
        .unwrap()
        .watermark("ts", Duration::from_millis(20), None)
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stateless_job_publishes_each_row_once_across_crashes() {
    let evs = events(20_000, 50, 1, 0, 11);
    let expected = reference(&evs, "SELECT k, v, tms FROM t WHERE v % 3 = 0").await;
    let got = crash_and_resume(
        |sink| {
            scan(&evs)
                .filter((col("v") % lit(3)).eq(lit(0)))
                .unwrap()
                .sink("out", Arc::new(sink))
                .unwrap()
        },
        5,
        1,
    )
    .await;
    assert_same(&got, &expected, "filter");
}

fn window_job(evs: &[Event], spec: WindowSpec, sink: TransactionalSink) -> LogicalPlan {
    scan(evs)
        .window_aggregate(
            spec,
            "ts",
            vec![col("k")],
            vec![
                count(lit(1)).alias("n"),
                sum(col("v")).alias("s"),
                max(col("v")).alias("hi"),
            ],
            WindowOptions::default(),
        )
        .unwrap()
        .project(vec![
            col("window_start"),
            col("window_end"),
            col("k"),
            col("n"),
            col("s"),
            col("hi"),
        ])
        .unwrap()
        .sink("out", Arc::new(sink))
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tumbling_windows_are_exactly_once_across_crashes() {
    let evs = events(20_000, 40, 1, 15, 12);
    let expected = reference(
        &evs,
        "SELECT tms - tms % 500 AS ws, tms - tms % 500 + 500 AS we, k, count(*), sum(v), max(v) \
         FROM t GROUP BY 1, 2, k",
    )
    .await;
    let spec = WindowSpec::Tumble {
        size: 500,
        offset: 0,
    };
    let got = crash_and_resume(|sink| window_job(&evs, spec, sink), 6, 2).await;
    assert_same(&got, &expected, "tumble");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_windows_are_exactly_once_across_crashes() {
    // Keys go quiet for longer than the gap now and then: many sessions per key.
    let evs: Vec<Event> = events(12_000, 30, 2, 0, 13)
        .into_iter()
        .filter(|e| (e.ts / 700) % 3 != (e.key as i64) % 3)
        .collect();
    let reference_rows = {
        // Sessions by hand: per key, sorted times split where the gap is over 300 ms.
        let mut by_key: std::collections::BTreeMap<u32, Vec<&Event>> = Default::default();
        for e in &evs {
            by_key.entry(e.key).or_default().push(e);
        }
        let mut out = Vec::new();
        for (k, mut es) in by_key {
            es.sort_by_key(|e| e.ts);
            let mut i = 0;
            while i < es.len() {
                let mut j = i;
                // Touching sessions merge, as in Flink.
                while j + 1 < es.len() && es[j + 1].ts - es[j].ts <= 300 {
                    j += 1;
                }
                let part = &es[i..=j];
                let s: i64 = part.iter().map(|e| e.value).sum();
                let hi = part.iter().map(|e| e.value).max().unwrap_or(0);
                out.push(format!(
                    "{} | {} | k{k} | {} | {s} | {hi}",
                    part[0].ts,
                    part[part.len() - 1].ts + 300,
                    part.len()
                ));
                i = j + 1;
            }
        }
        out.sort();
        out
    };
    let got = crash_and_resume(
        |sink| window_job(&evs, WindowSpec::Session { gap: 300 }, sink),
        6,
        3,
    )
    .await;
    assert_same(&got, &reference_rows, "session");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interval_joins_are_exactly_once_across_crashes() {
    let left = events(6_000, 40, 3, 10, 14);
    let right = events(6_000, 40, 3, 10, 15);
    let expected = reference_tables(
        &[("l", &left), ("r", &right)],
        "SELECT l.k, l.v, l.tms, r.v, r.tms FROM l JOIN r ON l.k = r.k \
         AND r.tms BETWEEN l.tms - 50 AND l.tms + 20",
    )
    .await;
    assert!(!expected.is_empty());
    let got = crash_and_resume(
        |sink| {
            let side = |name: &str, evs: &[Event]| {
                StreamPlanBuilder::scan(name, Arc::new(paced(evs, 2, 50)))
                    .unwrap()
                    .watermark("ts", Duration::from_millis(20), None)
                    .unwrap()
            };
            side("l", &left)
                .join(
                    side("r", &right),
                    StreamJoinKind::Interval {
                        lower: -20,
                        upper: 50,
                    },
                    JoinType::Inner,
                    ("ts", "ts"),
                    vec![(col("l.k"), col("r.k"))],
                    None,
                    WindowOptions::default(),
                )
                .unwrap()
                .project(vec![
                    col("l.k"),
                    col("l.v"),
                    col("l.ts"),
                    col("r.v"),
                    col("r.ts"),
                ])
                .unwrap()
                .sink("out", Arc::new(sink))
                .unwrap()
        },
        6,
        4,
    )
    .await;
    assert_same(&got, &expected, "interval join");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unbounded_aggregate_with_a_tiny_cache_is_exactly_once_across_crashes() {
    let evs = events(20_000, 300, 1, 0, 19);
    let expected = reference(&evs, "SELECT k, count(*), sum(v), max(v) FROM t GROUP BY k").await;
    let sink = TransactionalSink::new();
    let storage = MemoryCheckpoints::new();
    let plan = |sink: TransactionalSink| {
        scan(&evs)
            .aggregate(
                vec![col("k")],
                vec![
                    count(lit(1)).alias("n"),
                    sum(col("v")).alias("s"),
                    max(col("v")).alias("hi"),
                ],
            )
            .unwrap()
            .sink("out", Arc::new(sink))
            .unwrap()
    };
    let mut rng = rand::rngs::StdRng::seed_from_u64(5);
    for _ in 0..5 {
        let config = job_config(storage.resume(), 5);
        let graph = compile(&[plan(sink.clone())], &config).unwrap();
        let mut handle = launch(graph, &config.runtime).unwrap();
        let delay = Duration::from_millis(rng.random_range(20..80));
        tokio::select! {
            r = handle.join() => { r.unwrap(); break; }
            _ = tokio::time::sleep(delay) => {}
        }
        handle.cancel();
        let _ = handle.join().await;
    }
    let last = storage.resume();
    let config = job_config(last.clone(), 5);
    let graph = compile(&[plan(sink.clone())], &config).unwrap();
    launch(graph, &config.runtime)
        .unwrap()
        .wait()
        .await
        .unwrap();
    // 300 keys over two subtasks, 8 in memory each: most of the state lived in the store.
    let spilled: usize = (0..8)
        .flat_map(|node| (0..2).map(move |subtask| streams_core::state::TaskKey { node, subtask }))
        .map(|key| last.keyed_len(key, "groups"))
        .sum();
    assert!(spilled > 200, "{spilled} groups spilled");
    let batches = sink.batches();
    let table = streams_core::changelog::materialize(&batches[0].schema(), &batches).unwrap();
    assert_same(
        &lines(&[table]),
        &expected,
        "unbounded aggregate, tiny cache",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_regular_join_with_a_tiny_cache_is_exactly_once_across_crashes() {
    let left = events(3_000, 400, 2, 0, 21);
    let right = events(3_000, 400, 2, 0, 22);
    let expected = reference_tables(
        &[("l", &left), ("r", &right)],
        "SELECT l.k, l.v, r.v FROM l JOIN r ON l.k = r.k AND l.v < r.v",
    )
    .await;
    assert!(!expected.is_empty());
    let got = crash_and_resume(
        |sink| {
            let side = |name: &str, evs: &[Event]| {
                StreamPlanBuilder::scan(name, Arc::new(paced(evs, 2, 50))).unwrap()
            };
            side("l", &left)
                .join(
                    side("r", &right),
                    StreamJoinKind::Regular,
                    JoinType::Inner,
                    ("ts", "ts"),
                    vec![(col("l.k"), col("r.k"))],
                    Some(col("l.v").lt(col("r.v"))),
                    WindowOptions::default(),
                )
                .unwrap()
                .project(vec![col("l.k"), col("l.v"), col("r.v")])
                .unwrap()
                .sink("out", Arc::new(sink))
                .unwrap()
        },
        5,
        6,
    )
    .await;
    assert_same(&got, &expected, "regular join, tiny cache");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_takes_a_savepoint_that_the_next_run_resumes_from() {
    let evs = events(20_000, 40, 1, 15, 16);
    let spec = WindowSpec::Tumble {
        size: 500,
        offset: 0,
    };
    let expected = reference(
        &evs,
        "SELECT tms - tms % 500 AS ws, tms - tms % 500 + 500 AS we, k, count(*), sum(v), max(v) \
         FROM t GROUP BY 1, 2, k",
    )
    .await;
    let storage = MemoryCheckpoints::new();
    let sink = TransactionalSink::new();
    // No periodic checkpoints: all the first run leaves is its savepoint.
    let mut config = config(2);
    config.runtime.checkpointing = Some(CheckpointConfig::new(None, Arc::new(storage.resume())));
    let graph = compile(&[window_job(&evs, spec, sink.clone())], &config).unwrap();
    let handle = launch(graph, &config.runtime).unwrap();
    tokio::time::sleep(Duration::from_millis(40)).await;
    let info = handle.stop().await.unwrap().expect("a savepoint");
    assert_eq!(storage.completed(), vec![info.id]);
    let before = sink.batches().iter().map(|b| b.num_rows()).sum::<usize>();
    assert!(before < expected.len(), "stopped before the end");

    config.runtime.checkpointing = Some(CheckpointConfig::new(None, Arc::new(storage.resume())));
    let graph = compile(&[window_job(&evs, spec, sink.clone())], &config).unwrap();
    launch(graph, &config.runtime)
        .unwrap()
        .wait()
        .await
        .unwrap();
    assert_same(&lines(&sink.batches()), &expected, "stop and resume");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checkpoint_of_another_query_is_refused() {
    let evs = events(2_000, 10, 1, 0, 17);
    let storage = MemoryCheckpoints::new();
    let config = job_config(storage.resume(), 1_000);
    let spec = WindowSpec::Tumble {
        size: 500,
        offset: 0,
    };
    let graph = compile(&[window_job(&evs, spec, TransactionalSink::new())], &config).unwrap();
    launch(graph, &config.runtime)
        .unwrap()
        .wait()
        .await
        .unwrap();
    assert!(!storage.completed().is_empty(), "the final checkpoint");

    let other = WindowSpec::Tumble {
        size: 1_000,
        offset: 0,
    };
    let config = job_config(storage.resume(), 1_000);
    let graph = compile(
        &[window_job(&evs, other, TransactionalSink::new())],
        &config,
    )
    .unwrap();
    let err = launch(graph, &config.runtime).unwrap_err();
    assert!(
        matches!(err, streams_core::Error::IncompatibleState(_)),
        "{err}"
    );
    assert!(err.to_string().contains("another job"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dsl_pipeline_checkpoints_and_stops_with_a_savepoint() {
    use streams_core::dsl::{Pipeline, Tumble};
    let evs = events(20_000, 40, 1, 0, 18);
    let storage = MemoryCheckpoints::new();
    let sink = TransactionalSink::new();
    let p = Pipeline::new()
        .parallelism(2)
        .checkpointing(Duration::from_millis(5), Arc::new(storage.resume()));
    p.source("t", Arc::new(paced(&evs, 2, 50)))
        .unwrap()
        .event_time("ts", Duration::from_millis(20))
        .unwrap()
        .key_by([col("k")])
        .window(Tumble::of(Duration::from_millis(500)))
        .aggregate([count(lit(1)).alias("n")])
        .unwrap()
        .sink("out", Arc::new(sink.clone()))
        .unwrap();
    let handle = p.execute().unwrap();
    tokio::time::sleep(Duration::from_millis(60)).await;
    let metrics = handle.metrics();
    let savepoint = handle.stop().await.unwrap().expect("a savepoint");
    let m = metrics.checkpoints();
    assert_eq!(m.last_id, Some(savepoint.id));
    assert!(
        m.completed >= 2,
        "periodic checkpoints, then the savepoint: {m:?}"
    );
    assert!(storage.completed().contains(&savepoint.id));
}
