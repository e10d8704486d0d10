//! Writing part files: hidden while written, pending at a checkpoint's barrier, visible when
//! the checkpoint completes (see the module doc of `filesystem`).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use async_trait::async_trait;
use streams_core::arrow::array::{AsArray, Int64Array};
use streams_core::arrow::datatypes::{DataType, Int64Type, SchemaRef};
use streams_core::arrow::record_batch::RecordBatch;
use streams_core::checkpoint::CheckpointId;
use streams_core::state::{OperatorState, columns_batch, expect_types};
use streams_core::{Error, Result, Sink, SinkContext, SinkFactory};

use super::Table;
use super::part::{PartNames, PartWriter, blocking, new_run_id, rename_once, sync_dir};

const STATE_VERSION: i64 = 1;
/// State batch of the pending files: (file number, checkpoint) rows.
const PENDING: &str = "pending";

/// A directory of part files as a sink table.
#[derive(Debug)]
pub struct FilesystemSink {
    table: Table,
    roll: u64,
}

impl FilesystemSink {
    pub(super) fn new(table: Table, roll: u64) -> Self {
        FilesystemSink { table, roll }
    }
}

impl SinkFactory for FilesystemSink {
    fn name(&self) -> &str {
        &self.table.name
    }

    fn create(&self, subtask: usize, _parallelism: usize) -> Result<Box<dyn Sink>> {
        Ok(Box::new(FileWriter {
            table: self.table.clone(),
            schema: self.table.schema.clone(),
            roll: self.roll,
            subtask,
            run: None,
            names: None,
            next: 0,
            transactional: false,
            current: None,
            rolled: Vec::new(),
            pending: BTreeMap::new(),
            restored: false,
        }))
    }
}

#[derive(Debug)]
struct FileWriter {
    table: Table,
    schema: SchemaRef,
    roll: u64,
    subtask: usize,
    /// Chosen at the first start, then kept in every checkpoint.
    run: Option<u32>,
    names: Option<PartNames>,
    /// The number of the next part file.
    next: u64,
    /// Publish on commit (the job checkpoints), or when a file is finished.
    transactional: bool,
    /// The file being written and its number.
    current: Option<(u64, PartWriter)>,
    /// Finished (pending) files whose rows no checkpoint holds yet.
    rolled: Vec<u64>,
    /// Pending files by the checkpoint that holds their rows.
    pending: BTreeMap<CheckpointId, Vec<u64>>,
    /// Resumed from a checkpoint: files of the run that it does not hold are removed at start.
    restored: bool,
}

impl FileWriter {
    fn names(&self) -> Result<&PartNames> {
        self.names
            .as_ref()
            .ok_or_else(|| Error::Internal("file sink used before start".into()))
    }

    /// A new part file, numbered past every file of this run and subtask that exists.
    fn open(&mut self) -> Result<()> {
        let names = self.names()?.clone();
        let mut n = self.next;
        while names.taken(n) {
            n += 1;
        }
        self.next = n + 1;
        let w = PartWriter::create(&self.table, &self.schema, names.in_progress(n))?;
        self.current = Some((n, w));
        Ok(())
    }

    /// Finishes the current file: pending (with checkpoints) or visible.
    fn finish_current(&mut self) -> Result<()> {
        let Some((n, w)) = self.current.take() else {
            return Ok(());
        };
        w.finish(&self.table)?;
        let names = self.names()?;
        if self.transactional {
            rename_once(&self.table, &names.in_progress(n), &names.pending(n))?;
            self.rolled.push(n);
        } else {
            rename_once(&self.table, &names.in_progress(n), &names.visible(n))?;
            sync_dir(&self.table, &self.table.path)?;
        }
        Ok(())
    }

    fn write_now(&mut self, batch: &RecordBatch) -> Result<()> {
        if self.current.is_none() {
            self.open()?;
        }
        let Some((_, w)) = self.current.as_mut() else {
            return Err(Error::Internal("file sink: no open part file".into()));
        };
        w.write(&self.table, batch)?;
        if w.size() >= self.roll {
            self.finish_current()?;
        }
        Ok(())
    }

    /// Removes hidden files of this run and subtask that no restored checkpoint holds: rows
    /// written after it, which the job replays.
    fn remove_leftovers(&self) -> Result<()> {
        let names = self.names()?;
        let keep: BTreeSet<u64> = self.pending.values().flatten().copied().collect();
        let dir = &self.table.path;
        let entries =
            std::fs::read_dir(dir).map_err(|e| self.table.io_error("cannot list", dir, e))?;
        let mut removed = 0;
        for entry in entries {
            let entry = entry.map_err(|e| self.table.io_error("cannot list", dir, e))?;
            let name = entry.file_name();
            let Some(n) = name.to_str().and_then(|s| names.hidden_number(s)) else {
                continue;
            };
            if !keep.contains(&n) {
                let p = entry.path();
                std::fs::remove_file(&p)
                    .map_err(|e| self.table.io_error("cannot remove", &p, e))?;
                removed += 1;
            }
        }
        if removed > 0 {
            tracing::info!(
                table = %self.table.name, subtask = self.subtask, files = removed,
                "removed part files written after the checkpoint the job resumes from"
            );
        }
        Ok(())
    }

