//! The regular join: `a JOIN b ON a.k = b.k` with no time bound, as Flink runs it. Every row of
//! both sides is kept (state grows with the inputs), each arriving row joins the other side's
//! rows, and the output is an update stream: a joined row is inserted when both parts exist and
//! deleted when either is retracted. Outer sides are padded with nulls while they have no
//! match; the padded row is deleted when the first match arrives and inserted again when the
//! last match goes.
//!
//! The inner join of two append-only inputs only ever inserts, so it emits a plain stream.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, Int8Array, RecordBatch, UInt32Array, new_empty_array, new_null_array,
};
use datafusion::arrow::compute::{interleave, take};
use datafusion::arrow::datatypes::{DataType, Int8Type, SchemaRef, UInt32Type};
use datafusion::arrow::row::{RowConverter, Rows, SortField};

use super::{JoinSpec, Keys, SIDES, converter, key_rows, restored_column, restored_rows};
use crate::changelog::{DELETE, INSERT, UPDATE_BEFORE};
use crate::message::Barrier;
use crate::operator::{Operator, OperatorFactory, Output};
use crate::state::{OperatorState, columns_batch};
use crate::{Error, Result};

mod spill;
mod ttl;

/// A regular join, as the planner builds it.
#[derive(Clone, Debug)]
pub struct RegularJoinConfig {
    /// Keys, residual condition, and the joined data columns (left then right).
    pub join: JoinSpec,
    /// Whether unmatched rows of each side (left, right) are emitted padded with nulls.
    pub outer: [bool; 2],
    /// Input schemas; an update stream's last column is its change kind.
    pub input_schemas: [SchemaRef; 2],
    /// The joined columns, then the change kind unless the output only inserts.
    pub output_schema: SchemaRef,
    /// Forget a side's rows of a key that has not been written for this long (processing
    /// time; Flink's `table.exec.state.ttl`). As in Flink, nothing is retracted, and later rows
    /// no longer join the forgotten ones. `None`: keep every row.
    pub ttl: Option<std::time::Duration>,
    /// Keep at most this many keys per side in memory; the rows of colder keys spill to the
    /// subtask's state store (`SET 'state.cache.keys'`; needs checkpointing). `None`: all.
    pub cache: Option<usize>,
}

impl RegularJoinConfig {
    fn is_update(&self, side: usize) -> bool {
        crate::changelog::is_update_stream(&self.input_schemas[side])
    }

    /// Whether the output carries change kinds (anything but an inner join of plain streams).
    pub fn emits_updates(&self) -> bool {
        self.outer.iter().any(|o| *o) || self.is_update(0) || self.is_update(1)
    }
}

impl OperatorFactory for RegularJoinConfig {
    fn create(&self, _subtask: usize, _parallelism: usize) -> Result<Box<dyn Operator>> {
        let side = |i: usize| -> Result<Side> {
            let keys = if i == 0 {
                &self.join.left_keys
            } else {
                &self.join.right_keys
            };
            let schema = &self.input_schemas[i];
            let width = schema.fields().len() - usize::from(self.is_update(i));
            // Full rows are encoded only where retractions must find the row they retract.
            let full = if self.is_update(i) {
                Some(RowConverter::new(
                    schema.fields()[..width]
                        .iter()
                        .map(|f| SortField::new(f.data_type().clone()))
                        .collect(),
                )?)
            } else {
                None
            };
            Ok(Side {
                keys: converter(keys, schema)?,
                full,
                width,
                batches: Vec::new(),
                rows: Vec::new(),
                index: HashMap::new(),
                ttl: ttl::Clock::default(),
                stored_rows: 0,
                check_at: GARBAGE_SLACK,
            })
        };
        Ok(Box::new(RegularJoin {
            sides: [side(0)?, side(1)?],
            updates: self.emits_updates(),
            config: self.clone(),
            spill: None,
            spilled: [0, 0],
        }))
    }
}

/// One stored row and how many rows of the other side it currently joins.
#[derive(Clone, Copy, Debug)]
struct Entry {
    batch: u32,
    row: u32,
    matches: u32,
}

