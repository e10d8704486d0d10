//! The store benchmark: append throughput (batched and one record per call, 1 and 4 queues),
//! `always` durability with concurrent producers, sequential reads, and open-loop append latency
//! measured from each record's intended send time (so stalls are not hidden by coordinated
//! omission).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hdrhistogram::Histogram;
use serde_json::json;
use streams_queue::{Durability, ReadOptions, Record, Store, TopicConfig};

use super::median;

/// What to run.
#[derive(Clone, Debug)]
pub(crate) struct QueueBenchOptions {
    /// Scratch directory for the store; removed afterwards.
    pub(crate) dir: PathBuf,
    /// Records per throughput run.
    pub(crate) records: u64,
    /// Payload size in bytes.
    pub(crate) payload: usize,
    /// Runs per figure; the median is reported.
    pub(crate) runs: usize,
    /// Seconds of `always` and open-loop runs.
    pub(crate) seconds: f64,
    /// Run only the scenarios whose group (`append`, `single`, `always`, `read`, `open-loop`)
    /// is listed; all when empty.
    pub(crate) only: Vec<String>,
    /// Rate of the open-loop run; default half the measured one-record-per-call rate.
    pub(crate) rate: Option<f64>,
}

impl QueueBenchOptions {
    fn wants(&self, group: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|o| o == group)
    }
}

/// One line of the report.
#[derive(Clone, Debug)]
pub(crate) struct Figure {
    /// What was measured.
    pub(crate) name: String,
    /// Median records per second.
    pub(crate) records_per_sec: f64,
    /// Latency percentiles in microseconds (p50, p99, p99.9, max), where measured.
    pub(crate) latency_us: Option<[f64; 4]>,
}

impl Figure {
    /// The figure as JSON.
    pub(crate) fn to_json(&self) -> serde_json::Value {
        let mut v = json!({ "name": self.name, "records_per_sec": self.records_per_sec.round() });
        if let Some([p50, p99, p999, max]) = self.latency_us {
            v["latency_us"] = json!({ "p50": p50, "p99": p99, "p99.9": p999, "max": max });
        }
        v
    }
}

/// Why a benchmark could not run.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BenchError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] streams_queue::Error),
    /// A latency histogram could not be made or merged.
    #[error("latency histogram: {0}")]
    Histogram(String),
    /// A file of the baseline measurement failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A benchmark thread panicked.
    #[error("a benchmark thread panicked")]
    Panicked,
}

type BenchResult<T> = Result<T, BenchError>;

fn histogram() -> BenchResult<Histogram<u64>> {
    Histogram::new_with_bounds(1, 100_000_000_000, 3)
        .map_err(|e| BenchError::Histogram(e.to_string()))
}

fn percentiles(h: &Histogram<u64>) -> [f64; 4] {
    let us = |ns: u64| ns as f64 / 1000.0;
    [
        us(h.value_at_quantile(0.5)),
        us(h.value_at_quantile(0.99)),
        us(h.value_at_quantile(0.999)),
        us(h.max()),
    ]
}

/// A store in a fresh directory, removed by `finish`.
struct Scratch {
    dir: PathBuf,
    store: Store,
}

impl Scratch {
    fn new(dir: &Path, name: &str) -> BenchResult<Scratch> {
        let dir = dir.join(name);
        let _ = std::fs::remove_dir_all(&dir);
        Ok(Scratch {
            store: Store::open(&dir)?,
            dir,
        })
    }

    fn store(&self) -> &Store {
        &self.store
    }

    fn finish(self) {
        drop(self.store);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn topic(store: &Store, name: &str, queues: u32, durability: Durability) -> BenchResult<()> {
    let config = TopicConfig {
        queues,
        durability,
        ..TopicConfig::default()
    };
    Ok(store.create_topic(name, config)?)
}

/// Runs `f(i)` for `i` in `0..n` on scoped threads and collects the results.
fn on_threads<T: Send>(
    n: usize,
    f: impl Fn(usize) -> BenchResult<T> + Sync,
) -> Vec<BenchResult<T>> {
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..n)
            .map(|i| {
                let f = &f;
                s.spawn(move || f(i))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or(Err(BenchError::Panicked)))
            .collect()
    })
}

/// Appends `records` split over `queues` producer threads in batches of `batch`; records/s.
fn append_throughput(opts: &QueueBenchOptions, queues: u32, batch: usize) -> BenchResult<f64> {
    let scratch = Scratch::new(&opts.dir, "append")?;
    topic(scratch.store(), "t", queues, Durability::Os)?;
    let payload = Bytes::from(vec![b'x'; opts.payload]);
    let per_queue = opts.records / u64::from(queues);
    let started = Instant::now();
    let results = on_threads(queues as usize, |q| {
        let producer = scratch.store().producer("t")?;
        let recs: Vec<Record> = (0..batch).map(|_| Record::new(payload.clone())).collect();
        let mut left = per_queue;
        while left > 0 {
            let n = left.min(batch as u64) as usize;
            producer.append(q as u32, &recs[..n])?;
            left -= n as u64;
        }
        Ok(())
    });
    let elapsed = started.elapsed().as_secs_f64();
    results.into_iter().collect::<BenchResult<Vec<()>>>()?;
    scratch.finish();
    Ok((per_queue * u64::from(queues)) as f64 / elapsed)
}

