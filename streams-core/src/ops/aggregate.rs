//! The unbounded aggregate (`GROUP BY` without a window): one running result per key, emitted
//! as an update stream. Each emission (every `emit_interval` of processing time while rows
//! arrive, at each watermark, and at the end) sends, for every key that changed since the last
//! one, `+I` for a new key or `-U` (the previous result) and `+U` (the new one).
//!
//! Update streams carry the change kind in a last column, [`OP_COLUMN`] (`Int8`): see
//! [`crate::changelog`].

use std::sync::Arc;
use std::time::{Duration, Instant};

use datafusion::arrow::array::{Array, ArrayRef, Int8Array, RecordBatch, UInt32Array};
use datafusion::arrow::compute::take;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::logical_expr::{EmitTo, GroupsAccumulator};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::aggregates::group_values::{GroupValues, new_group_values};
use datafusion::physical_plan::aggregates::order::GroupOrdering;

use super::window::{AggregateSpec, accumulators};
use crate::changelog::{DELETE, INSERT, UPDATE_AFTER, UPDATE_BEFORE};
use crate::operator::{Operator, OperatorFactory, Output};
use crate::{Error, Result};

pub use crate::changelog::OP_COLUMN;

/// An unbounded aggregate, as the planner builds it.
#[derive(Clone, Debug)]
pub struct UnboundedAggregateConfig {
    /// Group keys over the input.
    pub keys: Vec<Arc<dyn PhysicalExpr>>,
    /// Schema of the key columns.
    pub key_schema: SchemaRef,
    /// The aggregates.
    pub aggregates: Vec<AggregateSpec>,
    /// Keys, aggregates, then [`OP_COLUMN`].
    pub output_schema: SchemaRef,
    /// Longest wait, while rows arrive, before changed results go out.
    pub emit_interval: Duration,
    /// Whether the last aggregate counts each group's rows (over an update stream): a group
    /// whose count falls to 0 is deleted, and inserted again if rows come back.
    pub counts_rows: bool,
}

impl OperatorFactory for UnboundedAggregateConfig {
    fn create(&self, _subtask: usize, _parallelism: usize) -> Result<Box<dyn Operator>> {
        Ok(Box::new(UnboundedAggregate::new(self.clone())?))
    }
}

/// One subtask of an unbounded aggregate.
pub struct UnboundedAggregate {
    config: UnboundedAggregateConfig,
    values: Option<Box<dyn GroupValues>>,
    accs: Vec<Box<dyn GroupsAccumulator>>,
    groups: usize,
    /// Results as last emitted, one entry per group then known.
    last: Vec<ArrayRef>,
    /// Whether each group's last emitted result is in the output table.
    present: Vec<bool>,
    touched: Vec<bool>,
    any_touched: bool,
    last_emit: Instant,
    scratch: Vec<usize>,
}

impl std::fmt::Debug for UnboundedAggregate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UnboundedAggregate")
            .field("groups", &self.groups)
            .finish_non_exhaustive()
    }
}

impl UnboundedAggregate {
    /// A subtask with no groups.
    pub fn new(config: UnboundedAggregateConfig) -> Result<Self> {
        let values = if config.key_schema.fields().is_empty() {
            None
        } else {
            Some(new_group_values(
                Arc::clone(&config.key_schema),
                &GroupOrdering::None,
            )?)
        };
        let accs = accumulators(&config.aggregates)?;
        Ok(UnboundedAggregate {
            config,
            values,
            accs,
            groups: 0,
            last: Vec::new(),
            present: Vec::new(),
            touched: Vec::new(),
            any_touched: false,
            last_emit: Instant::now(),
            scratch: Vec::new(),
        })
    }

