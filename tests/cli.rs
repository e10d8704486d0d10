//! End-to-end tests of the `rstreams` binary: each test runs it against its own data directory.

// clippy.toml allows unwrap in `#[test]` functions only; in these helpers a panic is a test
// failure too.
#![allow(clippy::unwrap_used, reason = "test helpers")]

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Output, Stdio};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_rstreams");
const KEYS: u64 = 37;

/// Runs `rstreams --data-dir DIR ARGS...` with `stdin` as standard input.
fn run(dir: &Path, args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(BIN)
        .arg("--data-dir")
        .arg(dir)
        .args(args)
        .env_remove("RSTREAMS_DATA_DIR")
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
    out
}

/// Runs a command that must succeed; returns its standard output.
fn ok(dir: &Path, args: &[&str], stdin: &str) -> String {
    let out = run(dir, args, stdin);
    assert!(
        out.status.success(),
        "rstreams {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Runs a command that must fail with exit code 1; returns its standard error.
fn fails(dir: &Path, args: &[&str], stdin: &str) -> String {
    let out = run(dir, args, stdin);
    assert_eq!(
        out.status.code(),
        Some(1),
        "rstreams {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(err.lines().count(), 1, "one line on stderr: {err}");
    assert!(err.starts_with("error: "), "{err}");
    err
}

/// `n` JSON lines numbered from `first`, keyed by `user`.
fn json_lines(first: u64, n: u64) -> String {
    (first..first + n)
        .map(|i| format!("{{\"user\":\"u{}\",\"seq\":{i}}}\n", i % KEYS))
        .collect()
}

fn seq_of(line: &str) -> (String, u64) {
    let v: Value = serde_json::from_str(line).unwrap();
    (
        v["user"].as_str().unwrap().to_string(),
        v["seq"].as_u64().unwrap(),
    )
}

/// Checks that `lines` hold `0..n` exactly once each and that each key's records are in order.
fn assert_all_once_in_key_order(lines: &[&str], n: u64) {
    assert_all_once(lines, n, true);
}

/// Checks that `lines` hold `0..n` exactly once each and, if `key_order`, that each key's
/// records are in order (which holds when a key's records all went to one queue).
fn assert_all_once(lines: &[&str], n: u64, key_order: bool) {
    let mut seen = HashSet::new();
    let mut last: HashMap<String, u64> = HashMap::new();
    for line in lines {
        let (user, seq) = seq_of(line);
        assert!(seen.insert(seq), "record {seq} came back twice");
        if let Some(prev) = last.insert(user.clone(), seq) {
            assert!(!key_order || prev < seq, "key {user}: {seq} after {prev}");
        }
    }
    assert_eq!(seen.len() as u64, n);
    assert!((0..n).all(|s| seen.contains(&s)));
}

fn describe_json(dir: &Path, topic: &str) -> Value {
    serde_json::from_str(&ok(
        dir,
        &["topic", "describe", topic, "--format", "json"],
        "",
    ))
    .unwrap()
}

fn end_offsets(d: &Value) -> Vec<u64> {
    d["queues"]
        .as_array()
        .unwrap()
        .iter()
        .map(|q| q["end_offset"].as_u64().unwrap())
        .collect()
}

fn setup(n: u64) -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    // Small segments: reads cross segment boundaries, and opening the store stays fast in a
    // debug build (opening scans the active segment's reserved space).
    let out = ok(
        dir,
        &[
            "topic",
            "create",
            "events",
            "--queues",
            "4",
            "--segment-size",
            "16KiB",
        ],
        "",
    );
    assert_eq!(out, "created topic events with 4 queues\n");
    let out = run(
        dir,
        &["produce", "events", "--key-field", "user"],
        &json_lines(0, n),
    );
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        format!("produced {n} records to events\n")
    );
    tmp
}

#[test]
fn produce_consume_describe_round_trip() {
    let tmp = setup(5000);
    let dir = tmp.path();

    let limited = ok(dir, &["consume", "events", "--limit", "1234"], "");
    assert_eq!(limited.lines().count(), 1234);

    let all = ok(dir, &["consume", "events"], "");
    let lines: Vec<&str> = all.lines().collect();
    assert_all_once_in_key_order(&lines, 5000);

    // JSON output parses, and says which queue and offset each record has.
    let json = ok(dir, &["consume", "events", "--format", "json"], "");
    let mut per_queue: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
    for line in json.lines() {
        let v: Value = serde_json::from_str(line).unwrap();
        let payload = v["payload"].as_str().unwrap();
        let (user, _) = seq_of(payload);
        assert_eq!(v["key"].as_str(), Some(user.as_str()));
        assert!(v["timestamp"].as_str().unwrap().ends_with('Z'));
        assert_eq!(v["tags"], serde_json::json!([]));
        per_queue
            .entry(v["queue"].as_u64().unwrap())
            .or_default()
            .push(v["offset"].as_u64().unwrap());
    }
    assert_eq!(per_queue.len(), 4);

    // Describe: 4 queues whose end offsets match what came back from each.
    let d = describe_json(dir, "events");
    assert_eq!(d["config"]["queues"], 4);
    let ends = end_offsets(&d);
    for (q, offsets) in &per_queue {
        assert_eq!(offsets, &(0..ends[*q as usize]).collect::<Vec<_>>());
    }
    assert_eq!(ends.iter().sum::<u64>(), 5000);
    let table = ok(dir, &["topic", "describe", "events"], "");
    for end in &ends {
        assert!(table.contains(&format!(" {end} ")), "{table}");
    }

    assert_eq!(
        ok(dir, &["topic", "verify", "events"], ""),
        "checked 5000 records of topic events: no corruption\n"
    );
    assert_eq!(ok(dir, &["topic", "list"], ""), "events\n");

    // Keyed records from a later run land in the same queue as before.
    let more = ok(
        dir,
        &["produce", "events", "--key-field", "user"],
        "{\"user\":\"u0\",\"seq\":5000}\n",
    );
    assert!(more.is_empty());
    let tail = ok(dir, &["consume", "events", "--format", "json"], "");
    let queue_of_u0: HashSet<u64> = tail
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|v| v["key"] == "u0")
        .map(|v| v["queue"].as_u64().unwrap())
        .collect();
    assert_eq!(queue_of_u0.len(), 1);
}

