//! Window aggregates: `TUMBLE`, `HOP`, `CUMULATE` and `SESSION` windows with any DataFusion
//! aggregate function, fired when the watermark passes a window's end plus the allowed
//! lateness. Rows too late for every window they belong to are counted and, if configured,
//! sent to a side output; they never vanish silently.
//!
//! Output rows: `window_start`, `window_end`, `window_time` (the last millisecond inside the
//! window, Flink's rowtime of a window result), then the group keys, then one column per
//! aggregate.

mod assign;
#[cfg(test)]
mod checkpoint_tests;
mod groups;
mod panes;
mod sessions;

use std::sync::Arc;
use std::time::{Duration, Instant};

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, PrimitiveArray, TimestampMillisecondArray,
};
use datafusion::arrow::compute::{cast, filter, filter_record_batch};
use datafusion::arrow::datatypes::{DataType, SchemaRef, TimeUnit, TimestampMillisecondType};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::physical_expr::PhysicalExpr;

pub use assign::WindowAssign;
pub use groups::AggregateSpec;
use groups::{Aggregates, Inputs};
pub(crate) use groups::{
    Columns, StateLayout, accumulators, copy_states, drain_keys, restore_states,
};
use panes::{Bounds, Fired, Panes};
use sessions::Sessions;

use crate::message::Barrier;
use crate::metrics::OperatorMetrics;
use crate::operator::{Operator, OperatorContext, OperatorFactory, Output};
use crate::state::OperatorState;
use crate::window::WindowSpec;
use crate::{Error, Result};

/// Output port of late rows.
pub const LATE_PORT: usize = 1;

/// Everything a window aggregate subtask needs, built by the planner.
#[derive(Clone, Debug)]
pub struct WindowAggregateConfig {
    /// The windows.
    pub spec: WindowSpec,
    /// Index of the event-time column in the input (a timestamp, or `Int64` milliseconds).
    pub time_column: usize,
    /// Group keys, over the input schema.
    pub keys: Vec<Arc<dyn PhysicalExpr>>,
    /// Schema of the key columns, as they appear in the output.
    pub key_schema: SchemaRef,
    /// The aggregates.
    pub aggregates: Vec<AggregateSpec>,
    /// Output schema: window bounds, keys, aggregates.
    pub output_schema: SchemaRef,
    /// Extra milliseconds to wait for late rows after the watermark passes a window's end.
    pub allowed_lateness: i64,
    /// Whether late rows go to output port [`LATE_PORT`] (as input rows); otherwise they are
    /// only counted.
    pub late_output: bool,
    /// Emit the current values of open windows at most this often (processing time) while
    /// rows arrive; later emissions of a window replace earlier ones.
    pub early_fire: Option<Duration>,
}

/// Makes window aggregate subtasks.
#[derive(Debug)]
pub struct WindowAggregateFactory(pub WindowAggregateConfig);

impl OperatorFactory for WindowAggregateFactory {
    fn create(&self, _subtask: usize, _parallelism: usize) -> Result<Box<dyn Operator>> {
        Ok(Box::new(WindowAggregate::new(self.0.clone())?))
    }
}

#[derive(Debug)]
enum State {
    Panes(Panes),
    Sessions(Sessions),
}

/// One subtask of a window aggregate.
#[derive(Debug)]
pub struct WindowAggregate {
    config: WindowAggregateConfig,
    aggs: Aggregates,
    /// Column types of checkpointed keys and aggregate states.
    layout: StateLayout,
    state: State,
    watermark: Option<i64>,
    /// When the last early results went out (the first batch starts the clock).
    last_early: Option<Instant>,
    /// Rows arrived since the last early results.
    changed: bool,
    metrics: Option<Arc<OperatorMetrics>>,
    context: String,
}

/// Event times of a column as epoch milliseconds (nulls kept).
pub fn event_times(column: &ArrayRef) -> Result<PrimitiveArray<TimestampMillisecondType>> {
    let ms = match column.data_type() {
        DataType::Timestamp(TimeUnit::Millisecond, _) => Arc::clone(column),
        DataType::Timestamp(_, _) | DataType::Int64 | DataType::Date32 | DataType::Date64 => {
            cast(column, &DataType::Timestamp(TimeUnit::Millisecond, None))?
        }
        other => {
            return Err(Error::plan(format!(
                "an event-time column must be a timestamp or BIGINT milliseconds, not {other}"
            )));
        }
    };
    Ok(TimestampMillisecondArray::new(
        ms.as_primitive::<TimestampMillisecondType>()
            .values()
            .clone(),
        ms.nulls().cloned(),
    ))
}

