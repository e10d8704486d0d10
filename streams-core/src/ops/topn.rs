//! Top-N per key (`ROW_NUMBER() OVER (PARTITION BY k ORDER BY x) <= N`, deduplication when
//! N = 1): each key keeps its best N rows; a row entering the top emits `+I` with its rank,
//! the rows it pushes down emit `-U`/`+U` with their old and new ranks, and the row pushed out
//! emits `-D`. The output is an update stream: the input's columns, the rank, the change column.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, Int8Array, Int64Array, RecordBatch};
use datafusion::arrow::compute::SortOptions;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::row::{RowConverter, Rows, SortField};
use datafusion::physical_expr::PhysicalExpr;

use crate::changelog::{DELETE, INSERT, UPDATE_AFTER, UPDATE_BEFORE};
use crate::message::Barrier;
use crate::operator::{Operator, OperatorFactory, Output};
use crate::state::{OperatorState, columns_batch, expect_schema};
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
    /// Partition keys, order keys and whole rows of `batch`, in row format.
    fn encode(&self, batch: &RecordBatch) -> Result<(Rows, Rows, Rows)> {
        let key_cols = self
            .config
            .partition_by
            .iter()
            .map(|e| evaluate(e, batch))
            .collect::<Result<Vec<_>>>()?;
        let order_cols = self
            .config
            .order_by
            .iter()
            .map(|(e, _)| evaluate(e, batch))
            .collect::<Result<Vec<_>>>()?;
        Ok((
            self.keys.convert_columns(&key_cols)?,
            self.order.convert_columns(&order_cols)?,
            self.rows.convert_columns(batch.columns())?,
        ))
    }

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

/// Names of the Top-N's checkpoint state.
const ROWS: &str = "rows";
const LIMIT: &str = "limit";

impl Operator for TopN {
    /// State: the kept rows as input columns, each key's rows together and best first (keys
    /// and order are computed again on restore: Arrow's row format is not a storage format).
    fn checkpoint(&mut self, _barrier: &Barrier) -> Result<Option<OperatorState>> {
        let parser = self.rows.parser();
        let kept = self.tops.values().flatten();
        let n = kept.clone().count();
        let columns = self
            .rows
            .convert_rows(kept.map(|(_, row)| parser.parse(row)))?;
        let mut state = OperatorState::new();
        state.put_batch(ROWS, columns_batch(columns, n)?);
        state.put_value(LIMIT, i64::try_from(self.config.limit).unwrap_or(i64::MAX));
        Ok(Some(state))
    }

    fn restore(&mut self, state: OperatorState) -> Result<()> {
        let bad = |what: String| Error::IncompatibleState(format!("Top-N state: {what}"));
        let limit = state.value(LIMIT);
        if limit != i64::try_from(self.config.limit).ok() {
            return Err(bad(format!(
                "it kept {limit:?} rows per key, this job keeps {}; was the query changed?",
                self.config.limit
            )));
        }
        let mut all = state.batches_named(ROWS);
        let (Some(batch), None) = (all.next(), all.next()) else {
            return Err(bad("not one batch of rows".into()));
        };
        let schema = &self.config.input_schema;
        expect_schema(batch, schema, "Top-N rows")?;
        let batch = RecordBatch::try_new(Arc::clone(schema), batch.columns().to_vec())
            .map_err(|e| bad(format!("rows do not fit the input: {e}")))?;
        let (keys, order, rows) = self.encode(&batch)?;
        self.tops.clear();
        for i in 0..batch.num_rows() {
            let top = self.tops.entry(keys.row(i).as_ref().into()).or_default();
            let sort = order.row(i);
            // Each key's rows come best first; another order means another ORDER BY.
            if top.len() == self.config.limit
                || top.last().is_some_and(|(s, _)| s.as_ref() > sort.as_ref())
            {
                return Err(bad(
                    "its rows are not the top rows of this query's order; was the query \
                     changed?"
                        .into(),
                ));
            }
            top.push((sort.as_ref().into(), rows.row(i).as_ref().into()));
        }
        Ok(())
    }

    fn process_batch(&mut self, _input: usize, batch: RecordBatch, out: &mut Output) -> Result<()> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let (keys, order, rows) = self.encode(&batch)?;
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

    use datafusion::arrow::datatypes::{DataType, Field, Schema};

    use super::*;
    use crate::changelog::OP_COLUMN;
    use crate::ops::testkit::{
        Row, Step, assert_refused, batch, check_everywhere, column, schema, state_after,
    };

    fn config(limit: usize, descending: bool) -> TopNConfig {
        let input = schema();
        let mut fields = input.fields().to_vec();
        fields.push(Arc::new(Field::new("rank", DataType::Int64, false)));
        fields.push(Arc::new(Field::new(OP_COLUMN, DataType::Int8, false)));
        let options = SortOptions {
            descending,
            nulls_first: false,
        };
        TopNConfig {
            partition_by: vec![column(&input, "k")],
            // Ties (equal v) keep arrival order: ts breaks none of them.
            order_by: vec![(column(&input, "v"), options)],
            limit,
            input_schema: Arc::clone(&input),
            output_schema: Arc::new(Schema::new(fields)),
        }
    }

    fn maker(config: TopNConfig) -> impl Fn() -> Box<dyn Operator> {
        move || Box::new(TopN::new(config.clone()).unwrap()) as Box<dyn Operator>
    }

    fn script() -> Vec<Step> {
        let batches: [&[Row]; 6] = [
            &[("a", 1, 1), ("b", 2, 2), ("a", 3, 3)],
            &[("a", 1, 4), ("c", 7, 5)],
            &[("b", 4, 6), ("a", 9, 7), ("a", 3, 8)],
            &[("a", 5, 9), ("c", 6, 10), ("b", 4, 11)],
            &[("a", 8, 12), ("b", 1, 13), ("b", 7, 14)],
            &[("c", 3, 15), ("a", 0, 16), ("b", 9, 17)],
        ];
        batches.iter().map(|b| Step::Batch(batch(b))).collect()
    }

    #[test]
    fn resumes_anywhere() {
        for (limit, descending) in [(1, true), (3, true), (2, false)] {
            let out = check_everywhere(&maker(config(limit, descending)), &script());
            assert!(
                out.iter().any(|l| l.ends_with(&format!("| {DELETE}"))),
                "{out:#?}"
            );
        }
    }

    #[test]
    fn state_of_another_top_n_is_refused() {
        let state = state_after(&maker(config(3, true)), &script()[..3]);
        assert_refused(maker(config(2, true))(), state.clone());
        // The same rows in the other order are not this query's top rows.
        assert_refused(maker(config(3, false))(), state);
    }
}