#[test]
fn groups_commit_and_resume() {
    let tmp = setup(2000);
    let dir = tmp.path();

    let first = ok(
        dir,
        &["consume", "events", "--group", "g", "--limit", "100"],
        "",
    );
    let rest = ok(dir, &["consume", "events", "--group", "g"], "");
    assert_eq!(first.lines().count(), 100);
    let all: Vec<&str> = first.lines().chain(rest.lines()).collect();
    assert_all_once_in_key_order(&all, 2000);
    assert_eq!(ok(dir, &["consume", "events", "--group", "g"], ""), "");

    assert_eq!(ok(dir, &["group", "list"], ""), "g\n");
    let d: Value = serde_json::from_str(&ok(
        dir,
        &["group", "describe", "g", "--format", "json"],
        "",
    ))
    .unwrap();
    assert_eq!(d["topics"][0]["topic"], "events");
    assert_eq!(d["topics"][0]["lag"], 0);

    // --from overrides the committed offsets; the group then commits where it stopped.
    let again = ok(
        dir,
        &["consume", "events", "--group", "g", "--from", "earliest"],
        "",
    );
    assert_eq!(again.lines().count(), 2000);

    ok(
        dir,
        &[
            "group", "reset", "g", "--topic", "events", "--to", "earliest",
        ],
        "",
    );
    let table = ok(dir, &["group", "describe", "g"], "");
    assert!(table.contains("total lag 2000"), "{table}");

    // One queue on its own, committed too.
    let q1 = ok(
        dir,
        &["consume", "events", "--group", "g", "--queue", "1"],
        "",
    );
    let ends = end_offsets(&describe_json(dir, "events"));
    assert_eq!(q1.lines().count() as u64, ends[1]);
    let table = ok(dir, &["group", "describe", "g"], "");
    assert!(
        table.contains(&format!("total lag {}", 2000 - ends[1])),
        "{table}"
    );

    ok(dir, &["group", "delete", "g"], "");
    assert_eq!(ok(dir, &["group", "list"], ""), "");
    let err = fails(dir, &["group", "describe", "g"], "");
    assert!(err.contains("`g`"), "{err}");
}

