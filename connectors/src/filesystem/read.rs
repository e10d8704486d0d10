//! The blocking half of the source: a [`Worker`] owns the open file, the read buffer and the
//! decoder, and each [`Worker::step`] produces the next batch of its subtask's files. The
//! source runs steps on tokio's blocking pool, so file I/O and decoding never hold up the
//! runtime's threads.
//!
//! Text files are read in chunks of about [`CHUNK_BYTES`], cut after the last line break (a
//! longer line grows the buffer); each step hands the next [`BATCH_ROWS`] lines of the chunk
//! to the format decoder, as slices of the buffer: no allocation per line, and the first rows
//! leave before the whole chunk is decoded.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;

use streams_core::arrow::array::ArrayRef;
use streams_core::arrow::compute::cast;
use streams_core::arrow::record_batch::RecordBatch;
use streams_core::datafusion::parquet::arrow::ProjectionMask;
use streams_core::datafusion::parquet::arrow::arrow_reader::{
    ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder,
};
use streams_core::{Error, Result};

use super::{FileFormat, Table};
use crate::format::RecordDecoder;

/// Bytes read at a time from a text file.
pub(crate) const CHUNK_BYTES: usize = 4 << 20;
/// Rows per emitted batch (at most).
pub(crate) const BATCH_ROWS: usize = 8192;
const BOM: &[u8] = b"\xEF\xBB\xBF";

/// Where a source subtask is in one of its files.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SplitPos {
    pub(crate) path: PathBuf,
    /// Text: byte offset of the next unread line. Parquet: rows already emitted.
    pub(crate) offset: u64,
    /// Text: lines before `offset` (the next line is number `line + 1`).
    pub(crate) line: u64,
    /// Read to its end.
    pub(crate) done: bool,
}

/// What a step produced.
#[derive(Debug)]
pub(crate) enum Ready {
    /// Rows of `split` (none if every line in the piece was empty or bad), after which the
    /// split's position is `offset` and `line`.
    Rows {
        split: usize,
        batch: Option<RecordBatch>,
        offset: u64,
        line: u64,
    },
    /// The split was read to its end.
    SplitEnd(usize),
    /// Every split was.
    End,
}

/// One line of the chunk: bytes `start..end` (without line break), `next` just after it.
#[derive(Clone, Copy, Debug)]
struct LineRef {
    start: usize,
    end: usize,
    next: usize,
    number: u64,
}

#[derive(Debug)]
struct TextFile {
    file: File,
    /// File offset of `buf[0]`.
    buf_offset: u64,
    /// Lines before `buf_offset`.
    line: u64,
    eof: bool,
    /// The current chunk is `buf[..cut]`, holding `lines` (empty ones left out), after which
    /// the file has `chunk_lines` lines; `lines[decoded..]` are not decoded yet.
    cut: usize,
    chunk_lines: u64,
    lines: Vec<LineRef>,
    decoded: usize,
}

#[derive(Debug)]
struct ParquetFile {
    reader: ParquetRecordBatchReader,
    /// For each table column, its index in the reader's batches.
    columns: Vec<usize>,
    rows: u64,
}

#[derive(Debug)]
enum OpenFile {
    Text(TextFile),
    Parquet(ParquetFile),
}

/// Reads a subtask's files in order, from their starting positions.
#[derive(Debug)]
pub(crate) struct Worker {
    table: Table,
    splits: Vec<SplitPos>,
    current: usize,
    open: Option<OpenFile>,
    /// `None` for Parquet.
    decoder: Option<RecordDecoder>,
    chunk: usize,
    buf: Vec<u8>,
}

impl Worker {
    /// A worker reading `splits` from their positions, with chunks of `chunk` bytes.
    pub(crate) fn new(
        table: Table,
        splits: Vec<SplitPos>,
        decoder: Option<RecordDecoder>,
        chunk: usize,
    ) -> Self {
        Worker {
            table,
            splits,
            current: 0,
            open: None,
            decoder,
            chunk: chunk.max(1),
            buf: Vec::new(),
        }
    }

    /// Records given up on so far.
    pub(crate) fn bad_records(&mut self) -> u64 {
        self.decoder.as_mut().map_or(0, |d| d.bad_records().count())
    }

