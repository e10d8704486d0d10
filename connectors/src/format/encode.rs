//! Rows to payloads.

use bytes::Bytes;
use streams_core::Result;
use streams_core::arrow::array::{Array, AsArray};
use streams_core::arrow::datatypes::DataType;
use streams_core::arrow::json::LineDelimitedWriter;
use streams_core::arrow::record_batch::RecordBatch;

use super::{Csv, Format};

/// Encodes rows of one table as payloads, one per row.
#[derive(Clone, Debug)]
pub struct RecordEncoder {
    format: Format,
}

impl RecordEncoder {
    /// An encoder writing `format`.
    pub fn new(format: Format) -> Self {
        RecordEncoder { format }
    }

    /// One payload per row of `batch`, in order.
    pub fn encode(&self, batch: &RecordBatch) -> Result<Vec<Bytes>> {
        match &self.format {
            Format::Json => {
                let mut buf = Vec::new();
                {
                    let mut w = json_writer(&mut buf);
                    w.write(batch)?;
                    w.finish()?;
                }
                // JSON escapes line breaks inside strings: every line is one row.
                Ok(lines(Bytes::from(buf)))
            }
            Format::Csv(csv) => {
                let whole = csv_bytes(batch, csv)?;
                let rows = lines(whole);
                if rows.len() == batch.num_rows() {
                    return Ok(rows);
                }
                // A quoted field holds a line break: split by row instead.
                (0..batch.num_rows())
                    .map(|i| csv_bytes(&batch.slice(i, 1), csv).map(trim_newline))
                    .collect()
            }
            Format::Raw => {
                let column = batch.column(0);
                let value = |i: usize| -> Bytes {
                    if column.is_null(i) {
                        return Bytes::new();
                    }
                    match column.data_type() {
                        DataType::Binary => {
                            Bytes::copy_from_slice(column.as_binary::<i32>().value(i))
                        }
                        DataType::LargeBinary => {
                            Bytes::copy_from_slice(column.as_binary::<i64>().value(i))
                        }
                        DataType::LargeUtf8 => {
                            Bytes::copy_from_slice(column.as_string::<i64>().value(i).as_bytes())
                        }
                        _ => Bytes::copy_from_slice(column.as_string::<i32>().value(i).as_bytes()),
                    }
                };
                Ok((0..batch.num_rows()).map(value).collect())
            }
        }
    }
}

/// A JSON lines writer that writes NULL fields as `null` (Flink's JSON format writes them
/// too) instead of leaving them out.
pub(crate) fn json_writer<W: std::io::Write>(w: W) -> LineDelimitedWriter<W> {
    streams_core::arrow::json::WriterBuilder::new()
        .with_explicit_nulls(true)
        .build(w)
}

/// `batch` as CSV lines without header.
pub(crate) fn csv_bytes(batch: &RecordBatch, csv: &Csv) -> Result<Bytes> {
    let mut buf = Vec::new();
    {
        let mut w = streams_core::arrow::csv::WriterBuilder::new()
            .with_header(false)
            .with_delimiter(csv.delimiter)
            .with_quote(csv.quote)
            .with_null(csv.null_literal.clone().unwrap_or_default())
            .build(&mut buf);
        w.write(batch)?;
    }
    Ok(Bytes::from(buf))
}

fn trim_newline(b: Bytes) -> Bytes {
    let mut end = b.len();
    while end > 0 && matches!(b[end - 1], b'\n' | b'\r') {
        end -= 1;
    }
    b.slice(..end)
}

/// The lines of `bytes`, without their line breaks.
fn lines(bytes: Bytes) -> Vec<Bytes> {
    let mut out = Vec::new();
    let mut start = 0;
    for end in memchr::memchr_iter(b'\n', &bytes) {
        out.push(trim_newline(bytes.slice(start..end)));
        start = end + 1;
    }
    if start < bytes.len() {
        out.push(bytes.slice(start..));
    }
    out
}
