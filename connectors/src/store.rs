//! The embedded store, opened once on first use and shared by every connector that needs it
//! (queue tables, dead-letter topics): opening it takes its directory lock, so a CLI command
//! that only plans never holds it.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

use streams_core::{Error, Result};
use streams_queue::Store;

/// A store, opened when first asked for.
#[derive(Clone, Debug)]
pub struct StoreHandle {
    dir: PathBuf,
    store: Arc<OnceLock<Arc<Store>>>,
    /// Held while opening: the store's directory lock admits one open per process, so two
    /// subtasks asking at once must not both try.
    opening: Arc<Mutex<()>>,
}

impl StoreHandle {
    /// The store in `dir`, not opened yet.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        StoreHandle {
            dir: dir.into(),
            store: Arc::new(OnceLock::new()),
            opening: Arc::new(Mutex::new(())),
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
            opening: Arc::new(Mutex::new(())),
        }
    }

    /// The store, opened now if it was not.
    pub fn get(&self) -> Result<Arc<Store>> {
        if let Some(s) = self.store.get() {
            return Ok(Arc::clone(s));
        }
        let _opening = self.opening.lock().unwrap_or_else(|p| p.into_inner());
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subtasks_asking_at_once_share_one_open_store() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| Error::Internal(e.to_string()))?;
        let handle = StoreHandle::new(dir.path());
        let stores: Vec<Result<Arc<Store>>> = std::thread::scope(|s| {
            let threads: Vec<_> = (0..8)
                .map(|_| {
                    let h = handle.clone();
                    s.spawn(move || h.get())
                })
                .collect();
            threads
                .into_iter()
                .map(|t| {
                    t.join()
                        .unwrap_or_else(|_| Err(Error::Internal("panic".into())))
                })
                .collect()
        });
        let first = stores[0]
            .as_ref()
            .map_err(|e| Error::Internal(e.to_string()))?;
        for s in &stores {
            let s = s.as_ref().map_err(|e| Error::Internal(e.to_string()))?;
            assert!(Arc::ptr_eq(s, first));
        }
        Ok(())
    }
}
