//! The on-disk format is versioned: a store written by format version 1 (a fixture committed in
//! `tests/fixtures/v1`) must open and read back exactly, by every later build.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests: a failed step should panic"
)]

use std::path::{Path, PathBuf};

use streams_queue::{ReadOptions, Record, Store, TopicConfig};

fn fixture() -> PathBuf {
    manifest_dir().join("tests/fixtures/v1")
}

/// The records the fixture holds in queue `q`.
fn expected(q: u32) -> Vec<Record> {
    (0..300u32)
        .map(|i| {
            let mut r = Record::new(format!("q{q}-record-{i}-{}", "p".repeat((i % 13) as usize)))
                .with_timestamp(1_700_000_000_000 + i64::from(i) * 250);
            if i % 3 == 0 {
                r = r.with_key(format!("key-{}", i % 7));
            }
            if i % 5 == 0 {
                r = r
                    .with_tag("five")
                    .with_header("n", i.to_le_bytes().to_vec());
            }
            r
        })
        .collect()
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).unwrap();
        }
    }
}

/// Writes the fixture. Run once per format version:
/// `RSTREAMS_WRITE_FIXTURE=1 cargo test -p streams-queue --test format`.
fn write_fixture(dir: &Path) {
    let _ = std::fs::remove_dir_all(dir);
    let store = Store::open(dir).unwrap();
    let config = TopicConfig {
        queues: 2,
        segment_bytes: 4096,
        ..TopicConfig::default()
    };
    store.create_topic("orders", config).unwrap();
    for q in 0..2 {
        for chunk in expected(q).chunks(17) {
            store.append("orders", q, chunk).unwrap();
        }
    }
    store
        .commit_offsets("billing", "orders", &[(0, 120), (1, 300)])
        .unwrap();
    store.close().unwrap();
    std::fs::remove_file(dir.join("LOCK")).unwrap();
}

#[test]
fn version_1_store_reads_back() {
    if std::env::var_os("RSTREAMS_WRITE_FIXTURE").is_some() {
        write_fixture(&fixture());
    }
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&fixture(), dir.path());
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.list_topics().unwrap(), vec!["orders"]);
    let d = store.describe_topic("orders").unwrap();
    assert!(
        d.queues[0].segments.len() > 2,
        "the fixture should hold sealed segments"
    );
    for q in 0..2 {
        let got = store
            .read(
                "orders",
                q,
                0,
                &ReadOptions {
                    max_records: 1000,
                    ..ReadOptions::default()
                },
            )
            .unwrap();
        let want = expected(q);
        assert_eq!(got.len(), want.len());
        for (g, w) in got.iter().zip(&want) {
            assert_eq!(
                (&g.key, &g.tags, &g.headers, &g.payload),
                (&w.key, &w.tags, &w.headers, &w.payload)
            );
            assert_eq!(Some(g.timestamp), w.timestamp);
        }
    }
    assert_eq!(
        store
            .committed_offsets("billing", "orders")
            .unwrap()
            .into_iter()
            .collect::<Vec<_>>(),
        vec![(0, 120), (1, 300)]
    );
    assert_eq!(
        store
            .seek_timestamp("orders", 1, 1_700_000_000_000 + 100 * 250)
            .unwrap(),
        100
    );
    assert_eq!(store.verify_topic("orders").unwrap(), 600);
}

/// The package's directory: as `cargo test` says when it runs the test (a binary built in
/// another checkout of the same cache would otherwise look in that checkout), else as it was
/// when the test was built.
fn manifest_dir() -> std::path::PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")))
}