/// The rows of one side, by key.
#[derive(Debug)]
struct Side {
    keys: RowConverter,
    full: Option<RowConverter>,
    /// Data columns (the change kind is not stored).
    width: usize,
    batches: Vec<RecordBatch>,
    /// Full-row encodings per batch (update inputs only).
    rows: Vec<Rows>,
    index: HashMap<Box<[u8]>, Vec<Entry>>,
    /// With a TTL: when each key was last written.
    ttl: ttl::Clock,
    /// Rows in `batches`, held or not (retracted, expired or spilled rows stay until a
    /// compaction), and the count at which to see whether compacting is worth it.
    stored_rows: usize,
    check_at: usize,
}

/// Garbage rows tolerated on top of the held ones before a side is compacted.
const GARBAGE_SLACK: usize = 4096;

/// One subtask of a regular join.
#[derive(Debug)]
pub struct RegularJoin {
    config: RegularJoinConfig,
    sides: [Side; 2],
    updates: bool,
    /// With a cache: where cold rows go, and how many keys of each side are there.
    spill: Option<spill::Spill>,
    spilled: [u64; 2],
}

/// One output row: this side's row (or nulls), the other side's `(batch, row)` (or nulls).
struct Emit {
    this: Option<u32>,
    other: Option<(usize, usize)>,
    op: i8,
}

impl RegularJoin {
    fn process(&mut self, s: usize, batch: RecordBatch, out: &mut Output) -> Result<()> {
        let o = 1 - s;
        let n = batch.num_rows();
        let width = self.sides[s].width;
        let retracting: Vec<bool> = if width < batch.num_columns() {
            let ops = batch.column(width).as_primitive::<Int8Type>();
            (0..n)
                .map(|r| matches!(ops.value(r), UPDATE_BEFORE | DELETE))
                .collect()
        } else {
            vec![false; n]
        };
        let data = batch.project(&(0..width).collect::<Vec<_>>())?;
        let key_exprs = if s == 0 {
            &self.config.join.left_keys
        } else {
            &self.config.join.right_keys
        };
        let keys: Keys = key_rows(&self.sides[s].keys, key_exprs, &data)?;
        // Rows of these keys that went to the store come back first, on both sides.
        self.unspill(&keys, n)?;
        // Candidate pairs with the other side, filtered by the residual condition at once.
        let mut cand_this = Vec::new();
        let mut cand_other: Vec<(usize, usize)> = Vec::new();
        let mut cand_pos: Vec<usize> = Vec::new();
        let mut cand_start = Vec::with_capacity(n + 1);
        for r in 0..n {
            cand_start.push(cand_this.len());
            if !keys.is_valid(r) {
                continue;
            }
            if let Some(list) = self.sides[o].index.get(keys.rows.row(r).as_ref()) {
                for (pos, e) in list.iter().enumerate() {
                    cand_this.push(r as u32);
                    cand_other.push((e.batch as usize, e.row as usize));
                    cand_pos.push(pos);
                }
            }
        }
        cand_start.push(cand_this.len());
        let kept = self.residual(s, &data, &cand_this, &cand_other)?;
        // Rows of this batch may retract rows stored earlier in it: `find` looks at both.
        let b = self.sides[s].batches.len() as u32;
        let full_rows = match &self.sides[s].full {
            Some(c) => Some(c.convert_columns(data.columns())?),
            None => None,
        };
        let mut emits: Vec<Emit> = Vec::new();
        let (outer_this, outer_other) = (self.config.outer[s], self.config.outer[o]);
        let now = (self.config.ttl.is_some() || self.config.cache.is_some())
            .then(std::time::Instant::now);
        for r in 0..n {
            let retract = retracting[r];
            let pairs = (cand_start[r]..cand_start[r + 1]).filter(|c| kept[*c]);
            let matched = pairs.clone().count();
            // Keys are looked up as borrowed bytes; only a key seen for the first time is
            // copied into the index.
            let key = keys.is_valid(r).then(|| keys.rows.row(r));
            if let Some(key) = &key {
                let key = key.as_ref();
                if let Some(now) = now {
                    self.sides[s].ttl.written(key, now);
                }
                if retract {
                    let Some(found) = self.find(s, key, full_rows.as_ref(), (b, r)) else {
                        // Retracting a row never seen (e.g. before a restart): nothing joined it.
                        continue;
                    };
                    if let Some(list) = self.sides[s].index.get_mut(key) {
                        list.swap_remove(found);
                    }
                } else {
                    let entry = Entry {
                        batch: b,
                        row: r as u32,
                        matches: matched as u32,
                    };
                    match self.sides[s].index.get_mut(key) {
                        Some(list) => list.push(entry),
                        None => {
                            self.sides[s].index.insert(key.into(), vec![entry]);
                        }
                    }
                }
            }
            let op = if retract { DELETE } else { INSERT };
            if matched == 0 && outer_this {
                emits.push(Emit {
                    this: Some(r as u32),
                    other: None,
                    op,
                });
            }
            for c in pairs {
                let pos = cand_pos[c];
                let other = cand_other[c];
                if outer_other && let Some(k) = &key {
                    let list = self.sides[o].index.get_mut(k.as_ref());
                    if let Some(e) = list.and_then(|l| l.get_mut(pos)) {
                        let before = e.matches;
                        e.matches = if retract {
                            before.saturating_sub(1)
                        } else {
                            before + 1
                        };
                        // The padded row goes when the first match comes, and returns when
                        // the last one goes.
                        if !retract && before == 0 {
                            emits.push(Emit {
                                this: None,
                                other: Some(other),
                                op: DELETE,
                            });
                        }
                        emits.push(Emit {
                            this: Some(r as u32),
                            other: Some(other),
                            op,
                        });
                        if retract && e.matches == 0 {
                            emits.push(Emit {
                                this: None,
                                other: Some(other),
                                op: INSERT,
                            });
                        }
                        continue;
                    }
                }
                emits.push(Emit {
                    this: Some(r as u32),
                    other: Some(other),
                    op,
                });
            }
        }
        self.sides[s].stored_rows += data.num_rows();
        self.sides[s].batches.push(data.clone());
        if let Some(rows) = full_rows {
            self.sides[s].rows.push(rows);
        }
        if !emits.is_empty() {
            out.emit(self.assemble(s, &data, &emits)?);
        }
        Ok(())
    }

