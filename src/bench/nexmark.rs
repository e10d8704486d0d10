//! `rstreams bench nexmark`: the repo's Nexmark queries (`examples/nexmark/`, compiled in) into
//! their blackhole sinks, in two modes:
//!
//! - `generator`: the `nexmark` source generates the events as the job runs (Flink's suite
//!   counts this way), one generator split per subtask;
//! - `memory`: the same events generated before the clock starts and replayed from memory
//!   (the engine alone);
//! - `json`: the same events as JSON lines in `bid/`, `auction/` and `person/` files, read by
//!   the `filesystem` connector (written once before the first run; see `nexmark_files`).
//!
//! Each run also measures the result delay (`nexmark_delay`): how long after the sources'
//! watermark passes an event time the sinks see it pass, p50 and p99 over the run.
//!
//! Each run is a child process (`--child`), so that its CPU time and peak memory are its own.
//! Reported per run: events/s (wall clock, launch to end), CPU seconds (user + system, every
//! thread), cores used (CPU / wall), events/s per core used, and peak RSS (in memory mode,
//! counted after the events were generated).

use std::sync::Arc;
use std::time::Instant;

use serde::{Deserialize, Serialize};
use streams_connectors::{Nexmark, NexmarkSource};
use streams_core::arrow::datatypes::SchemaRef;
use streams_core::arrow::record_batch::RecordBatch;
use streams_core::connector::{Connector, ConnectorRegistry, OptionSpec, Options};
use streams_core::metrics::OperatorMetrics;
use streams_core::source::SourceContext;
use streams_core::testing::MemorySource;
use streams_core::{SinkFactory, SourceEvent, SourceFactory};
use streams_sql::{Outcome, SqlEngine};

use super::nexmark_delay::{SourceWatch, TimedBlackhole};

/// The source table and the person / auction / bid views.
const DDL: &str = include_str!("../../examples/nexmark/ddl.sql");

/// The queries this engine runs (q10, q12 and q13 need a partitioned file sink, processing
/// time and a lookup join).
pub(crate) const QUERIES: &[(&str, &str)] = &[
    ("q0", include_str!("../../examples/nexmark/q0.sql")),
    ("q1", include_str!("../../examples/nexmark/q1.sql")),
    ("q2", include_str!("../../examples/nexmark/q2.sql")),
    ("q3", include_str!("../../examples/nexmark/q3.sql")),
    ("q4", include_str!("../../examples/nexmark/q4.sql")),
    ("q5", include_str!("../../examples/nexmark/q5.sql")),
    ("q7", include_str!("../../examples/nexmark/q7.sql")),
    ("q8", include_str!("../../examples/nexmark/q8.sql")),
    ("q9", include_str!("../../examples/nexmark/q9.sql")),
    ("q11", include_str!("../../examples/nexmark/q11.sql")),
    ("q14", include_str!("../../examples/nexmark/q14.sql")),
    ("q15", include_str!("../../examples/nexmark/q15.sql")),
    ("q16", include_str!("../../examples/nexmark/q16.sql")),
    ("q17", include_str!("../../examples/nexmark/q17.sql")),
    ("q18", include_str!("../../examples/nexmark/q18.sql")),
    ("q19", include_str!("../../examples/nexmark/q19.sql")),
    ("q20", include_str!("../../examples/nexmark/q20.sql")),
    ("q21", include_str!("../../examples/nexmark/q21.sql")),
    ("q22", include_str!("../../examples/nexmark/q22.sql")),
];

/// Where the events come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Mode {
    /// Generated while the job runs.
    Generator,
    /// Generated before timing, replayed from memory.
    Memory,
    /// Read from JSON files written before timing.
    Json,
}

impl Mode {
    /// Its name on the command line and in the table.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Mode::Generator => "generator",
            Mode::Memory => "memory",
            Mode::Json => "json",
        }
    }
}

/// One run's figures.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Run {
    pub(crate) query: String,
    pub(crate) mode: Mode,
    pub(crate) events: u64,
    pub(crate) parallelism: usize,
    pub(crate) seconds: f64,
    pub(crate) events_per_sec: f64,
    pub(crate) cpu_seconds: f64,
    pub(crate) cores_used: f64,
    pub(crate) events_per_sec_per_core: f64,
    pub(crate) peak_rss_mb: f64,
    /// Watermarks the sources reached and the sinks saw too (see `nexmark_delay`).
    pub(crate) delay_samples: usize,
    /// The median and 99th percentile of how long the sinks took to see them.
    pub(crate) delay_p50_ms: Option<f64>,
    pub(crate) delay_p99_ms: Option<f64>,
}

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

