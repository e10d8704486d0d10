//! Operator state at a checkpoint: what a stateful operator hands the runtime when every input
//! has delivered a barrier, and gets back when a job resumes from that checkpoint.
//!
//! State is Arrow: named record batches (accumulator states with their keys, buffered join
//! rows) plus named integers (watermarks, what has fired). The runtime encodes it as Arrow IPC
//! and stores it through a [`CheckpointStorage`], one entry per (node, subtask). Restoring into
//! an operator whose state has another shape (the query changed) fails with
//! [`Error::IncompatibleState`] instead of being misread.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::io::Cursor;
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, RecordBatch, RecordBatchOptions};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::ipc::reader::StreamReader;
use datafusion::arrow::ipc::writer::StreamWriter;

use crate::checkpoint::CheckpointId;
use crate::{Error, Result};

const MAGIC: &[u8; 4] = b"RSOS";
const VERSION: u8 = 1;

/// One subtask's state: named integers and named batches, in the order they were put.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct OperatorState {
    values: BTreeMap<String, i64>,
    batches: Vec<(String, RecordBatch)>,
}

impl OperatorState {
    /// Empty state.
    pub fn new() -> Self {
        OperatorState::default()
    }

    /// Whether nothing was put.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty() && self.batches.is_empty()
    }

    /// Sets integer `name`.
    pub fn put_value(&mut self, name: impl Into<String>, value: i64) {
        self.values.insert(name.into(), value);
    }

    /// Integer `name`, if it was put.
    pub fn value(&self, name: &str) -> Option<i64> {
        self.values.get(name).copied()
    }

    /// Adds a batch under `name` (names may repeat: a list of batches).
    pub fn put_batch(&mut self, name: impl Into<String>, batch: RecordBatch) {
        self.batches.push((name.into(), batch));
    }

    /// Every batch with its name, in the order put.
    pub fn batches(&self) -> impl Iterator<Item = (&str, &RecordBatch)> {
        self.batches.iter().map(|(n, b)| (n.as_str(), b))
    }

    /// The batches put under `name`.
    pub fn batches_named<'a>(
        &'a self,
        name: &str,
    ) -> impl Iterator<Item = &'a RecordBatch> + use<'a> {
        let name = name.to_owned();
        self.batches
            .iter()
            .filter(move |(n, _)| *n == name)
            .map(|(_, b)| b)
    }

    /// Takes every batch out, leaving the integers.
    pub fn take_batches(&mut self) -> Vec<(String, RecordBatch)> {
        std::mem::take(&mut self.batches)
    }

    /// Bytes for checkpoint storage: a header, the integers, then each batch as an Arrow IPC
    /// stream (schema included, so that a restore can check it).
    pub fn encode(&self) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        out.extend_from_slice(MAGIC);
        out.push(VERSION);
        put_u32(&mut out, self.values.len());
        for (name, v) in &self.values {
            put_bytes(&mut out, name.as_bytes());
            out.extend_from_slice(&v.to_le_bytes());
        }
        put_u32(&mut out, self.batches.len());
        for (name, batch) in &self.batches {
            put_bytes(&mut out, name.as_bytes());
            let mut ipc = Vec::new();
            {
                let mut w = StreamWriter::try_new(&mut ipc, &batch.schema())?;
                w.write(batch)?;
                w.finish()?;
            }
            put_bytes(&mut out, &ipc);
        }
        Ok(out)
    }

    /// Reads what [`OperatorState::encode`] wrote.
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        let mut r = Reader { bytes, pos: 0 };
        if r.take(4)? != MAGIC {
            return Err(Error::IncompatibleState(
                "not an rstreams operator state".into(),
            ));
        }
        let version = r.take(1)?[0];
        if version != VERSION {
            return Err(Error::IncompatibleState(format!(
                "operator state version {version}, this build reads {VERSION}"
            )));
        }
        let mut state = OperatorState::new();
        for _ in 0..r.u32()? {
            let name = r.string()?;
            let v = i64::from_le_bytes(r.take(8)?.try_into().map_err(|_| r.truncated())?);
            state.values.insert(name, v);
        }
        for _ in 0..r.u32()? {
            let name = r.string()?;
            let ipc = r.bytes()?;
            let mut reader = StreamReader::try_new(Cursor::new(ipc), None)?;
            let schema = reader.schema();
            let batch = match reader.next() {
                Some(b) => b?,
                None => RecordBatch::new_empty(schema),
            };
            state.batches.push((name, batch));
        }
        Ok(state)
    }
}

