//! Window assignment without aggregation: a window table function's rows, each with
//! `window_start`, `window_end` and `window_time` (a HOP row once per window it falls in).

use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, RecordBatch, TimestampMillisecondArray, UInt32Array,
};
use datafusion::arrow::compute::take;
use datafusion::arrow::datatypes::{DataType, SchemaRef};

use super::event_times;
use crate::metrics::OperatorMetrics;
use crate::operator::{Operator, OperatorContext, Output};
use crate::window::WindowSpec;
use crate::{Error, Result};

/// Appends window columns to every row (TUMBLE, HOP, CUMULATE).
#[derive(Clone, Debug)]
pub struct WindowAssign {
    spec: WindowSpec,
    time_column: usize,
    output_schema: SchemaRef,
    metrics: Option<Arc<OperatorMetrics>>,
}

impl WindowAssign {
    /// Assigns `spec` windows by column `time_column`; `output_schema` is the input's plus
    /// the three window columns.
    pub fn new(spec: WindowSpec, time_column: usize, output_schema: SchemaRef) -> Result<Self> {
        if matches!(spec, WindowSpec::Session { .. }) {
            return Err(Error::plan(
                "SESSION windows can only be aggregated (GROUP BY window_start, window_end)",
            ));
        }
        Ok(WindowAssign {
            spec,
            time_column,
            output_schema,
            metrics: None,
        })
    }
}

impl Operator for WindowAssign {
    fn start(&mut self, ctx: &OperatorContext) -> Result<()> {
        self.metrics = Some(Arc::clone(&ctx.metrics));
        Ok(())
    }

    fn process_batch(&mut self, _input: usize, batch: RecordBatch, out: &mut Output) -> Result<()> {
        let ts = event_times(batch.column(self.time_column))?;
        let mut rows = Vec::with_capacity(batch.num_rows());
        let (mut starts, mut ends) = (
            Vec::with_capacity(batch.num_rows()),
            Vec::with_capacity(batch.num_rows()),
        );
        for i in 0..batch.num_rows() {
            if ts.is_null(i) {
                continue;
            }
            for w in self.spec.assign(ts.value(i)) {
                rows.push(i as u32);
                starts.push(w.start);
                ends.push(w.end);
            }
        }
        let without_time = batch.num_rows() - ts.len() + ts.null_count();
        if without_time > 0
            && let Some(m) = &self.metrics
        {
            // Rows without an event time belong to no window: counted, never silent.
            m.late(without_time);
        }
        let mut columns: Vec<ArrayRef> = if rows.len() == batch.num_rows()
            && rows.iter().enumerate().all(|(i, r)| *r as usize == i)
        {
            batch.columns().to_vec()
        } else {
            let idx = UInt32Array::from(rows);
            batch
                .columns()
                .iter()
                .map(|c| take(c.as_ref(), &idx, None))
                .collect::<Result<_, _>>()?
        };
        let tz = match self
            .output_schema
            .field(self.output_schema.fields().len() - 1)
            .data_type()
        {
            DataType::Timestamp(_, tz) => tz.clone(),
            _ => None,
        };
        let times: Vec<i64> = ends.iter().map(|e: &i64| e.saturating_sub(1)).collect();
        for v in [starts, ends, times] {
            columns.push(Arc::new(
                TimestampMillisecondArray::from(v).with_timezone_opt(tz.clone()),
            ));
        }
        out.emit(RecordBatch::try_new(
            Arc::clone(&self.output_schema),
            columns,
        )?);
        Ok(())
    }
}
