//! `rstreams serve` end to end: a user allowed DDL defines a table and materialized views
//! from `psql`; analysts read them with `psql` and Python's `psycopg` (values equal the
//! reference computed here, a prepared query with parameters, the same answer twice), and
//! their DDL is refused with SQLSTATE 25006; the views come back after a restart (the kept
//! catalog runs again); `DROP MATERIALIZED VIEW` stops the job and forgets it.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

mod common;
#[path = "common/pg.rs"]
mod pg;
use common::BIN;
use pg::{Server, free_port, poll, psql_as};

const EVENTS: u64 = 20_000;

/// Appends events `range` to topic `events`: `{"k": "k<i % 7>", "v": <i % 11>}`.
fn produce(data: &Path, range: std::ops::Range<u64>) {
    let lines: String = range
        .map(|i| format!("{{\"k\":\"k{}\",\"v\":{}}}\n", i % 7, i % 11))
        .collect();
    let out = common::rstreams(data, &["produce", "events", "--key-field", "k"], &lines);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Per key: (count, sum of v).
fn reference() -> BTreeMap<String, (u64, u64)> {
    let mut per_key: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for i in 0..EVENTS {
        let e = per_key.entry(format!("k{}", i % 7)).or_default();
        e.0 += 1;
        e.1 += i % 11;
    }
    per_key
}

fn start(data: &Path, port: u16) -> (Server, std::sync::mpsc::Receiver<String>) {
    let (child, rx, _reader) = common::spawn_with_stderr(
        Command::new(BIN)
            .arg("--data-dir")
            .arg(data)
            .args(["serve", "--allow-ddl", "admin"])
            .args(["--listen", &format!("127.0.0.1:{port}")]),
    );
    let server = Server(Some(child));
    let mut said = Vec::new();
    while !said.iter().any(|l: &String| l.contains("serving on")) {
        said.push(
            rx.recv_timeout(Duration::from_secs(60))
                .unwrap_or_else(|_| panic!("the server says where it serves: {said:?}")),
        );
    }
    let (ok, _, err) = poll(10, || analyst(port, &["SELECT 1"]), |a| a.0);
    assert!(ok, "{err}");
    (server, rx)
}

/// A data directory whose topic `events` holds [`EVENTS`] events, and a server over it.
fn serving_events() -> (
    tempfile::TempDir,
    u16,
    Server,
    std::sync::mpsc::Receiver<String>,
) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let out = common::rstreams(&data, &["topic", "create", "events", "--queues", "2"], "");
    assert!(out.status.success());
    produce(&data, 0..EVENTS);
    let port = free_port();
    let (server, rx) = start(&data, port);
    (dir, port, server, rx)
}

fn admin(port: u16, commands: &[&str]) -> (bool, String, String) {
    psql_as(port, "admin", None, commands)
}

fn analyst(port: u16, commands: &[&str]) -> (bool, String, String) {
    psql_as(port, "analyst", None, commands)
}

/// The rows of `per_key` (then their total) once it counts `events`.
fn per_key_when_complete(port: u16, events: u64) -> (bool, String, String) {
    let total = events.to_string();
    poll(
        60,
        || {
            analyst(
                port,
                &[
                    "SELECT k, n, total FROM per_key ORDER BY k",
                    "SELECT SUM(n) FROM per_key",
                ],
            )
        },
        // Two statements, maybe at two epochs: both must show every event.
        |a| {
            let lines: Vec<&str> = a.1.lines().collect();
            let counted: u64 = lines
                .iter()
                .filter_map(|l| l.split('|').nth(1)?.parse::<u64>().ok())
                .sum();
            a.0 && lines.last() == Some(&total.as_str()) && counted == events
        },
    )
}

/// Queries through psycopg (server-side parameters: the extended protocol) and checks its
/// answers; `expected` is `k:n:total,...`.
const PSYCOPG_CHECK: &str = r#"
import sys, psycopg
port, expected = int(sys.argv[1]), sys.argv[2]
want = {k: (int(n), int(t)) for k, n, t in (e.split(":") for e in expected.split(","))}
with psycopg.connect(host="127.0.0.1", port=port, user="analyst", autocommit=True) as conn:
    for k, (n, t) in want.items():
        row = conn.execute("SELECT n, total FROM per_key WHERE k = %s", (k,)).fetchone()
        assert row == (n, t), (k, row, (n, t))
    first = conn.execute("SELECT k, n FROM per_key ORDER BY k").fetchall()
    second = conn.execute("SELECT k, n FROM per_key ORDER BY k").fetchall()
    assert first == second and len(first) == len(want), (first, second)
    # A self-join reads the view once: every key meets itself with the same count.
    rows = conn.execute(
        "SELECT COUNT(*) FROM per_key a JOIN per_key b ON a.k = b.k AND a.n = b.n").fetchone()
    assert rows == (len(want),), rows
    for ddl in ("CREATE TABLE t (a INT) WITH ('connector' = 'nexmark')", "DROP TABLE per_key"):
        try:
            conn.execute(ddl)
            raise SystemExit("not refused: " + ddl)
        except psycopg.errors.ReadOnlySqlTransaction as e:
            assert "read-only" in str(e), str(e)
    try:
        conn.execute("SELECT nope FROM per_key")
        raise SystemExit("a bad query was answered")
    except psycopg.errors.Error as e:
        assert "nope" in str(e), str(e)
    assert conn.execute("SELECT COUNT(*) FROM per_key").fetchone() == (len(want),)
