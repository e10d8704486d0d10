//! `'connector' = 'filesystem'`: tables over files of a local directory, with Flink's option
//! names (`path`, `format`, `sink.rolling-policy.file-size`).
//!
//! - **Source (bounded)**: the splits are the files present when the job is planned: `path`
//!   itself, or every regular file under it (recursively, sorted by path, skipping names that
//!   start with `.` or `_` as Flink and Hadoop do, which also skips the sink's unfinished
//!   files). Subtask `s` of `p` reads files `s, s + p, ...`, one after another, and the job
//!   ends when all are read. Text formats are read in large chunks cut at the last line break,
//!   and each line is one record for the shared format decoders, so bad lines go to the
//!   `format.on-error` policy as `file '...', line N`. Parquet files are read with the
//!   `parquet` crate, projected to the table's columns by name and cast to their types (an
//!   unreadable Parquet file fails the job: `format.on-error` is for text formats).
//!   Reading and decoding run on tokio's blocking pool, one batch ahead of what was emitted.
//!   The checkpointed position is, per file, the byte offset and number of the next unread
//!   line (or the Parquet rows emitted), and the file list itself: a resumed job reads exactly
//!   the files it started with, from where the checkpoint left them.
//! - **Sink**: each subtask writes part files into the directory `path`, as Flink's `FileSink`
//!   does. A file is written hidden (`.part-<run>-<subtask>-<n>.inprogress`); at a
//!   checkpoint's barrier it is finished (flushed, fsynced, Parquet footer written) and
//!   renamed `.part-...-<n>.pending`, and the checkpoint's state lists it; when the checkpoint
//!   completes it is renamed to its visible name `part-<run>-<subtask>-<n>.<ext>`. A restart
//!   renames the pending files of the checkpoint it resumes from (a rename that already
//!   happened is skipped) and deletes the files of its run that no completed checkpoint
//!   holds: their rows are replayed. (A run that crashed before its first checkpoint
//!   completed leaves hidden files no reader sees, as Flink's does.) A file also rolls after
//!   the batch that takes it past `sink.rolling-policy.file-size`; a checkpoint without rows
//!   makes no file. Without checkpoints, a file becomes visible when it rolls and when the
//!   job ends, and a failed job writes its rows again when rerun: at least once.
//!
//! Why renames: a reader (this source, Spark, DuckDB) then sees whole files of completed
//! checkpoints only, on any local file system, with no transaction log to read.
//!
//! Formats: `json` (JSON lines, the default), `csv` (optionally with a header line,
//! `csv.header`), `raw` (one line per row, the table's only column) and `parquet`. The text
//! formats hold one row per line: a CSV field or raw value holding a line break cannot be
//! read back, and the source skips empty lines.

mod part;
mod read;
mod sink;
mod source;
#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock};

use streams_core::arrow::datatypes::SchemaRef;
use streams_core::connector::{Connector, OptionSpec, Options};
use streams_core::{Error, Result, SinkFactory, SourceFactory};

use crate::format::{FORMAT_OPTIONS, Format, ON_ERROR_OPTIONS, OnError};
use crate::store::StoreHandle;

pub use sink::FilesystemSink;
pub use source::FilesystemSource;

/// Default of `sink.rolling-policy.file-size`, as Flink's.
pub const DEFAULT_FILE_SIZE: u64 = 128 << 20;

const OWN_OPTIONS: &[OptionSpec] = &[
    OptionSpec {
        name: "path",
        required: true,
        doc: "a file or a directory: a source reads the file, or once every file under the \
              directory (recursively; names starting with . or _ are skipped); a sink writes \
              part files into the directory (created if missing)",
    },
    OptionSpec {
        name: "format",
        required: false,
        doc: "json (JSON lines, default), csv, raw (one line per row, the table's only \
              column) or parquet",
    },
    OptionSpec {
        name: "csv.header",
        required: false,
        doc: "csv: true if the first line of each file is a header, which a source skips and \
              a sink writes (default false)",
    },
    OptionSpec {
        name: "sink.rolling-policy.file-size",
        required: false,
        doc: "sink: a part file is finished and a new one started once it grows past this \
              size, e.g. 64MB (default 128MB)",
    },
];

