//! Behaviour of the store through its public API.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests: a failed step should panic"
)]

use std::time::Duration;

use streams_queue::{
    ConsumerOptions, Durability, Error, IfTrimmed, ReadOptions, Record, Retention, StartFrom,
    Store, StoreOptions, TopicConfig,
};

fn small(queues: u32) -> TopicConfig {
    TopicConfig {
        queues,
        segment_bytes: 4096,
        ..TopicConfig::default()
    }
}

fn payloads(n: usize, tag: &str) -> Vec<Record> {
    (0..n)
        .map(|i| Record::new(format!("{tag}-{i}")).with_timestamp(i as i64))
        .collect()
}

fn read_all(store: &Store, topic: &str, queue: u32) -> Vec<String> {
    let mut out = Vec::new();
    let (mut at, end) = store.offsets(topic, queue).unwrap();
    while at < end {
        let batch = store
            .read(topic, queue, at, &ReadOptions::default())
            .unwrap();
        assert!(!batch.is_empty());
        for r in &batch {
            assert_eq!(r.offset, at);
            at += 1;
            out.push(String::from_utf8(r.payload.to_vec()).unwrap());
        }
    }
    out
}

#[test]
fn append_read_across_many_segments_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path()).unwrap();
        store.create_topic("t", small(2)).unwrap();
        for chunk in 0..50 {
            let recs = payloads(20, &format!("c{chunk}"));
            let base = store.append("t", chunk % 2, &recs).unwrap();
            assert_eq!(base, (chunk / 2 * 20) as u64);
        }
        let d = store.describe_topic("t").unwrap();
        assert!(d.queues[0].segments.len() > 1, "small segments should roll");
        assert_eq!(d.queues[0].end_offset, 500);
        store.close().unwrap();
    }
    let store = Store::open(dir.path()).unwrap();
    let q0 = read_all(&store, "t", 0);
    assert_eq!(q0.len(), 500);
    assert_eq!(q0[0], "c0-0");
    assert_eq!(q0[499], "c48-19");
    // Reading from the middle of a batch, across a segment boundary, with a small limit.
    let r = store
        .read(
            "t",
            1,
            137,
            &ReadOptions {
                max_records: 50,
                ..ReadOptions::default()
            },
        )
        .unwrap();
    assert_eq!(r.len(), 50);
    assert_eq!(r[0].offset, 137);
    assert_eq!(String::from_utf8(r[0].payload.to_vec()).unwrap(), "c13-17");
    assert_eq!(store.verify_topic("t").unwrap(), 1000);
}

#[test]
fn fields_survive_a_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store.create_topic("t", TopicConfig::default()).unwrap();
    let rec = Record::new(vec![0u8, 159, 146, 150])
        .with_key("user-7")
        .with_tag("clicks")
        .with_tag("eu")
        .with_header("trace", "abc")
        .with_timestamp(1_700_000_000_123);
    store.append("t", 0, std::slice::from_ref(&rec)).unwrap();
    let got = &store.read("t", 0, 0, &ReadOptions::default()).unwrap()[0];
    assert_eq!(got.key, rec.key);
    assert_eq!(got.tags, rec.tags);
    assert_eq!(got.headers, rec.headers);
    assert_eq!(got.payload, rec.payload);
    assert_eq!(got.timestamp, 1_700_000_000_123);
    // Without a timestamp, the append time is taken.
    store.append("t", 0, &[Record::new("x")]).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    let ts = store.read("t", 0, 1, &ReadOptions::default()).unwrap()[0].timestamp;
    assert!((now.as_millis() as i64 - ts).abs() < 10_000);
}

