//! The window join: both sides assigned to the same `TUMBLE`, `HOP` or `CUMULATE` windows;
//! when the watermark passes a window's end (plus lateness) its rows are joined on the keys.
//! Output: `window_start`, `window_end`, the left columns, the right columns.

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, Int64Array, RecordBatch, TimestampMillisecondArray, UInt32Array,
};
use datafusion::arrow::compute::{concat_batches, take_record_batch};
use datafusion::arrow::datatypes::{DataType, Int64Type, SchemaRef};
use datafusion::arrow::row::RowConverter;

use super::{
    Indexed, JoinSpec, JoinType, Pairs, SIDES, assemble, converter, key_rows, pad_left,
    restored_column, restored_rows, restored_value,
};
use crate::message::Barrier;
use crate::metrics::OperatorMetrics;
use crate::operator::{Operator, OperatorContext, OperatorFactory, Output};
use crate::ops::window::{LATE_PORT, event_times};
use crate::state::{OperatorState, columns_batch};
use crate::window::WindowSpec;
use crate::{Error, Result};

/// A window join, as the planner builds it.
#[derive(Clone, Debug)]
pub struct WindowJoinConfig {
    /// Keys, residual condition, join type, joined schema.
    pub join: JoinSpec,
    /// The windows (not SESSION); `None` when both inputs already carry their windows (rows
    /// out of a window table function): then `left_time` and `right_time` are the inputs'
    /// `window_end` columns and the output has no window columns of its own.
    pub window: Option<WindowSpec>,
    /// Event-time column of the left input (or its `window_end`).
    pub left_time: usize,
    /// Event-time column of the right input (or its `window_end`).
    pub right_time: usize,
    /// Schemas of the two inputs.
    pub input_schemas: [SchemaRef; 2],
    /// `window_start`, `window_end`, then the joined columns.
    pub output_schema: SchemaRef,
    /// Extra wait for late rows after a window's end, ms.
    pub allowed_lateness: i64,
    /// Whether late rows go to side outputs, as they came: left rows to port [`LATE_PORT`],
    /// right rows to the port after it.
    pub late_output: bool,
}

impl OperatorFactory for WindowJoinConfig {
    fn create(&self, _subtask: usize, _parallelism: usize) -> Result<Box<dyn Operator>> {
        Ok(Box::new(WindowJoin::new(self.clone())?))
    }
}

/// One subtask of a window join.
#[derive(Debug)]
pub struct WindowJoin {
    config: WindowJoinConfig,
    converter: RowConverterDebug,
    /// Per window end: rows of the left and right inputs.
    windows: BTreeMap<i64, [Vec<RecordBatch>; 2]>,
    horizon: i64,
    metrics: Option<Arc<OperatorMetrics>>,
}

struct RowConverterDebug(RowConverter);

impl std::fmt::Debug for RowConverterDebug {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RowConverter")
    }
}

impl WindowJoin {
    /// A subtask with no rows yet.
    pub fn new(config: WindowJoinConfig) -> Result<Self> {
        if matches!(config.window, Some(WindowSpec::Session { .. })) {
            return Err(Error::plan(
                "a window join needs TUMBLE, HOP or CUMULATE windows",
            ));
        }
        let converter = converter(&config.join.left_keys, &config.input_schemas[0])?;
        Ok(WindowJoin {
            config,
            converter: RowConverterDebug(converter),
            windows: BTreeMap::new(),
            horizon: i64::MIN,
            metrics: None,
        })
    }

    fn fire(&mut self, horizon: i64, out: &mut Output) -> Result<()> {
        let later = self.windows.split_off(&(horizon.saturating_add(1)));
        let ready = std::mem::replace(&mut self.windows, later);
        for (end, [left, right]) in ready {
            let Some(window) = self.config.window else {
                if !left.is_empty() {
                    let joined = self.join_window(left, right)?;
                    out.emit(joined);
                }
                continue;
            };
            let start = match window {
                WindowSpec::Cumulate { max, .. } => {
                    let last = end.saturating_sub(1);
                    last.saturating_sub(last.rem_euclid(max))
                }
                WindowSpec::Tumble { size, .. } | WindowSpec::Hop { size, .. } => {
                    end.saturating_sub(size)
                }
                WindowSpec::Session { gap } => end.saturating_sub(gap),
            };
            if left.is_empty() {
                continue;
            }
            let joined = self.join_window(left, right)?;
            out.emit(self.with_bounds(start, end, joined)?);
        }
        Ok(())
    }

    fn join_window(&self, left: Vec<RecordBatch>, right: Vec<RecordBatch>) -> Result<RecordBatch> {
        let spec = &self.config.join;
        let left = concat_batches(&self.config.input_schemas[0], &left)?;
        let mut build = Indexed::default();
        for b in right {
            let keys = key_rows(&self.converter.0, &spec.right_keys, &b)?;
            build.insert(b, keys);
        }
        let probe_keys = key_rows(&self.converter.0, &spec.left_keys, &left)?;
        let mut pairs = Pairs::default();
        build.probe(&probe_keys, |i, at| pairs.push(i, at));
        let (joined, kept) = assemble(spec, &left, &build, &pairs, true)?;
        if spec.join_type == JoinType::Inner {
            return Ok(joined);
        }
        let mut matched = vec![false; left.num_rows()];
        for k in kept {
            matched[pairs.probe[k] as usize] = true;
        }
        let lonely: Vec<u32> = (0..left.num_rows() as u32)
            .filter(|&i| !matched[i as usize])
            .collect();
        if lonely.is_empty() {
            return Ok(joined);
        }
        let padded = pad_left(spec, &left, &lonely)?;
        Ok(concat_batches(&spec.joined_schema, [&joined, &padded])?)
    }