static OPTIONS: LazyLock<Vec<OptionSpec>> = LazyLock::new(|| {
    let mut all = OWN_OPTIONS.to_vec();
    all.extend(ON_ERROR_OPTIONS);
    all.extend(FORMAT_OPTIONS);
    all
});

/// The `filesystem` connector.
#[derive(Clone, Debug, Default)]
pub struct Filesystem {
    store: Option<StoreHandle>,
}

impl Filesystem {
    /// Tables over files; `store` is the embedded store that gets dead letters
    /// (`'format.on-error' = 'dead-letter'`), if the program opened one.
    pub fn new(store: Option<StoreHandle>) -> Self {
        Filesystem { store }
    }
}

/// How rows are laid out in a file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum FileFormat {
    /// One row per line, in a shared record format.
    Lines(Format),
    /// Apache Parquet.
    Parquet,
}

impl FileFormat {
    /// The extension of visible part files.
    pub(crate) fn extension(&self) -> &'static str {
        match self {
            FileFormat::Lines(Format::Json) => "json",
            FileFormat::Lines(Format::Csv(_)) => "csv",
            FileFormat::Lines(Format::Raw) => "txt",
            FileFormat::Parquet => "parquet",
        }
    }
}

/// What the source and the sink of a table share.
#[derive(Clone, Debug)]
pub(crate) struct Table {
    /// Table name, for errors.
    pub(crate) name: String,
    pub(crate) schema: SchemaRef,
    pub(crate) path: PathBuf,
    pub(crate) format: FileFormat,
    /// CSV files start with a header line.
    pub(crate) header: bool,
}

impl Table {
    fn from_options(name: &str, schema: SchemaRef, options: &Options) -> Result<Self> {
        let path = options
            .get("path")
            .ok_or_else(|| Error::plan(format!("table `{name}`: option 'path' is required")))?;
        if path.is_empty() {
            return Err(Error::plan(format!(
                "table `{name}`: option 'path' is empty; give a file or a directory"
            )));
        }
        let format = match Format::from_options(name, &schema, options, &["parquet"])? {
            Some(f) => FileFormat::Lines(f),
            None => {
                if let Some((key, _)) = options.iter().find(|(k, _)| k.starts_with("csv.")) {
                    return Err(Error::plan(format!(
                        "table `{name}`: option '{key}' applies to 'format' = 'csv' only"
                    )));
                }
                FileFormat::Parquet
            }
        };
        let header = match options.get("csv.header") {
            None => false,
            Some(v) if v.eq_ignore_ascii_case("true") => true,
            Some(v) if v.eq_ignore_ascii_case("false") => false,
            Some(v) => {
                return Err(Error::plan(format!(
                    "table `{name}`: option 'csv.header' = '{v}' is not valid; expected true or \
                     false"
                )));
            }
        };
        Ok(Table {
            name: name.to_string(),
            schema,
            path: PathBuf::from(path),
            format,
            header,
        })
    }

    /// `table `t``, the context of run-time errors.
    pub(crate) fn context(&self) -> String {
        format!("table `{}`", self.name)
    }

    /// A run-time error about `path`.
    pub(crate) fn io_error(&self, what: &str, path: &Path, e: impl std::fmt::Display) -> Error {
        Error::Execution {
            context: self.context(),
            message: format!("{what} '{}': {e}", path.display()),
        }
    }
}

/// `sink.rolling-policy.file-size`: a byte count with an optional unit (`b`, `kb`, `mb`, `gb`,
/// `tb`, or `k`, `m`, `g`, `t`; powers of 1024, case-insensitive, as Flink's `MemorySize`).
pub(crate) fn parse_size(table: &str, text: &str) -> Result<u64> {
    let bad = |why: &str| {
        Error::plan(format!(
            "table `{table}`: option 'sink.rolling-policy.file-size' = '{text}' is not valid; \
             {why}"
        ))
    };
    let t = text.trim();
    let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let number: u64 = t[..digits]
        .parse()
        .map_err(|_| bad("expected a size such as 128MB"))?;
    let shift = match t[digits..].trim().to_ascii_lowercase().as_str() {
        "" | "b" | "bytes" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        "t" | "tb" | "tib" => 40,
        _ => return Err(bad("the unit must be one of b, kb, mb, gb, tb")),
    };
    let bytes = number
        .checked_mul(1u64 << shift)
        .ok_or_else(|| bad("it is too large"))?;
    if bytes == 0 {
        return Err(bad("it must be more than 0 bytes"));
    }
    Ok(bytes)
}