fn put_u32(out: &mut Vec<u8>, n: usize) {
    out.extend_from_slice(&(n as u32).to_le_bytes());
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u64).to_le_bytes());
    out.extend_from_slice(b);
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn truncated(&self) -> Error {
        Error::IncompatibleState(format!("operator state truncated at byte {}", self.pos))
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.bytes.len());
        let Some(end) = end else {
            return Err(self.truncated());
        };
        let s = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn u32(&mut self) -> Result<u32> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes(
            b.try_into().map_err(|_| self.truncated())?,
        ))
    }

    fn bytes(&mut self) -> Result<&'a [u8]> {
        let b = self.take(8)?;
        let n = u64::from_le_bytes(b.try_into().map_err(|_| self.truncated())?);
        let n = usize::try_from(n).map_err(|_| self.truncated())?;
        self.take(n)
    }

    fn string(&mut self) -> Result<String> {
        let b = self.bytes()?;
        String::from_utf8(b.to_vec()).map_err(|_| self.truncated())
    }
}

/// A batch of `columns` named `c0, c1, ...` (nullable), for state whose columns have no names
/// of their own (keys and accumulator states). Works for zero columns too (`rows` rows).
pub fn columns_batch(columns: Vec<ArrayRef>, rows: usize) -> Result<RecordBatch> {
    let fields: Vec<Field> = columns
        .iter()
        .enumerate()
        .map(|(i, c)| Field::new(format!("c{i}"), c.data_type().clone(), true))
        .collect();
    let schema = Arc::new(Schema::new(fields));
    let options = RecordBatchOptions::new().with_row_count(Some(rows));
    Ok(RecordBatch::try_new_with_options(
        schema, columns, &options,
    )?)
}

/// Checks that a restored batch has the column types this operator expects, so that state
/// written by another query is reported rather than misread. `what` names the state.
pub fn expect_types(batch: &RecordBatch, types: &[DataType], what: &str) -> Result<()> {
    let found: Vec<&DataType> = batch
        .schema_ref()
        .fields()
        .iter()
        .map(|f| f.data_type())
        .collect();
    if found.len() != types.len() || found.iter().zip(types).any(|(a, b)| *a != b) {
        return Err(Error::IncompatibleState(format!(
            "{what}: the checkpoint holds columns {found:?}, this job expects {types:?}; \
             was the query changed?"
        )));
    }
    Ok(())
}

/// Checks a restored batch against a schema (field types, in order).
pub fn expect_schema(batch: &RecordBatch, schema: &SchemaRef, what: &str) -> Result<()> {
    let types: Vec<DataType> = schema
        .fields()
        .iter()
        .map(|f| f.data_type().clone())
        .collect();
    expect_types(batch, &types, what)
}

/// Where a subtask's state lives in a checkpoint: the topology node and the subtask.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TaskKey {
    /// Topology node id.
    pub node: usize,
    /// Subtask index.
    pub subtask: usize,
}

/// A completed checkpoint, as storage reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckpointInfo {
    /// Its id.
    pub id: CheckpointId,
    /// Bytes it added to storage (new files; shared files are not counted again).
    pub bytes: u64,
    /// Where it is (a directory for local storage).
    pub location: String,
}

/// Keyed state of one operator subtask that does not fit its memory (a cache spills here), in
/// tables of byte keys and values. Writes between two barriers belong to the next checkpoint:
/// the runtime captures the store when the subtask has handed over a checkpoint.
pub trait KeyedState: Send + Sync + Debug {
    /// Values of `keys` in `table`, in order.
    fn get_many(&self, table: &str, keys: &[&[u8]]) -> Result<Vec<Option<Vec<u8>>>>;
    /// Sets each key of `table` to its value.
    fn put_many(&self, table: &str, entries: &[(&[u8], &[u8])]) -> Result<()>;
    /// Removes keys of `table`.
    fn delete_many(&self, table: &str, keys: &[&[u8]]) -> Result<()>;
}