impl WindowAggregate {
    /// A subtask with empty state.
    pub fn new(config: WindowAggregateConfig) -> Result<Self> {
        config
            .spec
            .validate()
            .map_err(|e| Error::plan(e.to_string()))?;
        let aggs = Aggregates {
            keys: config.keys.clone(),
            key_schema: Arc::clone(&config.key_schema),
            specs: config.aggregates.clone(),
        };
        let state = match config.spec {
            WindowSpec::Session { gap } => State::Sessions(Sessions::new(gap, &aggs)?),
            spec => State::Panes(Panes::new(spec)),
        };
        let layout = StateLayout::new(&config.key_schema, &config.aggregates)?;
        Ok(WindowAggregate {
            config,
            aggs,
            layout,
            state,
            watermark: None,
            last_early: None,
            changed: false,
            metrics: None,
            context: "window aggregate".into(),
        })
    }

    /// Every window ending at or before this has fired (or may fire now).
    fn horizon(&self, watermark: i64) -> i64 {
        watermark
            .saturating_add(1)
            .saturating_sub(self.config.allowed_lateness)
    }

    /// Late rows of pane-based windows: no time, or the last window holding them has fired.
    fn late_mask(&self, panes: &Panes, ts: &TimestampMillisecondArray) -> Option<BooleanArray> {
        let horizon = self.watermark.map(|wm| self.horizon(wm));
        if ts.null_count() == 0 {
            // Lateness grows as time falls: if the oldest row is on time, all are.
            let oldest = datafusion::arrow::compute::min(ts)?;
            if horizon.is_none_or(|h| !panes.is_late(oldest, h)) {
                return None;
            }
        }
        let late: BooleanArray = (0..ts.len())
            .map(|i| Some(ts.is_null(i) || horizon.is_some_and(|h| panes.is_late(ts.value(i), h))))
            .collect();
        (late.true_count() > 0).then_some(late)
    }

    /// Counts late rows and sends them to the side output if configured.
    fn route_late(&self, batch: &RecordBatch, late: &BooleanArray, out: &mut Output) -> Result<()> {
        crate::ops::route_late(
            self.metrics.as_deref(),
            self.config.late_output.then_some(LATE_PORT),
            late.true_count(),
            || Ok(filter_record_batch(batch, late)?),
            out,
        )
    }

    fn emit(&self, fired: Vec<Fired>, out: &mut Output) -> Result<()> {
        let tz = match self
            .config
            .output_schema
            .fields()
            .first()
            .map(|f| f.data_type())
        {
            Some(DataType::Timestamp(_, tz)) => tz.clone(),
            _ => None,
        };
        for f in fired {
            let (starts, ends): (Vec<i64>, Vec<i64>) = match f.bounds {
                Bounds::One(w) => (vec![w.start; f.rows], vec![w.end; f.rows]),
                Bounds::PerRow(s, e) => (s, e),
            };
            let times: Vec<i64> = ends.iter().map(|e| e.saturating_sub(1)).collect();
            let ts = |v: Vec<i64>| -> ArrayRef {
                Arc::new(TimestampMillisecondArray::from(v).with_timezone_opt(tz.clone()))
            };
            let mut columns = vec![ts(starts), ts(ends), ts(times)];
            columns.extend(f.keys);
            columns.extend(f.values);
            let batch = RecordBatch::try_new(Arc::clone(&self.config.output_schema), columns)
                .map_err(|e| {
                    Error::Internal(format!("{}: window output does not fit: {e}", self.context))
                })?;
            out.emit(batch);
        }
        Ok(())
    }
}

impl WindowAggregate {
    /// Emits current values of open windows if early firing is due.
    fn fire_early(&mut self, out: &mut Output) -> Result<()> {
        if let Some(every) = self.config.early_fire
            && self.changed
            && self.last_early.get_or_insert_with(Instant::now).elapsed() >= every
        {
            self.changed = false;
            self.last_early = Some(Instant::now());
            if let State::Panes(p) = &mut self.state {
                let current = p.peek(&self.aggs)?;
                self.emit(current, out)?;
            }
        }
        Ok(())
    }
}

/// Names of the window aggregate's checkpoint values.
const SPEC: [&str; 3] = ["window_kind", "window_a", "window_b"];
const WATERMARK: &str = "watermark";
const EARLY_CHANGED: &str = "early_changed";
const EARLY_STARTED: &str = "early_started";

/// The window spec as three integers, to refuse state of other windows.
fn spec_values(spec: WindowSpec) -> [i64; 3] {
    match spec {
        WindowSpec::Tumble { size, offset } => [0, size, offset],
        WindowSpec::Hop { size, slide } => [1, size, slide],
        WindowSpec::Cumulate { step, max } => [2, step, max],
        WindowSpec::Session { gap } => [3, gap, 0],
    }
}