/// `ddl.sql` with the generator options of a run: the suite's rates and proportions, `events`
/// events, one split per subtask, a fixed start time (the same events every run).
pub(crate) fn generator_ddl(events: u64, parallelism: usize) -> Result<String, String> {
    let start = DDL
        .find("WITH (")
        .ok_or("ddl.sql: no WITH ( after CREATE TABLE nexmark")?;
    let end = start
        + DDL[start..]
            .find(')')
            .ok_or("ddl.sql: WITH ( is not closed")?;
    let options = [
        "'connector' = 'nexmark'".to_string(),
        "'first-event.rate' = '10000000'".to_string(),
        "'next-event.rate' = '10000000'".to_string(),
        format!("'events.num' = '{events}'"),
        format!("'splits' = '{parallelism}'"),
        "'base-time' = '2026-01-01 00:00:00'".to_string(),
    ];
    Ok(format!(
        "{}WITH ({}{}",
        &DDL[..start],
        options.join(", "),
        &DDL[end..]
    ))
}

/// The `nexmark` connector, with every source's events generated in advance and replayed
/// from memory. Generated once per table: the views of `ddl.sql` and the query all read the
/// same source (one copy in memory, and reads of two views of it are one read).
#[derive(Debug, Default)]
struct Pregenerated {
    inner: Nexmark,
    made: std::sync::Mutex<Vec<(String, Arc<dyn SourceFactory>)>>,
}

impl Connector for Pregenerated {
    fn name(&self) -> &str {
        "nexmark"
    }

    fn options(&self) -> &[OptionSpec] {
        self.inner.options()
    }

    fn source(
        &self,
        table: &str,
        schema: SchemaRef,
        options: &Options,
    ) -> streams_core::Result<Arc<dyn SourceFactory>> {
        let key = format!(
            "{table}|{:?}|{:?}",
            options.iter().collect::<Vec<_>>(),
            schema
        );
        let mut made = self.made.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((_, source)) = made.iter().find(|(k, _)| *k == key) {
            return Ok(Arc::clone(source));
        }
        let generator = NexmarkSource::new(table, Arc::clone(&schema), options)?;
        let parallelism = generator.splits();
        let mut memory = MemorySource::new(table, generator.schema());
        for subtask in 0..parallelism {
            memory = memory.with_batches(generate(&generator, subtask, parallelism)?);
        }
        let memory: Arc<dyn SourceFactory> = Arc::new(memory);
        made.push((key, Arc::clone(&memory)));
        Ok(memory)
    }

    fn sink(
        &self,
        table: &str,
        schema: SchemaRef,
        options: &Options,
    ) -> streams_core::Result<Arc<dyn SinkFactory>> {
        self.inner.sink(table, schema, options)
    }
}

/// Every batch subtask `subtask` of the generator makes, in order. The generator never waits,
/// so its futures are polled to the end here.
fn generate(
    generator: &NexmarkSource,
    subtask: usize,
    parallelism: usize,
) -> streams_core::Result<Vec<RecordBatch>> {
    let mut source = generator.create(subtask, parallelism)?;
    let ctx = SourceContext {
        node: 0,
        subtask,
        parallelism,
        metrics: Arc::new(OperatorMetrics::default()),
    };
    futures::executor::block_on(async {
        source.start(&ctx).await?;
        let mut batches = Vec::new();
        loop {
            match source.next().await? {
                SourceEvent::Batch { batch, .. } => batches.push(batch),
                SourceEvent::End => return Ok(batches),
                _ => {}
            }
        }
    })
}

/// CPU seconds (user + system) of this process so far.
fn cpu_seconds() -> f64 {
    // SAFETY: getrusage fills the struct we own; RUSAGE_SELF is always valid.
    let usage = unsafe {
        let mut u: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut u);
        u
    };
    let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
    t(usage.ru_utime) + t(usage.ru_stime)
}