/// Whether a file or directory name is hidden from readers (`.name`, `_name`).
pub(crate) fn is_hidden(name: &std::ffi::OsStr) -> bool {
    let b = name.as_encoded_bytes();
    b.first().is_some_and(|c| *c == b'.' || *c == b'_')
}

/// The files a source reads: `path` itself if it is a file, else every regular file under it
/// (recursively, sorted by path, hidden names skipped; symbolic links to files are followed,
/// to directories not).
pub(crate) fn list_files(table: &str, path: &Path) -> Result<Vec<PathBuf>> {
    let meta = std::fs::metadata(path).map_err(|e| {
        Error::plan(format!(
            "table `{table}`: option 'path' = '{}' cannot be read: {e}",
            path.display()
        ))
    })?;
    if meta.is_file() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut files = Vec::new();
    let mut dirs = vec![path.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        let entries = std::fs::read_dir(&dir).map_err(|e| {
            Error::plan(format!(
                "table `{table}`: option 'path': cannot list '{}': {e}",
                dir.display()
            ))
        })?;
        for entry in entries {
            let entry = entry.map_err(|e| {
                Error::plan(format!(
                    "table `{table}`: option 'path': cannot list '{}': {e}",
                    dir.display()
                ))
            })?;
            if is_hidden(&entry.file_name()) {
                continue;
            }
            let p = entry.path();
            let kind = entry
                .file_type()
                .map_err(|e| Error::plan(format!("table `{table}`: '{}': {e}", p.display())))?;
            if kind.is_dir() {
                dirs.push(p);
            } else if kind.is_file() || (kind.is_symlink() && p.is_file()) {
                files.push(p);
            }
        }
    }
    files.sort();
    Ok(files)
}

impl Connector for Filesystem {
    fn name(&self) -> &str {
        "filesystem"
    }

    fn options(&self) -> &[OptionSpec] {
        &OPTIONS
    }

    fn source(
        &self,
        table: &str,
        schema: SchemaRef,
        options: &Options,
    ) -> Result<Arc<dyn SourceFactory>> {
        let t = Table::from_options(table, schema, options)?;
        if let Some(v) = options.get("sink.rolling-policy.file-size") {
            parse_size(table, v)?;
        }
        let on_error = OnError::from_options(table, options, self.store.as_ref())?;
        if t.format == FileFormat::Parquet && on_error != OnError::Fail {
            return Err(Error::plan(format!(
                "table `{table}`: 'format.on-error' applies to json, csv and raw files; a \
                 Parquet file that cannot be read fails the job"
            )));
        }
        let files = list_files(table, &t.path)?;
        Ok(Arc::new(FilesystemSource::new(
            t,
            files,
            on_error,
            self.store.clone(),
        )))
    }

    fn sink(
        &self,
        table: &str,
        schema: SchemaRef,
        options: &Options,
    ) -> Result<Arc<dyn SinkFactory>> {
        let t = Table::from_options(table, schema, options)?;
        // Checked, though only reading uses it: a table may be both read and written.
        OnError::from_options(table, options, self.store.as_ref())?;
        let roll = match options.get("sink.rolling-policy.file-size") {
            Some(v) => parse_size(table, v)?,
            None => DEFAULT_FILE_SIZE,
        };
        if t.path.exists() && !t.path.is_dir() {
            return Err(Error::plan(format!(
                "table `{table}`: option 'path' = '{}' is a file; a sink writes part files \
                 into a directory",
                t.path.display()
            )));
        }
        Ok(Arc::new(FilesystemSink::new(t, roll)))
    }
}
