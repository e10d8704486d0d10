//! `rstreams bench nexmark` runs every query of the suite end to end (a few events each, so
//! its figures mean nothing here: this checks that the command works, not how fast).

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

use std::process::Command;

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_rstreams");

fn bench(args: &[&str]) -> Vec<Value> {
    bench_in(std::env::temp_dir().as_path(), args)
}

/// The bench with `tmp` as its temporary directory (where the JSON mode writes its files).
fn bench_in(tmp: &std::path::Path, args: &[&str]) -> Vec<Value> {
    let out = Command::new(BIN)
        .args(["bench", "nexmark", "--runs", "1", "--format", "json"])
        .args(args)
        .env_remove("RUST_LOG")
        .env("TMPDIR", tmp)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn every_query_runs_with_the_generator_and_from_memory() {
    let runs = bench(&["--all", "--events", "3000", "--mode", "generator"]);
    let names: Vec<&str> = runs.iter().map(|r| r["query"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "q0", "q1", "q2", "q3", "q4", "q5", "q7", "q8", "q9", "q11", "q14", "q15", "q16",
            "q17", "q18", "q19", "q20", "q21", "q22"
        ]
    );
    let runs: Vec<Value> = runs
        .into_iter()
        .chain(bench(&[
            "--query", "q7", "--events", "3000", "--mode", "memory",
        ]))
        .collect();
    for r in &runs {
        assert_eq!(r["events"], 3000, "{r}");
        assert_eq!(r["parallelism"], 2, "{r}");
        for figure in ["events_per_sec", "cpu_seconds", "events_per_sec_per_core"] {
            assert!(r[figure].as_f64().unwrap() > 0.0, "{figure}: {r}");
        }
        assert!(r["peak_rss_mb"].as_f64().unwrap() > 1.0, "{r}");
        match (r["delay_p50_ms"].as_f64(), r["delay_p99_ms"].as_f64()) {
            (Some(p50), Some(p99)) => assert!(0.0 <= p50 && p50 <= p99, "{r}"),
            (None, None) => assert_eq!(r["delay_samples"], 0, "{r}"),
            _ => panic!("one delay percentile without the other: {r}"),
        }
    }
    assert_eq!(runs.last().unwrap()["mode"], "memory");
}

#[test]
fn the_json_mode_writes_every_event_once_and_reads_the_files() {
    let tmp = tempfile::tempdir().unwrap();
    let runs = bench_in(
        tmp.path(),
        &[
            "--query", "q0", "--query", "q5", "--events", "5000", "--mode", "json",
        ],
    );
    assert_eq!(runs.len(), 2);
    for r in &runs {
        assert_eq!(r["mode"], "json", "{r}");
        assert!(r["events_per_sec"].as_f64().unwrap() > 0.0, "{r}");
    }
    // One line per event, split 1:3:46 as the generator makes them.
    let dir = tmp.path().join("rstreams-nexmark-json-5000-p2");
    assert!(dir.join("COMPLETE").exists());
    let lines = |table: &str| -> usize {
        std::fs::read_dir(dir.join(table))
            .unwrap()
            .map(|f| {
                std::fs::read_to_string(f.unwrap().path())
                    .unwrap()
                    .lines()
                    .count()
            })
            .sum()
    };
    assert_eq!(
        (lines("person"), lines("auction"), lines("bid")),
        (100, 300, 4600)
    );
    let bids = std::fs::read_dir(dir.join("bid")).unwrap().count();
    assert_eq!(bids, 2, "a part file per subtask");
    // A second run reads the same files instead of writing them again.
    let before = std::fs::metadata(dir.join("COMPLETE"))
        .unwrap()
        .modified()
        .unwrap();
    bench_in(
        tmp.path(),
        &["--query", "q1", "--events", "5000", "--mode", "json"],
    );
    let after = std::fs::metadata(dir.join("COMPLETE"))
        .unwrap()
        .modified()
        .unwrap();
    assert_eq!(before, after);
}

#[test]
fn unknown_queries_are_named() {
    let out = Command::new(BIN)
        .args(["bench", "nexmark", "--query", "q6"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("q6") && err.contains("q22"), "{err}");
}