print("ok")
"#;

#[test]
fn ddl_users_define_views_that_analysts_query_and_that_survive_restarts() {
    let (dir, port, server, rx) = serving_events();
    let data = dir.path().join("data");

    // Flink DDL from psql, by a user allowed it; one -c with two statements, one alone.
    let (ok, out, err) = admin(
        port,
        &[
            "SET 'parallelism.default' = '2'; CREATE TABLE events (k STRING, v BIGINT) WITH (
               'connector' = 'queue', 'topic' = 'events', 'scan.bounded.mode' = 'latest-offset')",
            "CREATE MATERIALIZED VIEW per_key AS
               SELECT k, COUNT(*) AS n, SUM(v) AS total FROM events GROUP BY k",
        ],
    );
    assert!(ok, "{out}{err}");
    assert!(err.contains("job `per_key` started"), "the notice: {err}");
    assert!(out.contains("CREATE MATERIALIZED VIEW"), "the tag: {out}");
    // A mistake names its place, and changes nothing.
    let (ok, _, err) = admin(port, &["CREATE TABLE broken (a INT) WITH ('connector' = )"]);
    assert!(!ok && err.contains("line 1"), "{err}");
    // Others are read-only.
    let (ok, _, err) = analyst(
        port,
        &["CREATE TABLE mine (a INT) WITH ('connector' = 'nexmark')"],
    );
    assert!(!ok && err.contains("read-only"), "{err}");

    let want: Vec<String> = reference()
        .iter()
        .map(|(k, (c, t))| format!("{k}|{c}|{t}"))
        .collect();
    let (ok, out, err) = per_key_when_complete(port, EVENTS);
    assert!(ok, "{err}");
    assert_eq!(out.lines().take(want.len()).collect::<Vec<_>>(), want);

    // Python's driver, as a notebook would use it.
    let expected: Vec<String> = reference()
        .iter()
        .map(|(k, (c, t))| format!("{k}:{c}:{t}"))
        .collect();
    let py = Command::new("python3")
        .args(["-c", PSYCOPG_CHECK, &port.to_string(), &expected.join(",")])
        .output()
        .expect("python3 is installed");
    assert!(
        py.status.success() && String::from_utf8_lossy(&py.stdout).trim() == "ok",
        "psycopg (scripts/prereqs.sh installs it): {}{}",
        String::from_utf8_lossy(&py.stdout),
        String::from_utf8_lossy(&py.stderr)
    );

    let (ok, out, err) = analyst(port, &["SHOW JOBS"]);
    assert!(ok && out.contains("per_key|insert|finished"), "{out}{err}");
    assert!(server.terminate().success());
    drop(rx);
    let catalog = std::fs::read_to_string(data.join("state").join("catalog.sql")).unwrap();
    assert!(
        catalog.contains("CREATE TABLE events") && catalog.contains("CREATE MATERIALIZED VIEW"),
        "{catalog}"
    );
    assert!(!catalog.contains("broken"), "{catalog}");
    // A kept statement that no longer runs is set aside at start, not fatal.
    std::fs::write(
        data.join("state").join("catalog.sql"),
        format!("{catalog}\nCREATE MATERIALIZED VIEW gone AS SELECT nope FROM events;\n"),
    )
    .unwrap();

    // A restart runs the kept statements again: the view is back, with the same rows.
    let (server, _rx) = start(&data, port);
    let (ok, out, err) = per_key_when_complete(port, EVENTS);
    assert!(ok, "{err}");
    assert_eq!(out.lines().take(want.len()).collect::<Vec<_>>(), want);

    let aside = std::fs::read_to_string(data.join("state").join("catalog.failed.sql")).unwrap();
    assert!(
        aside.contains("CREATE MATERIALIZED VIEW gone") && aside.contains("nope"),
        "{aside}"
    );
    // Where state lives is the server's.
    let (ok, _, err) = admin(port, &["SET 'state.checkpoints.dir' = '/elsewhere'"]);
    assert!(!ok && err.contains("--state-dir"), "{err}");

    // Dropped: gone from queries, jobs and the kept catalog.
    let (ok, out, err) = admin(port, &["DROP MATERIALIZED VIEW per_key"]);
    assert!(ok, "{out}{err}");
    let (ok, _, err) = analyst(port, &["SELECT * FROM per_key"]);
    assert!(!ok && err.contains("per_key"), "{err}");
    let (ok, out, err) = analyst(port, &["SHOW JOBS"]);
    assert!(ok && !out.contains("per_key"), "{out}{err}");
    let catalog = std::fs::read_to_string(data.join("state").join("catalog.sql")).unwrap();
    assert!(
        catalog.contains("CREATE TABLE events") && !catalog.contains("per_key"),
        "{catalog}"
    );
    assert!(!data.join("state").join("per_key").exists());
    assert!(server.terminate().success());
}

