//! `'connector' = 'print'`: rows written to stdout (or stderr) as they arrive, as lines of a
//! text table (`'format' = 'table'`, the default; update streams show each change as `+I`,
//! `-U`, `+U`, `-D`, as Flink's print does) or as JSON objects (`json`, with an `op` field for
//! update streams). Output goes through the process's [`Console`], so it scrolls above
//! `rstreams run`'s progress line. Printing is not transactional: rows show when written, not
//! when a checkpoint commits (at least once across a restart, as in Flink).

mod console;
mod tableau;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use async_trait::async_trait;
use streams_core::arrow::array::{Array, AsArray};
use streams_core::arrow::datatypes::Int8Type;
use streams_core::arrow::datatypes::SchemaRef;
use streams_core::arrow::record_batch::RecordBatch;
use streams_core::changelog::{INSERT, is_update_stream};
use streams_core::connector::{Connector, OptionSpec, Options};
use streams_core::{Error, Result, Sink, SinkContext, SinkFactory, SourceFactory};

pub use console::{Console, Stream, console};
pub use tableau::{Tableau, op_symbol};

const OPTIONS: &[OptionSpec] = &[
    OptionSpec {
        name: "format",
        required: false,
        doc: "table (default): aligned columns, a header first; json: one object per row",
    },
    OptionSpec {
        name: "print-identifier",
        required: false,
        doc: "a prefix for every line, e.g. the table's purpose",
    },
    OptionSpec {
        name: "standard-error",
        required: false,
        doc: "true: print to stderr instead of stdout (default false)",
    },
];

/// The `print` connector.
#[derive(Debug)]
pub struct Print;

/// How rows are printed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PrintFormat {
    /// Lines of a text table.
    Table,
    /// One JSON object per line.
    Json,
}

impl Connector for Print {
    fn name(&self) -> &str {
        "print"
    }

    fn options(&self) -> &[OptionSpec] {
        OPTIONS
    }

    fn source(&self, table: &str, _: SchemaRef, _: &Options) -> Result<Arc<dyn SourceFactory>> {
        Err(Error::plan(format!(
            "table `{table}`: the print connector only writes; it cannot be read"
        )))
    }

    fn sink(
        &self,
        table: &str,
        _schema: SchemaRef,
        options: &Options,
    ) -> Result<Arc<dyn SinkFactory>> {
        let format = match options.get("format").unwrap_or("table") {
            "table" => PrintFormat::Table,
            "json" => PrintFormat::Json,
            v => {
                return Err(Error::plan(format!(
                    "table `{table}`: option 'format' = '{v}' is not valid; expected table or json"
                )));
            }
        };
        let stderr = options
            .parse::<bool>(table, "standard-error")?
            .unwrap_or(false);
        Ok(Arc::new(PrintSink::new(
            table,
            format,
            options.get("print-identifier").map(str::to_string),
            stderr,
        )))
    }
}

/// Prints a table's rows; shared by its subtasks so that the header shows once.
#[derive(Debug)]
pub struct PrintSink {
    table: String,
    format: PrintFormat,
    /// Made from the schema of the batches (with the change column of an update stream).
    layout: Arc<OnceLock<Tableau>>,
    identifier: Option<String>,
    stderr: bool,
    header_done: Arc<AtomicBool>,
    open: Arc<AtomicUsize>,
    /// Serializes header and rows of different subtasks.
    order: Arc<Mutex<()>>,
}

impl PrintSink {
    /// Prints the rows of table `table`.
    pub fn new(table: &str, format: PrintFormat, identifier: Option<String>, stderr: bool) -> Self {
        PrintSink {
            table: table.to_string(),
            format,
            layout: Arc::new(OnceLock::new()),
            identifier,
            stderr,
            header_done: Arc::new(AtomicBool::new(false)),
            open: Arc::new(AtomicUsize::new(0)),
            order: Arc::new(Mutex::new(())),
        }
    }
}

impl SinkFactory for PrintSink {
    fn name(&self) -> &str {
        &self.table
    }

