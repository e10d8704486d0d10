//! Fault injection: `rstreams run` reads generated events from queue topics of the embedded
//! store, runs a windowed aggregate (or a join) at parallelism 2 with checkpoints, and writes a
//! queue topic. The process is SIGKILLed at random moments at least ten times and started
//! again each time; at the end the output topic must equal DataFusion's batch result over the
//! same events exactly: no row missing, none twice.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test helpers")]

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use streams_core::arrow::array::{Int64Array, RecordBatch, StringArray};
use streams_core::arrow::datatypes::{DataType, Field, Schema};
use streams_core::arrow::util::display::{ArrayFormatter, FormatOptions};
use streams_core::datafusion::datasource::MemTable;
use streams_core::datafusion::prelude::SessionContext;
use streams_queue::{Record, Store, TopicConfig};

const BIN: &str = env!("CARGO_BIN_EXE_rstreams");
const BASE: i64 = 1_700_000_000_000;

/// xorshift: the same events on every run.
fn rng(seed: u64) -> impl FnMut() -> u64 {
    let mut x = seed | 1;
    move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    }
}

struct Table {
    name: &'static str,
    columns: Vec<(&'static str, Vec<i64>)>,
    key: Option<Vec<String>>,
}

impl Table {
    fn rows(&self) -> usize {
        self.columns[0].1.len()
    }

    fn json(&self, i: usize) -> String {
        let mut parts: Vec<String> = self
            .columns
            .iter()
            .map(|(c, v)| format!("\"{c}\":{}", v[i]))
            .collect();
        if let Some(k) = &self.key {
            parts.push(format!("\"k\":\"{}\"", k[i]));
        }
        format!("{{{}}}", parts.join(","))
    }

    fn batch(&self) -> RecordBatch {
        let mut fields = Vec::new();
        let mut cols: Vec<Arc<dyn streams_core::arrow::array::Array>> = Vec::new();
        for (c, v) in &self.columns {
            fields.push(Field::new(*c, DataType::Int64, false));
            cols.push(Arc::new(Int64Array::from(v.clone())));
        }
        if let Some(k) = &self.key {
            fields.push(Field::new("k", DataType::Utf8, false));
            cols.push(Arc::new(StringArray::from(k.clone())));
        }
        RecordBatch::try_new(Arc::new(Schema::new(fields)), cols).unwrap()
    }
}

/// `n` events `(ts, v, k)`: times `step` ms apart plus up to `jitter` ms, `keys` keys.
fn keyed_events(n: i64, step: i64, jitter: u64, keys: u64, seed: u64) -> Table {
    let mut r = rng(seed);
    let (mut ts, mut v, mut k) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..n {
        ts.push(BASE + i * step + (r() % jitter.max(1)) as i64);
        v.push((r() % 1000) as i64);
        k.push(format!("k{}", r() % keys));
    }
    Table {
        name: "events",
        columns: vec![("ts", ts), ("v", v)],
        key: Some(k),
    }
}

/// A scratch folder with the tables produced into a store under `data`; the job script goes
/// to the returned path.
fn setup(tables: &[&Table]) -> (tempfile::TempDir, std::path::PathBuf, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    produce(&data, tables);
    let script = dir.path().join("job.sql");
    (dir, data, script)
}

/// Events the queue source had read when savepoint `dir` was taken: the next offsets in its
/// metadata (per queue: queue u32, next u64, end u64, little-endian).
fn read_positions(dir: &Path) -> u64 {
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("metadata.bin")).unwrap()).unwrap();
    let mut read = 0;
    for p in meta["positions"].as_array().unwrap() {
        let hex = p[2].as_str().unwrap();
        let bytes: Vec<u8> = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect();
        for chunk in bytes.chunks_exact(20) {
            read += u64::from_le_bytes(chunk[4..12].try_into().unwrap());
        }
    }
    read
}

