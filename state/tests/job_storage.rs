//! A job's checkpoint storage on disk: what a job resumes from after a restart, a savepoint,
//! a fresh start; damaged checkpoints are skipped with a warning, and when none is usable the
//! open fails instead of silently starting over.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

use std::fs;
use std::path::Path;
use std::sync::Arc;

use streams_core::state::{CheckpointStorage, TaskKey};
use streams_state::{Error, LocalStorage, StartFrom};

const A: TaskKey = TaskKey {
    node: 3,
    subtask: 0,
};
const B: TaskKey = TaskKey {
    node: 3,
    subtask: 1,
};

fn open(dir: &Path, from: StartFrom) -> LocalStorage {
    LocalStorage::open(dir, 2, from).unwrap()
}

/// Checkpoint `id` of subtasks A and B, as the runtime takes it.
fn checkpoint(s: &LocalStorage, id: u64, meta: &[u8]) -> u64 {
    s.snapshot(A, id).unwrap();
    s.snapshot(B, id).unwrap();
    s.complete(id, meta).unwrap().bytes
}

/// Damages one file of checkpoint `id`.
fn damage(dir: &Path, id: u64) {
    let chk = dir.join("checkpoints").join(format!("chk-{id:020}"));
    let victim = fs::read_dir(&chk)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "sst") || p.ends_with("metadata.bin"))
        .unwrap();
    let mut bytes = fs::read(&victim).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    fs::write(&victim, bytes).unwrap();
}

#[test]
fn a_restart_resumes_from_the_newest_complete_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path(), StartFrom::Latest);
    assert_eq!(s.restored(), None, "nothing to resume from");
    s.write(A, b"a1").unwrap();
    s.write(B, b"b1").unwrap();
    assert!(checkpoint(&s, 1, b"meta-1") > 0);
    s.write(A, b"a2").unwrap();
    s.write(B, b"").unwrap();
    checkpoint(&s, 2, b"meta-2");
    // Written after checkpoint 2 and never checkpointed: a crash loses it.
    s.write(A, b"a3").unwrap();
    drop(s);

    let s = open(dir.path(), StartFrom::Latest);
    assert_eq!(s.restored(), Some((2, b"meta-2".to_vec())));
    assert_eq!(s.read(A).unwrap().as_deref(), Some(&b"a2"[..]));
    assert_eq!(s.read(B).unwrap(), None, "deleted before checkpoint 2");
    drop(s);

    // Checkpoint 2 is damaged: checkpoint 1, with a warning.
    damage(dir.path(), 2);
    let s = open(dir.path(), StartFrom::Latest);
    assert_eq!(s.restored(), Some((1, b"meta-1".to_vec())));
    assert_eq!(s.read(B).unwrap().as_deref(), Some(&b"b1"[..]));
    drop(s);

    // None usable: a clear error, not a silent fresh start.
    damage(dir.path(), 1);
    let err = LocalStorage::open(dir.path(), 2, StartFrom::Latest).unwrap_err();
    assert!(matches!(err, Error::NoCheckpoint(_)), "{err}");
    assert!(err.to_string().contains("no usable checkpoint"), "{err}");

    // Asked for explicitly, a fresh start forgets them.
    let s = open(dir.path(), StartFrom::Fresh);
    assert_eq!(s.restored(), None);
    assert_eq!(s.read(A).unwrap(), None);
}

#[test]
fn savepoints_outlive_retention_and_can_be_started_from() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path(), StartFrom::Latest);
    s.write(A, b"at-savepoint").unwrap();
    s.snapshot(A, 5).unwrap();
    let sp = s.savepoint(5, b"meta-5").unwrap();
    for id in 6..10 {
        s.write(A, format!("later-{id}").as_bytes()).unwrap();
        s.snapshot(A, id).unwrap();
        s.complete(id, b"m").unwrap();
    }
    drop(s);
    // Retention keeps two checkpoints; the savepoint stays.
    let kept = fs::read_dir(dir.path().join("checkpoints"))
        .unwrap()
        .count();
    assert_eq!(kept, 2);
    let s = open(dir.path(), StartFrom::Savepoint(sp.location.clone().into()));
    assert_eq!(s.restored(), Some((5, b"meta-5".to_vec())));
    assert_eq!(s.read(A).unwrap().as_deref(), Some(&b"at-savepoint"[..]));
    drop(s);
    let err = LocalStorage::open(
        dir.path(),
        2,
        StartFrom::Savepoint(dir.path().join("savepoints/nonsense")),
    )
    .unwrap_err();
    assert!(err.to_string().contains("sp-<id>"), "{err}");
}

