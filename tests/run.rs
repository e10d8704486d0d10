//! End-to-end tests of `rstreams run`, the binary spawned as a process: results printed by the
//! `print` connector and plain SELECTs, `--quiet`, a failing job's exit code and one-line
//! error, bad records sent to a dead-letter topic, SIGTERM then a re-run of the script resuming
//! exactly once, and a self-join of JSON files reading only the columns it joins.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

mod common;
use common::{BIN, rstreams};

fn ok(dir: &Path, args: &[&str], stdin: &str) -> (String, String) {
    let out = rstreams(dir, args, stdin);
    let (stdout, stderr) = (
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    );
    assert!(out.status.success(), "rstreams {args:?}: {stderr}");
    (stdout, stderr)
}

/// A store with topic `events` (2 queues) holding `n` events: key `k{i % 20}`, time `2 i` ms.
fn events(n: u64) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let d = data.to_str().unwrap();
    ok(&data, &["topic", "create", "events", "--queues", "2"], "");
    ok(&data, &["topic", "create", "out", "--queues", "1"], "");
    let lines: String = (0..n)
        .map(|i| {
            format!(
                "{{\"ts\":{},\"k\":\"k{}\",\"v\":{}}}\n",
                2 * i,
                i % 20,
                i % 7
            )
        })
        .collect();
    ok(&data, &["produce", "events", "--key-field", "k"], &lines);
    let _ = d;
    (dir, data)
}

const EVENTS: &str = "CREATE TABLE events (ts BIGINT, k STRING, v BIGINT,
    rt AS CAST(ts AS TIMESTAMP(3)),
    WATERMARK FOR rt AS rt - INTERVAL '50' MILLISECOND)
  WITH ('connector' = 'queue', 'topic' = 'events', 'scan.bounded.mode' = 'latest-offset');";

/// Per (one-second window, key): count and sum of `v`, for events `0..n`.
fn per_second(n: u64) -> BTreeMap<(i64, String), (i64, i64)> {
    let mut out: BTreeMap<(i64, String), (i64, i64)> = BTreeMap::new();
    for i in 0..n {
        let e = out
            .entry(((2 * i as i64) / 1000 * 1000, format!("k{}", i % 20)))
            .or_default();
        e.0 += 1;
        e.1 += (i % 7) as i64;
    }
    out
}

#[test]
fn results_print_as_tables_or_json_and_quiet_keeps_only_them() {
    let (dir, data) = events(4000);
    let script = dir.path().join("job.sql");
    std::fs::write(
        &script,
        format!(
            "{EVENTS}
             CREATE TABLE shown (k STRING, n BIGINT) WITH ('connector' = 'print', 'format' = 'json');
             INSERT INTO shown SELECT k, COUNT(*) FROM events WHERE k = 'k3' OR k = 'k4'
               GROUP BY k;
             SELECT window_start, k, COUNT(*) AS n
             FROM TABLE(TUMBLE(TABLE events, DESCRIPTOR(rt), INTERVAL '1' SECOND))
             WHERE k = 'k7' GROUP BY window_start, window_end, k;"
        ),
    )
    .unwrap();
    let (stdout, stderr) = ok(&data, &["run", script.to_str().unwrap()], "");
    // The JSON sink prints the update stream: each key's count as it grows, ending at 200.
    for k in ["k3", "k4"] {
        let last = stdout
            .lines()
            .rfind(|l| l.starts_with('{') && l.contains(&format!("\"k\":\"{k}\"")))
            .unwrap_or_else(|| panic!("no {k}: {stdout}"));
        // +I if one batch held all of the key's rows, else +U.
        assert!(
            last.ends_with(&format!(",\"k\":\"{k}\",\"n\":200}}"))
                && last.starts_with("{\"op\":\"+"),
            "{last}"
        );
    }
    // The SELECT: a table with one row per one-second window for k7 (8 windows of 25).
    let rows: Vec<&str> = stdout.lines().filter(|l| l.contains("| k7 ")).collect();
    assert_eq!(rows.len(), 8, "{stdout}");
    assert!(
        rows.iter().all(|r| r.trim_end().ends_with("25 |")),
        "{rows:?}"
    );
    assert!(stdout.contains("| window_start "), "a header: {stdout}");
    assert!(
        stderr.contains("job `shown` started") && stderr.contains("job `shown` finished"),
        "{stderr}"
    );

    let (quiet_out, quiet_err) = ok(&data, &["run", "--quiet", script.to_str().unwrap()], "");
    assert_eq!(quiet_err, "", "--quiet: nothing but results");
    assert_eq!(
        quiet_out.lines().filter(|l| l.contains("| k7 ")).count(),
        8,
        "a finished job starts over on the next run"
    );
}