/// Writes the tables into topics of their name (2 queues each) and creates `out`.
fn produce(dir: &Path, tables: &[&Table]) {
    let store = Store::open(dir).unwrap();
    let config = |queues| TopicConfig {
        queues,
        segment_bytes: 16 << 20,
        ..TopicConfig::default()
    };
    for t in tables {
        store.create_topic(t.name, config(2)).unwrap();
        let mut batch = Vec::with_capacity(1000);
        for i in 0..t.rows() {
            batch.push(Record::new(t.json(i)));
            if batch.len() == 1000 || i + 1 == t.rows() {
                store
                    .append(t.name, ((i / 1000) % 2) as u32, &batch)
                    .unwrap();
                batch.clear();
            }
        }
    }
    store.create_topic("out", config(2)).unwrap();
    store.close().unwrap();
}

/// Runs the script, SIGKILLing it at random moments `kills` times, then lets it finish.
/// Returns how many kills happened (the job may finish before all of them).
fn run_with_kills(dir: &Path, script: &Path, kills: usize, seed: u64) -> usize {
    let mut next = rng(seed);
    let mut killed = 0;
    let started = Instant::now();
    loop {
        let mut child = Command::new(BIN)
            .arg("--data-dir")
            .arg(dir)
            .arg("run")
            .arg(script)
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        if killed < kills {
            // Long enough for a checkpoint or two, short enough to land anywhere.
            let wait = Duration::from_millis(300 + next() % 900);
            let deadline = Instant::now() + wait;
            let mut exited = None;
            while Instant::now() < deadline {
                if let Some(status) = child.try_wait().unwrap() {
                    exited = Some(status);
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            match exited {
                None => {
                    // SIGKILL: no savepoint, no flush, nothing.
                    child.kill().unwrap();
                    child.wait().unwrap();
                    killed += 1;
                    continue;
                }
                Some(status) => {
                    let mut err = String::new();
                    use std::io::Read;
                    child
                        .stderr
                        .take()
                        .unwrap()
                        .read_to_string(&mut err)
                        .unwrap();
                    assert!(status.success(), "the job failed: {err}");
                    return killed;
                }
            }
        }
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "the last run failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(started.elapsed() < Duration::from_secs(600));
        return killed;
    }
}

/// The output topic's records, as sorted lines of the given fields (each record once per
/// time it appears).
fn output(dir: &Path, fields: &[&str]) -> Vec<String> {
    let store = Store::open(dir).unwrap();
    let mut out = Vec::new();
    for q in 0..store.queue_count("out").unwrap() {
        let mut offset = 0;
        loop {
            let records = store.read("out", q, offset, &Default::default()).unwrap();
            let Some(last) = records.last() else { break };
            offset = last.offset + 1;
            for r in records {
                let v: serde_json::Value = serde_json::from_slice(&r.payload).unwrap();
                let line: Vec<String> = fields
                    .iter()
                    .map(|f| match &v[*f] {
                        serde_json::Value::String(s) => s.clone(),
                        other => other.to_string(),
                    })
                    .collect();
                out.push(line.join(" | "));
            }
        }
    }
    out.sort();
    out
}

async fn reference(tables: &[&Table], sql: &str) -> Vec<String> {
    let ctx = SessionContext::new();
    for t in tables {
        let b = t.batch();
        let mem = MemTable::try_new(b.schema(), vec![vec![b]]).unwrap();
        ctx.register_table(t.name, Arc::new(mem)).unwrap();
    }
    let batches = ctx.sql(sql).await.unwrap().collect().await.unwrap();
    let mut out = Vec::new();
    let opts = FormatOptions::default();
    for b in &batches {
        let f: Vec<_> = b
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &opts).unwrap())
            .collect();
        for r in 0..b.num_rows() {
            let line: Vec<String> = f.iter().map(|f| f.value(r).to_string()).collect();
            out.push(line.join(" | "));
        }
    }
    out.sort();
    out
}