    fn with_bounds(&self, start: i64, end: i64, joined: RecordBatch) -> Result<RecordBatch> {
        let n = joined.num_rows();
        let tz = match self.config.output_schema.field(0).data_type() {
            DataType::Timestamp(_, tz) => tz.clone(),
            _ => None,
        };
        let ts = |v: i64| -> ArrayRef {
            Arc::new(TimestampMillisecondArray::from(vec![v; n]).with_timezone_opt(tz.clone()))
        };
        let mut columns = vec![ts(start), ts(end)];
        columns.extend(joined.columns().iter().cloned());
        RecordBatch::try_new(Arc::clone(&self.config.output_schema), columns)
            .map_err(|e| Error::Internal(format!("window join output does not fit: {e}")))
    }
}

impl Operator for WindowJoin {
    fn start(&mut self, ctx: &OperatorContext) -> Result<()> {
        self.metrics = Some(Arc::clone(&ctx.metrics));
        Ok(())
    }

    fn process_batch(&mut self, input: usize, batch: RecordBatch, out: &mut Output) -> Result<()> {
        let side = input.min(1);
        let column = if side == 0 {
            self.config.left_time
        } else {
            self.config.right_time
        };
        let ts = event_times(batch.column(column))?;
        let mut rows: BTreeMap<i64, Vec<u32>> = BTreeMap::new();
        let mut late = Vec::new();
        for i in 0..batch.num_rows() {
            let mut placed = false;
            if ts.is_valid(i) {
                match self.config.window {
                    Some(spec) => {
                        for w in spec.assign(ts.value(i)) {
                            if w.end > self.horizon {
                                rows.entry(w.end).or_default().push(i as u32);
                                placed = true;
                            }
                        }
                    }
                    None => {
                        let end = ts.value(i);
                        if end > self.horizon {
                            rows.entry(end).or_default().push(i as u32);
                            placed = true;
                        }
                    }
                }
            }
            if !placed {
                late.push(i as u32);
            }
        }
        crate::ops::route_late(
            self.metrics.as_deref(),
            self.config.late_output.then_some(LATE_PORT + side),
            late.len(),
            || Ok(take_record_batch(&batch, &UInt32Array::from(late))?),
            out,
        )?;
        for (end, idx) in rows {
            let part = if idx.len() == batch.num_rows() {
                batch.clone()
            } else {
                take_record_batch(&batch, &UInt32Array::from(idx))?
            };
            self.windows.entry(end).or_default()[side].push(part);
        }
        Ok(())
    }

    fn process_watermark(&mut self, watermark: i64, out: &mut Output) -> Result<Option<i64>> {
        let forward = watermark.saturating_sub(self.config.allowed_lateness);
        let horizon = watermark
            .saturating_add(1)
            .saturating_sub(self.config.allowed_lateness);
        if horizon > self.horizon {
            self.horizon = horizon;
            self.fire(horizon, out)?;
        }
        Ok(Some(forward))
    }

    /// State: per side, the rows of every pending window in one batch (`left`, `right`; a row
    /// in several windows appears once per window), their window ends (`left.window_end`,
    /// `right.window_end`), and the firing horizon (`horizon`).
    fn checkpoint(&mut self, _barrier: &Barrier) -> Result<Option<OperatorState>> {
        let mut state = OperatorState::new();
        state.put_value(HORIZON, self.horizon);
        for (side, name) in SIDES.into_iter().enumerate() {
            let mut ends: Vec<i64> = Vec::new();
            let mut parts: Vec<&RecordBatch> = Vec::new();
            for (end, sides) in &self.windows {
                for b in &sides[side] {
                    ends.extend(std::iter::repeat_n(*end, b.num_rows()));
                    parts.push(b);
                }
            }
            let rows = concat_batches(&self.config.input_schemas[side], parts)?;
            let n = ends.len();
            state.put_batch(name, rows);
            state.put_batch(
                format!("{name}.window_end"),
                columns_batch(vec![Arc::new(Int64Array::from(ends))], n)?,
            );
        }
        Ok(Some(state))
    }

    fn restore(&mut self, state: OperatorState) -> Result<()> {
        let horizon = restored_value(&state, HORIZON)?;
        let mut windows: BTreeMap<i64, [Vec<RecordBatch>; 2]> = BTreeMap::new();
        for (side, name) in SIDES.into_iter().enumerate() {
            let rows = restored_rows(&state, name, &self.config.input_schemas[side])?;
            let n = rows.num_rows();
            let ends = restored_column(&state, &format!("{name}.window_end"), DataType::Int64, n)?;
            let ends = ends.as_primitive::<Int64Type>().values();
            // Rows of one window were written together: each run becomes one slice.
            let mut start = 0;
            while start < n {
                let end = ends[start];
                let len = ends[start..].iter().take_while(|e| **e == end).count();
                windows.entry(end).or_default()[side].push(rows.slice(start, len));
                start += len;
            }
        }
        self.windows = windows;
        self.horizon = horizon;
        Ok(())
    }

    fn close(&mut self, out: &mut Output) -> Result<()> {
        self.process_watermark(i64::MAX, out).map(|_| ())
    }
}

/// State name of the firing horizon (windows ending at or before it have fired).
const HORIZON: &str = "horizon";
