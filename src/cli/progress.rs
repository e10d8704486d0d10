//! `rstreams run`'s progress report: per job, rows/s read by its sources and written by its
//! sinks, its watermark, how far its sources are behind their input, bad records and the last
//! checkpoint. On a terminal it is a line redrawn in place under the printed rows; otherwise a
//! plain line on stderr every ten seconds.

use std::sync::Arc;
use std::time::{Duration, Instant};

use streams_core::metrics::JobMetrics;

/// One job as the report follows it.
#[derive(Debug)]
pub(crate) struct Watched {
    name: String,
    metrics: Arc<JobMetrics>,
    last: (u64, u64),
    last_at: Instant,
    checkpoint: Option<(u64, Instant)>,
}

impl Watched {
    pub(crate) fn new(name: String, metrics: Arc<JobMetrics>) -> Self {
        Watched {
            name,
            metrics,
            last: (0, 0),
            last_at: Instant::now(),
            checkpoint: None,
        }
    }

    /// The job's line since the previous call.
    pub(crate) fn line(&mut self) -> String {
        let now = Instant::now();
        let (mut rows_in, mut rows_out, mut bad, mut late) = (0u64, 0u64, 0u64, 0u64);
        let mut lag: Option<u64> = None;
        let mut sink_wm: Option<i64> = None;
        for m in self.metrics.snapshot() {
            bad += m.bad_records;
            late += m.late_rows;
            match m.name.as_str() {
                "source" => {
                    rows_in += m.rows_out;
                    if let Some(l) = m.lag {
                        *lag.get_or_insert(0) += l;
                    }
                }
                "sink" => {
                    rows_out += m.rows_in;
                    if let Some(w) = m.watermark {
                        sink_wm = Some(sink_wm.map_or(w, |s| s.min(w)));
                    }
                }
                _ => {}
            }
        }
        let secs = now.duration_since(self.last_at).as_secs_f64().max(1e-3);
        let rate_in = (rows_in - self.last.0.min(rows_in)) as f64 / secs;
        let rate_out = (rows_out - self.last.1.min(rows_out)) as f64 / secs;
        self.last = (rows_in, rows_out);
        self.last_at = now;
        let mut line = format!(
            "{}: in {}/s, out {}/s",
            self.name,
            count(rate_in),
            count(rate_out)
        );
        if let Some(w) = sink_wm {
            line.push_str(&format!(", watermark {}", clock(w)));
        }
        if let Some(l) = lag {
            line.push_str(&format!(", lag {} records", count(l as f64)));
        }
        if bad > 0 {
            line.push_str(&format!(", {bad} bad records"));
        }
        if late > 0 {
            line.push_str(&format!(", {late} late rows"));
        }
        let ck = self.metrics.checkpoints();
        if let Some(id) = ck.last_id {
            if self.checkpoint.is_none_or(|(seen, _)| seen != id) {
                self.checkpoint = Some((id, now));
            }
            let ago = self
                .checkpoint
                .map_or(Duration::ZERO, |(_, at)| now.duration_since(at));
            line.push_str(&format!(
                ", checkpoint {id} {}s ago ({} ms)",
                ago.as_secs(),
                ck.last_duration.as_millis()
            ));
        }
        if ck.failed > 0 {
            line.push_str(&format!(", {} checkpoints failed", ck.failed));
        }
        line
    }
}

/// `1234567.0` as `1.23M`.
pub(crate) fn count(n: f64) -> String {
    if n >= 1e9 {
        format!("{:.2}G", n / 1e9)
    } else if n >= 1e6 {
        format!("{:.2}M", n / 1e6)
    } else if n >= 1e4 {
        format!("{:.1}k", n / 1e3)
    } else {
        format!("{n:.0}")
    }
}

/// Event time (ms) as a UTC date and time of day.
fn clock(ms: i64) -> String {
    if ms == i64::MAX {
        return "end of input".to_string();
    }
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_else(|| ms.to_string())
}

/// Columns and rows of the terminal on stdout or stderr (80 × 24 if unknown).
pub(crate) fn terminal_size() -> (usize, usize) {
    for fd in [libc::STDOUT_FILENO, libc::STDERR_FILENO] {
        let mut size = libc::winsize {
            ws_row: 0,
            ws_col: 0,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: TIOCGWINSZ writes a `winsize` into the pointer it is given, which points to
        // one on this stack frame.
        let ok = unsafe { libc::ioctl(fd, libc::TIOCGWINSZ, &mut size) } == 0;
        if ok && size.ws_col > 0 && size.ws_row > 0 {
            return (usize::from(size.ws_col), usize::from(size.ws_row));
        }
    }
    (80, 24)
}

/// `line` cut to `width` characters, so that it never wraps.
pub(crate) fn fit(line: &str, width: usize) -> String {
    if line.chars().count() < width {
        return line.to_string();
    }
    line.chars()
        .take(width.saturating_sub(2))
        .chain(['…'])
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_short() {
        assert_eq!(count(12.0), "12");
        assert_eq!(count(12_345.0), "12.3k");
        assert_eq!(count(1_234_567.0), "1.23M");
        assert_eq!(clock(0), "1970-01-01 00:00:00");
        assert_eq!(fit("abcdef", 4), "ab…");
        assert_eq!(fit("abc", 4), "abc");
    }
}