fn assert_exactly(got: &[String], expected: &[String], what: &str) {
    if got == expected {
        return;
    }
    let mut counts: BTreeMap<&String, i64> = BTreeMap::new();
    for g in got {
        *counts.entry(g).or_default() += 1;
    }
    for e in expected {
        *counts.entry(e).or_default() -= 1;
    }
    let dupes: Vec<_> = counts.iter().filter(|(_, n)| **n > 0).take(5).collect();
    let missing: Vec<_> = counts.iter().filter(|(_, n)| **n < 0).take(5).collect();
    panic!(
        "{what}: {} rows, expected {}; extra {dupes:?}; missing {missing:?}",
        got.len(),
        expected.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_windowed_aggregate_survives_repeated_sigkills() {
    // Out of order by up to half a second; the watermark allows one.
    let events = keyed_events(1_000_000, 1, 500, 200, 7);
    let (_dir, data, script) = setup(&[&events]);
    std::fs::write(
        &script,
        "SET 'parallelism.default' = '2';
         SET 'execution.checkpointing.interval' = '250ms';
         CREATE TABLE events (ts BIGINT, v BIGINT, k STRING,
             rt AS CAST(ts AS TIMESTAMP(3)),
             WATERMARK FOR rt AS rt - INTERVAL '1' SECOND)
         WITH ('connector' = 'queue', 'topic' = 'events', 'scan.bounded.mode' = 'latest-offset');
         CREATE TABLE out (ws BIGINT, k STRING, n BIGINT, total BIGINT, hi BIGINT)
         WITH ('connector' = 'queue', 'topic' = 'out');
         INSERT INTO out
         SELECT window_start, k, COUNT(*), SUM(v), MAX(v)
         FROM TABLE(TUMBLE(TABLE events, DESCRIPTOR(rt), INTERVAL '1' SECOND))
         GROUP BY window_start, window_end, k;",
    )
    .unwrap();
    let killed = run_with_kills(&data, &script, 10, 42);
    assert!(killed >= 10, "only {killed} kills before the job finished");
    let got = output(&data, &["ws", "k", "n", "total", "hi"]);
    let expected = reference(
        &[&events],
        "SELECT ts - ts % 1000, k, count(*), sum(v), max(v) FROM events GROUP BY 1, k",
    )
    .await;
    assert_exactly(&got, &expected, &format!("after {killed} kills"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interval_join_survives_repeated_sigkills() {
    let n = 400_000;
    let mut r = rng(9);
    let (mut a_id, mut a_ts, mut seller) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..n as i64 {
        a_id.push(i);
        a_ts.push(BASE + i * 5);
        seller.push((r() % 1000) as i64);
    }
    let (mut b_auction, mut b_ts, mut price) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..n as i64 {
        // A bid for a recent auction: some within 2 s of its start, some too late.
        let auction = (i - (r() % 100) as i64).max(0);
        b_auction.push(auction);
        b_ts.push(BASE + i * 5 + (r() % 50) as i64);
        price.push((r() % 10_000) as i64);
    }
    let auctions = Table {
        name: "auctions",
        columns: vec![("id", a_id), ("ts", a_ts), ("seller", seller)],
        key: None,
    };
    let bids = Table {
        name: "bids",
        columns: vec![("auction", b_auction), ("ts", b_ts), ("price", price)],
        key: None,
    };
    let (_dir, data, script) = setup(&[&auctions, &bids]);
    std::fs::write(
        &script,
        "SET 'parallelism.default' = '2';
         SET 'execution.checkpointing.interval' = '250ms';
         CREATE TABLE auctions (id BIGINT, ts BIGINT, seller BIGINT,
             rt AS CAST(ts AS TIMESTAMP(3)), WATERMARK FOR rt AS rt - INTERVAL '1' SECOND)
         WITH ('connector' = 'queue', 'topic' = 'auctions', 'scan.bounded.mode' = 'latest-offset');
         CREATE TABLE bids (auction BIGINT, ts BIGINT, price BIGINT,
             rt AS CAST(ts AS TIMESTAMP(3)), WATERMARK FOR rt AS rt - INTERVAL '1' SECOND)
         WITH ('connector' = 'queue', 'topic' = 'bids', 'scan.bounded.mode' = 'latest-offset');
         CREATE TABLE out (id BIGINT, seller BIGINT, price BIGINT, bid_ts BIGINT)
         WITH ('connector' = 'queue', 'topic' = 'out');
         INSERT INTO out
         SELECT a.id, a.seller, b.price, b.ts
         FROM bids b JOIN auctions a ON b.auction = a.id
          AND b.rt BETWEEN a.rt AND a.rt + INTERVAL '200' MILLISECOND;",
    )
    .unwrap();
    let killed = run_with_kills(&data, &script, 10, 43);
    assert!(killed >= 10, "only {killed} kills before the job finished");
    let got = output(&data, &["id", "seller", "price", "bid_ts"]);
    let expected = reference(
        &[&auctions, &bids],
        "SELECT a.id, a.seller, b.price, b.ts FROM bids b JOIN auctions a \
         ON b.auction = a.id AND b.ts BETWEEN a.ts AND a.ts + 200",
    )
    .await;
    assert!(expected.len() > 10_000, "{} matches", expected.len());
    assert_exactly(&got, &expected, &format!("after {killed} kills"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_takes_a_savepoint_that_a_later_run_starts_from() {
    // Enough events that the job is still reading when the stop comes, however fast the build.
    const EVENTS: i64 = 2_000_000;
    let events = keyed_events(EVENTS, 2, 0, 50, 11);
    let (dir, data, script) = setup(&[&events]);
    // No periodic checkpoints: what the second run knows comes from the savepoint alone.
    std::fs::write(
        &script,
        "SET 'parallelism.default' = '2';
         CREATE TABLE events (ts BIGINT, v BIGINT, k STRING,
             rt AS CAST(ts AS TIMESTAMP(3)),
             WATERMARK FOR rt AS rt - INTERVAL '100' MILLISECOND)
         WITH ('connector' = 'queue', 'topic' = 'events', 'scan.bounded.mode' = 'latest-offset');
         CREATE TABLE out (ws BIGINT, k STRING, n BIGINT, total BIGINT)
         WITH ('connector' = 'queue', 'topic' = 'out');
         INSERT INTO out
         SELECT window_start, k, COUNT(*), SUM(v)
         FROM TABLE(HOP(TABLE events, DESCRIPTOR(rt), INTERVAL '1' SECOND, INTERVAL '3' SECOND))
         GROUP BY window_start, window_end, k;",
    )
    .unwrap();
    let mut child = Command::new(BIN)
        .arg("--data-dir")
        .arg(&data)
        .arg("run")
        .arg(&script)
        .env("RUST_LOG", "rstreams=info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Stderr lines as they come, so that the stop lands once the job runs, whatever the load.
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(line);
        }
    });
    let mut lines = Vec::new();
    while !lines
        .iter()
        .any(|l: &String| l.contains("job `out` started"))
    {
        lines.push(rx.recv_timeout(Duration::from_secs(120)).unwrap());
    }
    std::thread::sleep(Duration::from_millis(300));
    // SAFETY: kill(2) on the child's pid, which is still ours to signal (not yet waited for).
    let rc = unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    assert_eq!(rc, 0);
    let status = child.wait().unwrap();
    reader.join().unwrap();
    lines.extend(rx.try_iter());
    let stderr = lines.join("\n");
    assert!(status.success(), "{stderr}");
    let savepoint = lines
        .iter()
        .find_map(|l| l.split("stopped; savepoint ").nth(1))
        .unwrap_or_else(|| panic!("no savepoint reported: {stderr}"))
        .trim()
        .to_string();
    assert!(savepoint.contains("sp-"), "{savepoint}");
    let read = read_positions(Path::new(&savepoint));
    assert!(
        read > 0 && read < EVENTS as u64,
        "the stop came mid-way: the savepoint has {read} of {EVENTS} events read"
    );
    let partial = output(&data, &["ws", "k", "n", "total"]).len();
    // The next run starts from the savepoint, named explicitly, with a state dir of its own.
    let out = Command::new(BIN)
        .arg("--data-dir")
        .arg(&data)
        .arg("run")
        .arg(&script)
        .arg("--state-dir")
        .arg(dir.path().join("other-state"))
        .arg("--from-savepoint")
        .arg(&savepoint)
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got = output(&data, &["ws", "k", "n", "total"]);
    let expected = reference(
        &[&events],
        "SELECT ws, k, count(*), sum(v) FROM (
            SELECT ts - ts % 1000 - o * 1000 AS ws, k, v
            FROM events CROSS JOIN (VALUES (0), (1), (2)) AS offsets(o)) w
         GROUP BY ws, k",
    )
    .await;
    assert!(
        partial < expected.len(),
        "{partial} of {} rows",
        expected.len()
    );
    assert_exactly(&got, &expected, "stop with savepoint, then resume");
}