/// `always` durability, `producers` threads appending one record per call for `seconds`.
fn always_latency(
    opts: &QueueBenchOptions,
    producers: usize,
) -> BenchResult<(f64, Histogram<u64>)> {
    let scratch = Scratch::new(&opts.dir, "always")?;
    topic(scratch.store(), "t", 1, Durability::Always)?;
    let payload = Bytes::from(vec![b'x'; opts.payload]);
    let deadline = Duration::from_secs_f64(opts.seconds);
    let started = Instant::now();
    let results = on_threads(producers, |_| {
        let producer = scratch.store().producer("t")?;
        let rec = [Record::new(payload.clone())];
        let mut h = histogram()?;
        let mut n = 0u64;
        while started.elapsed() < deadline {
            let t = Instant::now();
            producer.append(0, &rec)?;
            h.saturating_record(t.elapsed().as_nanos() as u64);
            n += 1;
        }
        Ok((n, h))
    });
    let elapsed = started.elapsed().as_secs_f64();
    let mut total = 0;
    let mut all = histogram()?;
    for r in results {
        let (n, h) = r?;
        total += n;
        all.add(&h)
            .map_err(|e| BenchError::Histogram(e.to_string()))?;
    }
    scratch.finish();
    Ok((total as f64 / elapsed, all))
}

/// What the disk gives without the store: one thread writing a record-sized block and calling
/// fdatasync, for `seconds`.
fn raw_fsync(opts: &QueueBenchOptions) -> BenchResult<(f64, Histogram<u64>)> {
    use std::os::unix::fs::FileExt;
    std::fs::create_dir_all(&opts.dir).map_err(|e| BenchError::Io {
        path: opts.dir.clone(),
        source: e,
    })?;
    let path = opts.dir.join("raw-fsync");
    let io = |source| BenchError::Io {
        path: path.clone(),
        source,
    };
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(&path)
        .map_err(io)?;
    // Preallocated and written once, as the store's segments are, so each fdatasync flushes
    // data and not a growing file size.
    let room = 64u64 << 20;
    let zeros = vec![0u8; 1 << 20];
    for at in (0..room).step_by(zeros.len()) {
        file.write_all_at(&zeros, at).map_err(io)?;
    }
    file.sync_all().map_err(io)?;
    let block = vec![b'x'; opts.payload];
    let mut h = histogram()?;
    let deadline = Duration::from_secs_f64(opts.seconds);
    let started = Instant::now();
    let mut at = 0u64;
    while started.elapsed() < deadline {
        let t = Instant::now();
        file.write_all_at(&block, at).map_err(io)?;
        file.sync_data().map_err(io)?;
        h.saturating_record(t.elapsed().as_nanos() as u64);
        at = (at + block.len() as u64) % (room - block.len() as u64);
    }
    let rate = h.len() as f64 / started.elapsed().as_secs_f64();
    drop(file);
    let _ = std::fs::remove_file(&path);
    Ok((rate, h))
}

/// Sequential read of `records` records from one queue, 1,000 per call; records/s.
fn read_throughput(opts: &QueueBenchOptions) -> BenchResult<f64> {
    let scratch = Scratch::new(&opts.dir, "read")?;
    topic(scratch.store(), "t", 1, Durability::Os)?;
    let recs: Vec<Record> = (0..1000)
        .map(|_| Record::new(vec![b'x'; opts.payload]))
        .collect();
    for _ in 0..opts.records / 1000 {
        scratch.store().append("t", 0, &recs)?;
    }
    let end = scratch.store().offsets("t", 0)?.1;
    let read = ReadOptions::default();
    let started = Instant::now();
    let mut at = 0;
    let mut bytes = 0usize;
    while at < end {
        let batch = scratch.store().read("t", 0, at, &read)?;
        if batch.is_empty() {
            return Err(BenchError::Store(streams_queue::Error::Internal(format!(
                "read at {at} returned nothing before the end ({end})"
            ))));
        }
        bytes += batch.iter().map(|r| r.payload.len()).sum::<usize>();
        at += batch.len() as u64;
    }
    let elapsed = started.elapsed().as_secs_f64();
    std::hint::black_box(bytes);
    scratch.finish();
    Ok(end as f64 / elapsed)
}

