//! The PostgreSQL endpoint end to end: `rstreams run --serve` keeps materialized views of a
//! job's results and `psql` (the real client) queries them: values equal the reference,
//! `SHOW JOBS`, `SHOW MATERIALIZED VIEWS`, `\dt` and `\d` answer, writes are refused with
//! SQLSTATE 25006, bad queries and garbage on the socket leave the server serving.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_rstreams");

fn rstreams(dir: &Path, args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(BIN)
        .arg("--data-dir")
        .arg(dir)
        .args(args)
        .env_remove("RUST_LOG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    let stdin = stdin.to_string();
    let writer = std::thread::spawn(move || {
        let _ = input.write_all(stdin.as_bytes());
    });
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    assert!(
        out.status.success(),
        "rstreams {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// `psql` against the endpoint: (success, stdout, stderr).
fn psql(port: u16, commands: &[&str]) -> (bool, String, String) {
    let mut cmd = Command::new("psql");
    cmd.args([
        "-h",
        "127.0.0.1",
        "-p",
        &port.to_string(),
        "-U",
        "analyst",
        "-At",
        "-v",
        "ON_ERROR_STOP=1",
    ]);
    for c in commands {
        cmd.args(["-c", c]);
    }
    let out = cmd
        .env("PGCONNECT_TIMEOUT", "10")
        .output()
        .expect("psql (postgresql-client) is installed");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn psql_queries_the_views_of_a_job() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    rstreams(&data, &["topic", "create", "events", "--queues", "2"], "");
    let n = 20_000u64;
    let lines: String = (0..n)
        .map(|i| {
            format!(
                "{{\"ts\":{},\"k\":\"k{}\",\"v\":{}}}\n",
                3 * i,
                i % 7,
                i % 11
            )
        })
        .collect();
    rstreams(&data, &["produce", "events", "--key-field", "k"], &lines);
    let script = dir.path().join("views.sql");
    std::fs::write(
        &script,
        "SET 'parallelism.default' = '2';
         CREATE TABLE events (ts BIGINT, k STRING, v BIGINT,
             rt AS CAST(ts AS TIMESTAMP(3)),
             WATERMARK FOR rt AS rt - INTERVAL '100' MILLISECOND)
           WITH ('connector' = 'queue', 'topic' = 'events', 'scan.bounded.mode' = 'latest-offset');
         CREATE MATERIALIZED VIEW per_key AS SELECT k, COUNT(*) AS n, SUM(v) AS total
           FROM events GROUP BY k;
         CREATE MATERIALIZED VIEW per_second WITH ('retention' = '0') AS
           SELECT window_start, window_end, COUNT(*) AS n
           FROM TABLE(TUMBLE(TABLE events, DESCRIPTOR(rt), INTERVAL '1' SECOND))
           GROUP BY window_start, window_end;",
    )
    .unwrap();
    let port = free_port();
    let mut child = Command::new(BIN)
        .arg("--data-dir")
        .arg(&data)
        .args(["run", "--serve", "--listen", &format!("127.0.0.1:{port}")])
        .arg(&script)
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(line);
        }
    });
    let mut lines: Vec<String> = Vec::new();
    while lines.iter().filter(|l| l.ends_with("finished")).count() < 2 {
        lines.push(
            rx.recv_timeout(Duration::from_secs(120))
                .unwrap_or_else(|_| panic!("{lines:?}")),
        );
    }

    // Reference values.
    let mut per_key: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    let mut per_second: BTreeMap<u64, u64> = BTreeMap::new();
    for i in 0..n {
        let e = per_key.entry(format!("k{}", i % 7)).or_default();
        e.0 += 1;
        e.1 += i % 11;
        *per_second.entry(3 * i / 1000).or_default() += 1;
    }
    let (ok, out, err) = psql(port, &["SELECT k, n, total FROM per_key ORDER BY k"]);
    assert!(ok, "{err}");
    let want: Vec<String> = per_key
        .iter()
        .map(|(k, (c, t))| format!("{k}|{c}|{t}"))
        .collect();
    assert_eq!(out.lines().collect::<Vec<_>>(), want);
    let query =
        "SELECT CAST(EXTRACT(EPOCH FROM window_start) AS BIGINT), n FROM per_second ORDER BY 1";
    let (ok, first, err) = psql(port, &[query]);
    assert!(ok, "{err}");
    let want: Vec<String> = per_second.iter().map(|(s, c)| format!("{s}|{c}")).collect();
    assert_eq!(first.lines().collect::<Vec<_>>(), want);
    let (_, second, _) = psql(port, &[query]);
    assert_eq!(first, second, "the same epoch gives the same answer");
    // Aggregates and joins between views.
    let (ok, out, err) = psql(
        port,
        &[
            "SELECT (SELECT SUM(n) FROM per_key), (SELECT SUM(n) FROM per_second), \
           (SELECT COUNT(*) FROM per_key a JOIN per_key b ON a.k = b.k)",
        ],
    );
    assert!(ok, "{err}");
    assert_eq!(out.trim(), format!("{n}|{n}|7"));

    let (ok, out, err) = psql(port, &["SHOW JOBS", "SHOW MATERIALIZED VIEWS", "\\dt"]);
    assert!(ok, "{err}");
    assert!(
        out.contains("per_key|insert|finished") && out.contains("per_second|insert|finished"),
        "{out}"
    );
    assert!(
        out.contains("per_second|window_start Timestamp(ms), window_end Timestamp(ms), n Int64|"),
        "{out}"
    );
    assert!(
        out.contains("public|per_key|table") && out.contains("public|per_second|table"),
        "{out}"
    );
    let (ok, out, err) = psql(port, &["\\d per_key"]);
    assert!(ok && out.contains("total|bigint"), "{out}{err}");

    // Refused cleanly, and the next session is fine.
    let (ok, _, err) = psql(port, &["INSERT INTO per_key VALUES ('x', 1, 1)"]);
    assert!(!ok && err.contains("read-only"), "{err}");
    let (ok, _, err) = psql(port, &["DROP TABLE per_key"]);
    assert!(!ok && err.contains("read-only"), "{err}");
    let (ok, _, err) = psql(port, &["SELECT * FROM nope"]);
    assert!(!ok && err.contains("nope"), "{err}");
    {
        let mut garbage = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        garbage
            .write_all(&[0, 0, 0, 3, 0xff, 0xff, 0xff, 0xff, 1, 2, 3])
            .unwrap();
    }
    let (ok, out, err) = psql(port, &["SELECT COUNT(*) FROM per_key"]);
    assert!(ok && out.trim() == "7", "{out}{err}");

    // SAFETY: kill(2) on the child's pid, which is still ours to signal (not yet waited for).
    assert_eq!(
        unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) },
        0
    );
    let status = child.wait().unwrap();
    reader.join().unwrap();
    assert!(status.success());
}