/// The peak resident set since the last [`reset_peak_rss`], in MB (Linux `VmHWM`).
fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

/// Starts the peak-RSS count over (Linux: `5` into `clear_refs`), so that memory mode counts
/// the job, not the generation before it.
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// One run of `query` in this process.
pub(crate) fn run_one(
    query: &str,
    mode: Mode,
    events: u64,
    parallelism: usize,
) -> Result<Run, String> {
    let text = QUERIES
        .iter()
        .find(|(q, _)| *q == query)
        .map(|(_, t)| *t)
        .ok_or_else(|| format!("no query `{query}` (there are {})", names().join(", ")))?;
    let mut registry = ConnectorRegistry::new();
    streams_connectors::register_builtin(&mut registry);
    if mode == Mode::Memory {
        registry.register(Arc::new(Pregenerated::default()));
    }
    let sinks = Arc::new(TimedBlackhole::default());
    registry.register(Arc::clone(&sinks) as Arc<dyn Connector>);
    let mut engine = SqlEngine::new(registry);
    engine
        .register_udf(streams_connectors::count_char())
        .map_err(err)?;
    let tables = match mode {
        Mode::Json => {
            super::nexmark_files::ddl(&super::nexmark_files::prepare(events, parallelism)?)
        }
        Mode::Generator | Mode::Memory => generator_ddl(events, parallelism)?,
    };
    // The engine's default watermark interval (200 ms, as Flink's), which is also how often
    // unbounded aggregates send their updates: more often costs q15 and q16 half their speed.
    let script = format!("SET 'parallelism.default' = '{parallelism}';\n{tables}\n{text}");
    // Planning makes the sources: memory mode generates its events here, before the clock.
    let plan = engine
        .execute(&script)
        .map_err(err)?
        .into_iter()
        .find_map(|o| match o {
            Outcome::Insert(p) => Some(p),
            _ => None,
        })
        .ok_or_else(|| format!("{query}: no INSERT"))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(err)?;
    reset_peak_rss();
    let (cpu, at) = (cpu_seconds(), Instant::now());
    let sources = runtime.block_on(async {
        let job = engine.launch(&plan, query).map_err(err)?;
        let watch = SourceWatch::start(job.metrics());
        let done = job.wait().await.map_err(err);
        let sources = watch.finish();
        done.map(|()| sources)
    })?;
    let seconds = at.elapsed().as_secs_f64();
    let cpu_seconds = cpu_seconds() - cpu;
    let delays = sinks.delays(&sources);
    Ok(Run {
        query: query.to_string(),
        mode,
        events,
        parallelism,
        seconds,
        events_per_sec: events as f64 / seconds,
        cpu_seconds,
        cores_used: cpu_seconds / seconds,
        events_per_sec_per_core: events as f64 / cpu_seconds.max(1e-9),
        peak_rss_mb: peak_rss_mb(),
        delay_samples: delays.samples,
        delay_p50_ms: delays.p50_ms,
        delay_p99_ms: delays.p99_ms,
    })
}

/// The queries' names.
pub(crate) fn names() -> Vec<&'static str> {
    QUERIES.iter().map(|(q, _)| *q).collect()
}

/// `runs` runs of `query` in `mode`, each in a child process (this binary with `--child`):
/// the run with the median events/s.
pub(crate) fn median_of_children(
    query: &str,
    mode: Mode,
    events: u64,
    parallelism: usize,
    runs: usize,
) -> Result<Run, String> {
    let exe = std::env::current_exe().map_err(err)?;
    let mut results = Vec::with_capacity(runs);
    for _ in 0..runs.max(1) {
        let out = std::process::Command::new(&exe)
            .args(["bench", "nexmark", "--child", "--query", query])
            .args(["--mode", mode.name()])
            .args(["--events", &events.to_string()])
            .args(["--parallelism", &parallelism.to_string()])
            .output()
            .map_err(err)?;
        if !out.status.success() {
            return Err(format!(
                "{query} ({mode:?}): {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        let run: Run = serde_json::from_slice(&out.stdout)
            .map_err(|e| format!("{query}: the child's answer: {e}"))?;
        results.push(run);
    }
    results.sort_by(|a, b| a.events_per_sec.total_cmp(&b.events_per_sec));
    Ok(results.swap_remove(results.len() / 2))
}
