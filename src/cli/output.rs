//! Output helpers: standard output, aligned tables, sizes, hex and timestamps.

use std::fmt::Write as _;
use std::io::{BufWriter, StdoutLock, Write};

use super::{CliError, Result};

/// Locked, buffered standard output.
pub(crate) type Stdout = BufWriter<StdoutLock<'static>>;

/// Locked, buffered standard output (flush it before returning).
pub(crate) fn stdout() -> Stdout {
    BufWriter::with_capacity(64 << 10, std::io::stdout().lock())
}

/// Writes `text` to standard output and flushes it.
pub(crate) fn print(text: &str) -> Result<()> {
    let mut out = stdout();
    out.write_all(text.as_bytes()).map_err(CliError::stdout)?;
    out.flush().map_err(CliError::stdout)
}

/// How a table column lines up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Align {
    Left,
    Right,
}

/// A table printed with columns padded to their widest cell.
#[derive(Debug)]
pub(crate) struct Table {
    columns: Vec<(&'static str, Align)>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub(crate) fn new(columns: &[(&'static str, Align)]) -> Self {
        Table {
            columns: columns.to_vec(),
            rows: Vec::new(),
        }
    }

    pub(crate) fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// The table as text, one line per row after the header line.
    pub(crate) fn render(&self) -> String {
        let mut widths: Vec<usize> = self.columns.iter().map(|(h, _)| h.len()).collect();
        for row in &self.rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let mut out = String::new();
        let header: Vec<&str> = self.columns.iter().map(|(h, _)| *h).collect();
        let lines = std::iter::once(header).chain(
            self.rows
                .iter()
                .map(|r| r.iter().map(String::as_str).collect()),
        );
        for cells in lines {
            let mut line = String::new();
            for (i, cell) in cells.iter().enumerate() {
                let width = widths.get(i).copied().unwrap_or(0);
                let align = self.columns.get(i).map_or(Align::Left, |c| c.1);
                if i > 0 {
                    line.push_str("  ");
                }
                let _ = match align {
                    Align::Right => write!(line, "{cell:>width$}"),
                    Align::Left => write!(line, "{cell:<width$}"),
                };
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// `1.5 KiB`, `64.0 MiB`, `512 B`.
pub(crate) fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// Lower-case hex of `bytes`.
pub(crate) fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// Milliseconds since the epoch as RFC 3339 in UTC with milliseconds, e.g.
/// `2024-05-01T12:00:00.000Z`; `None` outside chrono's range.
pub(crate) fn rfc3339_millis(millis: i64) -> Option<impl std::fmt::Display> {
    chrono::DateTime::from_timestamp_millis(millis).map(|t| t.format("%Y-%m-%dT%H:%M:%S%.3fZ"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_hex() {
        assert_eq!(human_size(512), "512 B");
        assert_eq!(human_size(1536), "1.5 KiB");
        assert_eq!(human_size(64 << 20), "64.0 MiB");
        assert_eq!(hex(&[0, 0xab, 0xff]), "00abff");
    }

    #[test]
    fn timestamps_are_utc_millis() {
        assert_eq!(
            rfc3339_millis(1_500).unwrap().to_string(),
            "1970-01-01T00:00:01.500Z"
        );
    }

    #[test]
    fn tables_align() {
        let mut t = Table::new(&[("Q", Align::Right), ("PATH", Align::Left)]);
        t.row(vec!["10".into(), "a".into()]);
        t.row(vec!["2".into(), "bb".into()]);
        assert_eq!(t.render(), " Q  PATH\n10  a\n 2  bb\n");
    }
}
