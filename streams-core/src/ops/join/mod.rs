//! Stream joins: the window join (rows of both sides in the same window with equal keys,
//! joined when the window fires) and the interval join (`l.ts BETWEEN r.ts + lower AND
//! r.ts + upper`, joined as rows arrive, state dropped as the watermark passes). Inner and left
//! outer; an optional residual predicate over the joined row.
//!
//! The matching itself is a small hash join over Arrow's row format: keys of one side indexed
//! by their byte-comparable row encoding, the other side probing, and the output built with
//! `take` and `interleave` on whole columns.

#[cfg(test)]
mod checkpoint_tests;
mod index;
mod interval;
mod regular;
mod window;

pub use interval::{IntervalJoin, IntervalJoinConfig};
pub use regular::{RegularJoin, RegularJoinConfig};
pub use window::{WindowJoin, WindowJoinConfig};

use index::Indexed;

use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, RecordBatch, RecordBatchOptions, UInt32Array, new_null_array,
};
use datafusion::arrow::buffer::NullBuffer;
use datafusion::arrow::compute::{interleave, take};
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::arrow::row::{RowConverter, Rows, SortField};
use datafusion::physical_expr::PhysicalExpr;

use crate::state::{OperatorState, expect_schema, expect_types};
use crate::{Error, Result};

/// Which unmatched rows a join keeps. Window and interval joins are inner or left outer;
/// regular joins take all four.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Hash)]
pub enum JoinType {
    /// Only matched pairs.
    Inner,
    /// Matched pairs, and left rows without a match padded with nulls.
    Left,
    /// Matched pairs, and right rows without a match padded with nulls.
    Right,
    /// Matched pairs, and rows of either side without a match padded with nulls.
    Full,
}

impl JoinType {
    /// Whether unmatched rows of (left, right) are kept.
    pub fn outer(self) -> [bool; 2] {
        match self {
            JoinType::Inner => [false, false],
            JoinType::Left => [true, false],
            JoinType::Right => [false, true],
            JoinType::Full => [true, true],
        }
    }

    /// DataFusion's name for it.
    pub fn to_datafusion(self) -> datafusion::logical_expr::JoinType {
        match self {
            JoinType::Inner => datafusion::logical_expr::JoinType::Inner,
            JoinType::Left => datafusion::logical_expr::JoinType::Left,
            JoinType::Right => datafusion::logical_expr::JoinType::Right,
            JoinType::Full => datafusion::logical_expr::JoinType::Full,
        }
    }
}

/// What both joins share: key expressions per side, the residual predicate, output shape.
#[derive(Clone, Debug)]
pub struct JoinSpec {
    /// Key expressions over the left input.
    pub left_keys: Vec<Arc<dyn PhysicalExpr>>,
    /// Key expressions over the right input (same count and types).
    pub right_keys: Vec<Arc<dyn PhysicalExpr>>,
    /// Extra condition over the joined row (left columns, then right columns).
    pub filter: Option<Arc<dyn PhysicalExpr>>,
    /// Inner or left outer.
    pub join_type: JoinType,
    /// Schema of left columns followed by right columns (right nullable for a left join).
    pub joined_schema: SchemaRef,
}

/// Row-format keys of a batch, and which rows have no null key part (SQL's `=` never matches
/// a null, but the row format encodes every null alike).
pub(crate) struct Keys {
    pub(crate) rows: Rows,
    valid: Option<NullBuffer>,
}

impl Keys {
    pub(crate) fn is_valid(&self, row: usize) -> bool {
        self.valid.as_ref().is_none_or(|v| v.is_valid(row))
    }
}

/// Evaluates key expressions into row-format keys.
pub(crate) fn key_rows(
    converter: &RowConverter,
    keys: &[Arc<dyn PhysicalExpr>],
    batch: &RecordBatch,
) -> Result<Keys> {
    let cols = keys
        .iter()
        .map(|k| k.evaluate(batch)?.into_array(batch.num_rows()))
        .collect::<Result<Vec<_>, _>>()?;
    let valid = cols.iter().fold(None, |acc: Option<NullBuffer>, c| {
        NullBuffer::union(acc.as_ref(), c.logical_nulls().as_ref())
    });
    Ok(Keys {
        rows: converter.convert_columns(&cols)?,
        valid,
    })
}

pub(crate) fn converter(
    keys: &[Arc<dyn PhysicalExpr>],
    schema: &SchemaRef,
) -> Result<RowConverter> {
    let fields = keys
        .iter()
        .map(|k| Ok(SortField::new(k.data_type(schema)?)))
        .collect::<Result<Vec<_>>>()?;
    Ok(RowConverter::new(fields)?)
}

/// Candidate pairs: row `probe[i]` of the probing batch with `(batch, row)` `build[i]`.
#[derive(Debug, Default)]
pub(crate) struct Pairs {
    pub(crate) probe: Vec<u32>,
    pub(crate) build: Vec<(usize, usize)>,
}

impl Pairs {
    pub(crate) fn push(&mut self, probe: usize, build: (u32, u32)) {
        self.probe.push(probe as u32);
        self.build.push((build.0 as usize, build.1 as usize));
    }
}

