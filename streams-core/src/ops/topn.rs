//! Top-N per key (`ROW_NUMBER() OVER (PARTITION BY k ORDER BY x) <= N`, deduplication when
//! N = 1): each key keeps its best N rows; a row entering the top emits `+I` with its rank,
//! the rows it pushes down emit `-U`/`+U` with their old and new ranks, and the row pushed out
//! emits `-D`. The output is an update stream: the input's columns, the rank, the change column.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, Int8Array, Int64Array, RecordBatch};
use datafusion::arrow::compute::SortOptions;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::row::{RowConverter, SortField};
use datafusion::physical_expr::PhysicalExpr;

use crate::changelog::{DELETE, INSERT, UPDATE_AFTER, UPDATE_BEFORE};
use crate::operator::{Operator, OperatorFactory, Output};
use crate::{Error, Result};

/// A Top-N, as the planner builds it.
#[derive(Clone, Debug)]
pub struct TopNConfig {
    /// Partition keys over the input.
    pub partition_by: Vec<Arc<dyn PhysicalExpr>>,
    /// Order, best first.
    pub order_by: Vec<(Arc<dyn PhysicalExpr>, SortOptions)>,
    /// Rows kept per key.
    pub limit: usize,
    /// The input's schema.
    pub input_schema: SchemaRef,
    /// Input columns, the rank (`BIGINT`, as Flink's `ROW_NUMBER`), the change column.
    pub output_schema: SchemaRef,
}

impl OperatorFactory for TopNConfig {
    fn create(&self, _subtask: usize, _parallelism: usize) -> Result<Box<dyn Operator>> {
        Ok(Box::new(TopN::new(self.clone())?))
    }
}

/// One kept row: its order key and the whole row, both in Arrow's row format.
type Entry = (Box<[u8]>, Box<[u8]>);

/// One subtask of a Top-N.
pub struct TopN {
    config: TopNConfig,
    keys: RowConverter,
    order: RowConverter,
    rows: RowConverter,
    tops: HashMap<Box<[u8]>, Vec<Entry>>,
}

impl std::fmt::Debug for TopN {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TopN")
            .field("limit", &self.config.limit)
            .field("keys", &self.tops.len())
            .finish_non_exhaustive()
    }
}

fn evaluate(e: &Arc<dyn PhysicalExpr>, b: &RecordBatch) -> Result<ArrayRef> {
    Ok(e.evaluate(b)?.into_array(b.num_rows())?)
}

impl TopN {
    /// A subtask with no rows.
    pub fn new(config: TopNConfig) -> Result<Self> {
        if config.limit == 0 {
            return Err(Error::plan("a Top-N needs N >= 1"));
        }
        let schema = &config.input_schema;
        let keys = RowConverter::new(
            config
                .partition_by
                .iter()
                .map(|e| Ok(SortField::new(e.data_type(schema)?)))
                .collect::<Result<_>>()?,
        )?;
        let order = RowConverter::new(
            config
                .order_by
                .iter()
                .map(|(e, o)| Ok(SortField::new_with_options(e.data_type(schema)?, *o)))
                .collect::<Result<_>>()?,
        )?;
        let rows = RowConverter::new(
            schema
                .fields()
                .iter()
                .map(|f| SortField::new(f.data_type().clone()))
                .collect(),
        )?;
        Ok(TopN {
            config,
            keys,
            order,
            rows,
            tops: HashMap::new(),
        })
    }
}

impl Operator for TopN {
    fn process_batch(&mut self, _input: usize, batch: RecordBatch, out: &mut Output) -> Result<()> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let key_cols = self
            .config
            .partition_by
            .iter()
            .map(|e| evaluate(e, &batch))
            .collect::<Result<Vec<_>>>()?;
        let order_cols = self
            .config
            .order_by
            .iter()
            .map(|(e, _)| evaluate(e, &batch))
            .collect::<Result<Vec<_>>>()?;
        let keys = self.keys.convert_columns(&key_cols)?;
        let order = self.order.convert_columns(&order_cols)?;
        let rows = self.rows.convert_columns(batch.columns())?;
        let n = self.config.limit;
        // Changes: (row bytes, rank, op).
        let mut changes: Vec<(Box<[u8]>, u64, i8)> = Vec::new();
        for i in 0..batch.num_rows() {
            let top = self.tops.entry(keys.row(i).as_ref().into()).or_default();
            let sort = order.row(i);
            if top.len() == n
                && top
                    .last()
                    .is_some_and(|(worst, _)| sort.as_ref() >= worst.as_ref())
            {
                continue;
            }
            // After rows that order equal: the earlier arrival keeps its rank.
            let pos = top.partition_point(|(s, _)| s.as_ref() <= sort.as_ref());
            if top.len() == n
                && let Some((_, gone)) = top.pop()
            {
                changes.push((gone, n as u64, DELETE));
            }
            for (r, (_, row)) in top.iter().enumerate().skip(pos) {
                changes.push((row.clone(), r as u64 + 1, UPDATE_BEFORE));
                changes.push((row.clone(), r as u64 + 2, UPDATE_AFTER));
            }
            let row: Box<[u8]> = rows.row(i).as_ref().into();
            changes.push((row.clone(), pos as u64 + 1, INSERT));
            top.insert(pos, (sort.as_ref().into(), row));
        }
        if changes.is_empty() {
            return Ok(());
        }
        let parser = self.rows.parser();
        let mut columns = self
            .rows
            .convert_rows(changes.iter().map(|(r, _, _)| parser.parse(r)))?;
        columns.push(Arc::new(Int64Array::from_iter_values(
            changes
                .iter()
                .map(|c| i64::try_from(c.1).unwrap_or(i64::MAX)),
        )));
        columns.push(Arc::new(Int8Array::from_iter_values(
            changes.iter().map(|c| c.2),
        )));
        let out_batch = RecordBatch::try_new(Arc::clone(&self.config.output_schema), columns)
            .map_err(|e| Error::Internal(format!("Top-N output does not fit: {e}")))?;
        out.emit(out_batch);
        Ok(())
    }
}