    fn create(&self, subtask: usize, parallelism: usize) -> Result<Box<dyn Sink>> {
        let prefix = match (&self.identifier, parallelism) {
            (Some(id), 1) => format!("{id}> "),
            (Some(id), _) => format!("{id}:{subtask}> "),
            (None, _) => String::new(),
        };
        self.open.fetch_add(1, Ordering::Relaxed);
        Ok(Box::new(Printer {
            shared: PrintSink {
                table: self.table.clone(),
                format: self.format,
                layout: Arc::clone(&self.layout),
                identifier: self.identifier.clone(),
                stderr: self.stderr,
                header_done: Arc::clone(&self.header_done),
                open: Arc::clone(&self.open),
                order: Arc::clone(&self.order),
            },
            prefix,
            closed: false,
        }))
    }

    fn accepts_updates(&self) -> bool {
        true
    }
}

#[derive(Debug)]
struct Printer {
    shared: PrintSink,
    prefix: String,
    closed: bool,
}

impl Printer {
    fn emit(&self, text: &str) {
        if text.is_empty() {
            return;
        }
        let text = if self.prefix.is_empty() {
            text.to_string()
        } else {
            text.lines()
                .map(|l| format!("{}{l}\n", self.prefix))
                .collect()
        };
        let stream = if self.shared.stderr {
            Stream::Stderr
        } else {
            Stream::Stdout
        };
        console().print(&text, stream);
    }

    fn layout(&self) -> Result<&Tableau> {
        self.shared
            .layout
            .get()
            .ok_or_else(|| Error::Internal("print sink written before start".into()))
    }

    fn json(&self, batch: &RecordBatch) -> Result<String> {
        let updates = is_update_stream(&batch.schema());
        let width = batch.num_columns() - usize::from(updates);
        let data = batch.project(&(0..width).collect::<Vec<_>>())?;
        let mut buf = Vec::new();
        {
            let mut w = crate::format::json_writer(&mut buf);
            w.write(&data)?;
            w.finish()?;
        }
        let text = String::from_utf8(buf).map_err(|e| Error::Internal(e.to_string()))?;
        if !updates {
            return Ok(text);
        }
        let ops = batch.column(width).as_primitive::<Int8Type>();
        // The change is `op`, unless a column has that name.
        let key = if data.schema().column_with_name("op").is_some() {
            "__op"
        } else {
            "op"
        };
        let mut out = String::with_capacity(text.len() + 12 * batch.num_rows());
        for (i, line) in text.lines().enumerate() {
            let op = if ops.is_null(i) { INSERT } else { ops.value(i) };
            let rest = line.strip_prefix('{').unwrap_or(line);
            let sep = if rest.starts_with('}') { "" } else { "," };
            out.push_str(&format!("{{\"{key}\":\"{}\"{sep}{rest}\n", op_symbol(op)));
        }
        Ok(out)
    }
}

#[async_trait]
impl Sink for Printer {
    async fn start(&mut self, ctx: &SinkContext) -> Result<()> {
        self.shared.layout.get_or_init(|| Tableau::new(&ctx.schema));
        Ok(())
    }

    async fn write(&mut self, batch: RecordBatch) -> Result<()> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let text = match self.shared.format {
            PrintFormat::Json => self.json(&batch)?,
            PrintFormat::Table => self.layout()?.rows(&batch)?,
        };
        let _order = self.shared.order.lock().unwrap_or_else(|p| p.into_inner());
        if self.shared.format == PrintFormat::Table
            && !self.shared.header_done.swap(true, Ordering::Relaxed)
        {
            self.emit(&self.layout()?.header());
        }
        self.emit(&text);
        Ok(())
    }

    async fn close(&mut self) -> Result<()> {
        if std::mem::replace(&mut self.closed, true) {
            return Ok(());
        }
        let last = self.shared.open.fetch_sub(1, Ordering::Relaxed) == 1;
        if last
            && self.shared.format == PrintFormat::Table
            && self.shared.header_done.load(Ordering::Relaxed)
        {
            let _order = self.shared.order.lock().unwrap_or_else(|p| p.into_inner());
            self.emit(&self.layout()?.footer());
        }
        Ok(())
    }
}
