//! `rstreams bench ...`: runs a benchmark and prints its medians.

use std::io::Write;
use std::path::PathBuf;

use clap::{Args, Subcommand};

use super::output::{Align, Table, print};
use super::{CliError, Format, Result};
use crate::bench::checkpoint;
use crate::bench::engine::{self, EngineBenchOptions};
use crate::bench::queue::{self, Figure, QueueBenchOptions};

#[derive(Debug, Subcommand)]
pub(crate) enum BenchCommand {
    /// The store: append (batched and one record per call, 1 and 4 queues), `always` durability
    /// with 8 producers, sequential read, and open-loop append latency. Build with --release.
    Queue(QueueBenchArgs),
    /// The engine: filter + projection, TUMBLE, HOP and SESSION aggregates over pre-generated
    /// in-memory rows, input rows per second. Build with --release.
    Engine(EngineBenchArgs),
    /// Checkpoints: TUMBLE throughput with checkpoints every --interval vs none, checkpoint and
    /// savepoint duration and size for --state-keys keys, and recovery to the first output.
    /// Build with --release.
    Checkpoint(CheckpointBenchArgs),
    /// The PostgreSQL endpoint: a job keeping a materialized view of Nexmark bids, alone and
    /// then while --clients clients query it once a second each; the job's rows/s both ways and
    /// the query latency. Build with --release.
    Serve(ServeBenchArgs),
    /// Nexmark: the repo's queries q0-q22 into blackhole sinks, with the events generated as
    /// the job runs and pre-generated in memory (the engine alone): events/s, events/s per
    /// core, CPU time, peak RSS; median of --runs, each run a process of its own. Build with
    /// --release.
    Nexmark(NexmarkBenchArgs),
}

#[derive(Debug, Args)]
pub(crate) struct NexmarkBenchArgs {
    /// The query to run, e.g. q5 (repeatable)
    #[arg(long, value_name = "qN", required_unless_present = "all")]
    query: Vec<String>,
    /// Run every query
    #[arg(long, conflicts_with = "query")]
    all: bool,
    /// Events per run
    #[arg(long, default_value_t = 10_000_000)]
    events: u64,
    /// Subtasks per operator (and generator splits)
    #[arg(long, default_value_t = 2)]
    parallelism: usize,
    /// Where events come from [default: generator, then memory; json (files written once, under
    /// the temporary directory) only when asked]
    #[arg(long, value_enum)]
    mode: Option<crate::bench::nexmark::Mode>,
    /// Runs per figure; the run with the median events/s is reported
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Output format
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
    /// Run once in this process and print the figures as JSON (what each run's child does)
    #[arg(long, hide = true)]
    child: bool,
}

