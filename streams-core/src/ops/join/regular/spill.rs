//! A bounded cache of the regular join's rows over its subtask's RocksDB store
//! (`SET 'state.cache.keys'`): when a side holds more keys than that in memory, the rows of
//! its least recently written keys go to the keyed table `left` or `right` (key: the join key
//! in Arrow's row format; value: the key's rows with their match counts, row format), and come
//! back when a row with that key arrives on either side. Results are the same as with every
//! row in memory; a checkpoint holds both parts (the store is captured at the barrier).

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, RecordBatch, UInt32Array};
use datafusion::arrow::compute::interleave;
use datafusion::arrow::datatypes::{DataType, UInt32Type};
use datafusion::arrow::row::{RowConverter, SortField};

use super::{Entry, Keys, RegularJoin};
use crate::ops::join::SIDES;
use crate::state::KeyedState;
use crate::{Error, Result};

/// Where and how rows spill.
pub(super) struct Spill {
    store: Arc<dyn KeyedState>,
    /// Per side: data columns then the match count.
    rows: [RowConverter; 2],
}

impl std::fmt::Debug for Spill {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Spill").finish_non_exhaustive()
    }
}

impl Spill {
    pub(super) fn new(join: &RegularJoin, store: Arc<dyn KeyedState>) -> Result<Self> {
        let converter = |s: usize| -> Result<RowConverter> {
            let mut fields: Vec<SortField> = join
                .data_schema(s)?
                .fields()
                .iter()
                .map(|f| SortField::new(f.data_type().clone()))
                .collect();
            fields.push(SortField::new(DataType::UInt32));
            if !RowConverter::supports_fields(&fields) {
                return Err(Error::plan(
                    "'state.cache.keys': a joined column has a type that cannot spill to the \
                     state store; remove the setting for this job",
                ));
            }
            Ok(RowConverter::new(fields)?)
        };
        Ok(Spill {
            store,
            rows: [converter(0)?, converter(1)?],
        })
    }
}

/// Rows of one key, each length-prefixed.
fn pack(rows: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::with_capacity(rows.iter().map(|r| r.len() + 4).sum());
    for r in rows {
        out.extend_from_slice(&(r.len() as u32).to_le_bytes());
        out.extend_from_slice(r);
    }
    out
}

fn unpack(bytes: &[u8]) -> Result<Vec<&[u8]>> {
    let bad = || Error::IncompatibleState("a spilled join row is truncated".into());
    let mut out = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let len = bytes.get(at..at + 4).ok_or_else(bad)?;
        let len = u32::from_le_bytes(len.try_into().map_err(|_| bad())?) as usize;
        out.push(bytes.get(at + 4..at + 4 + len).ok_or_else(bad)?);
        at += 4 + len;
    }
    Ok(out)
}

impl RegularJoin {
    /// Brings back, on both sides, the spilled rows of the valid keys of a batch.
    pub(super) fn unspill(&mut self, keys: &Keys, n: usize) -> Result<()> {
        let Some(spill) = &self.spill else {
            return Ok(());
        };
        let store = Arc::clone(&spill.store);
        for (s, table) in SIDES.into_iter().enumerate() {
            if self.spilled[s] == 0 {
                continue;
            }
            let side = &self.sides[s];
            let mut missing: BTreeSet<&[u8]> = BTreeSet::new();
            for r in 0..n {
                if keys.is_valid(r) {
                    let k = keys.rows.row(r).data();
                    if !side.index.contains_key(k) {
                        missing.insert(k);
                    }
                }
            }
            if missing.is_empty() {
                continue;
            }
            let missing: Vec<&[u8]> = missing.into_iter().collect();
            let found = store.get_many(table, &missing)?;
            let mut owners = Vec::new();
            let mut rows = Vec::new();
            let mut gone = Vec::new();
            for (k, v) in missing.iter().zip(&found) {
                if let Some(v) = v {
                    gone.push(*k);
                    for row in unpack(v)? {
                        owners.push(*k);
                        rows.push(row);
                    }
                }
            }
            if gone.is_empty() {
                continue;
            }
            let Some(spill) = &mut self.spill else {
                return Ok(());
            };
            let parser = spill.rows[s].parser();
            let mut columns = spill.rows[s].convert_rows(rows.iter().map(|r| parser.parse(r)))?;
            let matches = columns
                .pop()
                .ok_or_else(|| Error::Internal("spilled rows without match counts".into()))?;
            let matches = matches.as_primitive::<UInt32Type>();
            self.spilled[s] = self.spilled[s].saturating_sub(gone.len() as u64);
            let schema = self.data_schema(s)?;
            let batch = RecordBatch::try_new(schema, columns)?;
            let now = std::time::Instant::now();
            let side = &mut self.sides[s];
            let b = side.batches.len() as u32;
            if let Some(full) = &side.full {
                side.rows.push(full.convert_columns(batch.columns())?);
            }
            for (r, k) in owners.iter().enumerate() {
                let entry = Entry {
                    batch: b,
                    row: r as u32,
                    matches: matches.value(r),
                };
                side.index.entry((*k).into()).or_default().push(entry);
                side.ttl.written(k, now);
            }
            side.stored_rows += batch.num_rows();
            side.batches.push(batch);
            store.delete_many(table, &gone)?;
        }
        Ok(())
    }