#[test]
fn seek_by_timestamp_finds_first_at_or_after() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store.create_topic("t", small(1)).unwrap();
    // Timestamps 0, 10, 20, ... with a late record every 7th.
    let recs: Vec<Record> = (0..2000)
        .map(|i| Record::new(format!("{i}")).with_timestamp(if i % 7 == 6 { 5 } else { i * 10 }))
        .collect();
    for chunk in recs.chunks(33) {
        store.append("t", 0, chunk).unwrap();
    }
    for t in [0i64, 1, 10, 55, 9_999, 19_990] {
        let want = recs.iter().position(|r| r.timestamp.unwrap() >= t).unwrap() as u64;
        assert_eq!(store.seek_timestamp("t", 0, t).unwrap(), want, "t = {t}");
    }
    assert_eq!(store.seek_timestamp("t", 0, 1_000_000).unwrap(), 2000);
}

#[test]
fn add_queues_keeps_existing_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store.create_topic("t", small(2)).unwrap();
    store.append("t", 0, &payloads(10, "a")).unwrap();
    store.append("t", 1, &payloads(5, "b")).unwrap();
    assert_eq!(store.add_queues("t", 3).unwrap(), 5);
    assert_eq!(store.offsets("t", 0).unwrap(), (0, 10));
    assert_eq!(store.offsets("t", 1).unwrap(), (0, 5));
    assert_eq!(store.offsets("t", 4).unwrap(), (0, 0));
    store.append("t", 4, &payloads(3, "c")).unwrap();
    drop(store);
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.queue_count("t").unwrap(), 5);
    assert_eq!(read_all(&store, "t", 0)[9], "a-9");
    assert_eq!(read_all(&store, "t", 4), vec!["c-0", "c-1", "c-2"]);
    assert!(matches!(
        store.append("t", 5, &payloads(1, "x")),
        Err(Error::QueueNotFound { .. })
    ));
}

#[test]
fn moved_queue_keeps_offsets_and_reads_cross_directories() {
    let dir = tempfile::tempdir().unwrap();
    let disk2 = tempfile::tempdir().unwrap();
    let disk3 = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path()).unwrap();
        store.create_topic("t", small(1)).unwrap();
        store.append("t", 0, &payloads(100, "old")).unwrap();
        store.move_queue("t", 0, disk2.path()).unwrap();
        store.append("t", 0, &payloads(100, "new")).unwrap();
        store.move_queue("t", 0, disk3.path()).unwrap();
        store.append("t", 0, &payloads(10, "newer")).unwrap();
        let all = read_all(&store, "t", 0);
        assert_eq!(all.len(), 210);
        assert_eq!(all[99], "old-99");
        assert_eq!(all[100], "new-0");
        assert_eq!(all[200], "newer-0");
    }
    let store = Store::open(dir.path()).unwrap();
    let all = read_all(&store, "t", 0);
    assert_eq!(all.len(), 210);
    assert_eq!(all[209], "newer-9");
    let d = store.describe_topic("t").unwrap();
    let last = d.queues[0].segments.last().unwrap();
    assert!(last.path.starts_with(disk3.path()));
    assert!(
        d.queues[0]
            .segments
            .iter()
            .any(|s| s.path.starts_with(disk2.path()))
    );
    assert_eq!(d.queues[0].start_offset, 0);
}

