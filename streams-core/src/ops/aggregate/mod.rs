//! The unbounded aggregate (`GROUP BY` without a window): one running result per key, emitted
//! as an update stream. Each emission (every `emit_interval` of processing time while rows
//! arrive, at each watermark, and at the end) sends, for every key that changed since the last
//! one, `+I` for a new key or `-U` (the previous result) and `+U` (the new one).
//!
//! Update streams carry the change kind in a last column, [`OP_COLUMN`] (`Int8`): see
//! [`crate::changelog`].

use std::sync::Arc;
use std::time::{Duration, Instant};

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Int8Array, Int64Array, RecordBatch, UInt32Array,
    new_empty_array,
};
use datafusion::arrow::compute::take;
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::logical_expr::{EmitTo, GroupsAccumulator};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::aggregates::group_values::{GroupValues, new_group_values};
use datafusion::physical_plan::aggregates::order::GroupOrdering;

use super::window::{
    AggregateSpec, Columns, StateLayout, accumulators, copy_states, restore_states,
};
use crate::changelog::{DELETE, INSERT, UPDATE_AFTER, UPDATE_BEFORE};
use crate::message::Barrier;
use crate::operator::{Operator, OperatorFactory, Output};
use crate::state::{OperatorState, columns_batch, expect_types};
use crate::{Error, Result};

pub use crate::changelog::OP_COLUMN;

mod spill;
mod ttl;
pub(crate) use ttl::sweep_every;

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
    /// Forget a group no row has updated for this long (processing time; Flink's
    /// `table.exec.state.ttl`). Its last result stays downstream; a later row for the key
    /// starts it over with an insert. `None`: keep every group.
    pub ttl: Option<Duration>,
    /// Keep at most this many groups in memory; colder ones spill to the subtask's state store
    /// (`SET 'state.cache.keys'`). Needs checkpointing (which provides the store). `None`: all
    /// in memory.
    pub cache: Option<usize>,
}

impl OperatorFactory for UnboundedAggregateConfig {
    fn create(&self, _subtask: usize, _parallelism: usize) -> Result<Box<dyn Operator>> {
        Ok(Box::new(UnboundedAggregate::new(self.clone())?))
    }
}

/// One subtask of an unbounded aggregate.
pub struct UnboundedAggregate {
    config: UnboundedAggregateConfig,
    /// Column types of checkpointed keys and aggregate states.
    layout: StateLayout,
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
    /// With a TTL or a cache: when each group was last updated.
    ttl: ttl::Clock,
    /// With a cache: where cold groups go.
    spill: Option<spill::Spill>,
    /// Last results and flags of every group as they were before a compaction (for spilling).
    spilled_last: Vec<ArrayRef>,
    spilled_present: Vec<bool>,
    /// Groups in the store (kept in checkpoints, so a restore knows whether to look there).
    spilled: u64,
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
        let layout = StateLayout::new(&config.key_schema, &config.aggregates)?;
        Ok(UnboundedAggregate {
            config,
            layout,
            values,
            accs,
            groups: 0,
            last: Vec::new(),
            present: Vec::new(),
            touched: Vec::new(),
            any_touched: false,
            last_emit: Instant::now(),
            scratch: Vec::new(),
            ttl: ttl::Clock::default(),
            spill: None,
            spilled_last: Vec::new(),
            spilled_present: Vec::new(),
            spilled: 0,
        })
    }

    /// Every group's key, in group order, leaving the groups as they are.
    fn keys_in_order(&mut self) -> Result<Vec<ArrayRef>> {
        let Some(v) = &mut self.values else {
            return Ok(Vec::new());
        };
        let keys = super::window::drain_keys(v.as_mut())?;
        // Interning them again in the same order gives the same ids.
        let mut ids = Vec::new();
        v.intern(&keys, &mut ids)?;
        Ok(keys)
    }

    /// Emits the changes since the last emission.
    fn emit(&mut self, out: &mut Output) -> Result<()> {
        self.last_emit = Instant::now();
        if !self.any_touched {
            return Ok(());
        }
        let g = self.groups;
        let all: Vec<usize> = (0..g).collect();
        let keys = self.keys_in_order()?;
        // Current results without losing the running state: detach it, put it back, and
        // evaluate a copy (or, for a distinct count, read the results off the state).
        let mut current = Vec::with_capacity(self.accs.len());
        let mut restored = accumulators(&self.config.aggregates)?;
        let specs = &self.config.aggregates;
        for ((acc, back), spec) in self.accs.iter_mut().zip(&mut restored).zip(specs) {
            let state = acc.state(EmitTo::All)?;
            back.merge_batch(&state, &all, g)?;
            current.push(match distinct_counts(spec, &state) {
                Some(counts) => counts,
                None => {
                    let mut copy = accumulators(std::slice::from_ref(spec))?;
                    let copy = copy
                        .first_mut()
                        .ok_or_else(|| Error::Internal("no accumulator for an aggregate".into()))?;
                    copy.merge_batch(&state, &all, g)?;
                    copy.evaluate(EmitTo::All)?
                }
            });
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
        self.spill_cold()
    }
}

