//! State tables in RocksDB and their checkpoints: restore gives exactly the state at the
//! checkpoint, checkpoints share unchanged files, old ones are pruned, and damaged or unfinished
//! ones are skipped (or refused when nothing usable is left).

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::MetadataExt;

use streams_state::{Checkpoints, Error, StateStore};

fn key(i: u32) -> Vec<u8> {
    format!("key-{i:05}").into_bytes()
}

#[test]
fn tables_are_separate_and_keys_scoped_by_group() {
    let dir = tempfile::tempdir().unwrap();
    let store = StateStore::open(dir.path().join("db")).unwrap();
    let windows = store.table("window-aggregate").unwrap();
    let joins = store.table("join").unwrap();
    windows.put(1, b"a", b"1").unwrap();
    windows.put(2, b"a", b"2").unwrap();
    windows.put(1, b"ab", b"3").unwrap();
    joins.put(1, b"a", b"join").unwrap();
    assert_eq!(windows.get(1, b"a").unwrap().as_deref(), Some(&b"1"[..]));
    assert_eq!(windows.get(2, b"a").unwrap().as_deref(), Some(&b"2"[..]));
    assert_eq!(joins.get(1, b"a").unwrap().as_deref(), Some(&b"join"[..]));
    let scanned: Vec<Vec<u8>> = windows
        .scan(1, b"a")
        .unwrap()
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(scanned, vec![b"a".to_vec(), b"ab".to_vec()]);
    windows.delete(1, b"a").unwrap();
    assert_eq!(windows.get(1, b"a").unwrap(), None);
    drop((windows, joins));
    drop(store);
    // Reopening finds both tables and their contents.
    let store = StateStore::open(dir.path().join("db")).unwrap();
    let mut tables = store.tables().unwrap();
    tables.sort();
    assert_eq!(tables, ["default", "join", "window-aggregate"]);
    assert_eq!(
        store
            .table("join")
            .unwrap()
            .get(1, b"a")
            .unwrap()
            .as_deref(),
        Some(&b"join"[..])
    );
}

#[test]
fn restore_gives_the_state_at_the_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let store = StateStore::open(dir.path().join("db")).unwrap();
    let cps = Checkpoints::new(dir.path().join("checkpoints"), 3);
    let mut model = BTreeMap::new();
    let t = store.table("agg").unwrap();
    for i in 0..2_000u32 {
        let v = (i * 7).to_le_bytes().to_vec();
        t.put((i % 4) as u16, &key(i), &v).unwrap();
        model.insert(((i % 4) as u16, key(i)), v);
    }
    cps.take(1, &store, b"offsets: 2000").unwrap();
    // Changes after the checkpoint are not in it.
    for i in 0..500u32 {
        t.delete((i % 4) as u16, &key(i)).unwrap();
    }
    t.put(0, b"late", b"x").unwrap();

    let (restored, manifest) = cps.restore_latest(&dir.path().join("restored")).unwrap();
    assert_eq!(manifest.id, 1);
    assert_eq!(cps.metadata(1).unwrap(), b"offsets: 2000");
    let r = restored.table("agg").unwrap();
    let mut got = BTreeMap::new();
    for group in 0..4u16 {
        for (k, v) in r.scan(group, b"").unwrap() {
            got.insert((group, k), v);
        }
    }
    assert_eq!(got, model);
    assert_eq!(r.get(0, b"late").unwrap(), None);
}

#[test]
fn checkpoints_share_unchanged_files_and_old_ones_go() {
    let dir = tempfile::tempdir().unwrap();
    let store = StateStore::open(dir.path().join("db")).unwrap();
    let cps = Checkpoints::new(dir.path().join("checkpoints"), 2);
    let t = store.table("agg").unwrap();
    for i in 0..5_000u32 {
        t.put(0, &key(i), &[7u8; 100]).unwrap();
    }
    let first = cps.take(1, &store, b"").unwrap();
    t.put(0, b"one more", b"row").unwrap();
    let second = cps.take(2, &store, b"").unwrap();
    // The big SST of checkpoint 1 is the same file (hard link) in checkpoint 2.
    let sst = |m: &streams_state::Manifest| {
        m.files
            .iter()
            .filter(|f| f.name.ends_with(".sst"))
            .max_by_key(|f| f.size)
            .unwrap()
            .name
            .clone()
    };
    let big = sst(&first);
    assert!(
        second.files.iter().any(|f| f.name == big),
        "checkpoint 2 lost {big}"
    );
    let root = dir.path().join("checkpoints");
    let ino = |id: u64| {
        fs::metadata(root.join(format!("chk-{id:020}")).join(&big))
            .unwrap()
            .ino()
    };
    assert_eq!(ino(1), ino(2), "unchanged SST copied instead of linked");
    cps.take(3, &store, b"").unwrap();
    assert_eq!(
        cps.list().unwrap(),
        vec![2, 3],
        "only the newest two are kept"
    );
}

#[test]
fn damaged_or_unfinished_checkpoints_are_skipped_then_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = StateStore::open(dir.path().join("db")).unwrap();
    let root = dir.path().join("checkpoints");
    let cps = Checkpoints::new(&root, 5);
    let t = store.table("agg").unwrap();
    t.put(0, b"k", b"v1").unwrap();
    cps.take(1, &store, b"one").unwrap();
    t.put(0, b"k", b"v2").unwrap();
    let m2 = cps.take(2, &store, b"two").unwrap();
    // An unfinished checkpoint 3 (no manifest) does not count.
    fs::create_dir_all(root.join(format!("chk-{:020}", 3))).unwrap();
    assert_eq!(cps.list().unwrap(), vec![1, 2]);

    // Flip a byte of checkpoint 2's SST: restore falls back to checkpoint 1.
    let sst = m2.files.iter().find(|f| f.name.ends_with(".sst")).unwrap();
    let path = root.join(format!("chk-{:020}", 2)).join(&sst.name);
    // Checkpoint 2's SST is a hard link shared with the live store: break the link first so
    // the damage stays in the checkpoint.
    let bytes = fs::read(&path).unwrap();
    fs::remove_file(&path).unwrap();
    let mut damaged = bytes.clone();
    damaged[bytes.len() / 2] ^= 0xff;
    fs::write(&path, damaged).unwrap();
    let err = cps.verify(2).unwrap_err().to_string();
    assert!(err.contains("CRC") && err.contains(&sst.name), "{err}");
    let (restored, manifest) = cps.restore_latest(&dir.path().join("restored")).unwrap();
    assert_eq!(manifest.id, 1);
    assert_eq!(
        restored
            .table("agg")
            .unwrap()
            .get(0, b"k")
            .unwrap()
            .as_deref(),
        Some(&b"v1"[..])
    );
    drop(restored);

    // With checkpoint 1's manifest gone too, nothing is usable: a clear error.
    fs::remove_file(root.join(format!("chk-{:020}", 1)).join("MANIFEST.json")).unwrap();
    let err = cps
        .restore_latest(&dir.path().join("restored"))
        .unwrap_err();
    assert!(matches!(err, Error::NoCheckpoint(_)), "{err}");
    assert!(err.to_string().contains("no usable checkpoint"), "{err}");
}