#[test]
fn consumer_groups_commit_resume_reset_and_lag() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store.create_topic("t", small(3)).unwrap();
    for q in 0..3 {
        store
            .append("t", q, &payloads(40, &format!("q{q}")))
            .unwrap();
    }
    let opts = ConsumerOptions {
        group: Some("g".into()),
        ..ConsumerOptions::default()
    };
    let mut c = store.consumer("t", opts.clone()).unwrap();
    let first = c.poll(50).unwrap();
    assert_eq!(first.len(), 50);
    c.commit().unwrap();
    let lag: u64 = store
        .group_lag("g", "t")
        .unwrap()
        .iter()
        .map(|l| l.lag)
        .sum();
    assert_eq!(lag, 70);
    drop(c);
    let mut c = store.consumer("t", opts.clone()).unwrap();
    let mut rest = Vec::new();
    loop {
        let b = c.poll(7).unwrap();
        if b.is_empty() {
            break;
        }
        rest.extend(b);
    }
    assert_eq!(first.len() + rest.len(), 120);
    let mut seen: Vec<(u32, u64)> = first
        .iter()
        .chain(&rest)
        .map(|(q, r)| (*q, r.offset))
        .collect();
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 120);
    c.commit().unwrap();
    assert!(
        store
            .group_lag("g", "t")
            .unwrap()
            .iter()
            .all(|l| l.lag == 0)
    );
    store
        .reset_group("g", "t", StartFrom::Timestamp(30))
        .unwrap();
    assert_eq!(
        store
            .committed_offsets("g", "t")
            .unwrap()
            .values()
            .copied()
            .collect::<Vec<_>>(),
        vec![30, 30, 30]
    );
    store.reset_group("g", "t", StartFrom::Earliest).unwrap();
    drop(c);
    drop(store);
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.list_groups().unwrap(), vec!["g"]);
    assert_eq!(store.group_lag("g", "t").unwrap()[2].lag, 40);
}

#[test]
fn retention_by_size_and_age_deletes_whole_segments() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_with(StoreOptions {
        retention_check: Duration::from_secs(3600),
        ..StoreOptions::new(dir.path())
    })
    .unwrap();
    let mut cfg = small(1);
    cfg.retention = Retention::parse("20KB").unwrap();
    store.create_topic("sized", cfg.clone()).unwrap();
    cfg.retention = Retention::parse("1h").unwrap();
    store.create_topic("aged", cfg).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    for i in 0..400 {
        let r = Record::new(vec![b'x'; 100]);
        store.append("sized", 0, std::slice::from_ref(&r)).unwrap();
        // The first half is two hours old.
        let ts = if i < 200 { now - 7_200_000 } else { now };
        store.append("aged", 0, &[r.with_timestamp(ts)]).unwrap();
    }
    store.sync().unwrap();
    let report = store.enforce_retention().unwrap();
    assert!(report.segments > 0);
    let sized = store.describe_topic("sized").unwrap();
    assert!(
        sized.queues[0].bytes <= 20_000 + 4096,
        "{} bytes",
        sized.queues[0].bytes
    );
    let (start, end) = store.offsets("sized", 0).unwrap();
    assert!(start > 0 && end == 400);
    let (start, _) = store.offsets("aged", 0).unwrap();
    assert!(start > 150 && start <= 200, "aged start {start}");
    // Reads below the retained start fail, or start at the earliest by option.
    assert!(matches!(
        store.read("sized", 0, 0, &ReadOptions::default()),
        Err(Error::OffsetOutOfRange { .. })
    ));
    let r = store
        .read(
            "sized",
            0,
            0,
            &ReadOptions {
                if_trimmed: IfTrimmed::Earliest,
                ..ReadOptions::default()
            },
        )
        .unwrap();
    let (start, _) = store.offsets("sized", 0).unwrap();
    assert_eq!(r[0].offset, start);
}

