//! The RocksDB state store: one database per operator subtask's working directory, one column
//! family per state table. Keys are prefixed with their key group (two bytes, big-endian), so
//! a checkpoint's state can later be split by key group when work is rescaled.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rocksdb::{BoundColumnFamily, DBWithThreadMode, IteratorMode, MultiThreaded, Options};

use crate::error::{Error, Result};

type Db = DBWithThreadMode<MultiThreaded>;

/// The state of one operator subtask, in RocksDB.
pub struct StateStore {
    db: Db,
    path: PathBuf,
    creating: std::sync::Mutex<()>,
}

impl std::fmt::Debug for StateStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

pub(crate) fn options() -> Options {
    let mut o = Options::default();
    o.create_if_missing(true);
    o.create_missing_column_families(true);
    o.set_compression_type(rocksdb::DBCompressionType::Lz4);
    o
}

impl StateStore {
    /// Opens (or creates) the store in `path`, with every table it already has.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        std::fs::create_dir_all(&path).map_err(crate::error::io(&path))?;
        let rocks = |source| Error::Rocks {
            path: path.clone(),
            source,
        };
        let opts = options();
        let tables = if path.join("CURRENT").exists() {
            Db::list_cf(&opts, &path).map_err(rocks)?
        } else {
            vec!["default".to_string()]
        };
        let db = Db::open_cf(&opts, &path, tables).map_err(rocks)?;
        Ok(StateStore {
            db,
            path,
            creating: std::sync::Mutex::new(()),
        })
    }

    /// Where the store lives.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn rocks(&self) -> impl Fn(rocksdb::Error) -> Error + '_ {
        move |source| Error::Rocks {
            path: self.path.clone(),
            source,
        }
    }

    /// The state table `name` (an operator's), created empty if new.
    pub fn table(&self, name: &str) -> Result<Table<'_>> {
        if self.db.cf_handle(name).is_none() {
            // Tasks on several threads may ask for a new table at once: one creates it.
            let _guard = self.creating.lock().unwrap_or_else(|p| p.into_inner());
            if self.db.cf_handle(name).is_none() {
                self.db.create_cf(name, &options()).map_err(self.rocks())?;
            }
        }
        let cf = self.db.cf_handle(name).ok_or_else(|| Error::Corrupt {
            path: self.path.clone(),
            reason: format!("table `{name}` vanished after it was created"),
        })?;
        Ok(Table { store: self, cf })
    }

    /// Every table's name.
    pub fn tables(&self) -> Result<Vec<String>> {
        Db::list_cf(&options(), &self.path).map_err(self.rocks())
    }

    /// Writes a consistent copy of the store into `dir` (which must not exist): SST files are
    /// hard-linked when `dir` is on the same file system, so only what changed since the last
    /// copy takes space.
    pub fn checkpoint_into(&self, dir: &Path) -> Result<()> {
        self.db.flush().map_err(self.rocks())?;
        let cp = rocksdb::checkpoint::Checkpoint::new(&self.db).map_err(self.rocks())?;
        cp.create_checkpoint(dir).map_err(self.rocks())
    }
}

/// One state table. Keys are `(key group, key)`.
pub struct Table<'a> {
    store: &'a StateStore,
    cf: Arc<BoundColumnFamily<'a>>,
}

impl std::fmt::Debug for Table<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Table").finish_non_exhaustive()
    }
}

fn stored_key(group: u16, key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(2 + key.len());
    k.extend_from_slice(&group.to_be_bytes());
    k.extend_from_slice(key);
    k
}

impl Table<'_> {
    /// Sets `key` of `group` to `value`.
    pub fn put(&self, group: u16, key: &[u8], value: &[u8]) -> Result<()> {
        self.store
            .db
            .put_cf(&self.cf, stored_key(group, key), value)
            .map_err(self.store.rocks())
    }

    /// The value of `key` in `group`.
    pub fn get(&self, group: u16, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.store
            .db
            .get_cf(&self.cf, stored_key(group, key))
            .map_err(self.store.rocks())
    }

    /// Removes `key` of `group`.
    pub fn delete(&self, group: u16, key: &[u8]) -> Result<()> {
        self.store
            .db
            .delete_cf(&self.cf, stored_key(group, key))
            .map_err(self.store.rocks())
    }

    /// Values of `keys` in `group`, in order.
    pub fn get_many(&self, group: u16, keys: &[&[u8]]) -> Result<Vec<Option<Vec<u8>>>> {
        let stored: Vec<Vec<u8>> = keys.iter().map(|k| stored_key(group, k)).collect();
        self.store
            .db
            .batched_multi_get_cf(&self.cf, &stored, false)
            .into_iter()
            .map(|r| r.map(|v| v.map(|v| v.to_vec())).map_err(self.store.rocks()))
            .collect()
    }

    /// Sets every key of `group` to its value, atomically.
    pub fn put_many(&self, group: u16, entries: &[(&[u8], &[u8])]) -> Result<()> {
        let mut batch = rocksdb::WriteBatch::default();
        for (k, v) in entries {
            batch.put_cf(&self.cf, stored_key(group, k), v);
        }
        self.store.db.write(batch).map_err(self.store.rocks())
    }

    /// Removes keys of `group`, atomically.
    pub fn delete_many(&self, group: u16, keys: &[&[u8]]) -> Result<()> {
        let mut batch = rocksdb::WriteBatch::default();
        for k in keys {
            batch.delete_cf(&self.cf, stored_key(group, k));
        }
        self.store.db.write(batch).map_err(self.store.rocks())
    }

    /// Every `(key, value)` of `group` whose key starts with `prefix`, in key order.
    pub fn scan(&self, group: u16, prefix: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let start = stored_key(group, prefix);
        let mut out = Vec::new();
        let iter = self.store.db.iterator_cf(
            &self.cf,
            IteratorMode::From(&start, rocksdb::Direction::Forward),
        );
        for item in iter {
            let (k, v) = item.map_err(self.store.rocks())?;
            if !k.starts_with(&start) {
                break;
            }
            out.push((k[2..].to_vec(), v.to_vec()));
        }
        Ok(out)
    }
}