#[test]
fn a_failing_job_exits_1_with_one_line_and_bad_records_can_go_to_a_dead_letter_topic() {
    let (dir, data) = events(100);
    ok(
        &data,
        &["produce", "events"],
        // A number for a STRING column reads (as in Flink); text for a BIGINT does not.
        "{\"ts\": 5, \"k\": 12}\n{\"ts\": \"five\", \"k\": \"x\"}\nnot json at all\n",
    );
    let script = dir.path().join("job.sql");
    let write = |policy: &str| {
        std::fs::write(
            &script,
            format!(
                "{}
                 CREATE TABLE keys (k STRING, v BIGINT) WITH ('connector' = 'blackhole');
                 INSERT INTO keys SELECT k, v FROM events;",
                EVENTS.replace("'latest-offset'", &format!("'latest-offset'{policy}"))
            ),
        )
        .unwrap();
    };
    write("");
    let out = rstreams(&data, &["run", "--quiet", script.to_str().unwrap()], "");
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    assert!(
        stderr.starts_with("error: job `keys`: ") && stderr.contains("topic 'events'"),
        "{stderr}"
    );

    write(", 'format.on-error' = 'dead-letter', 'format.dead-letter.topic' = 'bad-events'");
    ok(&data, &["run", "--quiet", script.to_str().unwrap()], "");
    let (letters, _) = ok(&data, &["consume", "bad-events", "--format", "json"], "");
    let letters: Vec<serde_json::Value> = letters
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(letters.len(), 2, "the two bad records: {letters:?}");
    assert_eq!(letters[0]["payload"], "{\"ts\": \"five\", \"k\": \"x\"}");
    assert_eq!(letters[1]["payload"], "not json at all");
    let headers = |i: usize| letters[i]["headers"].to_string();
    assert!(
        headers(0).contains("rstreams.error") && headers(0).contains("five"),
        "{}",
        headers(0)
    );
    assert!(headers(0).contains("offset 51"), "{}", headers(0));
    assert!(headers(1).contains("offset 52"), "{}", headers(1));
}

#[test]
fn sigterm_stops_with_a_savepoint_and_running_the_script_again_resumes_exactly_once() {
    let n = 300_000;
    let (dir, data) = events(n);
    let script = dir.path().join("job.sql");
    // The first run reads the topic without end, so that the signal always finds it running
    // however fast it reads; the second, resumed, stops at the end of the topic.
    let job = |events: &str| {
        format!(
            "SET 'parallelism.default' = '2';
             SET 'execution.checkpointing.interval' = '300ms';
             {events}
             CREATE TABLE out (ws BIGINT, k STRING, n BIGINT, total BIGINT)
               WITH ('connector' = 'queue', 'topic' = 'out');
             INSERT INTO out
             SELECT CAST(EXTRACT(EPOCH FROM window_start) * 1000 AS BIGINT), k, COUNT(*), SUM(v)
             FROM TABLE(TUMBLE(TABLE events, DESCRIPTOR(rt), INTERVAL '1' SECOND))
             GROUP BY window_start, window_end, k;"
        )
    };
    let unbounded = EVENTS.replace(", 'scan.bounded.mode' = 'latest-offset'", "");
    assert_ne!(unbounded, EVENTS);
    std::fs::write(&script, job(&unbounded)).unwrap();
    let (mut child, rx, reader) = common::spawn_with_stderr(
        Command::new(BIN)
            .arg("--data-dir")
            .arg(&data)
            .arg("run")
            .arg(&script),
    );
    let mut lines: Vec<String> = Vec::new();
    while !lines.iter().any(|l| l.contains("job `out` started")) {
        lines.push(rx.recv_timeout(Duration::from_secs(120)).unwrap());
    }
    std::thread::sleep(Duration::from_millis(700));
    // SAFETY: kill(2) on the child's pid, which is still ours to signal (not yet waited for).
    assert_eq!(
        unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) },
        0
    );
    let status = child.wait().unwrap();
    reader.join().unwrap();
    lines.extend(rx.try_iter());
    let stderr = lines.join("\n");
    assert!(status.success(), "{stderr}");
    assert!(stderr.contains("job `out` stopped; savepoint "), "{stderr}");

    // The same command again, over the bounded table: it resumes from the savepoint and
    // finishes the input.
    std::fs::write(&script, job(EVENTS)).unwrap();
    let (_, stderr) = ok(&data, &["run", script.to_str().unwrap()], "");
    assert!(stderr.contains("job `out` finished"), "{stderr}");
    let (records, _) = ok(&data, &["consume", "out"], "");
    let mut got: BTreeMap<(i64, String), Vec<(i64, i64)>> = BTreeMap::new();
    for line in records.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        got.entry((
            v["ws"].as_i64().unwrap(),
            v["k"].as_str().unwrap().to_string(),
        ))
        .or_default()
        .push((v["n"].as_i64().unwrap(), v["total"].as_i64().unwrap()));
    }
    let expected = per_second(n);
    assert_eq!(got.len(), expected.len(), "every window and key");
    for (key, want) in expected {
        assert_eq!(got[&key], vec![want], "{key:?} exactly once");
    }
}