#[test]
fn always_durability_with_concurrent_appenders() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let cfg = TopicConfig {
        durability: Durability::Always,
        ..small(1)
    };
    store.create_topic("t", cfg).unwrap();
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let p = store.producer("t").unwrap();
            std::thread::spawn(move || {
                for i in 0..50 {
                    p.append(0, &[Record::new(format!("{t}-{i}"))]).unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert!(store.is_synced("t").unwrap());
    let all = read_all(&store, "t", 0);
    assert_eq!(all.len(), 400);
    for t in 0..8 {
        let mine: Vec<_> = all
            .iter()
            .filter(|s| s.starts_with(&format!("{t}-")))
            .collect();
        let want: Vec<String> = (0..50).map(|i| format!("{t}-{i}")).collect();
        assert_eq!(mine, want.iter().collect::<Vec<_>>());
    }
}

#[test]
fn concurrent_readers_never_see_partial_records() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store.create_topic("t", small(1)).unwrap();
    let writer = {
        let p = store.producer("t").unwrap();
        std::thread::spawn(move || {
            for i in 0..3000u32 {
                let body = vec![(i % 251) as u8; 1 + (i as usize * 7) % 300];
                p.append(0, &[Record::new(body)]).unwrap();
            }
        })
    };
    let mut at = 0u64;
    while at < 3000 {
        for r in store.read("t", 0, at, &ReadOptions::default()).unwrap() {
            assert_eq!(r.offset, at);
            let i = at as u32;
            assert_eq!(r.payload.len(), 1 + (i as usize * 7) % 300);
            assert!(r.payload.iter().all(|&b| b == (i % 251) as u8));
            at += 1;
        }
    }
    writer.join().unwrap();
}

#[test]
fn topic_admin_and_errors() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store.create_topic("b", small(1)).unwrap();
    store.create_topic("a", small(2)).unwrap();
    assert_eq!(store.list_topics().unwrap(), vec!["a", "b"]);
    assert!(matches!(
        store.create_topic("a", small(1)),
        Err(Error::TopicExists(_))
    ));
    assert!(matches!(
        store.create_topic("../x", small(1)),
        Err(Error::InvalidName { .. })
    ));
    assert!(matches!(
        store.create_topic("z", small(0)),
        Err(Error::InvalidConfig(_))
    ));
    assert!(matches!(
        store.append("nope", 0, &payloads(1, "x")),
        Err(Error::TopicNotFound(_))
    ));
    store.append("a", 1, &payloads(5, "x")).unwrap();
    store.commit_offsets("g", "a", &[(1, 3)]).unwrap();
    assert!(matches!(
        store.commit_offsets("g", "a", &[(1, 6)]),
        Err(Error::OffsetOutOfRange { .. })
    ));
    assert!(matches!(
        store.read("a", 1, 6, &ReadOptions::default()),
        Err(Error::OffsetOutOfRange { .. })
    ));
    assert!(
        store
            .read("a", 1, 5, &ReadOptions::default())
            .unwrap()
            .is_empty()
    );
    store.delete_topic("a").unwrap();
    assert!(store.committed_offsets("g", "a").unwrap().is_empty());
    // A new topic of the same name starts empty.
    store.create_topic("a", small(1)).unwrap();
    assert_eq!(store.offsets("a", 0).unwrap(), (0, 0));
    // A second open of the same directory is refused while the first holds it.
    assert!(matches!(Store::open(dir.path()), Err(Error::Locked(_))));
}

#[test]
fn oversized_batches_get_their_own_segment() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store.create_topic("t", small(1)).unwrap();
    let big = Record::new(vec![7u8; 20_000]);
    store.append("t", 0, std::slice::from_ref(&big)).unwrap();
    store.append("t", 0, &payloads(3, "s")).unwrap();
    store.append("t", 0, std::slice::from_ref(&big)).unwrap();
    drop(store);
    let store = Store::open(dir.path()).unwrap();
    let r = store.read("t", 0, 0, &ReadOptions::default()).unwrap();
    assert_eq!(r.len(), 5);
    assert_eq!(r[4].payload.len(), 20_000);
}

#[test]
fn handles_cross_threads() {
    fn send_sync<T: Send + Sync>() {}
    fn send<T: Send>() {}
    send_sync::<Store>();
    send_sync::<streams_queue::Producer>();
    send::<streams_queue::Consumer>();
    send_sync::<streams_queue::StoredRecord>();
    send_sync::<Error>();
}

#[test]
fn a_directory_with_foreign_files_is_not_taken_over() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("segments/precious")).unwrap();
    let err = Store::open(dir.path()).unwrap_err();
    assert!(err.to_string().contains("not an rstreams store"), "{err}");
    assert!(dir.path().join("segments/precious").exists());
}
