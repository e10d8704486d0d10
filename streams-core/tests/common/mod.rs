//! Shared helpers of the engine tests: generated event streams, running a plan to completion,
//! and running the reference query on DataFusion's batch engine.

#![allow(dead_code, unreachable_pub, reason = "each test file uses a part")]
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

use std::sync::Arc;
use std::time::Duration;

use streams_core::arrow::array::{
    ArrayRef, Int64Array, RecordBatch, StringArray, TimestampMillisecondArray,
};
use streams_core::arrow::compute::cast;
use streams_core::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use streams_core::arrow::util::display::{ArrayFormatter, FormatOptions};
use streams_core::datafusion::datasource::MemTable;
use streams_core::datafusion::logical_expr::LogicalPlan;
use streams_core::datafusion::prelude::SessionContext;
use streams_core::plan::{JobConfig, compile};
use streams_core::runtime::launch;
use streams_core::testing::{CollectSink, MemorySource, Step};

/// One event.
#[derive(Clone, Copy, Debug)]
pub struct Event {
    pub key: u32,
    pub value: i64,
    pub ts: i64,
}

pub fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("k", DataType::Utf8, false),
        Field::new("v", DataType::Int64, false),
        Field::new(
            "ts",
            DataType::Timestamp(TimeUnit::Millisecond, None),
            false,
        ),
    ]))
}

pub fn batch(events: &[Event]) -> RecordBatch {
    let k: StringArray = events.iter().map(|e| Some(format!("k{}", e.key))).collect();
    let v: Int64Array = events.iter().map(|e| e.value).collect();
    let ts = TimestampMillisecondArray::from(events.iter().map(|e| e.ts).collect::<Vec<_>>());
    RecordBatch::try_new(schema(), vec![Arc::new(k), Arc::new(v), Arc::new(ts)]).unwrap()
}

/// `n` events with times rising by `step` ms, each pushed up to `jitter` ms later than its slot
/// (so a watermark trailing by `jitter` never makes one late), deterministic from `seed`.
pub fn events(n: usize, keys: u32, step: i64, jitter: i64, seed: u64) -> Vec<Event> {
    let mut x = seed | 1;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    (0..n)
        .map(|i| Event {
            key: (next() % keys as u64) as u32,
            value: (next() % 1000) as i64,
            ts: 1_700_000_000_000
                + i as i64 * step
                + if jitter > 0 {
                    (next() % jitter as u64) as i64
                } else {
                    0
                },
        })
        .collect()
}

/// A source with `splits` splits; events dealt to splits in runs of `batch_rows`.
pub fn source(events: &[Event], splits: usize, batch_rows: usize) -> MemorySource {
    let mut per: Vec<Vec<Step>> = vec![Vec::new(); splits];
    for (i, chunk) in events.chunks(batch_rows).enumerate() {
        per[i % splits].push(Step::Batch(batch(chunk)));
    }
    per.into_iter()
        .fold(MemorySource::new("events", schema()), |s, steps| {
            s.with_split(steps)
        })
}

pub fn config(parallelism: usize) -> JobConfig {
    JobConfig {
        parallelism,
        watermark_interval: Duration::ZERO,
        ..JobConfig::default()
    }
}

/// Compiles and runs `plan` to the end.
pub async fn run(plan: LogicalPlan, parallelism: usize) -> streams_core::Result<()> {
    let graph = compile(&[plan], &config(parallelism))?;
    launch(graph, &config(parallelism).runtime)?.wait().await
}

/// Rows as sorted text lines, timestamps as epoch milliseconds.
pub fn lines(batches: &[RecordBatch]) -> Vec<String> {
    let mut out = Vec::new();
    for b in batches {
        let cols: Vec<ArrayRef> = b
            .columns()
            .iter()
            .map(|c| match c.data_type() {
                DataType::Timestamp(_, _) => cast(c, &DataType::Int64).unwrap(),
                _ => Arc::clone(c),
            })
            .collect();
        let opts = FormatOptions::default().with_null("NULL");
        let fmts: Vec<_> = cols
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &opts).unwrap())
            .collect();
        for r in 0..b.num_rows() {
            out.push(
                fmts.iter()
                    .map(|f| f.value(r).to_string())
                    .collect::<Vec<_>>()
                    .join(" | "),
            );
        }
    }
    out.sort();
    out
}

