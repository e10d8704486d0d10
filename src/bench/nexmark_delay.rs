//! The result delay of a Nexmark run: how long after the sources' watermark passes an event
//! time the sinks' watermark passes it too. Operators emit what a watermark releases (the
//! windows it closes, the join rows it expires) before they pass the watermark on, so when a
//! sink sees the watermark pass a window's end, that window's results are already there: the
//! delay bounds how long a window's result takes to reach the sink once the watermark passed
//! its end, queues and all.
//!
//! The sinks' side is exact (a blackhole sink that notes when each watermark arrives); the
//! sources' side is read from the job's metrics every millisecond, so a delay may be counted
//! up to a millisecond short.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use streams_connectors::Blackhole;
use streams_core::arrow::array::RecordBatch;
use streams_core::arrow::datatypes::SchemaRef;
use streams_core::connector::{Connector, OptionSpec, Options};
use streams_core::metrics::JobMetrics;
use streams_core::{Result, Sink, SinkFactory, SourceFactory};

/// When a watermark first reached each value: increasing in both.
type Timeline = Vec<(i64, Instant)>;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Notes `wm` at `now` if it is ahead of the last one; the end of input (`i64::MAX`) is not a
/// watermark any window waited for, and is left out.
fn note(timeline: &mut Timeline, wm: i64, now: Instant) {
    if wm != i64::MAX && timeline.last().is_none_or(|(last, _)| wm > *last) {
        timeline.push((wm, now));
    }
}

/// The `blackhole` connector ([`Blackhole`]), with sinks that note when watermarks arrive.
#[derive(Debug, Default)]
pub(crate) struct TimedBlackhole {
    sinks: Arc<Mutex<Vec<Arc<Mutex<Timeline>>>>>,
}

impl Connector for TimedBlackhole {
    fn name(&self) -> &str {
        "blackhole"
    }

    fn options(&self) -> &[OptionSpec] {
        Blackhole.options()
    }

    fn source(
        &self,
        table: &str,
        schema: SchemaRef,
        opts: &Options,
    ) -> Result<Arc<dyn SourceFactory>> {
        Blackhole.source(table, schema, opts)
    }

    fn sink(&self, table: &str, _: SchemaRef, _: &Options) -> Result<Arc<dyn SinkFactory>> {
        Ok(Arc::new(TimedSinks {
            name: table.to_string(),
            sinks: Arc::clone(&self.sinks),
        }))
    }
}

#[derive(Debug)]
struct TimedSinks {
    name: String,
    sinks: Arc<Mutex<Vec<Arc<Mutex<Timeline>>>>>,
}

impl SinkFactory for TimedSinks {
    fn name(&self) -> &str {
        &self.name
    }

    fn create(&self, _subtask: usize, _parallelism: usize) -> Result<Box<dyn Sink>> {
        let timeline = Arc::new(Mutex::new(Vec::new()));
        lock(&self.sinks).push(Arc::clone(&timeline));
        Ok(Box::new(TimedSink { timeline }))
    }

    fn accepts_updates(&self) -> bool {
        true
    }
}

#[derive(Debug)]
struct TimedSink {
    timeline: Arc<Mutex<Timeline>>,
}

#[async_trait]
impl Sink for TimedSink {
    async fn write(&mut self, _batch: RecordBatch) -> Result<()> {
        Ok(())
    }

    async fn watermark(&mut self, wm: i64) -> Result<()> {
        note(&mut lock(&self.timeline), wm, Instant::now());
        Ok(())
    }
}

/// Reads the sources' watermark (the lowest of their subtasks') from a job's metrics every
/// millisecond, on a thread of its own, until stopped.
pub(crate) struct SourceWatch {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<Timeline>,
}

impl SourceWatch {
    pub(crate) fn start(metrics: Arc<JobMetrics>) -> SourceWatch {
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let mut timeline = Vec::new();
            while !stopped.load(Ordering::Relaxed) {
                let sources: Vec<Option<i64>> = metrics
                    .snapshot()
                    .into_iter()
                    .filter(|m| m.name.starts_with("source"))
                    .map(|m| m.watermark)
                    .collect();
                // Every source subtask must have a watermark for the sources to have one.
                if let Some(Some(wm)) = sources.iter().copied().reduce(|a, b| a.min(b)) {
                    note(&mut timeline, wm, Instant::now());
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            timeline
        });
        SourceWatch { stop, thread }
    }

    /// Stops watching: the sources' timeline.
    pub(crate) fn finish(self) -> Timeline {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap_or_default()
    }
}

/// The delay figures of a run.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Delays {
    pub(crate) samples: usize,
    pub(crate) p50_ms: Option<f64>,
    pub(crate) p99_ms: Option<f64>,
}

impl TimedBlackhole {
    /// For each watermark the sources reached: how long until every sink subtask had it.
    pub(crate) fn delays(&self, sources: &Timeline) -> Delays {
        let sinks: Vec<Timeline> = lock(&self.sinks).iter().map(|t| lock(t).clone()).collect();
        delays(sources, &sinks)
    }
}

fn delays(sources: &Timeline, sinks: &[Timeline]) -> Delays {
    if sinks.is_empty() {
        return Delays::default();
    }
    let mut ms: Vec<f64> = sources
        .iter()
        .filter_map(|&(wm, at)| {
            // The sinks have it when the last of their subtasks does.
            let mut reached = at;
            for sink in sinks {
                let i = sink.partition_point(|(w, _)| *w < wm);
                reached = reached.max(sink.get(i)?.1);
            }
            Some(reached.duration_since(at).as_micros() as f64 / 1e3)
        })
        .collect();
    ms.sort_by(f64::total_cmp);
    let at = |q: f64| {
        let i = ((ms.len() as f64 * q).ceil() as usize).clamp(1, ms.len().max(1)) - 1;
        ms.get(i).copied()
    };
    Delays {
        samples: ms.len(),
        p50_ms: at(0.5),
        p99_ms: at(0.99),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_watermark_counts_when_the_last_sink_subtask_has_it() {
        let t0 = Instant::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        let sources = vec![(10, ms(0)), (20, ms(10)), (30, ms(20)), (40, ms(30))];
        let sinks = vec![
            vec![(15, ms(5)), (30, ms(25))],
            vec![(10, ms(2)), (20, ms(40)), (30, ms(41))],
        ];
        // 10: sinks at 5 and 2 -> 5 ms; 20: at 25 and 40 -> 30 ms; 30: 25, 41 -> 21 ms;
        // 40 never reached the sinks (the run ended first): not a sample.
        let d = delays(&sources, &sinks);
        assert_eq!(d.samples, 3);
        assert_eq!(d.p50_ms, Some(21.0));
        assert_eq!(d.p99_ms, Some(30.0));
        assert_eq!(delays(&sources, &[]), Delays::default());
    }

    #[test]
    fn only_advancing_watermarks_before_the_end_are_noted() {
        let now = Instant::now();
        let mut t = Vec::new();
        for wm in [5, 5, 3, 8, i64::MAX] {
            note(&mut t, wm, now);
        }
        assert_eq!(t.iter().map(|(w, _)| *w).collect::<Vec<_>>(), [5, 8]);
    }
}