#[derive(Debug, Args)]
pub(crate) struct ServeBenchArgs {
    /// Clients querying at once, one query a second each
    #[arg(long, default_value_t = 50)]
    clients: usize,
    /// Seconds of each phase
    #[arg(long, default_value_t = 30)]
    seconds: u64,
    /// Subtasks per operator
    #[arg(long, default_value_t = 2)]
    parallelism: usize,
    /// Where to make the scratch folder (`rstreams-bench-PID`, removed afterwards)
    /// [default: the system temporary directory]
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub(crate) struct CheckpointBenchArgs {
    /// Input rows per throughput run
    #[arg(long, default_value_t = 100_000_000)]
    rows: usize,
    /// Distinct keys of the throughput runs
    #[arg(long, default_value_t = 100_000)]
    keys: u64,
    /// Subtasks per operator (and source splits)
    #[arg(long, default_value_t = 2)]
    parallelism: usize,
    /// Runs per throughput figure; the median is reported
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Checkpoint interval, e.g. 1s
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    interval: std::time::Duration,
    /// Keys of window state in the checkpoint-duration run
    #[arg(long, default_value_t = 1_000_000)]
    state_keys: u64,
    /// Where to make the scratch folder (`rstreams-bench-PID`, removed afterwards)
    /// [default: the system temporary directory]
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub(crate) struct EngineBenchArgs {
    /// Input rows per run
    #[arg(long, default_value_t = 10_000_000)]
    rows: usize,
    /// Distinct keys
    #[arg(long, default_value_t = 10_000)]
    keys: u64,
    /// Subtasks per operator (and source splits)
    #[arg(long, default_value_t = 2)]
    parallelism: usize,
    /// Runs per figure; the median is reported
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Run only these scenarios: stateless, tumble, hop, session [default: all]
    #[arg(long, value_delimiter = ',', value_name = "SCENARIO")]
    only: Vec<String>,
    /// Output format
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
}

#[derive(Debug, Args)]
pub(crate) struct QueueBenchArgs {
    /// Records per throughput run (one-record-per-call runs use four times as many)
    #[arg(long, default_value_t = 5_000_000)]
    records: u64,
    /// Payload bytes per record
    #[arg(long, default_value_t = 100)]
    payload: usize,
    /// Runs per throughput figure; the median is reported
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Seconds of the `always` and open-loop runs
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    /// Where to make the benchmark's scratch folder (`rstreams-bench-PID`, removed afterwards)
    /// [default: the system temporary directory]
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// Run only these scenario groups: append, single, always, read, open-loop [default: all]
    #[arg(long, value_delimiter = ',', value_name = "GROUP")]
    only: Vec<String>,
    /// Records/s of the open-loop run [default: half the measured one-record-per-call rate]
    #[arg(long)]
    rate: Option<f64>,
    /// Output format
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
}

/// A new folder of the benchmark's own (`rstreams-bench-PID`) in `dir` or the system
/// temporary directory: never the directory given, which the benchmark removes afterwards.
fn scratch_dir(dir: Option<PathBuf>) -> PathBuf {
    dir.unwrap_or_else(std::env::temp_dir)
        .join(format!("rstreams-bench-{}", std::process::id()))
}

pub(crate) fn run(cmd: BenchCommand) -> Result<()> {
    match cmd {
        BenchCommand::Queue(args) => queue_bench(args),
        BenchCommand::Engine(args) => engine_bench(args),
        BenchCommand::Checkpoint(args) => checkpoint_bench(args),
        BenchCommand::Serve(args) => serve_bench(args),
        BenchCommand::Nexmark(args) => nexmark_bench(args),
    }
}

fn nexmark_bench(args: NexmarkBenchArgs) -> Result<()> {
    use crate::bench::nexmark::{self as nx, Mode};
    if args.events == 0 || args.parallelism == 0 || args.runs == 0 {
        return Err(CliError::Usage(
            "bench nexmark needs --events, --parallelism and --runs of at least 1".into(),
        ));
    }
    let failed = |e: String| CliError::Usage(format!("benchmark failed: {e}"));
    if args.child {
        let (Some(query), Some(mode)) = (args.query.first(), args.mode) else {
            return Err(CliError::Usage("--child needs --query and --mode".into()));
        };
        let run = nx::run_one(query, mode, args.events, args.parallelism).map_err(failed)?;
        let text = serde_json::to_string(&run).map_err(|e| failed(e.to_string()))?;
        return print(&text);
    }
    let queries: Vec<String> = if args.all {
        nx::names().iter().map(|q| q.to_string()).collect()
    } else {
        args.query.clone()
    };
    if let Some(q) = queries.iter().find(|q| !nx::names().contains(&q.as_str())) {
        return Err(CliError::Usage(format!(
            "no Nexmark query `{q}` here (there are {})",
            nx::names().join(", ")
        )));
    }
    let modes = match args.mode {
        Some(m) => vec![m],
        None => vec![Mode::Generator, Mode::Memory],
    };
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let _ = writeln!(
        std::io::stderr(),
        "bench nexmark: {} events, parallelism {}, median of {} runs, {cores} cores",
        args.events,
        args.parallelism,
        args.runs
    );
    if modes.contains(&Mode::Json) {
        let dir = crate::bench::nexmark_files::data_dir(args.events, args.parallelism);
        let _ = writeln!(std::io::stderr(), "JSON files: {}", dir.display());
        crate::bench::nexmark_files::prepare(args.events, args.parallelism).map_err(failed)?;
    }
    let mut runs = Vec::new();
    for q in &queries {
        for &mode in &modes {
            let run = nx::median_of_children(q, mode, args.events, args.parallelism, args.runs)
                .map_err(failed)?;
            let _ = writeln!(
                std::io::stderr(),
                "{q} {}: {:.0} events/s",
                mode.name(),
                run.events_per_sec
            );
            runs.push(run);
        }
    }
    if args.format == Format::Json {
        let text = serde_json::to_string_pretty(&runs).map_err(|e| failed(e.to_string()))?;
        return print(&text);
    }
    let mut t = Table::new(&[
        ("query", Align::Left),
        ("mode", Align::Left),
        ("events/s", Align::Right),
        ("per core", Align::Right),
        ("cores used", Align::Right),
        ("CPU s", Align::Right),
        ("wall s", Align::Right),
        ("peak RSS MB", Align::Right),
        ("delay p50 ms", Align::Right),
        ("delay p99 ms", Align::Right),
    ]);
    let ms = |v: Option<f64>| v.map_or_else(|| "-".to_string(), |v| format!("{v:.1}"));
    for r in &runs {
        t.row(vec![
            r.query.clone(),
            r.mode.name().to_string(),
            format!("{:.0}", r.events_per_sec),
            format!("{:.0}", r.events_per_sec_per_core),
            format!("{:.2}", r.cores_used),
            format!("{:.2}", r.cpu_seconds),
            format!("{:.2}", r.seconds),
            format!("{:.0}", r.peak_rss_mb),
            ms(r.delay_p50_ms),
            ms(r.delay_p99_ms),
        ]);
    }
    print(&t.render())
}

fn serve_bench(args: ServeBenchArgs) -> Result<()> {
    if args.seconds == 0 || args.parallelism == 0 {
        return Err(CliError::Usage(
            "bench serve needs --seconds >= 1 and --parallelism >= 1".into(),
        ));
    }
    let dir = scratch_dir(args.dir);
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let _ = writeln!(
        std::io::stderr(),
        "bench serve: {} clients, {} s per phase, parallelism {}, {cores} cores",
        args.clients,
        args.seconds,
        args.parallelism
    );
    let opts = crate::bench::serve::ServeBenchOptions {
        clients: args.clients,
        seconds: args.seconds,
        parallelism: args.parallelism,
        dir: dir.clone(),
    };
    let figures = crate::bench::serve::run(&opts);
    let _ = std::fs::remove_dir_all(&dir);
    let f = figures.map_err(|e| CliError::Usage(format!("benchmark failed: {e}")))?;
    let mut t = Table::new(&[("measure", Align::Left), ("value", Align::Right)]);
    let change = 100.0 * (f.rows_per_sec_queried / f.rows_per_sec_alone - 1.0);
    let rows = [
        ("job rows/s, alone", format!("{:.0}", f.rows_per_sec_alone)),
        (
            "job rows/s, queried",
            format!("{:.0}", f.rows_per_sec_queried),
        ),
        ("change", format!("{change:+.1}%")),
        ("queries answered", f.queries.to_string()),
        ("query errors", f.errors.to_string()),
        ("answers that went back", f.went_back.to_string()),
        ("query latency p50, ms", format!("{:.1}", f.p50_ms)),
        ("query latency p99, ms", format!("{:.1}", f.p99_ms)),
        ("query latency max, ms", format!("{:.1}", f.max_ms)),
    ];
    for (k, v) in rows {
        t.row(vec![k.to_string(), v]);
    }
    print(&t.render())
}

fn checkpoint_bench(args: CheckpointBenchArgs) -> Result<()> {
    if args.rows < 1000 || args.runs == 0 || args.parallelism == 0 || args.keys == 0 {
        return Err(CliError::Usage(
            "bench checkpoint needs --rows >= 1000, --runs >= 1, --parallelism >= 1 and \
             --keys >= 1"
                .into(),
        ));
    }
    let dir = scratch_dir(args.dir);
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let _ = writeln!(
        std::io::stderr(),
        "bench checkpoint: {} rows, {} keys, checkpoints every {:?}, parallelism {}, median of \
         {} runs, {} state keys, {cores} cores, scratch {}",
        args.rows,
        args.keys,
        args.interval,
        args.parallelism,
        args.runs,
        args.state_keys,
        dir.display()
    );
    let opts = checkpoint::CheckpointBenchOptions {
        rows: args.rows,
        keys: args.keys,
        parallelism: args.parallelism,
        runs: args.runs,
        interval: args.interval,
        state_keys: args.state_keys,
        dir: dir.clone(),
    };
    let figures = checkpoint::run(&opts);
    let _ = std::fs::remove_dir_all(&dir);
    let f = figures.map_err(|e| CliError::Usage(format!("benchmark failed: {e}")))?;
    let overhead = 100.0 * (1.0 - f.rows_per_sec_with / f.rows_per_sec_without);
    let mut t = Table::new(&[("measure", Align::Left), ("value", Align::Right)]);
    let rows = [
        (
            "TUMBLE rows/s, no checkpoints",
            format!("{:.0}", f.rows_per_sec_without),
        ),
        (
            "TUMBLE rows/s, checkpoints",
            format!("{:.0}", f.rows_per_sec_with),
        ),
        ("throughput overhead", format!("{overhead:.1}%")),
        (
            "checkpoints per run",
            format!("{:.0}", f.checkpoints_per_run),
        ),
        (
            "checkpoint of the state keys, ms",
            format!("{:.0}", f.checkpoint_ms),
        ),
        ("checkpoint size, bytes", f.checkpoint_bytes.to_string()),
        ("savepoint on stop, ms", format!("{:.0}", f.savepoint_ms)),
        (
            "restore to first output, ms",
            format!("{:.0}", f.recovery_ms),
        ),
    ];
    for (k, v) in rows {
        t.row(vec![k.to_string(), v]);
    }
    print(&t.render())
}

fn engine_bench(args: EngineBenchArgs) -> Result<()> {
    if args.rows < 1000 || args.runs == 0 || args.parallelism == 0 || args.keys == 0 {
        return Err(CliError::Usage(
            "bench engine needs --rows >= 1000, --runs >= 1, --parallelism >= 1 and --keys >= 1"
                .into(),
        ));
    }
    let opts = EngineBenchOptions {
        rows: args.rows,
        keys: args.keys,
        parallelism: args.parallelism,
        runs: args.runs,
        only: args.only,
    };
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let _ = writeln!(
        std::io::stderr(),
        "bench engine: {} rows, {} keys, parallelism {}, median of {} runs, {cores} cores",
        args.rows,
        args.keys,
        args.parallelism,
        args.runs
    );
    let figures = engine::run(&opts, |f| {
        let _ = writeln!(
            std::io::stderr(),
            "  {:<40} {:>12.0} rows/s",
            f.name,
            f.rows_per_sec
        );
    })
    .map_err(|e| CliError::Usage(format!("benchmark failed: {e}")))?;
    match args.format {
        Format::Json => {
            let doc = serde_json::json!({
                "benchmark": "engine",
                "cores": cores,
                "rows": args.rows,
                "keys": args.keys,
                "parallelism": args.parallelism,
                "runs": args.runs,
                "figures": figures.iter().map(|f| serde_json::json!({
                    "name": f.name,
                    "rows_per_sec": f.rows_per_sec,
                    "output_rows": f.output_rows,
                })).collect::<Vec<_>>(),
            });
            print(&format!("{doc:#}\n"))
        }
        Format::Table => {
            let mut t = Table::new(&[
                ("benchmark", Align::Left),
                ("rows/s", Align::Right),
                ("output rows", Align::Right),
            ]);
            for f in &figures {
                t.row(vec![
                    f.name.clone(),
                    format!("{:.0}", f.rows_per_sec),
                    f.output_rows.to_string(),
                ]);
            }
            print(&t.render())
        }
    }
}

fn queue_bench(args: QueueBenchArgs) -> Result<()> {
    if args.records < 1000 || args.runs == 0 || args.seconds <= 0.0 {
        return Err(CliError::Usage(
            "bench queue needs --records >= 1000, --runs >= 1 and --seconds > 0".into(),
        ));
    }
    let dir = scratch_dir(args.dir);
    let opts = QueueBenchOptions {
        dir: dir.clone(),
        records: args.records,
        payload: args.payload,
        runs: args.runs,
        seconds: args.seconds,
        only: args.only,
        rate: args.rate,
    };
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    // Not held across the run: the store's background threads log to stderr too.
    let _ = writeln!(
        std::io::stderr(),
        "bench queue: {} records of {} bytes, median of {} runs, {cores} cores, scratch {}",
        args.records,
        args.payload,
        args.runs,
        dir.display()
    );
    let figures = queue::run(&opts, |f| {
        let _ = writeln!(
            std::io::stderr(),
            "  {:<45} {:>12.0} records/s",
            f.name,
            f.records_per_sec
        );
    });
    let _ = std::fs::remove_dir_all(&dir);
    let figures = figures.map_err(|e| CliError::Usage(format!("benchmark failed: {e}")))?;
    match args.format {
        Format::Json => {
            let doc = serde_json::json!({
                "benchmark": "queue",
                "cores": cores,
                "records": args.records,
                "payload_bytes": args.payload,
                "runs": args.runs,
                "figures": figures.iter().map(Figure::to_json).collect::<Vec<_>>(),
            });
            print(&format!("{doc:#}\n"))
        }
        Format::Table => print(&table(&figures)),
    }
}

fn table(figures: &[Figure]) -> String {
    let mut t = Table::new(&[
        ("benchmark", Align::Left),
        ("records/s", Align::Right),
        ("p50 µs", Align::Right),
        ("p99 µs", Align::Right),
        ("p99.9 µs", Align::Right),
        ("max µs", Align::Right),
    ]);
    for f in figures {
        let mut row = vec![f.name.clone(), format!("{:.0}", f.records_per_sec)];
        match f.latency_us {
            Some(l) => row.extend(l.iter().map(|v| format!("{v:.1}"))),
            None => row.extend(std::iter::repeat_n(String::from("-"), 4)),
        }
        t.row(row);
    }
    t.render()
}