/// Runs `sql` on DataFusion's batch engine over the events as table `t`, with the event time
/// also as `tms` (BIGINT ms).
pub async fn reference(events: &[Event], sql: &str) -> Vec<String> {
    reference_tables(&[("t", events)], sql).await
}

/// Runs `sql` on DataFusion's batch engine over several event tables (each with `tms`).
pub async fn reference_tables(tables: &[(&str, &[Event])], sql: &str) -> Vec<String> {
    let ctx = SessionContext::new();
    ctx.register_udaf(sum_of_squares());
    for (name, events) in tables {
        let b = with_tms(events);
        let table = MemTable::try_new(b.schema(), vec![vec![b]]).unwrap();
        ctx.register_table(*name, Arc::new(table)).unwrap();
    }
    let df = ctx.sql(sql).await.unwrap();
    lines(&df.collect().await.unwrap())
}

fn with_tms(events: &[Event]) -> RecordBatch {
    let b = batch(events);
    let tms = cast(b.column(2), &DataType::Int64).unwrap();
    let mut fields = schema().fields().to_vec();
    fields.push(Arc::new(Field::new("tms", DataType::Int64, false)));
    let mut cols = b.columns().to_vec();
    cols.push(tms);
    RecordBatch::try_new(Arc::new(Schema::new(fields)), cols).unwrap()
}

/// Asserts two sorted line lists are equal, showing a few differences when not.
pub fn assert_same(got: &[String], expected: &[String], what: &str) {
    if got == expected {
        return;
    }
    let missing: Vec<_> = expected
        .iter()
        .filter(|l| !got.contains(l))
        .take(8)
        .collect();
    let extra: Vec<_> = got
        .iter()
        .filter(|l| !expected.contains(l))
        .take(8)
        .collect();
    assert!(
        got == expected,
        "{what}: {} rows, expected {}\nmissing: {missing:#?}\nunexpected: {extra:#?}",
        got.len(),
        expected.len()
    );
}

pub fn collect_sink() -> Arc<CollectSink> {
    Arc::new(CollectSink::new())
}

/// A user-defined aggregate, to show that windows take any UDAF: the sum of squares of BIGINTs.
pub fn sum_of_squares() -> streams_core::datafusion::logical_expr::AggregateUDF {
    use streams_core::datafusion::logical_expr::{Volatility, create_udaf};
    create_udaf(
        "sum_sq",
        vec![DataType::Int64],
        Arc::new(DataType::Int64),
        Volatility::Immutable,
        Arc::new(|_| Ok(Box::new(SumSq(0)))),
        Arc::new(vec![DataType::Int64]),
    )
}

#[derive(Debug)]
struct SumSq(i64);

impl streams_core::datafusion::logical_expr::Accumulator for SumSq {
    fn update_batch(&mut self, values: &[ArrayRef]) -> streams_core::datafusion::error::Result<()> {
        use streams_core::arrow::array::AsArray;
        use streams_core::arrow::datatypes::Int64Type;
        for v in values[0].as_primitive::<Int64Type>().iter().flatten() {
            self.0 += v * v;
        }
        Ok(())
    }
    fn merge_batch(&mut self, states: &[ArrayRef]) -> streams_core::datafusion::error::Result<()> {
        use streams_core::arrow::array::AsArray;
        use streams_core::arrow::datatypes::Int64Type;
        self.0 += states[0]
            .as_primitive::<Int64Type>()
            .iter()
            .flatten()
            .sum::<i64>();
        Ok(())
    }
    fn state(
        &mut self,
    ) -> streams_core::datafusion::error::Result<Vec<streams_core::datafusion::scalar::ScalarValue>>
    {
        Ok(vec![streams_core::datafusion::scalar::ScalarValue::Int64(
            Some(self.0),
        )])
    }
    fn evaluate(
        &mut self,
    ) -> streams_core::datafusion::error::Result<streams_core::datafusion::scalar::ScalarValue>
    {
        Ok(streams_core::datafusion::scalar::ScalarValue::Int64(Some(
            self.0,
        )))
    }
    fn size(&self) -> usize {
        std::mem::size_of::<Self>()
    }
}