#[test]
fn files_in_files_out_through_sql() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let input = dir.path().join("in");
    std::fs::create_dir_all(&input).unwrap();
    // Two CSV files with a header, one with a bad line, and a hidden file that is not read.
    let mut expected: BTreeMap<String, (i64, i64)> = BTreeMap::new();
    for f in 0..2 {
        let mut text = String::from("city,amount\n");
        for i in 0..500 {
            let city = format!("c{}", (i * 7 + f) % 5);
            let amount = i * 3 + f;
            text.push_str(&format!("\"{city}\",{amount}\n"));
            let e = expected.entry(city).or_default();
            e.0 += 1;
            e.1 += amount;
        }
        if f == 1 {
            text.push_str("c1,not-a-number\n");
        }
        std::fs::write(input.join(format!("part-{f}.csv")), text).unwrap();
    }
    std::fs::write(input.join(".hidden.csv"), "city,amount\nc9,1\n").unwrap();
    let parquet = dir.path().join("out");
    let script = dir.path().join("copy.sql");
    std::fs::write(
        &script,
        format!(
            "SET 'parallelism.default' = '2';
             SET 'execution.checkpointing.interval' = '200ms';
             CREATE TABLE sales (city STRING, amount BIGINT) WITH ('connector' = 'filesystem',
               'path' = '{}', 'format' = 'csv', 'csv.header' = 'true',
               'format.on-error' = 'skip');
             CREATE TABLE copied (city STRING, amount BIGINT)
               WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'parquet');
             INSERT INTO copied SELECT city, amount FROM sales;",
            input.display(),
            parquet.display()
        ),
    )
    .unwrap();
    ok(&data, &["run", "--quiet", script.to_str().unwrap()], "");
    let files: Vec<String> = std::fs::read_dir(&parquet)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    assert!(
        !files.is_empty()
            && files
                .iter()
                .all(|f| f.starts_with("part-") && f.ends_with(".parquet")),
        "only committed part files: {files:?}"
    );
    let query = dir.path().join("query.sql");
    std::fs::write(
        &query,
        format!(
            "CREATE TABLE copied (city STRING, amount BIGINT)
               WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'parquet');
             CREATE TABLE totals (city STRING, n BIGINT, total BIGINT)
               WITH ('connector' = 'print', 'format' = 'json');
             INSERT INTO totals SELECT city, COUNT(*), SUM(amount) FROM copied GROUP BY city;",
            parquet.display()
        ),
    )
    .unwrap();
    let (stdout, _) = ok(&data, &["run", "--quiet", query.to_str().unwrap()], "");
    let mut got: BTreeMap<String, (i64, i64)> = BTreeMap::new();
    for line in stdout.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let entry = (v["n"].as_i64().unwrap(), v["total"].as_i64().unwrap());
        // The last change of each city is its final value.
        got.insert(v["city"].as_str().unwrap().to_string(), entry);
    }
    assert_eq!(got, expected);
}