    /// Emits the changes since the last emission.
    fn emit(&mut self, out: &mut Output) -> Result<()> {
        self.last_emit = Instant::now();
        if !self.any_touched {
            return Ok(());
        }
        let g = self.groups;
        let all: Vec<usize> = (0..g).collect();
        // Keys in group order; interning them again gives the same ids.
        let keys = match &mut self.values {
            Some(v) => {
                let keys = super::window::drain_keys(v.as_mut())?;
                let mut ids = Vec::new();
                v.intern(&keys, &mut ids)?;
                keys
            }
            None => Vec::new(),
        };
        // Current results without losing the running state: detach it, put it back, and
        // evaluate a copy.
        let mut current = Vec::with_capacity(self.accs.len());
        let mut restored = accumulators(&self.config.aggregates)?;
        let mut eval = accumulators(&self.config.aggregates)?;
        for ((acc, back), copy) in self.accs.iter_mut().zip(&mut restored).zip(&mut eval) {
            let state = acc.state(EmitTo::All)?;
            back.merge_batch(&state, &all, g)?;
            copy.merge_batch(&state, &all, g)?;
            current.push(copy.evaluate(EmitTo::All)?);
        }
        self.accs = restored;
        let rows = match (self.config.counts_rows, current.last()) {
            (true, Some(c)) => Some(datafusion::arrow::compute::cast(
                c,
                &datafusion::arrow::datatypes::DataType::Int64,
            )?),
            _ => None,
        };
        let rows = rows.as_ref().map(|c| {
            datafusion::arrow::array::AsArray::as_primitive::<
                datafusion::arrow::datatypes::Int64Type,
            >(c.as_ref())
            .clone()
        });
        self.present.resize(g, false);
        let (mut before, mut inserted, mut deleted) = (Vec::new(), Vec::new(), Vec::new());
        for (id, t) in self.touched.iter().enumerate() {
            if !*t {
                continue;
            }
            let now = rows
                .as_ref()
                .is_none_or(|c| c.is_valid(id) && c.value(id) > 0);
            match (self.present[id], now) {
                (true, true) => before.push(id as u32),
                (false, true) => inserted.push(id as u32),
                (true, false) => deleted.push(id as u32),
                (false, false) => {}
            }
            self.present[id] = now;
        }
        // As Flink does, a group whose results did not change emits nothing.
        let before: Vec<u32> = if before.is_empty() {
            before
        } else {
            let compared = current.len() - usize::from(self.config.counts_rows);
            let changed = changed_rows(&before, &self.last[..compared], &current[..compared])?;
            before
                .iter()
                .zip(changed)
                .filter_map(|(id, c)| c.then_some(*id))
                .collect()
        };
        let mut parts: Vec<RecordBatch> = Vec::new();
        let schema = Arc::clone(&self.config.output_schema);
        let build = |ids: &[u32], values: &[ArrayRef], op: i8| -> Result<RecordBatch> {
            let idx = UInt32Array::from(ids.to_vec());
            let mut columns: Vec<ArrayRef> = keys
                .iter()
                .map(|k| take(k.as_ref(), &idx, None))
                .collect::<Result<_, _>>()?;
            for v in values {
                columns.push(take(v.as_ref(), &idx, None)?);
            }
            columns.push(Arc::new(Int8Array::from(vec![op; ids.len()])));
            RecordBatch::try_new(Arc::clone(&schema), columns)
                .map_err(|e| Error::Internal(format!("update output does not fit: {e}")))
        };
        if !before.is_empty() {
            parts.push(build(&before, &self.last, UPDATE_BEFORE)?);
            parts.push(build(&before, &current, UPDATE_AFTER)?);
        }
        if !inserted.is_empty() {
            parts.push(build(&inserted, &current, INSERT)?);
        }
        if !deleted.is_empty() {
            parts.push(build(&deleted, &self.last, DELETE)?);
        }
        for p in parts {
            out.emit(p);
        }
        self.last = current;
        self.touched = vec![false; g];
        self.any_touched = false;
        Ok(())
    }
}

impl Operator for UnboundedAggregate {
    fn process_batch(&mut self, _input: usize, batch: RecordBatch, out: &mut Output) -> Result<()> {
        // Changes wait at most `emit_interval` for the next batch or watermark to carry them
        // out (mini-batching, as Flink's `table.exec.mini-batch`).
        if self.last_emit.elapsed() >= self.config.emit_interval {
            self.emit(out)?;
        }
        let rows = batch.num_rows();
        if rows > 0 {
            let keys = self
                .config
                .keys
                .iter()
                .map(|k| k.evaluate(&batch)?.into_array(rows))
                .collect::<Result<Vec<_>, _>>()?;
            self.scratch.clear();
            match &mut self.values {
                Some(v) => {
                    v.intern(&keys, &mut self.scratch)?;
                    self.groups = v.len();
                }
                None => {
                    self.scratch.resize(rows, 0);
                    self.groups = 1;
                }
            }
            for (acc, spec) in self.accs.iter_mut().zip(&self.config.aggregates) {
                let args = spec
                    .expr
                    .expressions()
                    .iter()
                    .map(|a| a.evaluate(&batch)?.into_array(rows))
                    .collect::<Result<Vec<_>, _>>()?;
                let filter = match &spec.filter {
                    Some(f) => {
                        let m = f.evaluate(&batch)?.into_array(rows)?;
                        Some(datafusion::arrow::array::AsArray::as_boolean(&m).clone())
                    }
                    None => None,
                };
                acc.update_batch(&args, &self.scratch, filter.as_ref(), self.groups)?;
            }
            self.touched.resize(self.groups, false);
            for &g in &self.scratch {
                self.touched[g] = true;
            }
            self.any_touched = true;
        }
        Ok(())
    }

    fn timer_interval(&self) -> Option<Duration> {
        Some(self.config.emit_interval)
    }

    fn on_timer(&mut self, out: &mut Output) -> Result<()> {
        if self.last_emit.elapsed() >= self.config.emit_interval {
            self.emit(out)?;
        }
        Ok(())
    }

    fn process_watermark(&mut self, watermark: i64, out: &mut Output) -> Result<Option<i64>> {
        self.emit(out)?;
        Ok(Some(watermark))
    }

    fn close(&mut self, out: &mut Output) -> Result<()> {
        self.emit(out)
    }
}

/// For each group in `ids`, whether any of its values differs between `old` and `new`.
fn changed_rows(ids: &[u32], old: &[ArrayRef], new: &[ArrayRef]) -> Result<Vec<bool>> {
    let idx = UInt32Array::from(ids.to_vec());
    let mut changed = vec![false; ids.len()];
    for (o, n) in old.iter().zip(new) {
        if o.data_type().is_nested() {
            // No comparison kernel for lists and structs: count them as changed.
            changed.iter_mut().for_each(|c| *c = true);
            continue;
        }
        let (o, n) = (take(o.as_ref(), &idx, None)?, take(n.as_ref(), &idx, None)?);
        let same = datafusion::arrow::compute::kernels::cmp::not_distinct(&o, &n)?;
        for (c, s) in changed.iter_mut().zip(same.iter()) {
            *c |= s != Some(true);
        }
    }
    Ok(changed)
}
