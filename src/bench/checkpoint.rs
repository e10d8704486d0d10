//! `rstreams bench checkpoint`: what exactly-once costs. Three figures:
//! - throughput of a TUMBLE aggregate over pre-generated rows with checkpoints every
//!   `interval` (RocksDB storage on disk) against the same job without checkpoints;
//! - the duration and size of a checkpoint (and of a savepoint) holding `state_keys` keys of
//!   window state;
//! - recovery: from launching a job on that savepoint (RocksDB restore, operator state
//!   rebuilt) to its first output.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use streams_core::arrow::array::{Int64Array, RecordBatch, TimestampMillisecondArray};
use streams_core::datafusion::functions_aggregate::expr_fn::{count, sum};
use streams_core::datafusion::prelude::{col, lit};
use streams_core::plan::{JobConfig, StreamPlanBuilder, WindowOptions, compile};
use streams_core::runtime::{CheckpointConfig, JobHandle, launch};
use streams_core::testing::{MemorySource, Step};
use streams_core::window::WindowSpec;
use streams_core::{Error, Result, Sink, SinkFactory};
use streams_state::{LocalStorage, StartFrom};

use super::engine::{Discard, generate, schema};

/// What to run.
#[derive(Clone, Debug)]
pub(crate) struct CheckpointBenchOptions {
    pub(crate) rows: usize,
    pub(crate) keys: u64,
    pub(crate) parallelism: usize,
    pub(crate) runs: usize,
    pub(crate) interval: Duration,
    pub(crate) state_keys: u64,
    pub(crate) dir: PathBuf,
}

/// The measurements (medians where runs repeat).
#[derive(Clone, Debug, Default)]
pub(crate) struct CheckpointFigures {
    pub(crate) rows_per_sec_without: f64,
    pub(crate) rows_per_sec_with: f64,
    pub(crate) checkpoints_per_run: f64,
    pub(crate) checkpoint_ms: f64,
    pub(crate) checkpoint_bytes: u64,
    pub(crate) savepoint_ms: f64,
    pub(crate) recovery_ms: f64,
}

fn storage(dir: &Path, from: StartFrom) -> Result<Arc<LocalStorage>> {
    LocalStorage::open(dir, 2, from)
        .map(Arc::new)
        .map_err(|e| Error::Storage(e.to_string()))
}

fn tumble_job(
    source: MemorySource,
    size: i64,
    sink: Arc<dyn SinkFactory>,
) -> Result<streams_core::datafusion::logical_expr::LogicalPlan> {
    StreamPlanBuilder::scan("events", Arc::new(source))?
        .watermark("ts", Duration::from_millis(100), None)?
        .window_aggregate(
            WindowSpec::Tumble { size, offset: 0 },
            "ts",
            vec![col("key")],
            vec![count(lit(1)).alias("n"), sum(col("price")).alias("total")],
            WindowOptions::default(),
        )?
        .sink("out", sink)
}

fn job_config(opts: &CheckpointBenchOptions, ck: Option<CheckpointConfig>) -> JobConfig {
    let mut c = JobConfig {
        parallelism: opts.parallelism,
        ..JobConfig::default()
    };
    c.runtime.checkpointing = ck;
    c
}

/// One throughput run; returns rows/s and the checkpoints it completed.
async fn throughput(
    data: &[Vec<RecordBatch>],
    opts: &CheckpointBenchOptions,
    dir: Option<&Path>,
) -> Result<(f64, u64)> {
    let source = data
        .iter()
        .fold(MemorySource::new("events", schema()), |s, split| {
            s.with_batches(split.iter().cloned())
        });
    let plan = tumble_job(source, 10_000, Arc::new(Discard::default()))?;
    let ck = match dir {
        Some(d) => Some(CheckpointConfig::new(
            Some(opts.interval),
            storage(d, StartFrom::Fresh)?,
        )),
        None => None,
    };
    let config = job_config(opts, ck);
    let graph = compile(&[plan], &config)?;
    let started = Instant::now();
    let mut handle = launch(graph, &config.runtime)?;
    let metrics = handle.metrics();
    handle.join().await?;
    let rate = opts.rows as f64 / started.elapsed().as_secs_f64();
    Ok((rate, metrics.checkpoints().completed))
}

/// Records when the first rows arrive.
#[derive(Clone, Debug, Default)]
struct FirstWrite(Arc<Mutex<Option<Instant>>>);

impl SinkFactory for FirstWrite {
    fn name(&self) -> &str {
        "first-write"
    }
    fn create(&self, _subtask: usize, _parallelism: usize) -> Result<Box<dyn Sink>> {
        Ok(Box::new(self.clone()))
    }
}

#[async_trait::async_trait]
impl Sink for FirstWrite {
    async fn write(&mut self, _batch: RecordBatch) -> Result<()> {
        let mut first = self.0.lock().unwrap_or_else(|p| p.into_inner());
        first.get_or_insert_with(Instant::now);
        Ok(())
    }
}

