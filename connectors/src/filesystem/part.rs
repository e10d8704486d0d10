//! Part files of the sink: their names, a writer per format, and the file-system steps
//! (fsync, directory sync) that make a rename durable.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use streams_core::arrow::datatypes::SchemaRef;
use streams_core::arrow::record_batch::RecordBatch;
use streams_core::datafusion::parquet::arrow::ArrowWriter;
use streams_core::datafusion::parquet::basic::Compression;
use streams_core::datafusion::parquet::file::properties::WriterProperties;
use streams_core::{Error, Result};

use super::{FileFormat, Table};
use crate::format::{Format, RecordEncoder};

const WRITE_BUFFER: usize = 1 << 20;

/// The names of one sink subtask's part files in one run:
/// `.part-<run>-<subtask>-<n>.inprogress`, `.part-<run>-<subtask>-<n>.pending` and the visible
/// `part-<run>-<subtask>-<n>.<ext>`.
#[derive(Clone, Debug)]
pub(crate) struct PartNames {
    dir: PathBuf,
    prefix: String,
    ext: &'static str,
}

impl PartNames {
    pub(crate) fn new(dir: &Path, run: u32, subtask: usize, ext: &'static str) -> Self {
        PartNames {
            dir: dir.to_path_buf(),
            prefix: format!("part-{run:08x}-{subtask}-"),
            ext,
        }
    }

    pub(crate) fn in_progress(&self, n: u64) -> PathBuf {
        self.dir.join(format!(".{}{n}.inprogress", self.prefix))
    }

    pub(crate) fn pending(&self, n: u64) -> PathBuf {
        self.dir.join(format!(".{}{n}.pending", self.prefix))
    }

    pub(crate) fn visible(&self, n: u64) -> PathBuf {
        self.dir.join(format!("{}{n}.{}", self.prefix, self.ext))
    }

    /// The number of a hidden (in-progress or pending) file of this run and subtask.
    pub(crate) fn hidden_number(&self, name: &str) -> Option<u64> {
        let rest = name.strip_prefix('.')?.strip_prefix(&self.prefix)?;
        let n = rest
            .strip_suffix(".inprogress")
            .or_else(|| rest.strip_suffix(".pending"))?;
        n.parse().ok()
    }

    /// Whether any file of number `n` exists.
    pub(crate) fn taken(&self, n: u64) -> bool {
        [self.in_progress(n), self.pending(n), self.visible(n)]
            .iter()
            .any(|p| p.symlink_metadata().is_ok())
    }
}

/// Bytes written through it, counted.
#[derive(Debug)]
struct Counting {
    inner: BufWriter<File>,
    bytes: u64,
}

impl Write for Counting {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

#[derive(Debug)]
enum Out {
    Lines {
        w: Counting,
        format: Format,
        encoder: RecordEncoder,
    },
    Parquet(Box<ArrowWriter<BufWriter<File>>>),
}

/// One open part file.
#[derive(Debug)]
pub(crate) struct PartWriter {
    path: PathBuf,
    out: Out,
}

impl PartWriter {
    /// Creates `path` (which must not exist) for rows of `schema`; a CSV file with
    /// `csv.header` starts with its header line.
    pub(crate) fn create(table: &Table, schema: &SchemaRef, path: PathBuf) -> Result<Self> {
        let file = File::options()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| table.io_error("cannot create", &path, e))?;
        let inner = BufWriter::with_capacity(WRITE_BUFFER, file);
        let out = match &table.format {
            FileFormat::Lines(format) => {
                let mut w = Counting { inner, bytes: 0 };
                if let (Format::Csv(csv), true) = (format, table.header) {
                    let mut header = Vec::new();
                    streams_core::arrow::csv::WriterBuilder::new()
                        .with_header(true)
                        .with_delimiter(csv.delimiter)
                        .with_quote(csv.quote)
                        .build(&mut header)
                        .write(&RecordBatch::new_empty(schema.clone()))?;
                    w.write_all(&header)
                        .map_err(|e| table.io_error("cannot write", &path, e))?;
                }
                Out::Lines {
                    w,
                    format: format.clone(),
                    encoder: RecordEncoder::new(format.clone()),
                }
            }
            FileFormat::Parquet => {
                let props = WriterProperties::builder()
                    .set_compression(Compression::SNAPPY)
                    .build();
                let w = ArrowWriter::try_new(inner, schema.clone(), Some(props))
                    .map_err(|e| table.io_error("cannot write Parquet file", &path, e))?;
                Out::Parquet(Box::new(w))
            }
        };
        Ok(PartWriter { path, out })
    }

