//! Model test: random sequences of append / read / seek / commit / add-queues / move-queue /
//! reopen against a simple in-memory model of what the store should hold.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests: a failed step should panic"
)]

use std::collections::BTreeMap;
use std::path::PathBuf;

use proptest::prelude::*;
use streams_queue::{Error, ReadOptions, Record, Store, TopicConfig};

#[derive(Debug, Clone)]
enum Op {
    Append { queue: u8, n: u8, size: u16 },
    Read { queue: u8, at: u16, max: u8 },
    Seek { queue: u8, ts: u16 },
    Commit { queue: u8, at: u16 },
    AddQueues(u8),
    Move { queue: u8, location: u8 },
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (any::<u8>(), 1..30u8, 0..600u16).prop_map(|(queue, n, size)| Op::Append { queue, n, size }),
        4 => (any::<u8>(), any::<u16>(), 1..120u8).prop_map(|(queue, at, max)| Op::Read { queue, at, max }),
        1 => (any::<u8>(), any::<u16>()).prop_map(|(queue, ts)| Op::Seek { queue, ts }),
        1 => (any::<u8>(), any::<u16>()).prop_map(|(queue, at)| Op::Commit { queue, at }),
        1 => (1..3u8).prop_map(Op::AddQueues),
        1 => (any::<u8>(), 0..3u8).prop_map(|(queue, location)| Op::Move { queue, location }),
        1 => Just(Op::Reopen),
    ]
}

/// What the store should hold: per queue, (payload, timestamp) in offset order.
#[derive(Default)]
struct Model {
    queues: Vec<Vec<(Vec<u8>, i64)>>,
    committed: BTreeMap<u32, u64>,
    clock: i64,
}

fn pick(x: u16, len: usize) -> u64 {
    // Mostly in range, sometimes one past the end or beyond.
    (u64::from(x) % (len as u64 + 3)).min(len as u64 + 2)
}

fn run(ops: Vec<Op>) {
    let dir = tempfile::tempdir().unwrap();
    let disks = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let locations: Vec<PathBuf> = vec![
        dir.path().join("segments"),
        disks[0].path().to_path_buf(),
        disks[1].path().to_path_buf(),
    ];
    let mut store = Store::open(dir.path()).unwrap();
    let config = TopicConfig {
        queues: 2,
        segment_bytes: 4096,
        ..TopicConfig::default()
    };
    store.create_topic("t", config).unwrap();
    let mut m = Model {
        queues: vec![Vec::new(), Vec::new()],
        ..Model::default()
    };
    for op in ops {
        let nq = m.queues.len();
        match op {
            Op::Append { queue, n, size } => {
                let q = queue as usize % nq;
                let recs: Vec<Record> = (0..n)
                    .map(|i| {
                        m.clock += i64::from(i % 3);
                        let body: Vec<u8> = (0..size as usize + i as usize)
                            .map(|b| (b as u8) ^ (m.queues[q].len() as u8))
                            .collect();
                        Record::new(body).with_timestamp(m.clock)
                    })
                    .collect();
                let base = store.append("t", q as u32, &recs).unwrap();
                assert_eq!(base, m.queues[q].len() as u64);
                m.queues[q].extend(
                    recs.iter()
                        .map(|r| (r.payload.to_vec(), r.timestamp.unwrap())),
                );
            }
            Op::Read { queue, at, max } => {
                let q = queue as usize % nq;
                let len = m.queues[q].len();
                let at = pick(at, len);
                let opts = ReadOptions {
                    max_records: max as usize,
                    ..ReadOptions::default()
                };
                match store.read("t", q as u32, at, &opts) {
                    Ok(recs) => {
                        let want = &m.queues[q][at as usize..(at as usize + max as usize).min(len)];
                        assert_eq!(recs.len(), want.len());
                        for (i, (r, (p, ts))) in recs.iter().zip(want).enumerate() {
                            assert_eq!(r.offset, at + i as u64);
                            assert_eq!(&r.payload[..], &p[..]);
                            assert_eq!(r.timestamp, *ts);
                        }
                    }
                    Err(Error::OffsetOutOfRange { .. }) => assert!(at > len as u64),
                    Err(e) => panic!("read {q}@{at}: {e}"),
                }
            }
            Op::Seek { queue, ts } => {
                let q = queue as usize % nq;
                let ts = i64::from(ts) % (m.clock + 2);
                let want = m.queues[q]
                    .iter()
                    .position(|(_, t)| *t >= ts)
                    .unwrap_or(m.queues[q].len());
                assert_eq!(
                    store.seek_timestamp("t", q as u32, ts).unwrap(),
                    want as u64
                );
            }
            Op::Commit { queue, at } => {
                let q = queue as usize % nq;
                let at = pick(at, m.queues[q].len());
                let r = store.commit_offsets("g", "t", &[(q as u32, at)]);
                if at <= m.queues[q].len() as u64 {
                    r.unwrap();
                    m.committed.insert(q as u32, at);
                } else {
                    assert!(matches!(r, Err(Error::OffsetOutOfRange { .. })));
                }
            }
            Op::AddQueues(n) => {
                let total = store.add_queues("t", u32::from(n)).unwrap();
                m.queues.resize_with(total as usize, Vec::new);
            }
            Op::Move { queue, location } => {
                let q = queue as usize % nq;
                store
                    .move_queue("t", q as u32, &locations[location as usize])
                    .unwrap();
            }
            Op::Reopen => {
                drop(store);
                store = Store::open(dir.path()).unwrap();
            }
        }
        // Invariants after every step.
        for (q, recs) in m.queues.iter().enumerate() {
            assert_eq!(
                store.offsets("t", q as u32).unwrap(),
                (0, recs.len() as u64)
            );
        }
        assert_eq!(store.committed_offsets("g", "t").unwrap(), m.committed);
    }
    drop(store);
    let store = Store::open(dir.path()).unwrap();
    let total: usize = m.queues.iter().map(Vec::len).sum();
    assert_eq!(store.verify_topic("t").unwrap(), total as u64);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn store_matches_model(ops in proptest::collection::vec(op(), 1..60)) {
        run(ops);
    }
}