#[test]
fn an_unbounded_view_resumes_from_its_savepoint_after_a_restart() {
    let (dir, port, server, rx) = serving_events();
    let data = dir.path().join("data");
    // An unbounded source: the job waits for more events until the server stops. Started
    // over, it would count from the group's committed offsets, not from the beginning.
    let (ok, out, err) = admin(
        port,
        &[
            "CREATE TABLE events (k STRING, v BIGINT) WITH ('connector' = 'queue',
               'topic' = 'events', 'scan.startup.mode' = 'group-offsets',
               'properties.group.id' = 'views')",
            "CREATE MATERIALIZED VIEW per_key AS
               SELECT k, COUNT(*) AS n, SUM(v) AS total FROM events GROUP BY k",
        ],
    );
    assert!(ok, "{out}{err}");
    let (ok, _, err) = per_key_when_complete(port, EVENTS);
    assert!(ok, "{err}");
    let status = server.terminate();
    let said: Vec<String> = rx.try_iter().collect();
    assert!(status.success(), "{said:?}");
    assert!(
        said.iter()
            .any(|l| l.contains("job `per_key` stopped; savepoint")),
        "{said:?}"
    );
    produce(&data, EVENTS..EVENTS + 700);
    let (server, _rx) = start(&data, port);
    let (ok, _, err) = per_key_when_complete(port, EVENTS + 700);
    assert!(ok, "resumed with its counts: {err}");
    assert!(server.terminate().success());
}

#[test]
fn the_views_of_a_statement_set_are_read_at_one_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let port = free_port();
    let (server, _rx) = start(&data, port);
    // One job, one source feeding both views: at every checkpoint they have counted the same
    // events, and a query reads both at one checkpoint.
    let (ok, out, err) = admin(
        port,
        &[
            "CREATE TABLE nexmark (event_type INT) WITH ('connector' = 'nexmark')",
            "EXECUTE STATEMENT SET BEGIN
               CREATE MATERIALIZED VIEW by_kind AS
                 SELECT event_type, COUNT(*) AS n FROM nexmark GROUP BY event_type;
               CREATE MATERIALIZED VIEW kinds_seen AS
                 SELECT event_type, COUNT(*) AS n, MAX(event_type) AS top FROM nexmark
                 WHERE event_type >= 0 GROUP BY event_type;
             END",
        ],
    );
    assert!(ok, "{out}{err}");
    assert!(err.contains("job `by_kind+kinds_seen` started"), "{err}");
    let mut counted = 0;
    for _ in 0..30 {
        let (ok, out, err) = analyst(
            port,
            &["SELECT COALESCE((SELECT SUM(n) FROM by_kind), 0), \
               COALESCE((SELECT SUM(n) FROM kinds_seen), 0)"],
        );
        assert!(ok, "{err}");
        let (a, b) = out.trim().split_once('|').unwrap();
        assert_eq!(a, b, "two views of one job at one checkpoint");
        counted = counted.max(a.parse::<u64>().unwrap());
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(counted > 0, "the job published nothing");
    let (ok, out, err) = analyst(port, &["SHOW JOBS"]);
    assert!(
        ok && out.contains("by_kind+kinds_seen|insert|running"),
        "{out}{err}"
    );
    // Dropping one view stops the job, which keeps both.
    let (ok, out, err) = admin(port, &["DROP MATERIALIZED VIEW by_kind"]);
    assert!(ok, "{out}{err}");
    let (ok, _, err) = analyst(port, &["SELECT * FROM kinds_seen"]);
    assert!(!ok && err.contains("kinds_seen"), "{err}");
    let (ok, out, err) = admin(
        port,
        &[
            "CREATE MATERIALIZED VIEW kinds_seen AS SELECT event_type, COUNT(*) AS n FROM nexmark GROUP BY event_type",
        ],
    );
    assert!(ok, "the name is free again: {out}{err}");
    assert!(server.terminate().success());
}