    /// Appends rows.
    pub(crate) fn write(&mut self, table: &Table, batch: &RecordBatch) -> Result<()> {
        let io = |e: std::io::Error| table.io_error("cannot write", &self.path, e);
        match &mut self.out {
            Out::Lines { w, format, encoder } => match format {
                Format::Json => {
                    let mut j = crate::format::json_writer(&mut *w);
                    j.write(batch)?;
                    j.finish()?;
                }
                // One payload per row, without its line break (the shared CSV and raw
                // encoders).
                Format::Csv(_) | Format::Raw => {
                    for value in encoder.encode(batch)? {
                        w.write_all(&value).map_err(io)?;
                        w.write_all(b"\n").map_err(io)?;
                    }
                }
            },
            Out::Parquet(w) => w
                .write(batch)
                .map_err(|e| table.io_error("cannot write Parquet file", &self.path, e))?,
        }
        Ok(())
    }

    /// Bytes written so far (Parquet: with the row group still buffered).
    pub(crate) fn size(&self) -> u64 {
        match &self.out {
            Out::Lines { w, .. } => w.bytes,
            Out::Parquet(w) => (w.bytes_written() + w.in_progress_size()) as u64,
        }
    }

    /// Finishes the file (Parquet footer), flushes and fsyncs it.
    pub(crate) fn finish(self, table: &Table) -> Result<()> {
        let path = &self.path;
        let file = match self.out {
            Out::Lines { w, .. } => w
                .inner
                .into_inner()
                .map_err(|e| table.io_error("cannot write", path, e.error()))?,
            Out::Parquet(mut w) => {
                w.finish()
                    .map_err(|e| table.io_error("cannot write Parquet file", path, e))?;
                w.inner_mut()
                    .flush()
                    .map_err(|e| table.io_error("cannot write", path, e))?;
                w.inner()
                    .get_ref()
                    .try_clone()
                    .map_err(|e| table.io_error("cannot write", path, e))?
            }
        };
        file.sync_all()
            .map_err(|e| table.io_error("cannot fsync", path, e))
    }
}

/// Renames `from` to `to`; done already (`from` missing, `to` there) counts as done.
pub(crate) fn rename_once(table: &Table, from: &Path, to: &Path) -> Result<()> {
    match std::fs::rename(from, to) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && to.exists() => Ok(()),
        Err(e) => Err(Error::Execution {
            context: table.context(),
            message: format!(
                "cannot rename '{}' to '{}': {e}",
                from.display(),
                to.display()
            ),
        }),
    }
}

/// Makes renames in `dir` durable.
pub(crate) fn sync_dir(table: &Table, dir: &Path) -> Result<()> {
    #[cfg(unix)]
    {
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| table.io_error("cannot fsync directory", dir, e))?;
    }
    #[cfg(not(unix))]
    let _ = (table, dir);
    Ok(())
}

/// Runs blocking file work: on a multi-threaded runtime through `block_in_place`, so that
/// the runtime moves other tasks off this thread meanwhile; elsewhere inline.
pub(crate) fn blocking<T>(f: impl FnOnce() -> T) -> T {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current() {
        Ok(h) if h.runtime_flavor() == RuntimeFlavor::MultiThread => tokio::task::block_in_place(f),
        _ => f(),
    }
}

/// A new run id: time and per-process randomness, so that two runs writing one directory
/// do not pick the same file names.
pub(crate) fn new_run_id() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    h.write_u128(nanos);
    h.write_u32(std::process::id());
    h.finish() as u32
}
