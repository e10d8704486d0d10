//! The PostgreSQL endpoint end to end: `rstreams run --serve` keeps materialized views of a
//! job's results and `psql` (the real client) queries them: values equal the reference,
//! `SHOW JOBS`, `SHOW MATERIALIZED VIEWS`, `\dt` and `\d` answer, writes are refused with
//! SQLSTATE 25006, bad queries and garbage on the socket leave the server serving.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

mod common;
#[path = "common/pg.rs"]
mod pg;
use common::BIN;
use pg::{Server, free_port, poll, psql_as};

fn rstreams(dir: &Path, args: &[&str], stdin: &str) -> Output {
    let out = common::rstreams(dir, args, stdin);
    assert!(
        out.status.success(),
        "rstreams {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// `psql` against the endpoint: (success, stdout, stderr).
fn psql(port: u16, commands: &[&str]) -> (bool, String, String) {
    psql_as(port, "analyst", None, commands)
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
    let (child, rx, reader) = common::spawn_with_stderr(
        Command::new(BIN)
            .arg("--data-dir")
            .arg(&data)
            .args(["run", "--serve", "--listen", &format!("127.0.0.1:{port}")])
            .arg(&script),
    );
    let server = Server(Some(child));
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
    // The endpoint may still be binding when the jobs are done.
    let (ok, out, err) = poll(
        10,
        || psql(port, &["SELECT k, n, total FROM per_key ORDER BY k"]),
        |a| a.0,
    );
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

    // A driver's prepared statements with parameters (the extended protocol).
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let url = format!("host=127.0.0.1 port={port} user=analyst");
        let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
            .await
            .unwrap();
        let connection = tokio::spawn(connection);
        let statement = client
            .prepare("SELECT n, total FROM per_key WHERE k = $1")
            .await
            .unwrap();
        for (k, (c, t)) in &per_key {
            let row = client.query_one(&statement, &[k]).await.unwrap();
            assert_eq!(
                (row.get::<_, i64>(0), row.get::<_, i64>(1)),
                (*c as i64, *t as i64)
            );
        }
        let e = client
            .execute("INSERT INTO per_key VALUES ($1, 1, 1)", &[&"x"])
            .await
            .unwrap_err();
        assert_eq!(e.code().map(|c| c.code()), Some("25006"), "{e}");
        drop(client);
        let _ = connection.await;
    });

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
    let (ok, out, err) = psql(port, &["DESCRIBE per_key"]);
    assert!(
        ok && out.contains("k|Utf8View|") && out.contains("total|Int64|"),
        "{out}{err}"
    );

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
    malformed_after_startup(port);
    let (ok, out, err) = psql(port, &["SELECT COUNT(*) FROM per_key"]);
    assert!(ok && out.trim() == "7", "{out}{err}");

    let status = server.terminate();
    reader.join().unwrap();
    assert!(status.success());
}

#[test]
fn a_configured_password_is_required_and_checked_with_scram() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let script = dir.path().join("view.sql");
    std::fs::write(
        &script,
        "CREATE TABLE nexmark (event_type INT) WITH ('connector' = 'nexmark', 'events.num' = '500');
         CREATE MATERIALIZED VIEW kinds AS SELECT event_type, COUNT(*) AS n FROM nexmark
           GROUP BY event_type;",
    )
    .unwrap();
    let port = free_port();
    let server = Server(Some(
        Command::new(BIN)
            .arg("--data-dir")
            .arg(&data)
            .args([
                "run",
                "--quiet",
                "--serve",
                "--password-from-env",
                "--user",
                "analyst",
            ])
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .arg(&script)
            .env("RSTREAMS_PASSWORD", "s3cret")
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    ));
    // The server is up once a connection is answered (by a refusal: no password given).
    let mut tries = 0;
    loop {
        let (_, _, err) = psql_as(port, "analyst", None, &["SELECT 1"]);
        if !err.contains("Connection refused") && !err.contains("could not connect") {
            assert!(err.contains("password"), "{err}");
            break;
        }
        tries += 1;
        assert!(tries < 200, "no server: {err}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let total = || {
        psql_as(
            port,
            "analyst",
            Some("s3cret"),
            &["SELECT SUM(n) FROM kinds"],
        )
    };
    let mut answer = total();
    while answer.1.trim() != "500" && tries < 300 {
        std::thread::sleep(Duration::from_millis(100));
        tries += 1;
        answer = total();
    }
    assert!(answer.0 && answer.1.trim() == "500", "{answer:?}");
    let (ok, _, err) = psql_as(port, "analyst", Some("wrong"), &["SELECT 1"]);
    assert!(
        !ok && err
            .to_lowercase()
            .contains("password authentication failed"),
        "{err}"
    );
    let (ok, _, err) = psql_as(port, "mallory", Some("s3cret"), &["SELECT 1"]);
    assert!(!ok && err.contains("mallory"), "{err}");
    assert!(server.terminate().success());
}

/// A client that starts up properly, then sends a message whose length field lies and one of
/// an unknown type: the server answers with an error or closes that connection, and nothing
/// else.
fn malformed_after_startup(port: u16) {
    use std::io::Read;
    for bad in [
        // 'Q' claiming 2 GB of query text.
        &[b'Q', 0x7f, 0xff, 0xff, 0xf0, b'S', b'E', b'L'][..],
        // A type byte no message has, then a short length.
        &[b'~', 0, 0, 0, 2, 9, 9][..],
        // A Parse message whose strings run off its end.
        &[b'P', 0, 0, 0, 6, b'x', b'y'][..],
    ] {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut startup = Vec::new();
        let body = b"user\0analyst\0database\0rstreams\0\0";
        startup.extend_from_slice(&((8 + body.len()) as u32).to_be_bytes());
        startup.extend_from_slice(&196_608u32.to_be_bytes());
        startup.extend_from_slice(body);
        s.write_all(&startup).unwrap();
        // Up to ReadyForQuery ('Z').
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        while !seen.contains(&b'Z') {
            let n = s.read(&mut buf).unwrap();
            assert!(n > 0, "closed during startup");
            seen.extend_from_slice(&buf[..n]);
        }
        s.write_all(bad).unwrap();
        // An ErrorResponse ('E') or the connection closed; either way a bounded wait.
        let mut answer = Vec::new();
        loop {
            match s.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => answer.extend_from_slice(&buf[..n]),
            }
            if answer.contains(&b'E') {
                break;
            }
        }
    }
}
