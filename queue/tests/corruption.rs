//! Damaged segments: a torn or corrupt tail is truncated with a warning naming file and
//! position; damage in the middle is an error naming file and position.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests: a failed step should panic"
)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use streams_queue::codec::parse_header;
use streams_queue::{Error, ReadOptions, Record, Store, TopicConfig};

const SEGMENT_HEADER: usize = 64;
const WATERMARK_AT: usize = 32;

/// Captures what the store logs while `f` runs.
fn logs_of<T>(f: impl FnOnce() -> T) -> (T, String) {
    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);
    impl Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let buf = Buf::default();
    let sink = buf.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || sink.clone())
        .with_ansi(false)
        .finish();
    let out = tracing::subscriber::with_default(subscriber, f);
    let text = String::from_utf8_lossy(&buf.0.lock().unwrap()).into_owned();
    (out, text)
}

fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|e| e == "seg") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// Byte positions and lengths of the frames in a segment file.
fn frames(path: &Path) -> Vec<(usize, usize)> {
    let bytes = std::fs::read(path).unwrap();
    let mut at = SEGMENT_HEADER;
    let mut out = Vec::new();
    while let Ok(h) = parse_header(&bytes[at..]) {
        out.push((at, h.frame_len as usize));
        at += h.frame_len as usize;
    }
    out
}

/// Sets a segment's durable watermark, as if the last fsync had covered only `w` bytes.
fn set_watermark(path: &Path, w: usize) {
    patch(path, WATERMARK_AT, |b| {
        b[..8].copy_from_slice(&(w as u64).to_le_bytes());
        let crc = crc32c::crc32c(&b[..8]);
        b[8..12].copy_from_slice(&crc.to_le_bytes());
    });
}

fn patch(path: &Path, at: usize, f: impl FnOnce(&mut [u8])) {
    let mut bytes = std::fs::read(path).unwrap();
    f(&mut bytes[at..]);
    std::fs::write(path, bytes).unwrap();
}

/// A store with one queue holding `batches` batches of 10 records, closed.
fn store_with(dir: &Path, batches: usize, segment_bytes: u64) {
    let store = Store::open(dir).unwrap();
    store
        .create_topic(
            "t",
            TopicConfig {
                segment_bytes,
                ..TopicConfig::default()
            },
        )
        .unwrap();
    for b in 0..batches {
        let recs: Vec<Record> = (0..10)
            .map(|i| Record::new(format!("b{b}-r{i}-{}", "x".repeat(40))))
            .collect();
        store.append("t", 0, &recs).unwrap();
    }
    store.close().unwrap();
}

fn count(store: &Store) -> u64 {
    store.offsets("t", 0).unwrap().1
}

#[test]
fn torn_tail_is_truncated_with_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    store_with(dir.path(), 5, 1 << 20);
    let seg = segments(dir.path()).pop().unwrap();
    let (at, len) = *frames(&seg).last().unwrap();
    // The last fsync covered everything before the last frame, whose second half never
    // reached the disk.
    set_watermark(&seg, at);
    patch(&seg, at + len / 2, |b| b[..len - len / 2].fill(0));
    let (store, logs) = logs_of(|| Store::open(dir.path()).unwrap());
    assert_eq!(count(&store), 40);
    assert!(logs.contains("torn tail"), "{logs}");
    assert!(logs.contains(&seg.display().to_string()), "{logs}");
    assert!(logs.contains(&format!("position={at}")), "{logs}");
    // Appends continue at the truncation point, and a reopen is clean.
    store.append("t", 0, &[Record::new("after")]).unwrap();
    drop(store);
    let (store, logs) = logs_of(|| Store::open(dir.path()).unwrap());
    assert!(!logs.contains("torn"), "{logs}");
    let r = store.read("t", 0, 40, &ReadOptions::default()).unwrap();
    assert_eq!(r.len(), 1);
    assert_eq!(&r[0].payload[..], b"after");
}

#[test]
fn truncated_file_and_flipped_tail_bytes_are_torn_tails() {
    for damage in ["cut", "flip"] {
        let dir = tempfile::tempdir().unwrap();
        store_with(dir.path(), 5, 1 << 20);
        let seg = segments(dir.path()).pop().unwrap();
        let (at, len) = *frames(&seg).last().unwrap();
        set_watermark(&seg, at);
        match damage {
            "cut" => std::fs::OpenOptions::new()
                .write(true)
                .open(&seg)
                .unwrap()
                .set_len((at + len - 3) as u64)
                .unwrap(),
            _ => patch(&seg, at + len - 5, |b| b[0] ^= 0x40),
        }
        let (store, logs) = logs_of(|| Store::open(dir.path()).unwrap());
        assert_eq!(count(&store), 40, "{damage}");
        assert!(logs.contains("torn tail"), "{damage}: {logs}");
        assert_eq!(store.verify_topic("t").unwrap(), 40);
    }
}