#[test]
fn keyed_state_written_after_a_snapshot_belongs_to_the_next_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path(), StartFrom::Latest);
    let keyed = s.keyed(A).unwrap();
    keyed
        .put_many("spill", &[(b"k1", b"v1"), (b"k2", b"v2")])
        .unwrap();
    s.snapshot(A, 1).unwrap();
    // After its barrier the subtask goes on; other subtasks are still taking checkpoint 1.
    keyed.put_many("spill", &[(b"k1", b"later")]).unwrap();
    keyed.delete_many("spill", &[b"k2"]).unwrap();
    s.complete(1, b"m").unwrap();
    drop((keyed, s));
    let s = open(dir.path(), StartFrom::Latest);
    let keyed = s.keyed(A).unwrap();
    let got = keyed.get_many("spill", &[b"k1", b"k2", b"k3"]).unwrap();
    assert_eq!(
        got,
        vec![Some(b"v1".to_vec()), Some(b"v2".to_vec()), None],
        "the checkpoint holds the keyed state as of the snapshot"
    );
}

#[test]
fn tasks_may_create_their_tables_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let s = Arc::new(open(dir.path(), StartFrom::Latest));
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let s = Arc::clone(&s);
            std::thread::spawn(move || {
                for node in 0..5 {
                    s.write(TaskKey { node, subtask: t }, b"x").unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    for node in 0..5 {
        for subtask in 0..4 {
            s.snapshot(TaskKey { node, subtask }, 1).unwrap();
        }
    }
    s.complete(1, b"m").unwrap();
    assert_eq!(
        s.read(TaskKey {
            node: 4,
            subtask: 3
        })
        .unwrap()
        .as_deref(),
        Some(&b"x"[..])
    );
}

#[test]
fn a_fresh_start_numbers_its_checkpoints_above_earlier_savepoints() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path(), StartFrom::Latest);
    assert_eq!(s.highest_id(), 0);
    s.write(A, b"first run").unwrap();
    s.snapshot(A, 1).unwrap();
    s.savepoint(1, b"meta-1").unwrap();
    s.snapshot(A, 2).unwrap();
    s.complete(2, b"meta-2").unwrap();
    drop(s);
    // A finished job's checkpoints are discarded; a fresh start goes on above the savepoint.
    LocalStorage::discard_checkpoints(dir.path()).unwrap();
    let s = open(dir.path(), StartFrom::Latest);
    assert_eq!(s.restored(), None, "nothing to resume after the discard");
    assert_eq!(s.highest_id(), 1, "savepoint 1 is still there");
    drop(s);
    let s = open(dir.path(), StartFrom::Fresh);
    assert_eq!(s.highest_id(), 1);
}

#[test]
fn a_killed_attempt_at_a_checkpoint_leaves_nothing_in_the_next_one() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path(), StartFrom::Latest);
    s.write(A, b"a-killed").unwrap();
    s.write(B, b"b-killed").unwrap();
    s.snapshot(A, 1).unwrap();
    s.snapshot(B, 1).unwrap();
    drop(s);
    // Killed between writing the manifest and renaming the checkpoint into place.
    let staged = dir
        .path()
        .join("checkpoints")
        .join(format!("tmp-chk-{:020}", 1));
    assert!(staged.is_dir(), "the attempt staged its stores");
    fs::write(staged.join("MANIFEST.json"), b"{\"half\": ").unwrap();

    // The restart has nothing to resume, takes checkpoint 1 again, and B has no state this time.
    let s = open(dir.path(), StartFrom::Latest);
    assert_eq!(s.restored(), None);
    s.write(A, b"a-restarted").unwrap();
    checkpoint(&s, 1, b"meta-1");
    drop(s);

    let s = open(dir.path(), StartFrom::Latest);
    assert_eq!(
        s.restored(),
        Some((1, b"meta-1".to_vec())),
        "checkpoint 1 verifies"
    );
    assert_eq!(s.read(A).unwrap().as_deref(), Some(&b"a-restarted"[..]));
    assert_eq!(
        s.read(B).unwrap(),
        None,
        "the killed attempt's store of B is gone"
    );
}
