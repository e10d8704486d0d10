//! Materialized views: the rows a job keeps for analysts, published at checkpoint epochs.
//!
//! A view's sink subtasks each keep their share of the rows (changes of an update stream
//! applied; window results kept for `retention` past the watermark). At checkpoint `n`'s
//! barrier a subtask stages its rows; when `n` completes it publishes them as epoch `n`. A
//! reader takes, for every subtask, its rows of the newest epoch all subtasks have published,
//! so an answer never mixes epochs or shows half of a checkpoint's updates.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, Weak};
use std::time::Duration;

use streams_core::arrow::compute::concat_batches;
use streams_core::arrow::datatypes::SchemaRef;
use streams_core::arrow::record_batch::RecordBatch;

/// Epochs a subtask keeps published, so that readers find one all subtasks share.
const KEPT_EPOCHS: usize = 4;

/// The views of a process, by name.
#[derive(Debug, Default)]
pub struct ViewCatalog {
    views: RwLock<BTreeMap<String, Arc<View>>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl ViewCatalog {
    /// No views.
    pub fn new() -> Arc<Self> {
        Arc::new(ViewCatalog::default())
    }

    /// The view `name` with rows of `schema`, made now or (same schema) the one that exists.
    pub fn register(
        &self,
        name: &str,
        schema: SchemaRef,
        retention: Option<Duration>,
    ) -> Arc<View> {
        let mut views = self.views.write().unwrap_or_else(|p| p.into_inner());
        if let Some(v) = views.get(name).filter(|v| v.schema == schema) {
            return Arc::clone(v);
        }
        let view = Arc::new(View {
            name: name.to_string(),
            schema,
            retention,
            parts: Mutex::new(Vec::new()),
            siblings: Mutex::new(Vec::new()),
        });
        views.insert(name.to_string(), Arc::clone(&view));
        view
    }

    /// Forgets the view `name` (its job was dropped); queries that hold it finish with it.
    pub fn remove(&self, name: &str) -> Option<Arc<View>> {
        let mut views = self.views.write().unwrap_or_else(|p| p.into_inner());
        views.remove(name)
    }

    /// Views `names` are kept by one job (a statement set): queries read them at one epoch.
    pub fn same_job(&self, names: &[String]) {
        let views: Vec<Arc<View>> = names.iter().filter_map(|n| self.get(n)).collect();
        for v in &views {
            *lock(&v.siblings) = views
                .iter()
                .filter(|o| !Arc::ptr_eq(o, v))
                .map(Arc::downgrade)
                .collect();
        }
    }

    /// The view called `name`.
    pub fn get(&self, name: &str) -> Option<Arc<View>> {
        let views = self.views.read().unwrap_or_else(|p| p.into_inner());
        views.get(name).cloned()
    }

    /// Every view, by name.
    pub fn list(&self) -> Vec<Arc<View>> {
        let views = self.views.read().unwrap_or_else(|p| p.into_inner());
        views.values().cloned().collect()
    }
}

/// What a subtask published: its rows at the last few epochs, oldest first.
#[derive(Debug, Default)]
struct Part {
    epochs: VecDeque<(u64, RecordBatch)>,
}

/// One materialized view.
#[derive(Debug)]
pub struct View {
    name: String,
    schema: SchemaRef,
    retention: Option<Duration>,
    /// One per sink subtask.
    parts: Mutex<Vec<Part>>,
    /// The other views its job keeps (a statement set's).
    siblings: Mutex<Vec<Weak<View>>>,
}

/// A view's rows at one epoch.
#[derive(Clone, Debug)]
pub struct Snapshot {
    /// The checkpoint the rows are complete at (0: none published yet).
    pub epoch: u64,
    /// The rows.
    pub batch: RecordBatch,
}

impl View {
    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its columns.
    pub fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    /// How long window results stay past the watermark, if they expire.
    pub fn retention(&self) -> Option<Duration> {
        self.retention
    }

    /// Subtask `subtask` of `parallelism` publishes its rows as of `epoch`.
    pub(crate) fn publish(
        &self,
        subtask: usize,
        parallelism: usize,
        epoch: u64,
        rows: RecordBatch,
    ) {
        let mut parts = lock(&self.parts);
        if parts.len() != parallelism {
            parts.resize_with(parallelism, Part::default);
        }
        let Some(part) = parts.get_mut(subtask) else {
            return;
        };
        part.epochs.retain(|(e, _)| *e != epoch);
        part.epochs.push_back((epoch, rows));
        while part.epochs.len() > KEPT_EPOCHS {
            part.epochs.pop_front();
        }
    }

    /// The rows at the newest epoch every subtask has published (empty at epoch 0 before
    /// any has).
    pub fn snapshot(&self) -> Snapshot {
        self.snapshot_at(u64::MAX).unwrap_or_else(|| self.empty())
    }

    fn empty(&self) -> Snapshot {
        Snapshot {
            epoch: 0,
            batch: RecordBatch::new_empty(Arc::clone(&self.schema)),
        }
    }

    /// The newest epoch every subtask has published (0: none yet).
    pub fn epoch(&self) -> u64 {
        let parts = lock(&self.parts);
        parts
            .iter()
            .map(|p| p.epochs.back().map_or(0, |(e, _)| *e))
            .min()
            .unwrap_or(0)
    }

    /// The rows at the newest epoch every subtask has published, but not past `limit`;
    /// `None` if a subtask no longer keeps rows that old.
    pub fn snapshot_at(&self, limit: u64) -> Option<Snapshot> {
        let parts = lock(&self.parts);
        let Some(epoch) = parts
            .iter()
            .map(|p| p.epochs.back().map_or(0, |(e, _)| *e))
            .min()
            .map(|e| e.min(limit))
            .filter(|e| *e > 0)
        else {
            return Some(self.empty());
        };
        let mut batches = Vec::with_capacity(parts.len());
        for p in parts.iter() {
            // The newest of its epochs not past the common one.
            let (_, b) = p.epochs.iter().rev().find(|(e, _)| *e <= epoch)?;
            batches.push(b.clone());
        }
        match concat_batches(&self.schema, &batches) {
            Ok(batch) => Some(Snapshot { epoch, batch }),
            Err(e) => {
                tracing::error!(view = %self.name, "cannot assemble a snapshot: {e}");
                Some(self.empty())
            }
        }
    }

    /// The views kept by the same job as this one (itself included), which publish at the
    /// same checkpoints.
    pub fn job_views(self: &Arc<Self>) -> Vec<Arc<View>> {
        let siblings = lock(&self.siblings);
        let mut views = vec![Arc::clone(self)];
        views.extend(siblings.iter().filter_map(Weak::upgrade));
        views
    }
}