/// Names of the unbounded aggregate's checkpoint state.
const GROUPS: &str = "groups";
const EMITTED: &str = "emitted";
const ANY_TOUCHED: &str = "any_touched";
const COUNTS_ROWS: &str = "counts_rows";
const SPILLED: &str = "spilled";

impl UnboundedAggregate {
    /// Types of the results as emitted, one per aggregate.
    fn result_types(&self) -> Vec<DataType> {
        self.config
            .aggregates
            .iter()
            .map(|a| a.expr.field().data_type().clone())
            .collect()
    }

    /// The one batch named `name` in `state`.
    fn one<'a>(state: &'a OperatorState, name: &str) -> Result<&'a RecordBatch> {
        let mut all = state.batches_named(name);
        match (all.next(), all.next()) {
            (Some(b), None) => Ok(b),
            _ => Err(Error::IncompatibleState(format!(
                "aggregate state: not one {name} batch"
            ))),
        }
    }
}

impl Operator for UnboundedAggregate {
    fn start(&mut self, ctx: &crate::operator::OperatorContext) -> Result<()> {
        if self.config.cache.is_some()
            && let Some(store) = ctx.cache_store()?
        {
            self.spill = Some(spill::Spill::new(self, store)?);
        }
        Ok(())
    }

    /// State: every group (keys in group order, accumulator states, whether it changed since
    /// the last emission), and the results as last emitted with whether each is in the output
    /// table (what the next `-U`/`-D` retracts).
    fn checkpoint(&mut self, _barrier: &Barrier) -> Result<Option<OperatorState>> {
        let g = self.groups;
        let keys = self.keys_in_order()?;
        let states = copy_states(&mut self.accs, &self.config.aggregates, g)?;
        let mut touched = self.touched.clone();
        touched.resize(g, false);
        let touched: ArrayRef = Arc::new(BooleanArray::from(touched));
        let mut state = OperatorState::new();
        state.put_batch(GROUPS, self.layout.batch(&keys, &states, vec![touched], g)?);
        let emitted = self.present.len();
        let mut columns: Vec<ArrayRef> = if self.last.is_empty() {
            self.result_types().iter().map(new_empty_array).collect()
        } else {
            self.last.clone()
        };
        columns.push(Arc::new(BooleanArray::from(self.present.clone())));
        state.put_batch(EMITTED, columns_batch(columns, emitted)?);
        state.put_value(ANY_TOUCHED, i64::from(self.any_touched));
        state.put_value(COUNTS_ROWS, i64::from(self.config.counts_rows));
        state.put_value(SPILLED, self.spilled as i64);
        Ok(Some(state))
    }