/// One producer appends one record per call at `rate` records/s for `seconds`; each latency is
/// measured from the record's scheduled send time. Returns the rate achieved.
fn open_loop(opts: &QueueBenchOptions, rate: f64) -> BenchResult<(f64, Histogram<u64>)> {
    let scratch = Scratch::new(&opts.dir, "open-loop")?;
    topic(scratch.store(), "t", 1, Durability::Os)?;
    let producer = scratch.store().producer("t")?;
    let rec = [Record::new(vec![b'x'; opts.payload])];
    let mut h = histogram()?;
    let interval = 1.0 / rate;
    let total = (rate * opts.seconds) as u64;
    let started = Instant::now();
    for i in 0..total {
        let due = started + Duration::from_secs_f64(i as f64 * interval);
        while Instant::now() < due {
            std::hint::spin_loop();
        }
        producer.append(0, &rec)?;
        h.saturating_record(due.elapsed().as_nanos() as u64);
    }
    let achieved = total as f64 / started.elapsed().as_secs_f64();
    drop(producer);
    scratch.finish();
    Ok((achieved, h))
}

/// Runs a latency measurement `runs` times; the figure holds the median rate and the median of
/// each percentile.
fn median_figure(
    name: String,
    runs: usize,
    mut f: impl FnMut() -> BenchResult<(f64, Histogram<u64>)>,
) -> BenchResult<Figure> {
    let mut rates = Vec::new();
    let mut lats = Vec::new();
    for _ in 0..runs.max(1) {
        let (rate, h) = f()?;
        rates.push(rate);
        lats.push(percentiles(&h));
    }
    let mut latency = [0.0; 4];
    for (i, l) in latency.iter_mut().enumerate() {
        *l = median(&mut lats.iter().map(|r| r[i]).collect::<Vec<_>>());
    }
    Ok(Figure {
        name,
        records_per_sec: median(&mut rates),
        latency_us: Some(latency),
    })
}

fn repeat(runs: usize, mut f: impl FnMut() -> BenchResult<f64>) -> BenchResult<f64> {
    let mut v = (0..runs.max(1))
        .map(|_| f())
        .collect::<BenchResult<Vec<f64>>>()?;
    Ok(median(&mut v))
}

/// Runs every scenario; calls `progress` with each figure as it is measured.
pub(crate) fn run(
    opts: &QueueBenchOptions,
    mut progress: impl FnMut(&Figure),
) -> BenchResult<Vec<Figure>> {
    let mut figures = Vec::new();
    let mut emit = |f: Figure| {
        progress(&f);
        figures.push(f);
    };
    for queues in [1, 4].into_iter().filter(|_| opts.wants("append")) {
        let rps = repeat(opts.runs, || append_throughput(opts, queues, 1000))?;
        emit(Figure {
            name: format!("append, 1000/batch, os, {queues} queue(s)"),
            records_per_sec: rps,
            latency_us: None,
        });
    }
    let mut single_max: f64 = 0.0;
    let single = opts.wants("single") || (opts.wants("open-loop") && opts.rate.is_none());
    for queues in [1, 4].into_iter().filter(|_| single) {
        // Long enough (about as long as the open-loop run) to include segment rolls and the
        // background work they cause: the rate a producer can sustain, not a burst.
        let long = QueueBenchOptions {
            records: opts.records * 4,
            ..opts.clone()
        };
        let rps = repeat(opts.runs, || append_throughput(&long, queues, 1))?;
        if queues == 1 {
            single_max = rps;
        }
        emit(Figure {
            name: format!("append, 1/call, os, {queues} queue(s)"),
            records_per_sec: rps,
            latency_us: None,
        });
    }
    if opts.wants("always") {
        emit(median_figure(
            "baseline: 1 thread, 100-byte write + fdatasync, preallocated file".into(),
            opts.runs,
            || raw_fsync(opts),
        )?);
        emit(median_figure(
            "append, 1/call, always, 8 producers, 1 queue".into(),
            opts.runs,
            || always_latency(opts, 8),
        )?);
    }
    if opts.wants("read") {
        let rps = repeat(opts.runs, || read_throughput(opts))?;
        emit(Figure {
            name: "sequential read, 1 queue, from the page cache".into(),
            records_per_sec: rps,
            latency_us: None,
        });
    }
    if !opts.wants("open-loop") {
        return Ok(figures);
    }
    // RocketMQ's published single-machine rate, and half of the one-record-per-call maximum.
    let rates = match opts.rate {
        Some(r) => vec![(r, "")],
        None => vec![(500_000.0, ""), (single_max / 2.0, " (half the maximum)")],
    };
    for (rate, note) in rates {
        emit(median_figure(
            format!("open-loop append at {rate:.0} records/s, os{note}"),
            opts.runs,
            || open_loop(opts, rate),
        )?);
    }
    let _ = std::fs::remove_dir_all(&opts.dir);
    Ok(figures)
}
