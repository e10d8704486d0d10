//! Update streams (Flink's changelog): batches whose last column, [`OP_COLUMN`], says what each
//! row does to the result: insert, retract its previous version, add its new version, delete.
//! Append-only streams have no such column. Sinks say whether they take updates
//! ([`crate::SinkFactory::accepts_updates`]); the planner refuses to send updates to one that
//! does not.

use std::collections::HashMap;

use datafusion::arrow::array::{AsArray, RecordBatch};
use datafusion::arrow::compute::{concat_batches, take_record_batch};
use datafusion::arrow::datatypes::{Int8Type, SchemaRef};
use datafusion::arrow::row::{RowConverter, SortField};

use crate::Result;

/// Name of the change-kind column of update streams.
pub const OP_COLUMN: &str = "__op";
/// `+I`: a new row.
pub const INSERT: i8 = 0;
/// `-U`: the previous version of an updated row.
pub const UPDATE_BEFORE: i8 = 1;
/// `+U`: the new version of an updated row.
pub const UPDATE_AFTER: i8 = 2;
/// `-D`: a removed row.
pub const DELETE: i8 = 3;

/// Whether batches of `schema` are an update stream.
pub fn is_update_stream(schema: &datafusion::arrow::datatypes::Schema) -> bool {
    schema
        .fields()
        .last()
        .is_some_and(|f| f.name() == OP_COLUMN)
}

/// The table an update stream describes once every change is applied, without the change
/// column (the rows of an append-only stream are returned as they are).
pub fn materialize(schema: &SchemaRef, batches: &[RecordBatch]) -> Result<RecordBatch> {
    let all = concat_batches(schema, batches)?;
    if !is_update_stream(schema) {
        return Ok(all);
    }
    let width = schema.fields().len() - 1;
    let data: Vec<_> = all.columns()[..width].to_vec();
    let converter = RowConverter::new(
        schema.fields()[..width]
            .iter()
            .map(|f| SortField::new(f.data_type().clone()))
            .collect(),
    )?;
    let rows = converter.convert_columns(&data)?;
    let ops = all.column(width).as_primitive::<Int8Type>();
    // Row bytes -> (count, a row index holding them).
    let mut live: HashMap<Vec<u8>, (i64, u32)> = HashMap::new();
    for i in 0..all.num_rows() {
        let entry = live
            .entry(rows.row(i).as_ref().to_vec())
            .or_insert((0, i as u32));
        match ops.value(i) {
            INSERT | UPDATE_AFTER => entry.0 += 1,
            _ => entry.0 -= 1,
        }
        entry.1 = i as u32;
    }
    let mut keep: Vec<u32> = Vec::new();
    for (count, row) in live.values() {
        for _ in 0..(*count).max(0) {
            keep.push(*row);
        }
    }
    keep.sort_unstable();
    let projected = all.project(&(0..width).collect::<Vec<_>>())?;
    Ok(take_record_batch(
        &projected,
        &datafusion::arrow::array::UInt32Array::from(keep),
    )?)
}