#[test]
fn add_queues_and_move_queue_keep_offsets() {
    let tmp = setup(1000);
    let dir = tmp.path();
    let before = end_offsets(&describe_json(dir, "events"));

    assert_eq!(
        ok(dir, &["topic", "add-queues", "events", "2"], ""),
        "topic events now has 6 queues\n"
    );
    let after = end_offsets(&describe_json(dir, "events"));
    assert_eq!(&after[..4], &before[..]);
    assert_eq!(&after[4..], &[0, 0]);

    let elsewhere = tempfile::tempdir().unwrap();
    let target = elsewhere.path().to_str().unwrap();
    ok(dir, &["topic", "move-queue", "events", "0", target], "");
    ok(
        dir,
        &["produce", "events", "--key-field", "user"],
        &json_lines(1000, 1000),
    );
    ok(
        dir,
        &["produce", "events", "--queue", "0"],
        &json_lines(2000, 500),
    );

    let d = describe_json(dir, "events");
    let q0 = &d["queues"][0];
    let paths: Vec<&str> = q0["segments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["path"].as_str().unwrap())
        .collect();
    assert!(paths.iter().any(|p| p.starts_with(target)), "{paths:?}");
    assert!(q0["end_offset"].as_u64().unwrap() >= before[0] + 500);

    let all = ok(dir, &["consume", "events"], "");
    let lines: Vec<&str> = all.lines().collect();
    // Keys moved between queues (6 queues now), so only exactly-once holds across queues.
    assert_all_once(&lines, 2500, false);
    let v = ok(dir, &["topic", "verify", "events"], "");
    assert!(v.starts_with("checked 2500 records"), "{v}");
}

#[test]
fn errors_are_one_line_and_say_what() {
    let tmp = setup(10);
    let dir = tmp.path();

    let err = fails(dir, &["consume", "nosuch"], "");
    assert!(err.contains("nosuch"), "{err}");
    let err = fails(dir, &["topic", "describe", "nosuch"], "");
    assert!(err.contains("nosuch"), "{err}");

    let out = run(
        dir,
        &[
            "topic",
            "create",
            "t",
            "--queues",
            "1",
            "--durability",
            "sometimes",
        ],
        "",
    );
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("sometimes") && err.lines().count() == 1,
        "{err}"
    );
    let out = run(dir, &["consume", "events", "--from", "yesterday"], "");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        err.contains("yesterday") && err.lines().count() == 1,
        "{err}"
    );

    // A bad line: the lines before it go in, nothing from it on.
    let input =
        "{\"user\":\"a\",\"seq\":1}\n\n{\"user\":\"b\",\"seq\":2}\nnot json\n{\"user\":\"c\"}\n";
    let err = fails(dir, &["produce", "events", "--key-field", "user"], input);
    assert!(err.contains("line 4"), "{err}");
    assert!(err.contains("the 2 records"), "{err}");
    let err = fails(
        dir,
        &["produce", "events", "--key-field", "user"],
        "{\"seq\":3}\n",
    );
    assert!(err.contains("line 1") && err.contains("`user`"), "{err}");
    let all = ok(dir, &["consume", "events"], "");
    assert_eq!(all.lines().count(), 12);
    assert!(!all.contains("\"c\""));

    let missing = dir.join("missing");
    let err = fails(&missing, &["topic", "list"], "");
    assert!(err.contains("missing"), "{err}");
}

#[test]
fn closed_stdout_ends_consume_quietly() {
    let tmp = setup(5000);
    let mut child = Command::new(BIN)
        .arg("--data-dir")
        .arg(tmp.path())
        .args(["consume", "events", "--group", "head"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut first = [0u8; 16];
    stdout.read_exact(&mut first).unwrap();
    drop(stdout);
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.stderr.is_empty());

    // What was not delivered is read again by the group.
    let rest = ok(tmp.path(), &["consume", "events", "--group", "head"], "");
    assert!(rest.lines().count() > 0);
}