#[test]
fn damage_in_the_middle_of_the_active_segment_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    store_with(dir.path(), 5, 1 << 20);
    let seg = segments(dir.path()).pop().unwrap();
    let (at, _) = frames(&seg)[1];
    // A flipped byte, or a frame start zeroed, below what the last fsync made durable.
    for damage in [20, 0] {
        let saved = std::fs::read(&seg).unwrap();
        patch(&seg, at + damage, |b| {
            b[..4].fill(if damage == 0 { 0 } else { 0xee })
        });
        match Store::open(dir.path()) {
            Err(Error::Corrupt {
                path,
                position,
                reason,
            }) => {
                assert_eq!(path, seg);
                assert_eq!(position, at as u64);
                assert!(
                    reason.contains("durable") && reason.contains("offset 10"),
                    "{reason}"
                );
            }
            other => panic!("expected a corruption error, got {other:?}"),
        }
        std::fs::write(&seg, saved).unwrap();
    }
    // With the watermark itself damaged, a valid frame after the damage still proves it is in
    // the middle.
    patch(&seg, WATERMARK_AT, |b| b[0] ^= 1);
    patch(&seg, at + 20, |b| b[0] ^= 0xff);
    match Store::open(dir.path()) {
        Err(Error::Corrupt { reason, .. }) => {
            assert!(reason.contains("offset 20 follows"), "{reason}")
        }
        other => panic!("expected a corruption error, got {other:?}"),
    }
}

#[test]
fn damage_in_a_sealed_segment_fails_reads_and_verify() {
    let dir = tempfile::tempdir().unwrap();
    store_with(dir.path(), 60, 8192);
    let segs = segments(dir.path());
    assert!(segs.len() > 2);
    let (at, _) = frames(&segs[0])[2];
    patch(&segs[0], at + 30, |b| b[0] ^= 1);
    let store = Store::open(dir.path()).unwrap();
    let err = store.read("t", 0, 0, &ReadOptions::default()).unwrap_err();
    match &err {
        Error::Corrupt { path, position, .. } => {
            assert_eq!(path, &segs[0]);
            assert_eq!(*position, at as u64);
        }
        other => panic!("expected corruption, got {other:?}"),
    }
    let msg = err.to_string();
    assert!(
        msg.contains(&segs[0].display().to_string()) && msg.contains(&format!("byte {at}")),
        "{msg}"
    );
    assert!(matches!(
        store.verify_topic("t"),
        Err(Error::Corrupt { .. })
    ));
    // Records in later segments are still readable.
    let next = store.describe_topic("t").unwrap().queues[0].segments[1].base_offset;
    let later = store.read("t", 0, next, &ReadOptions::default()).unwrap();
    assert_eq!(later[0].offset, next);
    drop(store);
    // Without its index, the damaged sealed segment is scanned on open, and the open fails.
    std::fs::remove_file(segs[0].with_extension("idx")).unwrap();
    assert!(matches!(
        Store::open(dir.path()),
        Err(Error::Corrupt { .. })
    ));
}

#[test]
fn a_damaged_index_file_is_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    store_with(dir.path(), 60, 8192);
    let segs = segments(dir.path());
    let idx = segs[0].with_extension("idx");
    patch(&idx, 20, |b| b[0] ^= 1);
    let (store, logs) = logs_of(|| Store::open(dir.path()).unwrap());
    assert!(logs.contains("rebuilding"), "{logs}");
    assert_eq!(store.verify_topic("t").unwrap(), 600);
    assert_eq!(
        store
            .read("t", 0, 0, &ReadOptions::default())
            .unwrap()
            .len(),
        600
    );
}

