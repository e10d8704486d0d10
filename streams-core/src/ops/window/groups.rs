//! Grouped aggregation state: DataFusion's `GroupValues` (key interning) plus one
//! `GroupsAccumulator` per aggregate, and the partial-state chunks that panes are sealed into
//! so that overlapping windows merge them instead of seeing each row several times.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, AsArray, BooleanArray};
use datafusion::arrow::compute::take;
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::logical_expr::{EmitTo, GroupsAccumulator};
use datafusion::physical_expr::aggregate::AggregateFunctionExpr;
use datafusion::physical_expr::{GroupsAccumulatorAdapter, PhysicalExpr};
use datafusion::physical_plan::aggregates::group_values::{GroupValues, new_group_values};
use datafusion::physical_plan::aggregates::order::GroupOrdering;

use crate::state::{columns_batch, expect_types};
use crate::{Error, Result};

/// One aggregate of a window: the function with its arguments, and its `FILTER (WHERE ...)`.
#[derive(Clone, Debug)]
pub struct AggregateSpec {
    /// The aggregate, arguments bound to the input schema.
    pub expr: Arc<AggregateFunctionExpr>,
    /// Rows for which this is false are not aggregated.
    pub filter: Option<Arc<dyn PhysicalExpr>>,
}

/// The keys and aggregates of a grouped aggregation.
#[derive(Clone, Debug)]
pub(crate) struct Aggregates {
    pub(crate) keys: Vec<Arc<dyn PhysicalExpr>>,
    pub(crate) key_schema: SchemaRef,
    pub(crate) specs: Vec<AggregateSpec>,
}

/// Key columns and aggregate inputs evaluated over a batch (or a subset of its rows).
pub(crate) struct Inputs {
    pub(crate) keys: Vec<ArrayRef>,
    pub(crate) args: Vec<Vec<ArrayRef>>,
    pub(crate) filters: Vec<Option<BooleanArray>>,
    pub(crate) rows: usize,
}

impl Inputs {
    /// The rows at `indices`.
    pub(crate) fn take(&self, indices: &dyn datafusion::arrow::array::Array) -> Result<Inputs> {
        let pick = |a: &ArrayRef| take(a.as_ref(), indices, None);
        Ok(Inputs {
            keys: self.keys.iter().map(pick).collect::<Result<_, _>>()?,
            args: self
                .args
                .iter()
                .map(|a| a.iter().map(pick).collect::<Result<_, _>>())
                .collect::<Result<_, _>>()?,
            filters: self
                .filters
                .iter()
                .map(|f| {
                    f.as_ref()
                        .map(|f| Ok::<_, Error>(take(f, indices, None)?.as_boolean().clone()))
                        .transpose()
                })
                .collect::<Result<_, _>>()?,
            rows: indices.len(),
        })
    }
}

fn evaluate(e: &Arc<dyn PhysicalExpr>, batch: &RecordBatch) -> Result<ArrayRef> {
    Ok(e.evaluate(batch)?.into_array(batch.num_rows())?)
}

impl Aggregates {
    /// Evaluates the keys, arguments and filters over `batch`.
    pub(crate) fn inputs(&self, batch: &RecordBatch) -> Result<Inputs> {
        let keys = self
            .keys
            .iter()
            .map(|k| evaluate(k, batch))
            .collect::<Result<_>>()?;
        let mut args = Vec::with_capacity(self.specs.len());
        let mut filters = Vec::with_capacity(self.specs.len());
        for s in &self.specs {
            args.push(
                s.expr
                    .expressions()
                    .iter()
                    .map(|a| evaluate(a, batch))
                    .collect::<Result<Vec<_>>>()?,
            );
            filters.push(match &s.filter {
                Some(f) => {
                    let mask = evaluate(f, batch)?;
                    if mask.data_type() != &DataType::Boolean {
                        return Err(Error::plan(format!("aggregate filter {f} is not boolean")));
                    }
                    Some(mask.as_boolean().clone())
                }
                None => None,
            });
        }
        Ok(Inputs {
            keys,
            args,
            filters,
            rows: batch.num_rows(),
        })
    }

    pub(crate) fn accumulators(&self) -> Result<Vec<Box<dyn GroupsAccumulator>>> {
        accumulators(&self.specs)
    }
}

/// One accumulator per aggregate: the vectorized `GroupsAccumulator` where the function has
/// one, else DataFusion's adapter over one row accumulator per group (count distinct,
/// percentiles).
pub(crate) fn accumulators(specs: &[AggregateSpec]) -> Result<Vec<Box<dyn GroupsAccumulator>>> {
    specs
        .iter()
        .map(|s| {
            if s.expr.groups_accumulator_supported() {
                Ok(s.expr.create_groups_accumulator()?)
            } else {
                let expr = Arc::clone(&s.expr);
                let adapter = GroupsAccumulatorAdapter::new(move || expr.create_accumulator());
                Ok(Box::new(adapter) as Box<dyn GroupsAccumulator>)
            }
        })
        .collect()
}