/// Builds joined rows (left columns first) for candidate pairs and keeps those passing the
/// residual filter. Returns the joined batch and which pairs it kept (indices into `pairs`).
pub(crate) fn assemble(
    spec: &JoinSpec,
    probe: &RecordBatch,
    build: &Indexed,
    pairs: &Pairs,
    left_is_probe: bool,
) -> Result<(RecordBatch, Vec<usize>)> {
    let probe_idx = UInt32Array::from(pairs.probe.clone());
    let probe_cols: Vec<ArrayRef> = probe
        .columns()
        .iter()
        .map(|c| take(c.as_ref(), &probe_idx, None))
        .collect::<Result<_, _>>()?;
    let build_width = spec.joined_schema.fields().len() - probe.num_columns();
    let build_cols: Vec<ArrayRef> = (0..build_width)
        .map(|c| {
            let arrays: Vec<&dyn Array> =
                build.batches.iter().map(|b| b.column(c).as_ref()).collect();
            if arrays.is_empty() {
                let dt = spec.joined_schema.field(if left_is_probe {
                    probe.num_columns() + c
                } else {
                    c
                });
                return Ok(new_null_array(dt.data_type(), 0));
            }
            interleave(&arrays, &pairs.build)
        })
        .collect::<Result<_, _>>()?;
    let columns = if left_is_probe {
        probe_cols.into_iter().chain(build_cols).collect()
    } else {
        build_cols.into_iter().chain(probe_cols).collect()
    };
    let joined = RecordBatch::try_new(Arc::clone(&spec.joined_schema), columns)
        .map_err(|e| Error::Internal(format!("join output does not fit its schema: {e}")))?;
    let Some(f) = &spec.filter else {
        return Ok((joined, (0..pairs.probe.len()).collect()));
    };
    let mask = f.evaluate(&joined)?.into_array(joined.num_rows())?;
    if mask.data_type() != &DataType::Boolean {
        return Err(Error::plan(format!("join condition {f} is not boolean")));
    }
    let mask = mask.as_boolean();
    let kept = (0..joined.num_rows())
        .filter(|&i| mask.is_valid(i) && mask.value(i))
        .collect();
    Ok((
        datafusion::arrow::compute::filter_record_batch(&joined, mask)?,
        kept,
    ))
}

/// Left rows `rows` of `left` with null right columns.
pub(crate) fn pad_left(spec: &JoinSpec, left: &RecordBatch, rows: &[u32]) -> Result<RecordBatch> {
    let idx = UInt32Array::from(rows.to_vec());
    let mut columns: Vec<ArrayRef> = left
        .columns()
        .iter()
        .map(|c| take(c.as_ref(), &idx, None))
        .collect::<Result<_, _>>()?;
    for f in &spec.joined_schema.fields()[left.num_columns()..] {
        columns.push(new_null_array(f.data_type(), rows.len()));
    }
    RecordBatch::try_new(Arc::clone(&spec.joined_schema), columns)
        .map_err(|e| Error::Internal(format!("left join padding does not fit: {e}")))
}

/// The names of the two sides in a join's checkpoint state.
pub(crate) const SIDES: [&str; 2] = ["left", "right"];

/// The one batch a checkpoint holds under `name`: a missing or repeated batch means the state
/// is another operator's.
fn restored_batch<'a>(state: &'a OperatorState, name: &'a str) -> Result<&'a RecordBatch> {
    let mut found = state.batches_named(name);
    match (found.next(), found.next()) {
        (Some(b), None) => Ok(b),
        (None, _) => Err(Error::IncompatibleState(format!(
            "the checkpoint has no `{name}` join state; was the query changed?"
        ))),
        (Some(_), Some(_)) => Err(Error::IncompatibleState(format!(
            "the checkpoint has several `{name}` batches where a join keeps one"
        ))),
    }
}

/// Buffered rows restored from batch `name`, checked against `schema` and put back into it
/// (names, nullability), so that they look like rows that arrived.
pub(crate) fn restored_rows(
    state: &OperatorState,
    name: &str,
    schema: &SchemaRef,
) -> Result<RecordBatch> {
    let batch = restored_batch(state, name)?;
    expect_schema(batch, schema, name)?;
    let options = RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
    RecordBatch::try_new_with_options(Arc::clone(schema), batch.columns().to_vec(), &options)
        .map_err(|e| Error::IncompatibleState(format!("{name}: {e}")))
}

/// The one column of batch `name` (per-row bookkeeping): of type `data_type`, `rows` long and
/// without nulls.
pub(crate) fn restored_column(
    state: &OperatorState,
    name: &str,
    data_type: DataType,
    rows: usize,
) -> Result<ArrayRef> {
    let batch = restored_batch(state, name)?;
    expect_types(batch, &[data_type], name)?;
    let column = batch.column(0);
    if batch.num_rows() != rows || column.null_count() > 0 {
        return Err(Error::IncompatibleState(format!(
            "{name}: {} values ({} null) for {rows} buffered rows",
            batch.num_rows(),
            column.null_count()
        )));
    }
    Ok(Arc::clone(column))
}

/// Integer `name` of a checkpoint, which the join always writes.
pub(crate) fn restored_value(state: &OperatorState, name: &str) -> Result<i64> {
    state.value(name).ok_or_else(|| {
        Error::IncompatibleState(format!(
            "the checkpoint has no `{name}` join state; was the query changed?"
        ))
    })
}
