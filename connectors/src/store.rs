//! The embedded store, opened once on first use and shared by every connector that needs it
//! (queue tables, dead-letter topics): opening it takes its directory lock, so a CLI command
//! that only plans never holds it.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use streams_core::{Error, Result};
use streams_queue::Store;

/// A store, opened when first asked for.
#[derive(Clone, Debug)]
pub struct StoreHandle {
    dir: PathBuf,
    store: Arc<OnceLock<Arc<Store>>>,
}

impl StoreHandle {
    /// The store in `dir`, not opened yet.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        StoreHandle {
            dir: dir.into(),
            store: Arc::new(OnceLock::new()),
        }
    }

    /// A store that is already open.
    pub fn open_store(store: Arc<Store>) -> Self {
        let cell = OnceLock::new();
        let dir = store.data_dir().to_path_buf();
        let _ = cell.set(store);
        StoreHandle {
            dir,
            store: Arc::new(cell),
        }
    }

    /// The store, opened now if it was not.
    pub fn get(&self) -> Result<Arc<Store>> {
        if let Some(s) = self.store.get() {
            return Ok(Arc::clone(s));
        }
        let opened = Store::open(&self.dir).map_err(|e| {
            Error::plan(format!(
                "cannot open the store in {}: {e}",
                self.dir.display()
            ))
        })?;
        Ok(Arc::clone(self.store.get_or_init(|| Arc::new(opened))))
    }
}