/// Partial aggregation state of some groups, detached from accumulators: what a pane becomes
/// once it is complete, ready to be merged into every window that covers it.
#[derive(Debug)]
pub(crate) struct StateChunk {
    keys: Vec<ArrayRef>,
    states: Vec<Vec<ArrayRef>>,
    groups: usize,
}

/// Live groups: keys interned to group indices, and one accumulator per aggregate.
pub(crate) struct GroupTable {
    /// `None` when there are no keys: a single group.
    values: Option<Box<dyn GroupValues>>,
    accs: Vec<Box<dyn GroupsAccumulator>>,
    groups: usize,
    scratch: Vec<usize>,
}

impl std::fmt::Debug for GroupTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupTable")
            .field("groups", &self.groups)
            .finish_non_exhaustive()
    }
}

impl GroupTable {
    pub(crate) fn new(aggs: &Aggregates) -> Result<Self> {
        let values = if aggs.key_schema.fields().is_empty() {
            None
        } else {
            Some(new_group_values(
                Arc::clone(&aggs.key_schema),
                &GroupOrdering::None,
            )?)
        };
        Ok(GroupTable {
            values,
            accs: aggs.accumulators()?,
            groups: 0,
            scratch: Vec::new(),
        })
    }

    fn intern(&mut self, keys: &[ArrayRef], rows: usize) -> Result<()> {
        self.scratch.clear();
        match &mut self.values {
            Some(v) => {
                v.intern(keys, &mut self.scratch)?;
                self.groups = v.len();
            }
            None => {
                self.scratch.resize(rows, 0);
                if rows > 0 {
                    self.groups = 1;
                }
            }
        }
        Ok(())
    }

    /// Adds rows.
    pub(crate) fn update(&mut self, inputs: &Inputs) -> Result<()> {
        if inputs.rows == 0 {
            return Ok(());
        }
        self.intern(&inputs.keys, inputs.rows)?;
        for ((acc, args), filter) in self.accs.iter_mut().zip(&inputs.args).zip(&inputs.filters) {
            acc.update_batch(args, &self.scratch, filter.as_ref(), self.groups)?;
        }
        Ok(())
    }

    /// Adds another table's partial state.
    pub(crate) fn merge(&mut self, chunk: &StateChunk) -> Result<()> {
        if chunk.groups == 0 {
            return Ok(());
        }
        self.intern(&chunk.keys, chunk.groups)?;
        for (acc, states) in self.accs.iter_mut().zip(&chunk.states) {
            acc.merge_batch(states, &self.scratch, self.groups)?;
        }
        Ok(())
    }

    /// Detaches the partial state of every group, leaving the table empty.
    pub(crate) fn seal(&mut self) -> Result<StateChunk> {
        let keys = match &mut self.values {
            Some(v) => drain_keys(v.as_mut())?,
            None => Vec::new(),
        };
        let states = self
            .accs
            .iter_mut()
            .map(|a| a.state(EmitTo::All))
            .collect::<Result<_, _>>()?;
        let groups = std::mem::take(&mut self.groups);
        Ok(StateChunk {
            keys,
            states,
            groups,
        })
    }

    /// Final values of every group, leaving the table empty: key columns, then one column per
    /// aggregate.
    pub(crate) fn evaluate(&mut self) -> Result<(Vec<ArrayRef>, Vec<ArrayRef>, usize)> {
        let keys = match &mut self.values {
            Some(v) => drain_keys(v.as_mut())?,
            None => Vec::new(),
        };
        let values = self
            .accs
            .iter_mut()
            .map(|a| a.evaluate(EmitTo::All))
            .collect::<Result<_, _>>()?;
        Ok((keys, values, std::mem::take(&mut self.groups)))
    }
}

/// Every key of `values`, leaving it empty and ready to intern again. DataFusion's multi-column
/// `GroupValues` keeps its hash map across `emit(EmitTo::All)`, so interning after it would
/// find stale group ids; `clear_shrink` resets the map too.
pub(crate) fn drain_keys(values: &mut dyn GroupValues) -> Result<Vec<ArrayRef>> {
    let keys = values.emit(EmitTo::All)?;
    values.clear_shrink(0);
    Ok(keys)
}

/// The columns of a checkpointed batch of groups, split.
pub(crate) struct Columns {
    pub(crate) keys: Vec<ArrayRef>,
    pub(crate) states: Vec<Vec<ArrayRef>>,
    pub(crate) extra: Vec<ArrayRef>,
}

/// Column types of checkpointed grouped state: the key columns, then each aggregate's state
/// columns (as its `state_fields` say), so that a restore can split a batch and refuse state
/// written by another query.
#[derive(Clone, Debug)]
pub(crate) struct StateLayout {
    pub(crate) keys: Vec<DataType>,
    pub(crate) states: Vec<Vec<DataType>>,
}