    fn restore(&mut self, state: OperatorState) -> Result<()> {
        let bad = |what: &str| Error::IncompatibleState(format!("aggregate state: {what}"));
        if state.value(COUNTS_ROWS) != Some(i64::from(self.config.counts_rows)) {
            return Err(bad("written by an aggregate over another kind of stream"));
        }
        let batch = Self::one(&state, GROUPS)?;
        let Columns {
            keys,
            states,
            extra,
        } = self
            .layout
            .split(batch, &[DataType::Boolean], "aggregate groups")?;
        let g = batch.num_rows();
        match &mut self.values {
            Some(v) => {
                v.intern(&keys, &mut self.scratch)?;
                if v.len() != g {
                    return Err(bad("a key appears twice"));
                }
            }
            None if g > 1 => return Err(bad("several groups for an aggregate without keys")),
            None => {}
        }
        self.accs = restore_states(&self.config.aggregates, &states, g)?;
        self.groups = g;
        let touched = extra
            .first()
            .and_then(|c| c.as_any().downcast_ref::<BooleanArray>())
            .ok_or_else(|| bad("no changed flags"))?;
        self.touched = touched.values().iter().collect();
        self.any_touched = state.value(ANY_TOUCHED).is_some_and(|v| v != 0);
        self.spilled = state.value(SPILLED).map_or(0, |v| v.max(0) as u64);
        let batch = Self::one(&state, EMITTED)?;
        let mut types = self.result_types();
        types.push(DataType::Boolean);
        expect_types(batch, &types, "aggregate results as emitted")?;
        if batch.num_rows() > g {
            return Err(bad("more results emitted than groups"));
        }
        let mut columns = batch.columns().to_vec();
        let present = columns.pop().ok_or_else(|| bad("no emitted flags"))?;
        let present = present
            .as_any()
            .downcast_ref::<BooleanArray>()
            .ok_or_else(|| bad("no emitted flags"))?;
        self.present = present.values().iter().collect();
        self.last = columns;
        // TTL clocks start again at the restore (they are processing time).
        self.ttl = ttl::Clock::default();
        if self.config.ttl.is_some() || self.config.cache.is_some() {
            self.ttl.updated(&(0..g).collect::<Vec<_>>(), g);
        }
        Ok(())
    }

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
            let before = self.groups;
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
            if self.spill.is_some() && self.groups > before {
                // The first row of each new group: its key may have spilled.
                let mut first = vec![u32::MAX; self.groups - before];
                for (r, &g) in self.scratch.iter().enumerate() {
                    if g >= before && first[g - before] == u32::MAX {
                        first[g - before] = r as u32;
                    }
                }
                self.unspill(before, &keys, &first)?;
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
            if self.config.ttl.is_some() || self.spill.is_some() {
                self.ttl.updated(&self.scratch, self.groups);
            }
        }
        Ok(())
    }

    fn timer_interval(&self) -> Option<Duration> {
        Some(match self.config.ttl {
            Some(ttl) => self.config.emit_interval.min(ttl::sweep_every(ttl)),
            None => self.config.emit_interval,
        })
    }

    fn on_timer(&mut self, out: &mut Output) -> Result<()> {
        if self.last_emit.elapsed() >= self.config.emit_interval {
            self.emit(out)?;
        }
        self.expire(out)
    }

    fn process_watermark(&mut self, watermark: i64, out: &mut Output) -> Result<Option<i64>> {
        self.emit(out)?;
        Ok(Some(watermark))
    }

    fn before_barrier(&mut self, out: &mut Output) -> Result<()> {
        self.emit(out)
    }

    fn close(&mut self, out: &mut Output) -> Result<()> {
        self.emit(out)
    }
}