    /// The position, in its key's list, of a stored row equal to row `r` of batch `b` (the
    /// one being processed, whose rows are `full` and may also be stored already).
    fn find(
        &self,
        s: usize,
        key: &[u8],
        full: Option<&Rows>,
        (b, r): (u32, usize),
    ) -> Option<usize> {
        let side = &self.sides[s];
        let list = side.index.get(key)?;
        let full = full?;
        let wanted = full.row(r);
        list.iter().position(|e| {
            let rows = if e.batch == b {
                Some(full)
            } else {
                side.rows.get(e.batch as usize)
            };
            rows.is_some_and(|rows| rows.row(e.row as usize) == wanted)
        })
    }

    /// Which candidate pairs pass the residual condition.
    fn residual(
        &self,
        s: usize,
        data: &RecordBatch,
        this: &[u32],
        other: &[(usize, usize)],
    ) -> Result<Vec<bool>> {
        let Some(filter) = &self.config.join.filter else {
            return Ok(vec![true; this.len()]);
        };
        if this.is_empty() {
            return Ok(Vec::new());
        }
        let emits: Vec<Emit> = this
            .iter()
            .zip(other)
            .map(|(t, o)| Emit {
                this: Some(*t),
                other: Some(*o),
                op: INSERT,
            })
            .collect();
        let joined = self.joined(s, data, &emits)?;
        let batch = RecordBatch::try_new(Arc::clone(&self.config.join.joined_schema), joined)?;
        let mask = filter.evaluate(&batch)?.into_array(batch.num_rows())?;
        let mask = mask.as_boolean();
        Ok((0..this.len())
            .map(|i| mask.is_valid(i) && mask.value(i))
            .collect())
    }

