//! Crash test: a child process appends under `always` durability and reports every acknowledged
//! batch; the parent SIGKILLs it at random moments, reopens the store, and checks that every
//! acknowledged record is present, intact and in order.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests: a failed step should panic"
)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::{Rng, SeedableRng};
use streams_queue::{Durability, ReadOptions, Record, Store, TopicConfig};

const CHILD_DIR: &str = "RSTREAMS_CRASH_CHILD_DIR";
const CHILD_GEN: &str = "RSTREAMS_CRASH_CHILD_GEN";
const QUEUES: u32 = 3;
const THREADS: u32 = 6;
const KILLS: usize = 24;

fn payload(generation: u64, thread: u32, seq: u64) -> String {
    let filler: String = (0..seq % 97)
        .map(|i| char::from(b'a' + ((seq + i) % 26) as u8))
        .collect();
    format!("g{generation}t{thread}s{seq}:{filler}")
}

/// An acknowledged batch as the child reports it.
#[derive(Debug, Clone, Copy)]
struct Ack {
    queue: u32,
    base: u64,
    count: u64,
    generation: u64,
    thread: u32,
    first_seq: u64,
}

fn parse_ack(line: &str) -> Option<Ack> {
    let mut f = line
        .strip_prefix("ack ")?
        .split(' ')
        .map(|v| v.parse::<u64>().ok());
    Some(Ack {
        queue: f.next()?? as u32,
        base: f.next()??,
        count: f.next()??,
        generation: f.next()??,
        thread: f.next()?? as u32,
        first_seq: f.next()??,
    })
}

const TEST_NAME: &str = "acknowledged_records_survive_sigkill";

fn main() {
    if let (Ok(dir), Ok(generation)) = (std::env::var(CHILD_DIR), std::env::var(CHILD_GEN)) {
        run_child(&dir, generation.parse().unwrap());
        return;
    }
    // Honour a test-name filter the way the standard harness does.
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    if !filters.is_empty() && !filters.iter().any(|f| TEST_NAME.contains(f.as_str())) {
        println!("test result: ok. 0 passed; 0 failed; 1 filtered out");
        return;
    }
    println!("running 1 test");
    acknowledged_records_survive_sigkill();
    println!("test {TEST_NAME} ... ok");
    println!("test result: ok. 1 passed; 0 failed");
}

/// The child process: appends from several threads until killed, printing each acknowledgement.
fn run_child(dir: &str, generation: u64) {
    let store = Store::open(dir).unwrap();
    for t in 0..THREADS {
        let producer = store.producer("t").unwrap();
        std::thread::spawn(move || {
            let mut rng = rand::rngs::StdRng::seed_from_u64(generation * 100 + u64::from(t));
            let queue = t % QUEUES;
            let mut seq = 0u64;
            loop {
                let n = rng.random_range(1..20u64);
                let recs: Vec<Record> = (seq..seq + n)
                    .map(|s| Record::new(payload(generation, t, s)))
                    .collect();
                let base = producer.append(queue, &recs).unwrap();
                println!("ack {queue} {base} {n} {generation} {t} {seq}");
                seq += n;
            }
        });
    }
    // The appenders run until the parent kills the process.
    loop {
        std::thread::park();
    }
}

fn verify(dir: &Path, acks: &[Ack]) {
    let store = Store::open(dir).unwrap();
    assert_eq!(
        store.verify_topic("t").unwrap(),
        (0..QUEUES)
            .map(|q| store.offsets("t", q).unwrap().1)
            .sum::<u64>()
    );
    for a in acks {
        let recs = store
            .read(
                "t",
                a.queue,
                a.base,
                &ReadOptions {
                    max_records: a.count as usize,
                    ..ReadOptions::default()
                },
            )
            .unwrap_or_else(|e| panic!("acknowledged batch {a:?} is unreadable: {e}"));
        assert_eq!(
            recs.len() as u64,
            a.count,
            "acknowledged batch {a:?} is incomplete"
        );
        for (i, r) in recs.iter().enumerate() {
            assert_eq!(r.offset, a.base + i as u64);
            let want = payload(a.generation, a.thread, a.first_seq + i as u64);
            assert_eq!(r.payload, want.as_bytes(), "record {} of {a:?}", r.offset);
        }
    }
    // Per thread, acknowledged batches sit in the queue in the order they were acknowledged.
    for t in 0..THREADS {
        let mine: Vec<&Ack> = acks.iter().filter(|a| a.thread == t).collect();
        for w in mine.windows(2) {
            assert!(
                w[0].base + w[0].count <= w[1].base,
                "out of order: {:?} then {:?}",
                w[0],
                w[1]
            );
        }
    }
}

fn acknowledged_records_survive_sigkill() {
    let mut dir = tempfile::tempdir().unwrap();
    if std::env::var_os("RSTREAMS_CRASH_KEEP").is_some() {
        eprintln!("keeping {}", dir.path().display());
        dir.disable_cleanup(true);
    }
    {
        let store = Store::open(dir.path()).unwrap();
        let config = TopicConfig {
            queues: QUEUES,
            durability: Durability::Always,
            segment_bytes: 64 << 10,
            ..TopicConfig::default()
        };
        store.create_topic("t", config).unwrap();
    }
    let seed: u64 = rand::rng().random();
    println!("seed {seed}");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut acks: Vec<Ack> = Vec::new();
    let exe = std::env::current_exe().unwrap();
    for generation in 0..KILLS as u64 {
        let mut child = Command::new(&exe)
            .env(CHILD_DIR, dir.path())
            .env(CHILD_GEN, generation.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&lines);
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(ack) = parse_ack(&line) {
                    sink.lock().unwrap().push(ack);
                }
            }
        });
        // Wait for the child to start appending, then kill it a random while later.
        while lines.lock().unwrap().is_empty() {
            if let Some(status) = child.try_wait().unwrap() {
                panic!("child exited early: {status}");
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        std::thread::sleep(Duration::from_millis(rng.random_range(5..120)));
        child.kill().unwrap();
        child.wait().unwrap();
        reader.join().unwrap();
        let new = lines.lock().unwrap().len();
        assert!(new > 0);
        acks.extend(lines.lock().unwrap().iter().copied());
        verify(dir.path(), &acks);
    }
    println!(
        "{} acknowledged batches checked after {KILLS} kills",
        acks.len()
    );
}
