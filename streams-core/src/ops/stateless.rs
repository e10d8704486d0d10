//! Operators without state: each batch in gives at most one batch out.

use std::sync::Arc;

use datafusion::arrow::array::AsArray;
use datafusion::arrow::compute::filter_record_batch;
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::physical_expr::PhysicalExpr;

use crate::operator::{Operator, Output};
use crate::{Error, Result};

/// Keeps the rows for which a predicate is true (null counts as false, as in SQL).
#[derive(Clone, Debug)]
pub struct Filter {
    predicate: Arc<dyn PhysicalExpr>,
}

impl Filter {
    /// A filter on `predicate`, a boolean expression over the input schema.
    pub fn new(predicate: Arc<dyn PhysicalExpr>) -> Self {
        Filter { predicate }
    }
}

impl Operator for Filter {
    fn process_batch(&mut self, _input: usize, batch: RecordBatch, out: &mut Output) -> Result<()> {
        let mask = self
            .predicate
            .evaluate(&batch)?
            .into_array(batch.num_rows())?;
        if mask.data_type() != &DataType::Boolean {
            return Err(Error::plan(format!(
                "filter predicate {} is {}, not a boolean",
                self.predicate,
                mask.data_type()
            )));
        }
        let mask = mask.as_boolean();
        if mask.true_count() == batch.num_rows() {
            out.emit(batch);
        } else {
            out.emit(filter_record_batch(&batch, mask)?);
        }
        Ok(())
    }
}

/// Computes one output column per expression.
#[derive(Clone, Debug)]
pub struct Projection {
    exprs: Vec<Arc<dyn PhysicalExpr>>,
    schema: SchemaRef,
}

impl Projection {
    /// A projection producing `schema`, one expression per field.
    pub fn new(exprs: Vec<Arc<dyn PhysicalExpr>>, schema: SchemaRef) -> Self {
        Projection { exprs, schema }
    }
}

impl Operator for Projection {
    fn process_batch(&mut self, _input: usize, batch: RecordBatch, out: &mut Output) -> Result<()> {
        let columns = self
            .exprs
            .iter()
            .map(|e| e.evaluate(&batch)?.into_array(batch.num_rows()))
            .collect::<Result<Vec<_>, _>>()?;
        let options = datafusion::arrow::record_batch::RecordBatchOptions::new()
            .with_row_count(Some(batch.num_rows()));
        out.emit(RecordBatch::try_new_with_options(
            Arc::clone(&self.schema),
            columns,
            &options,
        )?);
        Ok(())
    }
}

/// Merges several inputs of one schema into one stream (SQL's `UNION ALL`).
#[derive(Clone, Debug)]
pub struct Union {
    schema: SchemaRef,
}

impl Union {
    /// A union producing `schema` (the inputs' columns in order, under the first input's names).
    pub fn new(schema: SchemaRef) -> Self {
        Union { schema }
    }
}

impl Operator for Union {
    fn process_batch(&mut self, input: usize, batch: RecordBatch, out: &mut Output) -> Result<()> {
        let renamed = RecordBatch::try_new(Arc::clone(&self.schema), batch.columns().to_vec())
            .map_err(|e| Error::plan(format!("union input {input} does not match: {e}")))?;
        out.emit(renamed);
        Ok(())
    }
}