impl Operator for WindowAggregate {
    /// State: the window spec, the watermark, whether rows arrived since the last early
    /// results, and the panes (with what has fired) or the open sessions.
    fn checkpoint(&mut self, _barrier: &Barrier) -> Result<Option<OperatorState>> {
        let mut state = OperatorState::new();
        for (name, v) in SPEC.iter().zip(spec_values(self.config.spec)) {
            state.put_value(*name, v);
        }
        if let Some(wm) = self.watermark {
            state.put_value(WATERMARK, wm);
        }
        state.put_value(EARLY_CHANGED, i64::from(self.changed));
        state.put_value(EARLY_STARTED, i64::from(self.last_early.is_some()));
        match &mut self.state {
            State::Panes(p) => p.checkpoint(&self.layout, &mut state)?,
            State::Sessions(s) => s.checkpoint(&self.layout, &self.aggs.specs, &mut state)?,
        }
        Ok(Some(state))
    }

    fn restore(&mut self, state: OperatorState) -> Result<()> {
        let expected = spec_values(self.config.spec);
        let found = SPEC.map(|name| state.value(name));
        if found != expected.map(Some) {
            return Err(Error::IncompatibleState(format!(
                "window state: the checkpoint holds windows {found:?} (kind, sizes), this job \
                 has {expected:?}; was the query changed?"
            )));
        }
        match &mut self.state {
            State::Panes(p) => p.restore(&state, &self.layout, &self.aggs)?,
            State::Sessions(s) => s.restore(&state, &self.layout, &self.aggs.specs)?,
        }
        self.watermark = state.value(WATERMARK);
        self.changed = state.value(EARLY_CHANGED).is_some_and(|v| v != 0);
        // Processing time does not survive a restart: results held back before it are due at
        // the first timer.
        let now = Instant::now();
        let due = self
            .config
            .early_fire
            .and_then(|every| now.checked_sub(every))
            .unwrap_or(now);
        self.last_early = state
            .value(EARLY_STARTED)
            .is_some_and(|v| v != 0)
            .then_some(due);
        Ok(())
    }

    fn timer_interval(&self) -> Option<Duration> {
        self.config.early_fire
    }

    fn on_timer(&mut self, out: &mut Output) -> Result<()> {
        if self.last_early.is_some() {
            self.fire_early(out)?;
        }
        Ok(())
    }

    fn start(&mut self, ctx: &OperatorContext) -> Result<()> {
        self.metrics = Some(Arc::clone(&ctx.metrics));
        self.context = ctx.describe();
        Ok(())
    }

    fn process_batch(&mut self, _input: usize, batch: RecordBatch, out: &mut Output) -> Result<()> {
        let batch_rows = batch.num_rows();
        let column = batch.column(self.config.time_column);
        let ts = event_times(column)?;
        let horizon = self.watermark.map(|wm| self.horizon(wm));
        match &self.state {
            State::Sessions(_) => {
                let inputs: Inputs = self.aggs.inputs(&batch)?;
                let late = match &mut self.state {
                    State::Sessions(s) => s.add(&ts, inputs, horizon)?,
                    State::Panes(_) => None,
                };
                if let Some(late) = late {
                    self.route_late(&batch, &late, out)?;
                }
            }
            State::Panes(p) => {
                let (batch, ts) = match self.late_mask(p, &ts) {
                    None => (batch, ts),
                    Some(late) => {
                        self.route_late(&batch, &late, out)?;
                        let keep = datafusion::arrow::compute::not(&late)?;
                        let ts = filter(&ts, &keep)?
                            .as_primitive::<TimestampMillisecondType>()
                            .clone();
                        (filter_record_batch(&batch, &keep)?, ts)
                    }
                };
                if batch.num_rows() > 0 {
                    let inputs: Inputs = self.aggs.inputs(&batch)?;
                    if let State::Panes(p) = &mut self.state {
                        p.add(ts.values(), inputs, &self.aggs)?;
                    }
                }
            }
        }
        self.changed |= batch_rows > 0;
        self.fire_early(out)?;
        Ok(())
    }

    fn process_watermark(&mut self, watermark: i64, out: &mut Output) -> Result<Option<i64>> {
        // Results of windows fired within the allowed lateness are that much older than the
        // watermark: hold it back so they are not late downstream.
        let forward = watermark.saturating_sub(self.config.allowed_lateness);
        if self.watermark.is_some_and(|w| w >= watermark) {
            return Ok(Some(forward));
        }
        self.watermark = Some(watermark);
        let horizon = self.horizon(watermark);
        let fired = match &mut self.state {
            State::Panes(p) => p.fire(horizon, &self.aggs)?,
            State::Sessions(s) => s.fire(horizon, &self.aggs)?.into_iter().collect(),
        };
        self.emit(fired, out)?;
        Ok(Some(forward))
    }

    fn close(&mut self, out: &mut Output) -> Result<()> {
        // A bounded input ends with the final watermark, which fired everything; this covers
        // inputs that ended without one.
        self.process_watermark(i64::MAX, out).map(|_| ())
    }
}