/// The quick start's two scripts (with fewer events): the printed winners of every window are
/// those computed here from the bids in the topic.
#[test]
fn the_quick_start_prints_the_hottest_item_of_every_window() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/quickstart");
    let generate = dir.path().join("bids_to_topic.sql");
    let sql = std::fs::read_to_string(examples.join("bids_to_topic.sql")).unwrap();
    assert!(sql.contains("'events.num' = '1000000'"));
    std::fs::write(
        &generate,
        sql.replace("'events.num' = '1000000'", "'events.num' = '200000'"),
    )
    .unwrap();
    ok(&data, &["topic", "create", "bids", "--queues", "4"], "");
    ok(&data, &["run", "--quiet", generate.to_str().unwrap()], "");
    let hot = examples.join("hot_items.sql");
    let (printed, _) = ok(&data, &["run", "--quiet", hot.to_str().unwrap()], "");

    // The reference: bids per (10-second window, auction), and each window's most bid.
    let (records, _) = ok(&data, &["consume", "bids"], "");
    let mut counts: BTreeMap<(String, i64), i64> = BTreeMap::new();
    for line in records.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let t = v["date_time"].as_str().unwrap();
        // "2026-11-27T02:29:13.123": the window starts at the ten seconds.
        let window = format!("{}0", &t[..18]);
        *counts
            .entry((window, v["auction"].as_i64().unwrap()))
            .or_default() += 1;
    }
    let mut most: BTreeMap<&str, i64> = BTreeMap::new();
    for ((w, _), n) in &counts {
        let m = most.entry(w.as_str()).or_default();
        *m = (*m).max(*n);
    }
    let mut expected: Vec<(String, i64, i64)> = counts
        .iter()
        .filter(|((w, _), n)| most[w.as_str()] == **n)
        .map(|((w, a), n)| (w.clone(), *a, *n))
        .collect();
    let mut got: Vec<(String, i64, i64)> = printed
        .lines()
        .filter(|l| l.starts_with("| 20"))
        .map(|l| {
            let cells: Vec<&str> = l.split('|').map(str::trim).collect();
            (
                cells[1].to_string(),
                cells[3].parse().unwrap(),
                cells[4].parse().unwrap(),
            )
        })
        .collect();
    expected.sort();
    got.sort();
    assert!(expected.len() >= 2, "{expected:?}");
    assert_eq!(got, expected);
}

/// A self-join of a JSON table under two aliases reads the files once, only the columns the
/// join reads (`EXPLAIN`), and pairs the rows a nested loop pairs.
#[test]
fn a_self_join_of_json_files_reads_only_the_joined_columns() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let input = dir.path().join("bids");
    std::fs::create_dir_all(&input).unwrap();
    let n = 2000i64;
    // Bid i: price i % 50, at 10 i ms; equal prices are 500 ms apart.
    for f in 0..2 {
        let text: String = (0..n)
            .filter(|i| i % 2 == f)
            .map(|i| {
                let ms = 10 * i;
                format!(
                    "{{\"id\": {i}, \"price\": {}, \"note\": \"note {i}\", \"ts\": \
                     \"2026-01-01 00:{:02}:{:02}.{:03}\"}}\n",
                    i % 50,
                    ms / 60_000,
                    ms / 1000 % 60,
                    ms % 1000
                )
            })
            .collect();
        std::fs::write(input.join(format!("part-{f}.json")), text).unwrap();
    }
    let script = dir.path().join("pairs.sql");
    let job = |explain: &str| {
        format!(
            "SET 'parallelism.default' = '2';
             CREATE TABLE bids (id BIGINT, price BIGINT, note STRING, ts TIMESTAMP(3),
               WATERMARK FOR ts AS ts - INTERVAL '1' SECOND)
               WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'json');
             CREATE TABLE pairs (a BIGINT, b BIGINT, price BIGINT)
               WITH ('connector' = 'print', 'format' = 'json');
             {explain} INSERT INTO pairs SELECT x.id, y.id, x.price
             FROM bids AS x JOIN bids AS y ON x.price = y.price
               AND x.ts BETWEEN y.ts - INTERVAL '1' SECOND AND y.ts
             WHERE x.id < y.id;",
            input.display()
        )
    };
    std::fs::write(&script, job("EXPLAIN")).unwrap();
    let (plan, _) = ok(&data, &["run", "--quiet", script.to_str().unwrap()], "");
    assert_eq!(plan.matches("columns=[id, price, ts]").count(), 2, "{plan}");
    assert_eq!(plan.matches("source: bids").count(), 1, "{plan}");

    std::fs::write(&script, job("")).unwrap();
    let (stdout, _) = ok(&data, &["run", "--quiet", script.to_str().unwrap()], "");
    let mut got: Vec<(i64, i64, i64)> = stdout
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            let field = |name: &str| v[name].as_i64().unwrap();
            (field("a"), field("b"), field("price"))
        })
        .collect();
    got.sort_unstable();
    let mut want = Vec::new();
    for x in 0..n {
        for y in x + 1..n {
            if x % 50 == y % 50 && (0..=1000).contains(&(10 * y - 10 * x)) {
                want.push((x, y, x % 50));
            }
        }
    }
    assert_eq!(got.len(), want.len());
    assert_eq!(got, want);
}
