//! A plain `SELECT` in `rstreams run` on a terminal. When the query produces an update stream
//! (a `GROUP BY` without window, a regular join, Top-N), its rows are kept as a table with
//! every change applied and redrawn in place under the progress line, as Flink's SQL client
//! shows a result in table mode; when the job ends the final table is printed. Rows of an
//! append-only result (window aggregates, filters) scroll above the progress line as they come.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use streams_connectors::print::{Stream, Tableau, console};
use streams_core::arrow::array::{AsArray, RecordBatch};
use streams_core::arrow::datatypes::{Int8Type, Schema, SchemaRef};
use streams_core::arrow::row::{RowConverter, SortField};
use streams_core::changelog::{INSERT, UPDATE_AFTER, is_update_stream};
use streams_core::{Result, Sink, SinkContext, SinkFactory};

/// The current rows of a query's result, sorted by their columns.
#[derive(Debug, Default)]
pub(crate) struct LiveTable {
    inner: Mutex<Option<Live>>,
}

#[derive(Debug)]
struct Live {
    layout: Tableau,
    updates: bool,
    header_done: bool,
    converter: RowConverter,
    /// Row bytes (which sort as the columns do) → how many copies, and the shown cells.
    rows: BTreeMap<Vec<u8>, (i64, Vec<String>)>,
}

impl LiveTable {
    /// Called by each sink subtask with the schema of its batches.
    fn init(&self, schema: &SchemaRef) -> Result<()> {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if inner.is_some() {
            return Ok(());
        }
        let updates = is_update_stream(schema);
        let width = schema.fields().len() - usize::from(updates);
        let data = Schema::new(schema.fields()[..width].to_vec());
        let converter = RowConverter::new(
            data.fields()
                .iter()
                .map(|f| SortField::new(f.data_type().clone()))
                .collect(),
        )?;
        *inner = Some(Live {
            layout: Tableau::new(&data),
            updates,
            header_done: false,
            converter,
            rows: BTreeMap::new(),
        });
        Ok(())
    }

    /// Applies a batch of changes, or prints the rows of an append-only result.
    fn apply(&self, batch: &RecordBatch) -> Result<()> {
        let mut guard = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let Some(live) = guard.as_mut() else {
            return Err(streams_core::Error::Internal(
                "live table written before start".into(),
            ));
        };
        let width = batch.num_columns() - usize::from(live.updates);
        let data = batch.project(&(0..width).collect::<Vec<_>>())?;
        if !live.updates {
            let mut text = String::new();
            if !std::mem::replace(&mut live.header_done, true) {
                text.push_str(&live.layout.header());
            }
            text.push_str(&live.layout.rows(&data)?);
            console().print(&text, Stream::Stdout);
            return Ok(());
        }
        let cells = live.layout.cells(&data)?;
        let rows = live.converter.convert_columns(data.columns())?;
        let ops = batch.column(width).as_primitive::<Int8Type>();
        for (i, shown) in cells.into_iter().enumerate() {
            let add = matches!(ops.value(i), INSERT | UPDATE_AFTER);
            let row = rows.row(i);
            let key = row.as_ref();
            let entry = live.rows.entry(key.to_vec()).or_insert((0, shown));
            entry.0 += if add { 1 } else { -1 };
            if entry.0 == 0 {
                live.rows.remove(key);
            }
        }
        Ok(())
    }

    /// For an update stream, the table with at most `max_rows` rows of it and the count of
    /// rows; `None` for an append-only result (whose rows were printed) or before any start.
    pub(crate) fn render(&self, max_rows: usize) -> Option<String> {
        let guard = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let live = guard.as_ref().filter(|l| l.updates)?;
        let mut out = live.layout.header();
        let mut shown = 0;
        let total: i64 = live.rows.values().map(|(n, _)| (*n).max(0)).sum();
        'rows: for (count, cells) in live.rows.values() {
            for _ in 0..(*count).max(0) {
                if shown == max_rows {
                    break 'rows;
                }
                out.push_str(&live.layout.format_line(cells));
                shown += 1;
            }
        }
        out.push_str(&live.layout.footer());
        if (shown as i64) < total {
            out.push_str(&format!("{total} rows, the first {shown} shown\n"));
        } else {
            out.push_str(&format!("{total} rows\n"));
        }
        Some(out)
    }

    /// The closing rule of an append-only result whose rows were printed.
    pub(crate) fn footer(&self) -> Option<String> {
        let guard = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let live = guard.as_ref().filter(|l| !l.updates && l.header_done)?;
        Some(live.layout.footer())
    }
}

/// The sink feeding a [`LiveTable`].
#[derive(Clone, Debug)]
pub(crate) struct ResultSink(pub(crate) Arc<LiveTable>);

impl SinkFactory for ResultSink {
    fn name(&self) -> &str {
        "result"
    }

    fn create(&self, _subtask: usize, _parallelism: usize) -> Result<Box<dyn Sink>> {
        Ok(Box::new(self.clone()))
    }

    fn accepts_updates(&self) -> bool {
        true
    }
}

#[async_trait]
impl Sink for ResultSink {
    async fn start(&mut self, ctx: &SinkContext) -> Result<()> {
        self.0.init(&ctx.schema)
    }

    async fn write(&mut self, batch: RecordBatch) -> Result<()> {
        self.0.apply(&batch)
    }
}

#[cfg(test)]
mod tests {
    use streams_core::arrow::array::{Int8Array, Int64Array, StringArray};
    use streams_core::arrow::datatypes::{DataType, Field};
    use streams_core::changelog::{OP_COLUMN, UPDATE_BEFORE};

    use super::*;

    #[test]
    fn changes_are_applied_and_rows_sorted() -> Result<()> {
        let schema = Arc::new(Schema::new(vec![
            Field::new("item", DataType::Utf8, false),
            Field::new("n", DataType::Int64, false),
            Field::new(OP_COLUMN, DataType::Int8, false),
        ]));
        let batch = |items: Vec<&str>, ns: Vec<i64>, ops: Vec<i8>| {
            RecordBatch::try_new(
                Arc::clone(&schema),
                vec![
                    Arc::new(StringArray::from(items)),
                    Arc::new(Int64Array::from(ns)),
                    Arc::new(Int8Array::from(ops)),
                ],
            )
        };
        let t = LiveTable::default();
        t.init(&schema)?;
        t.apply(&batch(vec!["b", "a"], vec![1, 1], vec![INSERT, INSERT])?)?;
        t.apply(&batch(
            vec!["b", "b", "c"],
            vec![1, 2, 7],
            vec![UPDATE_BEFORE, UPDATE_AFTER, INSERT],
        )?)?;
        let text = t.render(2).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[3], "| a                |            1 |");
        assert_eq!(lines[4], "| b                |            2 |");
        assert_eq!(lines[6], "3 rows, the first 2 shown");
        Ok(())
    }
}