/// For each group in `ids`, whether any of its values differs between `old` and `new`.
/// A `COUNT(DISTINCT)`'s results read off its state, each group's distinct values as a list,
/// rather than by merging that state into a fresh accumulator to evaluate it: that merge built
/// every group's set again at every emission (a quarter of q16's time).
fn distinct_counts(spec: &AggregateSpec, state: &[ArrayRef]) -> Option<ArrayRef> {
    // A list may hold a null (the row-wise accumulator keeps one), which COUNT does not count.
    fn counts<O: datafusion::arrow::array::OffsetSizeTrait>(
        list: &datafusion::arrow::array::GenericListArray<O>,
    ) -> Int64Array {
        let values = list.values().logical_nulls();
        let offsets = list.value_offsets();
        Int64Array::from_iter_values((0..list.len()).map(|i| {
            if list.is_null(i) {
                return 0;
            }
            let (start, end) = (offsets[i].as_usize(), offsets[i + 1].as_usize());
            let nulls = values
                .as_ref()
                .map_or(0, |n| n.slice(start, end - start).null_count());
            (end - start - nulls) as i64
        }))
    }
    if !spec.expr.is_distinct() || spec.expr.fun().name() != "count" {
        return None;
    }
    let [list] = state else {
        return None;
    };
    let counts = match list.data_type() {
        DataType::List(_) => counts(list.as_list::<i32>()),
        DataType::LargeList(_) => counts(list.as_list::<i64>()),
        _ => return None,
    };
    Some(Arc::new(counts))
}

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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

    use datafusion::arrow::array::{Int64Array, StringArray};
    use datafusion::arrow::datatypes::{Field, Schema};
    use datafusion::functions_aggregate::average::avg_udaf;
    use datafusion::functions_aggregate::count::count_udaf;
    use datafusion::functions_aggregate::sum::sum_udaf;

    use super::*;
    use crate::ops::testkit::{
        Row, Step, aggregate, all_aggregates, assert_refused, batch, check_everywhere, column,
        schema, state_after,
    };

    pub(super) fn config(
        input: &SchemaRef,
        keyed: bool,
        aggregates: Vec<AggregateSpec>,
        emit_interval: Duration,
        counts_rows: bool,
    ) -> UnboundedAggregateConfig {
        let keys = if keyed {
            vec![column(input, "k")]
        } else {
            vec![]
        };
        let key_fields: Vec<Field> = if keyed {
            vec![Field::new("k", DataType::Utf8, false)]
        } else {
            vec![]
        };
        let mut fields = key_fields.clone();
        fields.extend(aggregates.iter().map(|a| a.expr.field().as_ref().clone()));
        fields.push(Field::new(OP_COLUMN, DataType::Int8, false));
        UnboundedAggregateConfig {
            keys,
            key_schema: Arc::new(Schema::new(key_fields)),
            aggregates,
            output_schema: Arc::new(Schema::new(fields)),
            emit_interval,
            counts_rows,
            ttl: None,
            cache: None,
        }
    }

    fn maker(config: UnboundedAggregateConfig) -> impl Fn() -> Box<dyn Operator> {
        move || Box::new(UnboundedAggregate::new(config.clone()).unwrap()) as Box<dyn Operator>
    }

    fn script() -> Vec<Step> {
        let batches: [&[Row]; 6] = [
            &[("a", 1, 0), ("b", 2, 0), ("a", 3, 0)],
            &[("a", 1, 0), ("c", 7, 0)],
            &[("b", -4, 0), ("d", 3, 0)],
            &[("a", 5, 0), ("c", 6, 0), ("e", 5, 0)],
            &[("a", 8, 0), ("b", 1, 0)],
            &[("c", 3, 0), ("f", 1, 0), ("b", 9, 0)],
        ];
        let mut steps = Vec::new();
        for (i, b) in batches.iter().enumerate() {
            steps.push(Step::Batch(batch(b)));
            if i % 2 == 1 {
                steps.push(Step::Watermark(i as i64));
            }
        }
        steps
    }

    #[test]
    fn resumes_anywhere() {
        let input = schema();
        // An hour: results go out at watermarks; zero: before every batch.
        for interval in [Duration::from_secs(3600), Duration::ZERO] {
            for keyed in [true, false] {
                let c = config(&input, keyed, all_aggregates(&input), interval, false);
                let out = check_everywhere(&maker(c), &script());
                assert!(
                    out.iter()
                        .any(|l| l.ends_with(&format!("| {UPDATE_BEFORE}"))),
                    "{out:#?}"
                );
            }
        }
    }

    /// `k`, `v` already multiplied by the sign, and the sign, as `plan/retract.rs` feeds an
    /// aggregate over an update stream.
    fn signed(rows: &[(&str, i64, i64)]) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("k", DataType::Utf8, false),
            Field::new("v", DataType::Int64, false),
            Field::new("sign", DataType::Int64, false),
        ]));
        let k: StringArray = rows.iter().map(|r| Some(r.0)).collect();
        let v: Int64Array = rows.iter().map(|r| r.1 * r.2).collect();
        let s: Int64Array = rows.iter().map(|r| r.2).collect();
        RecordBatch::try_new(schema, vec![Arc::new(k), Arc::new(v), Arc::new(s)]).unwrap()
    }

    #[test]
    fn retractions_resume_anywhere() {
        let input = signed(&[]).schema();
        let aggs = vec![
            aggregate(sum_udaf(), Some("sign"), false, &input, "n"),
            aggregate(sum_udaf(), Some("v"), false, &input, "s"),
            aggregate(sum_udaf(), Some("sign"), false, &input, "__rows"),
        ];
        // Groups go to zero rows (deleted) and come back (inserted again).
        let batches = [
            signed(&[("a", 1, 1), ("b", 2, 1), ("a", 3, 1)]),
            signed(&[("a", 1, -1), ("b", 2, -1)]),
            signed(&[("b", 5, 1), ("a", 3, -1)]),
            signed(&[("a", 4, 1), ("c", 1, 1)]),
            signed(&[("c", 1, -1), ("b", 5, -1), ("b", 6, 1)]),
            signed(&[("a", 4, -1), ("c", 2, 1)]),
        ];
        let mut steps = Vec::new();
        for (i, b) in batches.into_iter().enumerate() {
            steps.push(Step::Batch(b));
            steps.push(Step::Watermark(i as i64));
        }
        let c = config(&input, true, aggs, Duration::from_secs(3600), true);
        let out = check_everywhere(&maker(c), &steps);
        for op in [DELETE, UPDATE_BEFORE, INSERT] {
            assert!(
                out.iter().any(|l| l.ends_with(&format!("| {op}"))),
                "{out:#?}"
            );
        }
    }

    #[test]
    fn state_of_other_aggregates_is_refused() {
        let input = schema();
        let hour = Duration::from_secs(3600);
        let count = vec![aggregate(count_udaf(), None, false, &input, "n")];
        let avg = vec![aggregate(avg_udaf(), Some("v"), false, &input, "n")];
        let steps = &script()[..3];
        let state = state_after(
            &maker(config(&input, true, count.clone(), hour, false)),
            steps,
        );
        assert_refused(
            maker(config(&input, true, avg, hour, false))(),
            state.clone(),
        );
        assert_refused(
            maker(config(&input, false, count.clone(), hour, false))(),
            state.clone(),
        );
        assert_refused(maker(config(&input, true, count, hour, true))(), state);
    }

    /// Counts read off a `COUNT(DISTINCT)`'s state equal what DataFusion's accumulator
    /// evaluates from that state, for integers and strings, with nulls and empty groups.
    #[test]
    fn distinct_counts_read_off_the_state_equal_evaluating_it() {
        use datafusion::functions_aggregate::count::count_udaf;
        let input = schema();
        for column in ["v", "k"] {
            let spec = aggregate(count_udaf(), Some(column), true, &input, "d");
            let [mut acc] = <[_; 1]>::try_from(accumulators(std::slice::from_ref(&spec)).unwrap())
                .unwrap_or_else(|_| panic!("one accumulator"));
            let groups = 7;
            for round in 0..3i64 {
                let v: ArrayRef = Arc::new(datafusion::arrow::array::Int64Array::from_iter(
                    (0..200).map(|i| (i % 11 != 0).then_some((i * 7 + round) % 23)),
                ));
                let k: ArrayRef = Arc::new(datafusion::arrow::array::StringArray::from_iter(
                    (0..200).map(|i| (i % 13 != 0).then(|| format!("s{}", (i + round) % 17))),
                ));
                let values = if column == "v" { v } else { k };
                // Group 6 never gets a row.
                let ids: Vec<usize> = (0..200).map(|i| (i * 5 + round as usize) % 6).collect();
                acc.update_batch(&[values], &ids, None, groups).unwrap();
                let state = acc.state(EmitTo::All).unwrap();
                let all: Vec<usize> = (0..groups).collect();
                let [mut back, mut copy] =
                    <[_; 2]>::try_from(accumulators(&[spec.clone(), spec.clone()]).unwrap())
                        .unwrap_or_else(|_| panic!("two accumulators"));
                back.merge_batch(&state, &all, groups).unwrap();
                copy.merge_batch(&state, &all, groups).unwrap();
                let read = distinct_counts(&spec, &state).expect("a COUNT(DISTINCT) state");
                assert_eq!(
                    &read,
                    &copy.evaluate(EmitTo::All).unwrap(),
                    "{column}, round {round}"
                );
                acc = back;
            }
        }
    }
}