    /// Joined data columns (left then right) for `emits`.
    fn joined(&self, s: usize, data: &RecordBatch, emits: &[Emit]) -> Result<Vec<ArrayRef>> {
        let o = 1 - s;
        let idx: UInt32Array = emits.iter().map(|e| e.this).collect();
        let this_cols: Vec<ArrayRef> = data
            .columns()
            .iter()
            .map(|c| take(c.as_ref(), &idx, None))
            .collect::<Result<_, _>>()?;
        let other_side = &self.sides[o];
        let nulls = other_side.batches.len();
        let positions: Vec<(usize, usize)> = emits
            .iter()
            .map(|e| e.other.unwrap_or((nulls, 0)))
            .collect();
        let joined_fields = self.config.join.joined_schema.fields();
        let offset = if o == 0 { 0 } else { self.sides[0].width };
        let other_cols: Vec<ArrayRef> = (0..other_side.width)
            .map(|c| {
                // A one-row null array after the stored batches stands for padding.
                let null = new_null_array(joined_fields[offset + c].data_type(), 1);
                let mut arrays: Vec<&dyn Array> = other_side
                    .batches
                    .iter()
                    .map(|b| b.column(c).as_ref())
                    .collect();
                arrays.push(null.as_ref());
                interleave(&arrays, &positions)
            })
            .collect::<Result<_, _>>()?;
        Ok(if s == 0 {
            this_cols.into_iter().chain(other_cols).collect()
        } else {
            other_cols.into_iter().chain(this_cols).collect()
        })
    }

    fn assemble(&self, s: usize, data: &RecordBatch, emits: &[Emit]) -> Result<RecordBatch> {
        let mut columns = self.joined(s, data, emits)?;
        if self.updates {
            columns.push(Arc::new(Int8Array::from_iter_values(
                emits.iter().map(|e| e.op),
            )));
        }
        RecordBatch::try_new(Arc::clone(&self.config.output_schema), columns)
            .map_err(|e| Error::Internal(format!("join output does not fit its schema: {e}")))
    }
}

impl Operator for RegularJoin {
    fn timer_interval(&self) -> Option<std::time::Duration> {
        self.config.ttl.map(crate::ops::aggregate::sweep_every)
    }

    fn on_timer(&mut self, _out: &mut Output) -> Result<()> {
        if let Some(ttl) = self.config.ttl {
            let now = std::time::Instant::now();
            for side in &mut self.sides {
                side.ttl.expire(&mut side.index, ttl, now);
            }
        }
        Ok(())
    }

    fn process_batch(&mut self, input: usize, batch: RecordBatch, out: &mut Output) -> Result<()> {
        if input > 1 {
            return Err(Error::Internal(format!("join input {input} out of range")));
        }
        if batch.num_rows() == 0 {
            return Ok(());
        }
        self.process(input, batch, out)?;
        self.spill_cold()?;
        self.collect_garbage(input)
    }

    fn start(&mut self, ctx: &crate::operator::OperatorContext) -> Result<()> {
        if self.config.cache.is_some()
            && let Some(store) = ctx.cache_store()?
        {
            self.spill = Some(spill::Spill::new(self, store)?);
        }
        Ok(())
    }