/// Durable storage of checkpoints, used by the runtime's coordinator. A local directory of
/// RocksDB checkpoints (`streams-state`) now; an object store later.
///
/// Protocol: during checkpoint `id`, each operator subtask writes its state
/// ([`CheckpointStorage::write`]), then the runtime calls [`CheckpointStorage::snapshot`],
/// which captures everything the subtask stored (its state and its keyed state) as it is at
/// that moment. Once every task acknowledged, the coordinator calls
/// [`CheckpointStorage::complete`] with the job's metadata, which makes the checkpoint durable
/// atomically (all or nothing, including after a crash).
pub trait CheckpointStorage: Send + Sync + Debug {
    /// Stores one subtask's state for the checkpoint being taken, replacing what an earlier
    /// checkpoint stored for it. Empty bytes delete it.
    fn write(&self, key: TaskKey, state: &[u8]) -> Result<()>;
    /// The keyed state of a subtask (restored with the checkpoint the job resumed from).
    fn keyed(&self, key: TaskKey) -> Result<std::sync::Arc<dyn KeyedState>>;
    /// Captures what subtask `key` stored, as part of checkpoint `id`. Writes after this call
    /// belong to the next checkpoint. A subtask that stored nothing is skipped.
    fn snapshot(&self, key: TaskKey, id: CheckpointId) -> Result<()>;
    /// Makes checkpoint `id` durable with `metadata` (source positions, job fingerprint).
    fn complete(&self, id: CheckpointId, metadata: &[u8]) -> Result<CheckpointInfo>;
    /// Makes a savepoint: like [`CheckpointStorage::complete`], in a place retention never
    /// deletes. Returns where it is.
    fn savepoint(&self, id: CheckpointId, metadata: &[u8]) -> Result<CheckpointInfo>;
    /// The checkpoint this job resumes from (the newest complete one, or a savepoint asked for),
    /// with its metadata; `None` when the job starts fresh.
    fn restored(&self) -> Option<(CheckpointId, Vec<u8>)>;
    /// A subtask's state in the restored checkpoint.
    fn read(&self, key: TaskKey) -> Result<Option<Vec<u8>>>;
    /// The highest checkpoint or savepoint id this storage holds: new checkpoints are
    /// numbered above it, so that a fresh start never overwrites a savepoint of an earlier run.
    fn highest_id(&self) -> CheckpointId {
        self.restored().map_or(0, |(id, _)| id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Int64Array, StringArray};

    #[test]
    fn state_round_trips_through_bytes() {
        let mut s = OperatorState::new();
        s.put_value("watermark", -5);
        s.put_value("fired", i64::MAX);
        let b = columns_batch(
            vec![
                Arc::new(Int64Array::from(vec![1, 2])),
                Arc::new(StringArray::from(vec![Some("a"), None])),
            ],
            2,
        )
        .unwrap();
        s.put_batch("pane/0", b.clone());
        s.put_batch("pane/0", columns_batch(vec![], 1).unwrap());
        let back = OperatorState::decode(&s.encode().unwrap()).unwrap();
        assert_eq!(back.value("watermark"), Some(-5));
        assert_eq!(back.value("fired"), Some(i64::MAX));
        let got: Vec<&RecordBatch> = back.batches_named("pane/0").collect();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0], &b);
        assert_eq!(
            got[1].num_rows(),
            1,
            "a zero-column batch keeps its row count"
        );
    }

    #[test]
    fn damaged_or_foreign_state_is_refused() {
        let mut s = OperatorState::new();
        s.put_value("x", 1);
        let bytes = s.encode().unwrap();
        let err = OperatorState::decode(&bytes[..bytes.len() - 3]).unwrap_err();
        assert!(err.to_string().contains("truncated"), "{err}");
        assert!(OperatorState::decode(b"JUNKJUNK").is_err());
        let b = columns_batch(vec![Arc::new(Int64Array::from(vec![1]))], 1).unwrap();
        let err = expect_types(&b, &[DataType::Utf8], "window state").unwrap_err();
        assert!(err.to_string().contains("query changed"), "{err}");
    }
}
