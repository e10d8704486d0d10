//! `'connector' = 'view'`: the sink of a `CREATE MATERIALIZED VIEW` job. Each subtask keeps its
//! rows (an update stream's changes applied, counting duplicates; window results dropped once
//! the watermark is `retention` past their `window_end`), stages them at each checkpoint's
//! barrier, keeps them in the checkpoint (a restarted job has them back) and publishes them
//! when the checkpoint completes. Without checkpoints it publishes after every batch, and
//! readers may then see subtasks at different points.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use streams_core::arrow::array::{Array, AsArray};
use streams_core::arrow::datatypes::{
    DataType, Int8Type, SchemaRef, TimeUnit, TimestampMillisecondType,
};
use streams_core::arrow::record_batch::RecordBatch;
use streams_core::arrow::row::{RowConverter, SortField};
use streams_core::changelog::{INSERT, UPDATE_AFTER, is_update_stream};
use streams_core::checkpoint::CheckpointId;
use streams_core::connector::{Connector, OptionSpec, Options};
use streams_core::state::OperatorState;
use streams_core::{Error, Result, Sink, SinkContext, SinkFactory, SourceFactory};

use crate::view::{View, ViewCatalog};

const OPTIONS: &[OptionSpec] = &[OptionSpec {
    name: "retention",
    required: false,
    doc: "for rows with a window_end column: how long past the watermark a window's results \
          stay queryable, e.g. 1h (default 1h; 0 keeps every window)",
}];

/// Default of `'retention'`.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(3600);

/// The `view` connector: materialized views kept in `catalog`.
#[derive(Debug)]
pub struct ViewConnector {
    catalog: Arc<ViewCatalog>,
}

impl ViewConnector {
    /// Views kept in `catalog`.
    pub fn new(catalog: Arc<ViewCatalog>) -> Self {
        ViewConnector { catalog }
    }
}

impl Connector for ViewConnector {
    fn name(&self) -> &str {
        "view"
    }

    fn options(&self) -> &[OptionSpec] {
        OPTIONS
    }

    fn source(&self, table: &str, _: SchemaRef, _: &Options) -> Result<Arc<dyn SourceFactory>> {
        Err(Error::plan(format!(
            "`{table}` is a materialized view: query it over the PostgreSQL endpoint \
             (`rstreams run --serve`); jobs cannot read it"
        )))
    }

    fn sink(
        &self,
        table: &str,
        schema: SchemaRef,
        options: &Options,
    ) -> Result<Arc<dyn SinkFactory>> {
        let retention = match options.get("retention") {
            None => Some(DEFAULT_RETENTION),
            Some(v) => {
                let d = humantime::parse_duration(v).map_err(|e| {
                    Error::plan(format!(
                        "materialized view `{table}`: option 'retention' = '{v}' is not a \
                         duration: {e}"
                    ))
                })?;
                (!d.is_zero()).then_some(d)
            }
        };
        let window_end = schema.index_of("window_end").ok().filter(|&i| {
            matches!(
                schema.field(i).data_type(),
                DataType::Timestamp(TimeUnit::Millisecond, _)
            )
        });
        let view = self.catalog.register(table, Arc::clone(&schema), retention);
        Ok(Arc::new(ViewSink { view, window_end }))
    }
}

/// Writes a job's rows into a view.
#[derive(Debug)]
pub struct ViewSink {
    view: Arc<View>,
    window_end: Option<usize>,
}

impl SinkFactory for ViewSink {
    fn name(&self) -> &str {
        self.view.name()
    }

    fn create(&self, subtask: usize, parallelism: usize) -> Result<Box<dyn Sink>> {
        let schema = self.view.schema();
        let converter = RowConverter::new(
            schema
                .fields()
                .iter()
                .map(|f| SortField::new(f.data_type().clone()))
                .collect(),
        )?;
        Ok(Box::new(ViewWriter {
            view: Arc::clone(&self.view),
            window_end: self.window_end,
            subtask,
            parallelism,
            converter,
            rows: BTreeMap::new(),
            staged: BTreeMap::new(),
            checkpointing: false,
            epoch: 0,
        }))
    }

    fn accepts_updates(&self) -> bool {
        true
    }
}

#[derive(Debug)]
struct ViewWriter {
    view: Arc<View>,
    window_end: Option<usize>,
    subtask: usize,
    parallelism: usize,
    converter: RowConverter,
    /// Row bytes (in the converter's format) → copies, and the row's window end if any.
    rows: BTreeMap<Vec<u8>, (i64, Option<i64>)>,
    /// Rows staged at a barrier, published when that checkpoint completes.
    staged: BTreeMap<CheckpointId, RecordBatch>,
    checkpointing: bool,
    /// Without checkpoints: the count of publications.
    epoch: u64,
}

