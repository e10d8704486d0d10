//! Property test: random event streams and window sizes against a brute-force model of what
//! each window holds (written independently of the engine's window assignment).

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use proptest::prelude::*;
use streams_core::datafusion::functions_aggregate::expr_fn::{count, sum};
use streams_core::datafusion::prelude::{col, lit};
use streams_core::plan::{StreamPlanBuilder, WindowOptions};
use streams_core::window::WindowSpec;

type Rows = BTreeMap<(i64, i64, String), (i64, i64)>;

/// (start, end, key) -> (count, sum), by enumerating candidate windows around each event.
fn model(events: &[Event], spec: WindowSpec) -> Rows {
    let mut out = Rows::new();
    let mut add = |s: i64, e: i64, ev: &Event| {
        let r = out.entry((s, e, format!("k{}", ev.key))).or_insert((0, 0));
        r.0 += 1;
        r.1 += ev.value;
    };
    match spec {
        WindowSpec::Tumble { size, .. } => {
            for ev in events {
                let s = ev.ts.div_euclid(size) * size;
                add(s, s + size, ev);
            }
        }
        WindowSpec::Hop { size, slide } => {
            for ev in events {
                // Every slide-aligned start in (ts - size, ts].
                let mut s = (ev.ts - size).div_euclid(slide) * slide;
                while s <= ev.ts {
                    if s > ev.ts - size {
                        add(s, s + size, ev);
                    }
                    s += slide;
                }
            }
        }
        WindowSpec::Cumulate { step, max } => {
            for ev in events {
                let p = ev.ts.div_euclid(max) * max;
                for k in 1..=max / step {
                    if p + k * step > ev.ts {
                        add(p, p + k * step, ev);
                    }
                }
            }
        }
        WindowSpec::Session { gap } => {
            let mut by_key: BTreeMap<u32, Vec<&Event>> = BTreeMap::new();
            for ev in events {
                by_key.entry(ev.key).or_default().push(ev);
            }
            for (_, mut evs) in by_key {
                evs.sort_by_key(|e| e.ts);
                let mut start = 0;
                for i in 1..=evs.len() {
                    if i == evs.len() || evs[i].ts - evs[i - 1].ts > gap {
                        let (s, e) = (evs[start].ts, evs[i - 1].ts + gap);
                        for ev in &evs[start..i] {
                            add(s, e, ev);
                        }
                        start = i;
                    }
                }
            }
        }
    }
    out
}

fn engine(events: &[Event], spec: WindowSpec, bound: i64, parallelism: usize) -> Rows {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let sink = collect_sink();
    let plan = StreamPlanBuilder::scan("t", Arc::new(source(events, 2, 7)))
        .unwrap()
        .watermark("ts", Duration::from_millis(bound as u64), None)
        .unwrap()
        .window_aggregate(
            spec,
            "ts",
            vec![col("k")],
            vec![count(lit(1)).alias("n"), sum(col("v")).alias("s")],
            WindowOptions::default(),
        )
        .unwrap()
        .sink("out", sink.clone())
        .unwrap();
    runtime.block_on(run(plan, parallelism)).unwrap();
    let mut out = Rows::new();
    for line in lines(&sink.batches()) {
        let f: Vec<&str> = line.split(" | ").collect();
        let key = (
            f[0].parse().unwrap(),
            f[1].parse().unwrap(),
            f[3].to_string(),
        );
        out.insert(key, (f[4].parse().unwrap(), f[5].parse().unwrap()));
    }
    out
}

fn spec() -> impl Strategy<Value = WindowSpec> {
    prop_oneof![
        (1i64..60).prop_map(|size| WindowSpec::Tumble { size, offset: 0 }),
        (1i64..15, 1i64..5).prop_map(|(slide, n)| WindowSpec::Hop {
            size: slide * n,
            slide
        }),
        (1i64..15, 1i64..5).prop_map(|(step, n)| WindowSpec::Cumulate {
            step,
            max: step * n
        }),
        (1i64..40).prop_map(|gap| WindowSpec::Session { gap }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn windows_match_the_model(
        spec in spec(),
        raw in prop::collection::vec((0u32..4, 0i64..100, 0i64..20), 1..150),
        step in 1i64..6,
        parallelism in 1usize..4,
    ) {
        // Event i at i * step plus up to 19 ms of disorder: a 20 ms bound keeps every row on time.
        let events: Vec<Event> = raw
            .iter()
            .enumerate()
            .map(|(i, &(key, value, jitter))| Event { key, value, ts: i as i64 * step + jitter })
            .collect();
        prop_assert_eq!(engine(&events, spec, 20, parallelism), model(&events, spec));
    }
}