    /// State: per side, the rows it holds now in one batch of its data columns (`left`,
    /// `right`; retracted rows and rows with a null key, which nothing can join or retract
    /// through the index, are left out), grouped by key in index order, and how many rows of
    /// the other side each joins (`left.matches`, `right.matches`).
    fn checkpoint(&mut self, _barrier: &Barrier) -> Result<Option<OperatorState>> {
        let mut state = OperatorState::new();
        for (s, name) in SIDES.into_iter().enumerate() {
            let side = &self.sides[s];
            let mut positions: Vec<(usize, usize)> = Vec::new();
            let mut matches: Vec<u32> = Vec::new();
            for e in side.index.values().flatten() {
                positions.push((e.batch as usize, e.row as usize));
                matches.push(e.matches);
            }
            let schema = self.data_schema(s)?;
            let columns: Vec<ArrayRef> = schema
                .fields()
                .iter()
                .enumerate()
                .map(|(c, f)| {
                    let arrays: Vec<&dyn Array> =
                        side.batches.iter().map(|b| b.column(c).as_ref()).collect();
                    if arrays.is_empty() {
                        return Ok(new_empty_array(f.data_type()));
                    }
                    interleave(&arrays, &positions)
                })
                .collect::<Result<_, _>>()?;
            let n = matches.len();
            state.put_batch(name, RecordBatch::try_new(schema, columns)?);
            state.put_batch(
                format!("{name}.matches"),
                columns_batch(vec![Arc::new(UInt32Array::from(matches))], n)?,
            );
        }
        // How many keys of each side are in the subtask's store (with a cache).
        for (s, name) in SIDES.into_iter().enumerate() {
            state.put_value(format!("{name}.spilled"), self.spilled[s] as i64);
        }
        Ok(Some(state))
    }

    /// Rebuilds each side from its one batch: key index (in the order written, so equal keys
    /// keep their order), match counts, and full-row encodings of update inputs.
    fn restore(&mut self, state: OperatorState) -> Result<()> {
        for (s, name) in SIDES.into_iter().enumerate() {
            self.spilled[s] = state
                .value(&format!("{name}.spilled"))
                .map_or(0, |v| v.max(0) as u64);
            let rows = restored_rows(&state, name, &self.data_schema(s)?)?;
            let n = rows.num_rows();
            let matches = restored_column(&state, &format!("{name}.matches"), DataType::UInt32, n)?;
            let matches = matches.as_primitive::<UInt32Type>().values();
            let key_exprs = if s == 0 {
                &self.config.join.left_keys
            } else {
                &self.config.join.right_keys
            };
            let side = &mut self.sides[s];
            let keys = key_rows(&side.keys, key_exprs, &rows)?;
            side.index.clear();
            for r in 0..n {
                if !keys.is_valid(r) {
                    continue;
                }
                let entry = Entry {
                    batch: 0,
                    row: r as u32,
                    matches: matches[r],
                };
                let key = keys.rows.row(r);
                match side.index.get_mut(key.as_ref()) {
                    Some(list) => list.push(entry),
                    None => {
                        side.index.insert(key.as_ref().into(), vec![entry]);
                    }
                }
            }
            // TTL clocks start again at the restore (they are processing time).
            side.ttl = ttl::Clock::default();
            if self.config.ttl.is_some() || self.config.cache.is_some() {
                let now = std::time::Instant::now();
                for key in side.index.keys() {
                    side.ttl.written(key, now);
                }
            }
            // `rows` stays aligned with `batches`: both hold exactly the restored batch.
            side.rows = match &side.full {
                Some(c) => vec![c.convert_columns(rows.columns())?],
                None => Vec::new(),
            };
            side.stored_rows = rows.num_rows();
            side.check_at = side.stored_rows * 2 + GARBAGE_SLACK;
            side.batches = vec![rows];
        }
        Ok(())
    }
}

impl RegularJoin {
    /// Compacts side `s` once most of its stored rows are no longer held (retracted, expired
    /// or spilled). Counting the held rows walks the index, so it is done only when the stored
    /// rows have grown by the held ones since the last look.
    fn collect_garbage(&mut self, s: usize) -> Result<()> {
        let side = &mut self.sides[s];
        if side.stored_rows <= side.check_at {
            return Ok(());
        }
        let held: usize = side.index.values().map(Vec::len).sum();
        if side.stored_rows - held > held + GARBAGE_SLACK {
            return self.compact(s);
        }
        side.check_at = side.stored_rows + held.max(GARBAGE_SLACK);
        Ok(())
    }

    /// The stored columns of side `s`: its input without the change kind.
    fn data_schema(&self, s: usize) -> Result<SchemaRef> {
        let width = self.sides[s].width;
        Ok(Arc::new(
            self.config.input_schemas[s].project(&(0..width).collect::<Vec<_>>())?,
        ))
    }
}