    /// The next batch of the current file, its end, or the end of all files.
    pub(crate) fn step(&mut self) -> Result<Ready> {
        let i = self.current;
        let Some(split) = self.splits.get(i) else {
            return Ok(Ready::End);
        };
        if split.done {
            self.current += 1;
            return Ok(Ready::SplitEnd(i));
        }
        let mut open = match self.open.take() {
            Some(o) => o,
            None => self.open_split(i)?,
        };
        let out = match &mut open {
            OpenFile::Text(f) => self.text_step(i, f)?,
            OpenFile::Parquet(f) => self.parquet_step(i, f)?,
        };
        match out {
            Some(rows) => {
                self.open = Some(open);
                Ok(rows)
            }
            None => {
                self.current += 1;
                self.buf.clear();
                Ok(Ready::SplitEnd(i))
            }
        }
    }

    fn open_split(&mut self, i: usize) -> Result<OpenFile> {
        let s = &self.splits[i];
        let path = &s.path;
        let mut file = File::open(path).map_err(|e| self.table.io_error("cannot open", path, e))?;
        if self.table.format == FileFormat::Parquet {
            return self
                .open_parquet(file, s.offset, path)
                .map(OpenFile::Parquet);
        }
        let len = file
            .metadata()
            .map_err(|e| self.table.io_error("cannot read", path, e))?
            .len();
        if s.offset > len {
            return Err(Error::Execution {
                context: self.table.context(),
                message: format!(
                    "file '{}' has {len} bytes, but the checkpoint resumes at byte {} (was \
                     it changed?)",
                    path.display(),
                    s.offset
                ),
            });
        }
        file.seek(SeekFrom::Start(s.offset))
            .map_err(|e| self.table.io_error("cannot seek in", path, e))?;
        self.buf.clear();
        Ok(OpenFile::Text(TextFile {
            file,
            buf_offset: s.offset,
            line: s.line,
            eof: false,
            cut: 0,
            chunk_lines: s.line,
            lines: Vec::new(),
            decoded: 0,
        }))
    }

    fn open_parquet(&self, file: File, rows: u64, path: &std::path::Path) -> Result<ParquetFile> {
        let t = &self.table;
        let builder = ParquetRecordBatchReaderBuilder::try_new(file)
            .map_err(|e| t.io_error("cannot read Parquet file", path, e))?;
        let file_schema = builder.schema().clone();
        let mut roots = Vec::with_capacity(t.schema.fields().len());
        for field in t.schema.fields() {
            let idx = file_schema.index_of(field.name()).map_err(|_| {
                let names: Vec<&str> = file_schema
                    .fields()
                    .iter()
                    .map(|f| f.name().as_str())
                    .collect();
                t.io_error(
                    "a column of the table is missing in Parquet file",
                    path,
                    format!("no column `{}` (it has {})", field.name(), names.join(", ")),
                )
            })?;
            roots.push(idx);
        }
        // The reader returns the projected columns in file order.
        let mut sorted = roots.clone();
        sorted.sort_unstable();
        sorted.dedup();
        let columns = roots
            .iter()
            .map(|r| sorted.binary_search(r).unwrap_or_else(|i| i))
            .collect();
        let mask = ProjectionMask::roots(builder.parquet_schema(), sorted.iter().copied());
        let mut builder = builder.with_projection(mask).with_batch_size(BATCH_ROWS);
        if rows > 0 {
            builder = builder.with_offset(usize::try_from(rows).unwrap_or(usize::MAX));
        }
        let reader = builder
            .build()
            .map_err(|e| t.io_error("cannot read Parquet file", path, e))?;
        Ok(ParquetFile {
            reader,
            columns,
            rows,
        })
    }

    fn parquet_step(&mut self, split: usize, f: &mut ParquetFile) -> Result<Option<Ready>> {
        let t = &self.table;
        let path = &self.splits[split].path;
        let Some(read) = f.reader.next() else {
            return Ok(None);
        };
        let read = read.map_err(|e| t.io_error("cannot read Parquet file", path, e))?;
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(f.columns.len());
        for (field, &c) in t.schema.fields().iter().zip(&f.columns) {
            let column = read.column(c);
            if column.data_type() == field.data_type() {
                columns.push(column.clone());
            } else {
                columns.push(cast(column, field.data_type()).map_err(|e| {
                    t.io_error(
                        "a column does not fit the table in Parquet file",
                        path,
                        format!("column `{}`: {e}", field.name()),
                    )
                })?);
            }
        }
        let batch = RecordBatch::try_new(t.schema.clone(), columns)
            .map_err(|e| t.io_error("rows do not fit the table in Parquet file", path, e))?;
        f.rows += batch.num_rows() as u64;
        Ok(Some(Ready::Rows {
            split,
            batch: (batch.num_rows() > 0).then_some(batch),
            offset: f.rows,
            line: 0,
        }))
    }

