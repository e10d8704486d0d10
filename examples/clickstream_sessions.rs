//! Clickstream sessionization: clicks per user grouped into sessions that end after 30 s
//! without a click (a SESSION window), with the busiest sessions printed.
//!
//! `cargo run --example clickstream_sessions`

use std::time::Duration;

use rstreams::core::datafusion::functions_aggregate::count::count_all;
use rstreams::core::datafusion::functions_aggregate::expr_fn::count_distinct;
use rstreams::core::datafusion::prelude::col;
use rstreams::core::dsl::{Pipeline, Session};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Clone)]
struct Click {
    user: String,
    page: String,
    /// Event time, epoch milliseconds.
    ts: i64,
}

#[derive(Deserialize, Debug)]
struct UserSession {
    user: String,
    window_start: i64,
    window_end: i64,
    clicks: i64,
    pages: i64,
}

/// 40 users, each visiting in bursts: a click every few seconds, then a pause of minutes.
fn clicks() -> Vec<Click> {
    let mut out = Vec::new();
    for u in 0..40i64 {
        let mut ts = 1_767_225_600_000 + u * 1_000;
        for burst in 0..(2 + u % 3) {
            for c in 0..(3 + (u + burst) % 5) {
                out.push(Click {
                    user: format!("user-{u:02}"),
                    page: format!("/item/{}", (u * 7 + c) % 11),
                    ts,
                });
                ts += 2_000 + (c * 1_300) % 9_000;
            }
            ts += 5 * 60_000;
        }
    }
    out.sort_by_key(|c| c.ts);
    out
}

#[tokio::main]
async fn main() -> rstreams::core::Result<()> {
    let input = clicks();
    let p = Pipeline::new().parallelism(2);
    let sessions = p
        .from_iter("clicks", input.clone())?
        .event_time("ts", Duration::from_secs(5))?
        .key_by([col("user")])
        .window(Session::with_gap(Duration::from_secs(30)))
        .aggregate([
            count_all().alias("clicks"),
            count_distinct(col("page")).alias("pages"),
        ])?
        .select([
            col("user"),
            col("window_start"),
            col("window_end"),
            col("clicks"),
            col("pages"),
        ])?
        .collect::<UserSession>()?;
    println!("{}", p.explain()?);
    p.execute()?.wait().await?;

    let mut rows = sessions.rows()?;
    rows.sort_by(|a, b| b.clicks.cmp(&a.clicks).then(a.user.cmp(&b.user)));
    println!("{} sessions; the busiest:", rows.len());
    for s in rows.iter().take(5) {
        println!(
            "  {} {} clicks on {} pages over {} s",
            s.user,
            s.clicks,
            s.pages,
            (s.window_end - s.window_start) / 1_000
        );
    }
    // Every click is in exactly one session, and each user's bursts are separate sessions.
    let clicks: i64 = rows.iter().map(|s| s.clicks).sum();
    let bursts: i64 = (0..40i64).map(|u| 2 + u % 3).sum();
    assert_eq!(clicks as usize, input.len(), "every click in one session");
    assert_eq!(rows.len() as i64, bursts, "one session per burst");
    println!("OK: {} clicks in {} sessions", clicks, rows.len());
    Ok(())
}