#[test]
fn a_sealed_segment_torn_before_its_fsync_becomes_the_tail() {
    let dir = tempfile::tempdir().unwrap();
    store_with(dir.path(), 60, 8192);
    let segs = segments(dir.path());
    assert!(segs.len() > 3);
    // The machine stopped right after a roll: segment 1 is sealed but has no index yet and its
    // last frame never reached the disk; what came after it was never acknowledged.
    let torn = &segs[1];
    std::fs::remove_file(torn.with_extension("idx")).unwrap();
    let (at, len) = *frames(torn).last().unwrap();
    set_watermark(torn, at);
    patch(torn, at + len - 8, |b| b[..8].fill(0));
    // A later segment whose watermark says it held durable records proves the torn one was
    // fsynced: that is corruption, not a torn tail.
    assert!(matches!(
        Store::open(dir.path()),
        Err(Error::Corrupt { .. })
    ));
    // As it would be after the crash: no fsync ever covered the later segments.
    for later in &segs[2..] {
        set_watermark(later, SEGMENT_HEADER);
    }
    let kept_until = {
        let store = Store::open(dir.path()).unwrap();
        let d = store.describe_topic("t").unwrap();
        let end = d.queues[0].end_offset;
        assert_eq!(d.queues[0].segments.len(), 2);
        assert_eq!(store.verify_topic("t").unwrap(), end);
        store
            .append("t", 0, &[Record::new("after recovery")])
            .unwrap();
        end
    };
    let damaged: Vec<_> = std::fs::read_dir(torn.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".damaged"))
        .collect();
    assert_eq!(damaged.len(), segs.len() - 2, "{damaged:?}");
    let store = Store::open(dir.path()).unwrap();
    let last = store
        .read("t", 0, kept_until, &ReadOptions::default())
        .unwrap();
    assert_eq!(&last[0].payload[..], b"after recovery");
}

#[test]
fn a_torn_segment_before_a_move_keeps_receiving_appends_durably() {
    let dir = tempfile::tempdir().unwrap();
    let disk2 = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path()).unwrap();
        let config = TopicConfig {
            segment_bytes: 1 << 20,
            ..TopicConfig::default()
        };
        store.create_topic("t", config).unwrap();
        for b in 0..10 {
            let recs: Vec<Record> = (0..10).map(|i| Record::new(format!("a{b}-{i}"))).collect();
            store.append("t", 0, &recs).unwrap();
        }
        store.move_queue("t", 0, disk2.path()).unwrap();
        store.append("t", 0, &[Record::new("b0")]).unwrap();
        store.close().unwrap();
    }
    // The machine stopped before the segment left behind by the move was fully durable: its
    // index is gone and its last frame torn. The segment on the second disk was never durable.
    let old = segments(dir.path()).pop().unwrap();
    std::fs::remove_file(old.with_extension("idx")).unwrap();
    for moved in segments(disk2.path()) {
        set_watermark(&moved, SEGMENT_HEADER);
    }
    let (at, len) = *frames(&old).last().unwrap();
    set_watermark(&old, at);
    patch(&old, at + len - 4, |b| b[..4].fill(0));
    {
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.offsets("t", 0).unwrap(), (0, 90));
        // Acknowledged after recovery, below the moved placement's first offset (100).
        for i in 0..15 {
            store
                .append("t", 0, &[Record::new(format!("after-{i}"))])
                .unwrap();
        }
        store.close().unwrap();
    }
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.offsets("t", 0).unwrap(), (0, 105));
    let r = store.read("t", 0, 90, &ReadOptions::default()).unwrap();
    assert_eq!(r.len(), 15);
    assert_eq!(&r[14].payload[..], b"after-14");
    assert_eq!(store.verify_topic("t").unwrap(), 105);
}

#[test]
fn a_segment_filled_to_within_a_few_bytes_reopens_whole() {
    let dir = tempfile::tempdir().unwrap();
    let capacity = 4096u64;
    {
        let store = Store::open(dir.path()).unwrap();
        let config = TopicConfig {
            segment_bytes: capacity,
            ..TopicConfig::default()
        };
        store.create_topic("t", config).unwrap();
        let used = |s: &Store| s.describe_topic("t").unwrap().queues[0].segments[0].bytes;
        // Frames of one record with an n-byte payload take 49 + n bytes (n < 70).
        while capacity - used(&store) > 49 + 70 {
            store
                .append("t", 0, &[Record::new(vec![1u8; 60]).with_timestamp(7)])
                .unwrap();
        }
        let n = (capacity - used(&store) - 49 - 2) as usize;
        store
            .append("t", 0, &[Record::new(vec![2u8; n]).with_timestamp(7)])
            .unwrap();
        assert_eq!(capacity - used(&store), 2);
        store
            .append("t", 0, &[Record::new("next").with_timestamp(7)])
            .unwrap();
        store.close().unwrap();
    }
    // As if the machine stopped before the seal finished: no index, the file at full size, so
    // it is scanned to its last byte.
    let first = segments(dir.path()).remove(0);
    std::fs::remove_file(first.with_extension("idx")).unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&first)
        .unwrap()
        .set_len(capacity)
        .unwrap();
    let store = Store::open(dir.path()).unwrap();
    let (_, end) = store.offsets("t", 0).unwrap();
    assert_eq!(store.verify_topic("t").unwrap(), end);
    let last = store
        .read("t", 0, end - 1, &ReadOptions::default())
        .unwrap();
    assert_eq!(&last[0].payload[..], b"next");
}