    /// The next lines of a text file, decoded; `None` at the end of the file.
    fn text_step(&mut self, split: usize, f: &mut TextFile) -> Result<Option<Ready>> {
        if f.decoded >= f.lines.len() && !self.next_chunk(split, f)? {
            return Ok(None);
        }
        let Worker {
            splits,
            decoder,
            buf,
            ..
        } = self;
        let path = &splits[split].path;
        let decoder = decoder
            .as_mut()
            .ok_or_else(|| Error::Internal("a text file without a decoder".into()))?;
        let chunk_end = f.buf_offset + f.cut as u64;
        let piece = &f.lines[f.decoded..f.lines.len().min(f.decoded + BATCH_ROWS)];
        f.decoded += piece.len();
        let (offset, line) = match piece.last() {
            Some(l) if f.decoded < f.lines.len() => (f.buf_offset + l.next as u64, l.number),
            _ => (chunk_end, f.chunk_lines),
        };
        let batch = if piece.is_empty() {
            None
        } else {
            let slices: Vec<&[u8]> = piece.iter().map(|l| &buf[l.start..l.end]).collect();
            let batch = decoder.decode(&slices, |j| {
                format!("file '{}', line {}", path.display(), piece[j].number)
            })?;
            (batch.num_rows() > 0).then_some(batch)
        };
        Ok(Some(Ready::Rows {
            split,
            batch,
            offset,
            line,
        }))
    }

    /// Drops the decoded chunk and reads the next one into `buf[..f.cut]`, listing its lines;
    /// `false` at the end of the file.
    fn next_chunk(&mut self, split: usize, f: &mut TextFile) -> Result<bool> {
        let Worker {
            table,
            splits,
            chunk,
            buf,
            ..
        } = self;
        let path = &splits[split].path;
        buf.drain(..f.cut);
        f.buf_offset += f.cut as u64;
        f.line = f.chunk_lines;
        f.lines.clear();
        f.decoded = 0;
        let mut want = buf.len() + *chunk;
        let cut = loop {
            fill(f, buf, want).map_err(|e| table.io_error("cannot read", path, e))?;
            if let Some(p) = memchr::memrchr(b'\n', buf) {
                break p + 1;
            }
            if f.eof {
                break buf.len();
            }
            // A line longer than the buffer: read on until it ends.
            want = buf.len() + buf.len().max(*chunk);
        };
        f.cut = cut;
        if cut == 0 {
            return Ok(false);
        }
        let mut number = f.line;
        let mut start = 0;
        let ends = memchr::memchr_iter(b'\n', &buf[..cut]).map(|nl| (nl, nl + 1));
        // The last line of a file may have no line break.
        let tail = (buf[cut - 1] != b'\n').then_some((cut, cut));
        for (end, next) in ends.chain(tail) {
            number += 1;
            let mut s = start;
            let mut e = end;
            start = next;
            if e > s && buf[e - 1] == b'\r' {
                e -= 1;
            }
            if number == 1 {
                if buf[s..e].starts_with(BOM) {
                    s += BOM.len();
                }
                if table.header {
                    continue;
                }
            }
            if s < e {
                f.lines.push(LineRef {
                    start: s,
                    end: e,
                    next,
                    number,
                });
            }
        }
        f.chunk_lines = number;
        Ok(true)
    }
}

/// Reads from `f` until `buf` holds `want` bytes or the file ends.
fn fill(f: &mut TextFile, buf: &mut Vec<u8>, want: usize) -> std::io::Result<()> {
    if f.eof || buf.len() >= want {
        return Ok(());
    }
    let need = want - buf.len();
    buf.reserve(need);
    let need = need as u64;
    let n = (&f.file).take(need).read_to_end(buf)?;
    if (n as u64) < need {
        f.eof = true;
    }
    Ok(())
}
