//! IoT sensor averages per minute (a TUMBLE window), with readings that arrive too late for
//! their window sent to a side output instead of being dropped silently.
//!
//! `cargo run --example iot_averages`

use std::sync::Arc;
use std::time::Duration;

use rstreams::core::datafusion::functions_aggregate::count::count_all;
use rstreams::core::datafusion::functions_aggregate::expr_fn::{avg, max};
use rstreams::core::datafusion::prelude::col;
use rstreams::core::dsl::{Pipeline, Tumble};
use rstreams::core::testing::CollectSink;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Clone)]
struct Reading {
    sensor: i64,
    celsius: f64,
    /// Event time, epoch milliseconds.
    ts: i64,
}

#[derive(Deserialize, Debug)]
struct MinuteAverage {
    sensor: i64,
    window_start: i64,
    readings: i64,
    mean: f64,
    peak: f64,
}

const BASE: i64 = 1_767_225_600_000;
const LATE: usize = 7;

/// 5 sensors reading every second for 30 minutes, a little out of order, then 7 readings
/// from 10 minutes ago that a flaky gateway delivers at the end.
fn readings() -> Vec<Reading> {
    let mut out = Vec::new();
    for second in 0..1_800i64 {
        for sensor in 0..5i64 {
            let jitter = (second * 7 + sensor * 3) % 4 * 250;
            out.push(Reading {
                sensor,
                celsius: 20.0 + sensor as f64 + ((second % 60) as f64) / 10.0,
                ts: BASE + second * 1_000 - jitter,
            });
        }
    }
    for i in 0..LATE as i64 {
        out.push(Reading {
            sensor: i % 5,
            celsius: -40.0,
            ts: BASE + 20 * 60_000 + i * 1_000,
        });
    }
    out
}

#[tokio::main]
async fn main() -> rstreams::core::Result<()> {
    let input = readings();
    let late = Arc::new(CollectSink::new());
    // Watermarks after every batch, so the late readings' batch finds its windows closed.
    let p = Pipeline::new()
        .parallelism(2)
        .watermark_interval(Duration::ZERO);
    let averages = p
        .from_iter("readings", input.clone())?
        .event_time("ts", Duration::from_secs(2))?
        .key_by([col("sensor")])
        .window(Tumble::of(Duration::from_secs(60)))
        .late_data(late.clone())
        .aggregate([
            count_all().alias("readings"),
            avg(col("celsius")).alias("mean"),
            max(col("celsius")).alias("peak"),
        ])?
        .select([
            col("sensor"),
            col("window_start"),
            col("readings"),
            col("mean"),
            col("peak"),
        ])?
        .collect::<MinuteAverage>()?;
    p.execute()?.wait().await?;

    let mut rows = averages.rows()?;
    rows.sort_by_key(|r| (r.window_start, r.sensor));
    for r in rows.iter().filter(|r| r.window_start == BASE + 20 * 60_000) {
        println!(
            "sensor {} minute 20: {} readings, mean {:.2} C, peak {:.1} C",
            r.sensor, r.readings, r.mean, r.peak
        );
    }
    let late_rows = late.rows();
    println!("{late_rows} readings arrived after their window closed (side output)");
    // The late readings never reach a window (no -40 C anywhere), but none is lost.
    assert_eq!(late_rows, LATE);
    assert!(rows.iter().all(|r| r.peak > 0.0));
    let counted: i64 = rows.iter().map(|r| r.readings).sum();
    assert_eq!(counted as usize + late_rows, input.len());
    println!(
        "OK: {} windows, {} readings on time, {late_rows} late",
        rows.len(),
        counted
    );
    Ok(())
}