impl ViewWriter {
    fn apply(&mut self, batch: &RecordBatch) -> Result<()> {
        let updates = is_update_stream(&batch.schema());
        let width = batch.num_columns() - usize::from(updates);
        let columns = &batch.columns()[..width];
        let rows = self.converter.convert_columns(columns)?;
        let ops = updates.then(|| batch.column(width).as_primitive::<Int8Type>());
        let ends = self
            .window_end
            .map(|i| columns[i].as_primitive::<TimestampMillisecondType>());
        for i in 0..batch.num_rows() {
            let add =
                ops.is_none_or(|o| o.is_null(i) || matches!(o.value(i), INSERT | UPDATE_AFTER));
            let row = rows.row(i);
            let end = ends.and_then(|e| e.is_valid(i).then(|| e.value(i)));
            let delta = if add { 1 } else { -1 };
            // A row seen before (an update's retraction, say) costs no key allocation.
            let count = match self.rows.get_mut(row.as_ref()) {
                Some(entry) => {
                    entry.0 += delta;
                    entry.0
                }
                None => {
                    self.rows.insert(row.as_ref().to_vec(), (delta, end));
                    delta
                }
            };
            if count == 0 {
                self.rows.remove(row.as_ref());
            }
        }
        Ok(())
    }

    /// The rows as a batch (a row with n copies n times).
    fn current(&self) -> Result<RecordBatch> {
        let parser = self.converter.parser();
        let mut rows = Vec::with_capacity(self.rows.len());
        for (bytes, (count, _)) in &self.rows {
            for _ in 0..(*count).max(0) {
                rows.push(parser.parse(bytes));
            }
        }
        let columns = self.converter.convert_rows(rows)?;
        Ok(RecordBatch::try_new_with_options(
            self.view.schema(),
            columns,
            &streams_core::arrow::record_batch::RecordBatchOptions::new().with_row_count(Some(
                self.rows.values().map(|(c, _)| (*c).max(0) as usize).sum(),
            )),
        )?)
    }

    fn publish_now(&mut self) -> Result<()> {
        self.epoch += 1;
        let rows = self.current()?;
        self.view
            .publish(self.subtask, self.parallelism, self.epoch, rows);
        Ok(())
    }
}

#[async_trait]
impl Sink for ViewWriter {
    async fn start(&mut self, ctx: &SinkContext) -> Result<()> {
        self.checkpointing = ctx.checkpointing;
        if !self.checkpointing && self.epoch == 0 {
            self.publish_now()?;
        }
        Ok(())
    }

    async fn write(&mut self, batch: RecordBatch) -> Result<()> {
        self.apply(&batch)?;
        if !self.checkpointing {
            self.publish_now()?;
        }
        Ok(())
    }

    async fn watermark(&mut self, watermark: i64) -> Result<()> {
        let (Some(_), Some(retention)) = (self.window_end, self.view.retention()) else {
            return Ok(());
        };
        let horizon = watermark.saturating_sub(retention.as_millis() as i64);
        let before = self.rows.len();
        self.rows
            .retain(|_, (_, end)| end.is_none_or(|e| e > horizon));
        if !self.checkpointing && self.rows.len() != before {
            self.publish_now()?;
        }
        Ok(())
    }

    async fn pre_commit(&mut self, checkpoint: CheckpointId) -> Result<Option<OperatorState>> {
        let rows = self.current()?;
        self.staged.insert(checkpoint, rows.clone());
        let mut state = OperatorState::new();
        state.put_batch("rows", rows);
        Ok(Some(state))
    }

    async fn restore(
        &mut self,
        checkpoint: CheckpointId,
        state: Option<OperatorState>,
    ) -> Result<()> {
        let Some(mut state) = state else {
            return Ok(());
        };
        for (name, batch) in state.take_batches() {
            if name != "rows" {
                continue;
            }
            streams_core::state::expect_schema(&batch, &self.view.schema(), "view rows")?;
            self.apply(&batch)?;
            self.staged.insert(checkpoint, batch);
        }
        Ok(())
    }

    async fn commit(&mut self, checkpoint: CheckpointId) -> Result<()> {
        let later = self.staged.split_off(&(checkpoint + 1));
        let due = std::mem::replace(&mut self.staged, later);
        if let Some((id, rows)) = due.into_iter().next_back() {
            self.view.publish(self.subtask, self.parallelism, id, rows);
        }
        Ok(())
    }
}