    /// When a side holds more keys than the cache, the rows of its least recently written keys
    /// go to the store (down to three quarters of the cache), and the side is compacted.
    pub(super) fn spill_cold(&mut self) -> Result<()> {
        let (Some(cache), true) = (self.config.cache, self.spill.is_some()) else {
            return Ok(());
        };
        for (s, table) in SIDES.into_iter().enumerate() {
            if self.sides[s].index.len() <= cache {
                continue;
            }
            let count = self.sides[s].index.len() - (cache - cache / 4);
            let cold = self.sides[s].ttl.coldest(count);
            let side = &mut self.sides[s];
            let mut lists: Vec<(Box<[u8]>, Vec<Entry>)> = Vec::with_capacity(cold.len());
            for k in cold {
                side.ttl.forget(&k);
                if let Some(list) = side.index.remove(&k)
                    && !list.is_empty()
                {
                    lists.push((k, list));
                }
            }
            if !lists.is_empty() {
                let positions: Vec<(usize, usize)> = lists
                    .iter()
                    .flat_map(|(_, l)| l.iter().map(|e| (e.batch as usize, e.row as usize)))
                    .collect();
                let matches: UInt32Array = lists
                    .iter()
                    .flat_map(|(_, l)| l.iter().map(|e| e.matches))
                    .collect();
                let mut columns = gather(&side.batches, side.width, &positions)?;
                columns.push(Arc::new(matches));
                let Some(spill) = &mut self.spill else {
                    return Ok(());
                };
                let encoded = spill.rows[s].convert_columns(&columns)?;
                let mut at = 0;
                let mut values = Vec::with_capacity(lists.len());
                for (_, l) in &lists {
                    let rows: Vec<&[u8]> =
                        (at..at + l.len()).map(|i| encoded.row(i).data()).collect();
                    values.push(pack(&rows));
                    at += l.len();
                }
                let entries: Vec<(&[u8], &[u8])> = lists
                    .iter()
                    .zip(&values)
                    .map(|((k, _), v)| (&k[..], v.as_slice()))
                    .collect();
                spill.store.put_many(table, &entries)?;
                self.spilled[s] += lists.len() as u64;
            }
            self.compact(s)?;
        }
        Ok(())
    }

    /// Rewrites side `s` as one batch of the rows its index holds (dropping rows retracted or
    /// spilled), in index order.
    pub(super) fn compact(&mut self, s: usize) -> Result<()> {
        let side = &mut self.sides[s];
        let mut positions = Vec::new();
        let mut index: HashMap<Box<[u8]>, Vec<Entry>> = HashMap::with_capacity(side.index.len());
        for (k, list) in side.index.drain() {
            let mut moved = Vec::with_capacity(list.len());
            for e in list {
                moved.push(Entry {
                    batch: 0,
                    row: positions.len() as u32,
                    matches: e.matches,
                });
                positions.push((e.batch as usize, e.row as usize));
            }
            index.insert(k, moved);
        }
        let columns = gather(&side.batches, side.width, &positions)?;
        let schema = self.data_schema(s)?;
        let batch = if columns.is_empty() {
            RecordBatch::new_empty(schema)
        } else {
            RecordBatch::try_new(schema, columns)?
        };
        let side = &mut self.sides[s];
        side.rows = match &side.full {
            Some(c) => vec![c.convert_columns(batch.columns())?],
            None => Vec::new(),
        };
        side.stored_rows = batch.num_rows();
        side.check_at = side.stored_rows * 2 + super::GARBAGE_SLACK;
        side.batches = vec![batch];
        side.index = index;
        Ok(())
    }
}

/// The data columns of the rows at `positions` (batch, row) of `batches`.
fn gather(
    batches: &[RecordBatch],
    width: usize,
    positions: &[(usize, usize)],
) -> Result<Vec<ArrayRef>> {
    if batches.is_empty() {
        return Ok(Vec::new());
    }
    (0..width)
        .map(|c| {
            let arrays: Vec<&dyn Array> = batches.iter().map(|b| b.column(c).as_ref()).collect();
            Ok(interleave(&arrays, positions)?)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packed_rows_come_back() {
        let rows: Vec<&[u8]> = vec![b"ab", b"", b"cde"];
        let packed = pack(&rows);
        assert_eq!(unpack(&packed).unwrap(), rows);
        assert!(unpack(&packed[..packed.len() - 1]).is_err());
    }
}
