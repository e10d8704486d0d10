//! `rstreams bench engine`: the engine core over pre-generated in-memory rows, from source to a
//! discarding sink: stateless filter + projection, and TUMBLE, HOP and SESSION window
//! aggregates keyed by one of many keys. Throughput is input rows per wall-clock second.

use std::sync::Arc;
use std::time::{Duration, Instant};

use streams_core::arrow::array::{Int64Array, RecordBatch, TimestampMillisecondArray};
use streams_core::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use streams_core::datafusion::functions_aggregate::expr_fn::{count, sum};
use streams_core::datafusion::prelude::{col, lit};
use streams_core::plan::{JobConfig, StreamPlanBuilder, WindowOptions, compile};
use streams_core::runtime::launch;
use streams_core::testing::MemorySource;
use streams_core::window::WindowSpec;
use streams_core::{Result, Sink, SinkFactory};

/// What to run.
#[derive(Clone, Debug)]
pub(crate) struct EngineBenchOptions {
    pub(crate) rows: usize,
    pub(crate) keys: u64,
    pub(crate) parallelism: usize,
    pub(crate) runs: usize,
    pub(crate) only: Vec<String>,
}

/// One scenario's median.
#[derive(Clone, Debug)]
pub(crate) struct EngineFigure {
    pub(crate) name: String,
    pub(crate) rows_per_sec: f64,
    pub(crate) output_rows: u64,
}

/// Drops everything, counting rows (so results are computed, not optimised away).
#[derive(Clone, Debug, Default)]
pub(crate) struct Discard(pub(crate) Arc<std::sync::atomic::AtomicU64>);

impl SinkFactory for Discard {
    fn name(&self) -> &str {
        "discard"
    }
    fn create(&self, _subtask: usize, _parallelism: usize) -> Result<Box<dyn Sink>> {
        Ok(Box::new(self.clone()))
    }
}

#[async_trait::async_trait]
impl Sink for Discard {
    async fn write(&mut self, batch: RecordBatch) -> Result<()> {
        self.0.fetch_add(
            batch.num_rows() as u64,
            std::sync::atomic::Ordering::Relaxed,
        );
        Ok(())
    }
}

pub(crate) fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("key", DataType::Int64, false),
        Field::new("price", DataType::Int64, false),
        Field::new(
            "ts",
            DataType::Timestamp(TimeUnit::Millisecond, None),
            false,
        ),
    ]))
}

/// `rows` rows in batches of 8192 over 100 s of event time (100 K rows/s at 10 M rows), keys
/// uniformly random, dealt to `splits` splits in order.
pub(crate) fn generate(rows: usize, keys: u64, splits: usize) -> Result<Vec<Vec<RecordBatch>>> {
    const BATCH: usize = 8192;
    let span_ms = 100_000i64;
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut out = vec![Vec::new(); splits.max(1)];
    let mut start = 0usize;
    while start < rows {
        let n = BATCH.min(rows - start);
        let key: Int64Array = (0..n).map(|_| (next() % keys) as i64).collect();
        let price: Int64Array = (0..n).map(|_| (next() % 1000) as i64).collect();
        let ts: Vec<i64> = (start..start + n)
            .map(|i| 1_700_000_000_000 + i as i64 * span_ms / rows as i64)
            .collect();
        let batch = RecordBatch::try_new(
            schema(),
            vec![
                Arc::new(key),
                Arc::new(price),
                Arc::new(TimestampMillisecondArray::from(ts)),
            ],
        )?;
        let split = (start / BATCH) % out.len();
        out[split].push(batch);
        start += n;
    }
    Ok(out)
}

async fn run_once(
    scenario: &str,
    data: &[Vec<RecordBatch>],
    opts: &EngineBenchOptions,
) -> Result<(Duration, u64)> {
    let source = data
        .iter()
        .fold(MemorySource::new("events", schema()), |s, split| {
            s.with_batches(split.iter().cloned())
        });
    let sink = Discard::default();
    let scan = StreamPlanBuilder::scan("events", Arc::new(source))?.watermark(
        "ts",
        Duration::from_millis(100),
        None,
    )?;
    let aggs = vec![count(lit(1)).alias("n"), sum(col("price")).alias("total")];
    let window = |spec| {
        scan.clone().window_aggregate(
            spec,
            "ts",
            vec![col("key")],
            aggs.clone(),
            WindowOptions::default(),
        )
    };
    let plan = match scenario {
        "stateless" => scan
            .clone()
            .filter(col("price").gt(lit(100i64)))?
            .project(vec![
                col("key"),
                (col("price") * lit(2i64)).alias("doubled"),
                col("ts"),
            ])?,
        "tumble" => window(WindowSpec::Tumble {
            size: 10_000,
            offset: 0,
        })?,
        "hop" => window(WindowSpec::Hop {
            size: 10_000,
            slide: 2_000,
        })?,
        _ => window(WindowSpec::Session { gap: 500 })?,
    }
    .sink("discard", Arc::new(sink.clone()))?;
    let config = JobConfig {
        parallelism: opts.parallelism,
        ..JobConfig::default()
    };
    let graph = compile(&[plan], &config)?;
    let started = Instant::now();
    launch(graph, &config.runtime)?.wait().await?;
    Ok((
        started.elapsed(),
        sink.0.load(std::sync::atomic::Ordering::Relaxed),
    ))
}

/// Runs the scenarios; `progress` sees each figure as it is measured.
pub(crate) fn run(
    opts: &EngineBenchOptions,
    mut progress: impl FnMut(&EngineFigure),
) -> Result<Vec<EngineFigure>> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(opts.parallelism.max(2))
        .enable_all()
        .build()
        .map_err(|e| streams_core::Error::Internal(format!("cannot start tokio: {e}")))?;
    let data = generate(opts.rows, opts.keys.max(1), opts.parallelism.max(1))?;
    let mut figures = Vec::new();
    for scenario in ["stateless", "tumble", "hop", "session"] {
        if !opts.only.is_empty() && !opts.only.iter().any(|o| o == scenario) {
            continue;
        }
        let mut rates = Vec::new();
        let mut output_rows = 0;
        for _ in 0..opts.runs.max(1) {
            let (elapsed, out) = runtime.block_on(run_once(scenario, &data, opts))?;
            rates.push(opts.rows as f64 / elapsed.as_secs_f64());
            output_rows = out;
        }
        let name = match scenario {
            "stateless" => "filter + projection".to_string(),
            "tumble" => "TUMBLE(10s) count+sum by key".to_string(),
            "hop" => "HOP(10s, slide 2s) count+sum by key".to_string(),
            _ => "SESSION(gap 500ms) count+sum by key".to_string(),
        };
        let figure = EngineFigure {
            name,
            rows_per_sec: super::median(&mut rates),
            output_rows,
        };
        progress(&figure);
        figures.push(figure);
    }
    Ok(figures)
}