    fn publish(&self, n: u64) -> Result<()> {
        let names = self.names()?;
        let (from, to) = (names.pending(n), names.visible(n));
        if from.exists() || !to.exists() {
            rename_once(&self.table, &from, &to)?;
        }
        Ok(())
    }
}

#[async_trait]
impl Sink for FileWriter {
    async fn start(&mut self, ctx: &SinkContext) -> Result<()> {
        self.transactional = ctx.checkpointing;
        if !ctx.schema.fields().is_empty() {
            self.schema = ctx.schema.clone();
        }
        let run = *self.run.get_or_insert_with(new_run_id);
        let dir = self.table.path.clone();
        self.names = Some(PartNames::new(
            &dir,
            run,
            self.subtask,
            self.table.format.extension(),
        ));
        blocking(|| {
            std::fs::create_dir_all(&dir)
                .map_err(|e| self.table.io_error("cannot create directory", &dir, e))?;
            if self.restored {
                self.remove_leftovers()?;
            }
            Ok(())
        })
    }

    async fn write(&mut self, batch: RecordBatch) -> Result<()> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        blocking(|| self.write_now(&batch))
    }

    async fn pre_commit(&mut self, checkpoint: CheckpointId) -> Result<Option<OperatorState>> {
        blocking(|| {
            self.finish_current()?;
            if !self.rolled.is_empty() {
                sync_dir(&self.table, &self.table.path)?;
                let files = std::mem::take(&mut self.rolled);
                self.pending.entry(checkpoint).or_default().extend(files);
            }
            Ok::<_, Error>(())
        })?;
        let mut state = OperatorState::new();
        state.put_value("version", STATE_VERSION);
        state.put_value("run", i64::from(self.run.unwrap_or_default()));
        state.put_value("next", self.next as i64);
        let (numbers, checkpoints): (Vec<i64>, Vec<i64>) = self
            .pending
            .iter()
            .flat_map(|(id, files)| files.iter().map(|n| (*n as i64, *id as i64)))
            .unzip();
        let rows = numbers.len();
        let pending = columns_batch(
            vec![
                Arc::new(Int64Array::from(numbers)),
                Arc::new(Int64Array::from(checkpoints)),
            ],
            rows,
        )?;
        state.put_batch(PENDING, pending);
        Ok(Some(state))
    }

    async fn restore(
        &mut self,
        _checkpoint: CheckpointId,
        state: Option<OperatorState>,
    ) -> Result<()> {
        let Some(state) = state else {
            return Ok(());
        };
        let bad = |what: &str| {
            Error::IncompatibleState(format!(
                "table `{}`: file sink state {what}; was the table changed?",
                self.table.name
            ))
        };
        if state.value("version") != Some(STATE_VERSION) {
            return Err(bad("has another version"));
        }
        let run = state.value("run").ok_or_else(|| bad("has no run id"))?;
        self.run = Some(u32::try_from(run).map_err(|_| bad("has a bad run id"))?);
        self.next = state
            .value("next")
            .ok_or_else(|| bad("has no file number"))? as u64;
        let mut pending: BTreeMap<CheckpointId, Vec<u64>> = BTreeMap::new();
        for batch in state.batches_named(PENDING) {
            let what = format!("table `{}`: pending part files", self.table.name);
            expect_types(batch, &[DataType::Int64, DataType::Int64], &what)?;
            let numbers = batch.column(0).as_primitive::<Int64Type>();
            let ids = batch.column(1).as_primitive::<Int64Type>();
            for (n, id) in numbers.iter().zip(ids.iter()) {
                let (Some(n), Some(id)) = (n, id) else {
                    return Err(bad("has an empty pending entry"));
                };
                pending
                    .entry(id as CheckpointId)
                    .or_default()
                    .push(n as u64);
            }
        }
        self.pending = pending;
        self.restored = true;
        Ok(())
    }

    async fn commit(&mut self, checkpoint: CheckpointId) -> Result<()> {
        let later = self.pending.split_off(&(checkpoint + 1));
        let due = std::mem::replace(&mut self.pending, later);
        if due.is_empty() {
            return Ok(());
        }
        let result = blocking(|| {
            for n in due.values().flatten() {
                self.publish(*n)?;
            }
            sync_dir(&self.table, &self.table.path)
        });
        if result.is_err() {
            // Kept, so that a later commit (or the restart) tries again.
            for (id, files) in due {
                self.pending.insert(id, files);
            }
        }
        result
    }

    async fn close(&mut self) -> Result<()> {
        blocking(|| {
            if !self.transactional {
                return self.finish_current();
            }
            // Rows after the last checkpoint: not published. A resumed job replays them.
            let mut dropped: Vec<u64> = std::mem::take(&mut self.rolled);
            if let Some((n, w)) = self.current.take() {
                drop(w);
                dropped.push(n);
            }
            if dropped.is_empty() {
                return Ok(());
            }
            tracing::warn!(
                table = %self.table.name, subtask = self.subtask,
                "rows written after the last checkpoint were not published (the job \
                 stopped without a final checkpoint)"
            );
            let names = self.names()?.clone();
            for n in dropped {
                for p in [names.in_progress(n), names.pending(n)] {
                    if let Err(e) = std::fs::remove_file(&p)
                        && e.kind() != std::io::ErrorKind::NotFound
                    {
                        return Err(self.table.io_error("cannot remove", &p, e));
                    }
                }
            }
            Ok(())
        })
    }
}
