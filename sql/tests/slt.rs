//! Runs every `tests/slt/*.slt` file (sqllogictest) against a fresh SQL session: SQL behaviour
//! and `EXPLAIN` output pinned as data. Tables use the `values` connector below, whose rows are
//! written in the `CREATE TABLE` itself, as CSV lines separated by `;`.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

use std::io::Cursor;

use std::sync::Arc;

use sqllogictest::{DBOutput, DefaultColumnType};
use streams_core::arrow::array::RecordBatch;
use streams_core::arrow::csv::ReaderBuilder;
use streams_core::arrow::datatypes::SchemaRef;
use streams_core::arrow::util::display::{ArrayFormatter, FormatOptions};
use streams_core::connector::{Connector, ConnectorRegistry, OptionSpec, Options};
use streams_core::testing::{CollectSink, MemorySource};
use streams_core::{SinkFactory, SourceFactory};
use streams_sql::{Outcome, SqlEngine};

/// `'connector' = 'values'`: a bounded source of the rows in its `rows` option; as a sink, it
/// keeps what it receives.
#[derive(Debug)]
struct Values;

const OPTIONS: &[OptionSpec] = &[
    OptionSpec {
        name: "rows",
        required: false,
        doc: "CSV lines separated by ';' (default: no rows)",
    },
    OptionSpec {
        name: "updates",
        required: false,
        doc: "as a sink, whether it takes update streams (default true)",
    },
    OptionSpec {
        name: "splits",
        required: false,
        doc: "how many splits the rows are dealt to, round robin (default 1)",
    },
];

impl Connector for Values {
    fn name(&self) -> &str {
        "values"
    }
    fn options(&self) -> &[OptionSpec] {
        OPTIONS
    }
    fn source(
        &self,
        table: &str,
        schema: SchemaRef,
        options: &Options,
    ) -> streams_core::Result<Arc<dyn SourceFactory>> {
        let text = options.get("rows").unwrap_or("").replace(';', "\n");
        let splits: usize = options.parse(table, "splits")?.unwrap_or(1).max(1);
        let reader = ReaderBuilder::new(Arc::clone(&schema))
            .with_batch_size(1)
            .build(Cursor::new(text.into_bytes()))?;
        let mut per: Vec<Vec<RecordBatch>> = vec![Vec::new(); splits];
        for (i, b) in reader.enumerate() {
            per[i % splits].push(b?);
        }
        Ok(Arc::new(
            per.into_iter()
                .fold(MemorySource::new(table, schema), |s, b| s.with_batches(b)),
        ))
    }
    fn sink(
        &self,
        table: &str,
        _schema: SchemaRef,
        options: &Options,
    ) -> streams_core::Result<Arc<dyn SinkFactory>> {
        let updates: bool = options.parse(table, "updates")?.unwrap_or(true);
        Ok(Arc::new(ValuesSink {
            rows: CollectSink::new(),
            updates,
        }))
    }
}

/// The `values` sink: keeps rows; takes updates unless `'updates' = 'false'`.
#[derive(Debug)]
struct ValuesSink {
    rows: CollectSink,
    updates: bool,
}

impl SinkFactory for ValuesSink {
    fn name(&self) -> &str {
        "values"
    }
    fn create(
        &self,
        subtask: usize,
        parallelism: usize,
    ) -> streams_core::Result<Box<dyn streams_core::Sink>> {
        self.rows.create(subtask, parallelism)
    }
    fn accepts_updates(&self) -> bool {
        self.updates
    }
}

struct Session {
    engine: SqlEngine,
}

fn rows(batches: &[RecordBatch]) -> Vec<Vec<String>> {
    let opts = FormatOptions::default().with_null("NULL");
    let mut out = Vec::new();
    for b in batches {
        let fmts: Vec<_> = b
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &opts).unwrap())
            .collect();
        for r in 0..b.num_rows() {
            // sqllogictest writes an empty string as `(empty)`.
            out.push(
                fmts.iter()
                    .map(|f| match f.value(r).to_string() {
                        s if s.is_empty() => "(empty)".to_string(),
                        s => s,
                    })
                    .collect(),
            );
        }
    }
    out
}

#[async_trait::async_trait]
impl sqllogictest::AsyncDB for Session {
    type Error = streams_sql::Error;
    type ColumnType = DefaultColumnType;

    async fn run(&mut self, sql: &str) -> Result<DBOutput<DefaultColumnType>, streams_sql::Error> {
        let mut output = DBOutput::StatementComplete(0);
        for outcome in self.engine.execute(sql)? {
            output = match outcome {
                Outcome::Query(plan) => {
                    let sink = Arc::new(CollectSink::new());
                    let job_schema = plan.schema().as_arrow().clone();
                    let width = job_schema.fields().len()
                        - usize::from(streams_core::changelog::is_update_stream(&job_schema));
                    let job = streams_core::plan::StreamPlanBuilder::from_plan(plan)
                        .sink("results", sink.clone())?;
                    let graph = self.engine.compile(&[job])?;
                    streams_core::runtime::launch(graph, &self.engine.config().runtime)?
                        .wait()
                        .await?;
                    // An update stream shows as the table it describes once applied.
                    let schema = Arc::new(job_schema);
                    let table = streams_core::changelog::materialize(&schema, &sink.batches())?;
                    DBOutput::Rows {
                        types: vec![DefaultColumnType::Any; width],
                        rows: rows(&[table]),
                    }
                }
                Outcome::Insert(plan) => {
                    let graph = self.engine.compile(&[plan])?;
                    streams_core::runtime::launch(graph, &self.engine.config().runtime)?
                        .wait()
                        .await?;
                    DBOutput::StatementComplete(0)
                }
                Outcome::Explain(text) => DBOutput::Rows {
                    types: vec![DefaultColumnType::Text],
                    rows: text
                        .lines()
                        .map(|l| vec![l.trim_end().to_string()])
                        .collect(),
                },
                Outcome::Rows(batch) => DBOutput::Rows {
                    types: vec![DefaultColumnType::Any; batch.num_columns()],
                    rows: rows(&[batch]),
                },
                _ => DBOutput::StatementComplete(0),
            };
        }
        Ok(output)
    }

    async fn shutdown(&mut self) {}

    fn engine_name(&self) -> &str {
        "rstreams"
    }
}

fn main() {
    let dir = manifest_dir().join("tests/slt");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "slt"))
        .collect();
    files.sort();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut failed = 0;
    for file in &files {
        let mut runner = sqllogictest::Runner::new(|| async {
            let mut registry = ConnectorRegistry::new();
            registry.register(Arc::new(Values));
            Ok::<_, streams_sql::Error>(Session {
                engine: SqlEngine::new(registry),
            })
        });
        match runtime.block_on(runner.run_file_async(file)) {
            Ok(()) => println!("ok   {}", file.display()),
            Err(e) => {
                failed += 1;
                println!("FAIL {}\n{e}", file.display());
            }
        }
    }
    println!("{} slt files, {failed} failed", files.len());
    if failed > 0 {
        std::process::exit(1);
    }
}

/// The package's directory: as `cargo test` says when it runs the test (a binary built in
/// another checkout of the same cache would otherwise look in that checkout), else as it was
/// when the test was built.
fn manifest_dir() -> std::path::PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")))
}