/// `keys` keys in one open window, then (in `recovery` scripts) a row that closes it.
fn state_source(keys: u64, splits: usize, recovery: bool) -> Result<MemorySource> {
    let base = 1_700_000_000_000i64;
    let mut per: Vec<Vec<Step>> = vec![Vec::new(); splits];
    let mut start = 0u64;
    while start < keys {
        let n = 8192.min(keys - start);
        let key: Int64Array = (start..start + n).map(|k| k as i64).collect();
        let price: Int64Array = (0..n).map(|i| (i % 1000) as i64).collect();
        let ts = TimestampMillisecondArray::from(vec![base; n as usize]);
        let b = RecordBatch::try_new(schema(), vec![Arc::new(key), Arc::new(price), Arc::new(ts)])?;
        per[(start / 8192) as usize % splits].push(Step::Batch(b));
        start += n;
    }
    let late = RecordBatch::try_new(
        schema(),
        vec![
            Arc::new(Int64Array::from(vec![0])),
            Arc::new(Int64Array::from(vec![0])),
            Arc::new(TimestampMillisecondArray::from(vec![base + 7_200_000])),
        ],
    )?;
    let mut source = MemorySource::new("events", schema());
    for mut steps in per {
        if recovery {
            // Stands where the first run's `Pending` was taken; then time moves on.
            steps.push(Step::Sleep(Duration::ZERO));
            steps.push(Step::Batch(late.clone()));
            steps.push(Step::Pending);
        } else {
            steps.push(Step::Pending);
        }
        source = source.with_split(steps);
    }
    Ok(source)
}

async fn wait_for_state(handle: &JobHandle, rows: u64) -> Result<()> {
    let metrics = handle.metrics();
    let deadline = Instant::now() + Duration::from_secs(600);
    // Every row in the window's state, then two checkpoints more: the second started after.
    let mut seen_all_at: Option<u64> = None;
    loop {
        let ingested: u64 = metrics
            .snapshot()
            .iter()
            .filter(|m| m.name.contains("window"))
            .map(|m| m.rows_in)
            .sum();
        let done = metrics.checkpoints().completed;
        match seen_all_at {
            None if ingested >= rows => seen_all_at = Some(done),
            Some(at) if done >= at + 2 => return Ok(()),
            _ => {}
        }
        if Instant::now() > deadline {
            return Err(Error::Internal("the state never got checkpointed".into()));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Checkpoint and savepoint of `state_keys` keys, then recovery from the savepoint.
async fn state_figures(
    opts: &CheckpointBenchOptions,
    figures: &mut CheckpointFigures,
) -> Result<()> {
    let dir = opts.dir.join("state");
    let splits = opts.parallelism.max(1);
    let plan = tumble_job(
        state_source(opts.state_keys, splits, false)?,
        3_600_000,
        Arc::new(Discard::default()),
    )?;
    let ck = CheckpointConfig::new(Some(opts.interval), storage(&dir, StartFrom::Fresh)?);
    let config = job_config(opts, Some(ck));
    let graph = compile(&[plan], &config)?;
    let handle = launch(graph, &config.runtime)?;
    wait_for_state(&handle, opts.state_keys).await?;
    let m = handle.metrics().checkpoints();
    figures.checkpoint_ms = m.last_duration.as_secs_f64() * 1e3;
    figures.checkpoint_bytes = m.last_bytes;
    let stop = Instant::now();
    handle.stop().await?;
    figures.savepoint_ms = stop.elapsed().as_secs_f64() * 1e3;
    // The storage (a RocksDB lock) goes with the job's config.
    drop(config);

    let first = FirstWrite::default();
    let plan = tumble_job(
        state_source(opts.state_keys, splits, true)?,
        3_600_000,
        Arc::new(first.clone()),
    )?;
    let started = Instant::now();
    let ck = CheckpointConfig::new(Some(opts.interval), storage(&dir, StartFrom::Latest)?);
    let config = job_config(opts, Some(ck));
    let graph = compile(&[plan], &config)?;
    let handle = launch(graph, &config.runtime)?;
    let deadline = Instant::now() + Duration::from_secs(600);
    let at = loop {
        if let Some(t) = *first.0.lock().unwrap_or_else(|p| p.into_inner()) {
            break t;
        }
        if Instant::now() > deadline {
            return Err(Error::Internal("no output after the restore".into()));
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    };
    figures.recovery_ms = at.duration_since(started).as_secs_f64() * 1e3;
    handle.stop().await?;
    Ok(())
}

pub(crate) fn run(opts: &CheckpointBenchOptions) -> Result<CheckpointFigures> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(opts.parallelism.max(2))
        .enable_all()
        .build()
        .map_err(|e| Error::Internal(format!("cannot start tokio: {e}")))?;
    let data = generate(opts.rows, opts.keys.max(1), opts.parallelism.max(1))?;
    let mut without = Vec::new();
    let mut with = Vec::new();
    let mut taken = Vec::new();
    for run in 0..opts.runs.max(1) {
        // Alternate, so that drift (heat, page cache) hits both alike.
        let (rate, _) = runtime.block_on(throughput(&data, opts, None))?;
        without.push(rate);
        let dir = opts.dir.join(format!("run-{run}"));
        let (rate, n) = runtime.block_on(throughput(&data, opts, Some(&dir)))?;
        with.push(rate);
        taken.push(n as f64);
        let _ = std::fs::remove_dir_all(&dir);
    }
    let mut figures = CheckpointFigures {
        rows_per_sec_without: super::median(&mut without),
        rows_per_sec_with: super::median(&mut with),
        checkpoints_per_run: super::median(&mut taken),
        ..CheckpointFigures::default()
    };
    drop(data);
    runtime.block_on(state_figures(opts, &mut figures))?;
    Ok(figures)
}