impl StateLayout {
    pub(crate) fn new(key_schema: &SchemaRef, specs: &[AggregateSpec]) -> Result<Self> {
        let keys = key_schema
            .fields()
            .iter()
            .map(|f| f.data_type().clone())
            .collect();
        let states = specs
            .iter()
            .map(|s| {
                Ok(s.expr
                    .state_fields()?
                    .iter()
                    .map(|f| f.data_type().clone())
                    .collect())
            })
            .collect::<Result<_>>()?;
        Ok(StateLayout { keys, states })
    }

    /// The same without key columns (state addressed by something else than keys).
    pub(crate) fn without_keys(&self) -> StateLayout {
        StateLayout {
            keys: Vec::new(),
            states: self.states.clone(),
        }
    }

    /// Only the key columns (the keys of state kept elsewhere).
    pub(crate) fn keys_only(&self) -> StateLayout {
        StateLayout {
            keys: self.keys.clone(),
            states: Vec::new(),
        }
    }

    /// One batch of `rows` groups: `keys`, every aggregate's `states`, then `extra` columns.
    pub(crate) fn batch(
        &self,
        keys: &[ArrayRef],
        states: &[Vec<ArrayRef>],
        extra: Vec<ArrayRef>,
        rows: usize,
    ) -> Result<RecordBatch> {
        let mut columns: Vec<ArrayRef> = keys.to_vec();
        columns.extend(states.iter().flatten().cloned());
        columns.extend(extra);
        columns_batch(columns, rows)
    }

    /// Splits what [`StateLayout::batch`] wrote into keys, states and the `extra` columns,
    /// checking every column's type.
    pub(crate) fn split(
        &self,
        batch: &RecordBatch,
        extra: &[DataType],
        what: &str,
    ) -> Result<Columns> {
        let mut types = self.keys.clone();
        types.extend(self.states.iter().flatten().cloned());
        types.extend_from_slice(extra);
        expect_types(batch, &types, what)?;
        let mut columns = batch.columns().iter().cloned();
        let keys = columns.by_ref().take(self.keys.len()).collect();
        let states = self
            .states
            .iter()
            .map(|s| columns.by_ref().take(s.len()).collect())
            .collect();
        Ok(Columns {
            keys,
            states,
            extra: columns.collect(),
        })
    }

    /// A chunk as a batch.
    pub(crate) fn chunk_batch(&self, chunk: &StateChunk) -> Result<RecordBatch> {
        self.batch(&chunk.keys, &chunk.states, Vec::new(), chunk.groups)
    }

    /// A chunk back from [`StateLayout::chunk_batch`].
    pub(crate) fn chunk(&self, batch: &RecordBatch, what: &str) -> Result<StateChunk> {
        let Columns { keys, states, .. } = self.split(batch, &[], what)?;
        let groups = batch.num_rows();
        if self.keys.is_empty() && groups > 1 {
            return Err(Error::IncompatibleState(format!(
                "{what}: {groups} groups for an aggregate without keys"
            )));
        }
        Ok(StateChunk {
            keys,
            states,
            groups,
        })
    }
}

impl GroupTable {
    /// The partial state of every group, which the table keeps (detached, then merged back:
    /// group ids stay as they were).
    pub(crate) fn snapshot(&mut self) -> Result<StateChunk> {
        let chunk = self.seal()?;
        self.merge(&chunk)?;
        Ok(chunk)
    }
}

/// The partial state of groups `0..groups` of `accs`, which keep it: it is detached, then
/// merged back into fresh accumulators under the same group ids.
pub(crate) fn copy_states(
    accs: &mut Vec<Box<dyn GroupsAccumulator>>,
    specs: &[AggregateSpec],
    groups: usize,
) -> Result<Vec<Vec<ArrayRef>>> {
    let ids: Vec<usize> = (0..groups).collect();
    let mut fresh = accumulators(specs)?;
    let mut states = Vec::with_capacity(accs.len());
    for (acc, back) in accs.iter_mut().zip(&mut fresh) {
        let state = acc.state(EmitTo::All)?;
        if groups > 0 {
            back.merge_batch(&state, &ids, groups)?;
        }
        states.push(state);
    }
    *accs = fresh;
    Ok(states)
}

/// Accumulators holding `states` (from [`copy_states`]) as groups `0..groups`.
pub(crate) fn restore_states(
    specs: &[AggregateSpec],
    states: &[Vec<ArrayRef>],
    groups: usize,
) -> Result<Vec<Box<dyn GroupsAccumulator>>> {
    let ids: Vec<usize> = (0..groups).collect();
    let mut accs = accumulators(specs)?;
    if groups > 0 {
        for (acc, state) in accs.iter_mut().zip(states) {
            acc.merge_batch(state, &ids, groups)?;
        }
    }
    Ok(accs)
}
