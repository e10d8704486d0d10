//! The Nexmark queries of `examples/nexmark/` on a bounded generated stream: each query file
//! runs unchanged except for its sink, and its result (an update stream applied to a table)
//! equals a DataFusion batch query, `tests/nexmark/ref/qN.sql`, over the same events.
//!
//! `NEXMARK_EVENTS` sets the event count (default 60000); `NEXMARK_QUERY=q5` runs one query.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use streams_connectors::NexmarkSource;
use streams_core::arrow::array::{Array, ArrayRef, AsArray, RecordBatch, StringArray};
use streams_core::arrow::datatypes::{DataType, SchemaRef};
use streams_core::arrow::util::display::{ArrayFormatter, FormatOptions};
use streams_core::connector::{Connector, ConnectorRegistry, OptionSpec, Options};
use streams_core::datafusion::datasource::MemTable;
use streams_core::datafusion::prelude::SessionContext;
use streams_core::testing::CollectSink;
use streams_core::{SinkFactory, SourceEvent, SourceFactory};
use streams_sql::{Outcome, SqlEngine};

/// Event time advances 1000 events per second, so the test's events span a minute of windows.
const GENERATOR: &[(&str, &str)] = &[
    ("first-event.rate", "1000"),
    ("next-event.rate", "1000"),
    ("base-time", "2026-01-01 00:00:00"),
    ("splits", "3"),
    ("batch-size", "1000"),
];

fn root() -> PathBuf {
    manifest_dir().join("..")
}

fn events() -> u64 {
    std::env::var("NEXMARK_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(60_000)
}

/// `examples/nexmark/ddl.sql` with the test's generator settings in place of the suite's.
fn ddl() -> String {
    let text = std::fs::read_to_string(root().join("examples/nexmark/ddl.sql")).unwrap();
    let start = text
        .find("WITH (")
        .expect("ddl.sql: CREATE TABLE nexmark ... WITH (");
    let end = start + text[start..].find(')').unwrap();
    let mut options = vec!["'connector' = 'nexmark'".to_string()];
    options.push(format!("'events.num' = '{}'", events()));
    options.extend(GENERATOR.iter().map(|(k, v)| format!("'{k}' = '{v}'")));
    format!(
        "{}WITH ({}{}",
        &text[..start],
        options.join(", "),
        &text[end..]
    )
}

/// `'connector' = 'blackhole'` for the test: the query's sink, keeping what it receives.
#[derive(Debug, Default)]
struct Capture {
    sink: Mutex<Option<Arc<CollectSink>>>,
}

impl Connector for Capture {
    fn name(&self) -> &str {
        "blackhole"
    }
    fn options(&self) -> &[OptionSpec] {
        &[]
    }
    fn source(
        &self,
        table: &str,
        _: SchemaRef,
        _: &Options,
    ) -> streams_core::Result<Arc<dyn SourceFactory>> {
        Err(streams_core::Error::plan(format!("{table}: a sink only")))
    }
    fn sink(
        &self,
        _: &str,
        _: SchemaRef,
        _: &Options,
    ) -> streams_core::Result<Arc<dyn SinkFactory>> {
        let sink = Arc::new(CollectSink::new());
        *self.sink.lock().unwrap() = Some(Arc::clone(&sink));
        Ok(sink)
    }
}

/// The query's EXPLAIN equals `tests/nexmark/plans/qN.txt` (`UPDATE_GOLDEN=1` rewrites it):
/// a change of operators, exchanges or parallelism shows in review.
fn check_plan(
    engine: &SqlEngine,
    file: &Path,
    plan: &streams_core::datafusion::logical_expr::LogicalPlan,
) -> Result<(), String> {
    let text = engine.explain_plan(plan).map_err(|e| e.to_string())?;
    let name = file.file_stem().and_then(|n| n.to_str()).unwrap_or("q");
    let golden = root().join(format!("sql/tests/nexmark/plans/{name}.txt"));
    if std::env::var("UPDATE_GOLDEN").is_ok() {
        std::fs::create_dir_all(golden.parent().unwrap()).unwrap();
        std::fs::write(&golden, &text).unwrap();
        return Ok(());
    }
    let want = std::fs::read_to_string(&golden)
        .map_err(|e| format!("{}: {e} (run with UPDATE_GOLDEN=1)", golden.display()))?;
    if want != text {
        return Err(format!(
            "{name}: the plan differs from {}:\n{text}",
            golden.display()
        ));
    }
    Ok(())
}

/// Runs query file `file` as a job; its sink's rows, materialized.
async fn run_stream(file: &Path) -> Result<RecordBatch, String> {
    let capture = Arc::new(Capture::default());
    let mut registry = ConnectorRegistry::new();
    streams_connectors::register_builtin(&mut registry);
    registry.register(capture.clone());
    let mut engine = SqlEngine::new(registry);
    engine
        .register_udf(streams_connectors::count_char())
        .unwrap();
    engine.execute(&ddl()).unwrap();
    // Two subtasks per operator, so every exchange is exercised.
    engine.execute("SET 'parallelism.default' = '2'").unwrap();
    let query = std::fs::read_to_string(file).unwrap();
    let plans: Vec<_> = engine
        .execute(&query)
        .map_err(|e| format!("{}: {e}", file.display()))?
        .into_iter()
        .filter_map(|o| match o {
            Outcome::Insert(plan) => Some(plan),
            _ => None,
        })
        .collect();
    assert_eq!(plans.len(), 1, "{}: one INSERT INTO", file.display());
    check_plan(&engine, file, &plans[0])?;
    let graph = engine.compile(&plans).map_err(|e| e.to_string())?;
    streams_core::runtime::launch(graph, &engine.config().runtime)
        .map_err(|e| e.to_string())?
        .wait()
        .await
        .map_err(|e| format!("{}: {e}", file.display()))?;
    let sink = capture.sink.lock().unwrap().clone().unwrap();
    let batches = sink.batches();
    let schema = batches
        .first()
        .ok_or("the query produced no rows")?
        .schema();
    streams_core::changelog::materialize(&schema, &batches).map_err(|e| e.to_string())
}

/// A DataFusion session with `person`, `auction` and `bid` holding the same events the
/// stream reads, generated by the connector directly.
async fn reference_context(ddl_schema: SchemaRef) -> SessionContext {
    let options = Options::new(
        GENERATOR
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .chain([("events.num".to_string(), events().to_string())]),
    );
    let source = NexmarkSource::new("nexmark", Arc::clone(&ddl_schema), &options).unwrap();
    let mut batches = Vec::new();
    let mut subtask = source.create(0, 1).unwrap();
    loop {
        match subtask.next().await.unwrap() {
            SourceEvent::Batch { batch, .. } => batches.push(batch),
            SourceEvent::End => break,
            _ => {}
        }
    }
    let ctx = SessionContext::new();
    ctx.register_udf(streams_connectors::count_char());
    ctx.register_table(
        "nexmark",
        Arc::new(MemTable::try_new(Arc::clone(&ddl_schema), vec![batches]).unwrap()),
    )
    .unwrap();
    // Field names as the DDL declares them (Flink is case-sensitive), as lower-case columns.
    for (kind, view) in ["person", "auction", "bid"].into_iter().enumerate() {
        let DataType::Struct(fields) = ddl_schema.field_with_name(view).unwrap().data_type() else {
            panic!("{view} is not a ROW");
        };
        let columns: Vec<String> = fields
            .iter()
            .map(|f| format!("{view}['{}'] AS {}", f.name(), f.name().to_lowercase()))
            .collect();
        ctx.sql(&format!(
            "CREATE VIEW {view} AS SELECT {} FROM nexmark WHERE event_type = {kind}",
            columns.join(", ")
        ))
        .await
        .unwrap();
    }
    ctx
}

/// Rows as text, the compared columns only, floats to 9 significant digits; sorted.
fn canonical(batch: &RecordBatch, columns: &[usize]) -> Vec<String> {
    let opts = FormatOptions::default().with_null("NULL");
    let arrays: Vec<ArrayRef> = columns
        .iter()
        .map(|c| {
            let a = batch.column(*c);
            match a.data_type() {
                DataType::Float32 | DataType::Float64 => {
                    let f = streams_core::arrow::compute::cast(a, &DataType::Float64).unwrap();
                    let text: StringArray = f
                        .as_primitive::<streams_core::arrow::datatypes::Float64Type>()
                        .iter()
                        .map(|v| v.map(|v| format!("{v:.9e}")))
                        .collect();
                    Arc::new(text) as ArrayRef
                }
                DataType::Int32 | DataType::UInt64 | DataType::UInt32 => {
                    streams_core::arrow::compute::cast(a, &DataType::Int64).unwrap()
                }
                _ => Arc::clone(a),
            }
        })
        .collect();
    let fmts: Vec<_> = arrays
        .iter()
        .map(|a| ArrayFormatter::try_new(a.as_ref(), &opts).unwrap())
        .collect();
    let mut rows: Vec<String> = (0..batch.num_rows())
        .map(|r| {
            fmts.iter()
                .map(|f| f.value(r).to_string())
                .collect::<Vec<_>>()
                .join(" | ")
        })
        .collect();
    rows.sort();
    rows
}

fn compare(
    name: &str,
    stream: &RecordBatch,
    reference: &RecordBatch,
    header: &str,
) -> Result<(), String> {
    if stream.num_columns() != reference.num_columns() {
        return Err(format!(
            "{name}: column count (stream {:?}, reference {:?})",
            stream.schema(),
            reference.schema()
        ));
    }
    let wanted = header
        .lines()
        .find_map(|l| l.trim().strip_prefix("-- compare:"))
        .unwrap_or("*")
        .trim();
    let columns: Vec<usize> = if wanted == "*" {
        (0..reference.num_columns()).collect()
    } else {
        wanted
            .split(',')
            .map(|c| {
                reference
                    .schema()
                    .index_of(c.trim())
                    .unwrap_or_else(|_| panic!("{name}: no reference column {c}"))
            })
            .collect()
    };
    let (s, r) = (canonical(stream, &columns), canonical(reference, &columns));
    if s != r {
        let missing: Vec<_> = r.iter().filter(|x| !s.contains(x)).take(5).collect();
        let extra: Vec<_> = s.iter().filter(|x| !r.contains(x)).take(5).collect();
        return Err(format!(
            "{name}: {} rows streamed, {} in the reference\nmissing: {missing:#?}\nextra: {extra:#?}",
            s.len(),
            r.len()
        ));
    }
    if r.is_empty() {
        return Err(format!(
            "{name}: the reference is empty; the test proves nothing"
        ));
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nexmark_queries_match_a_batch_reference() {
    let only = std::env::var("NEXMARK_QUERY").ok();
    let dir = root().join("examples/nexmark");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with('q') && n.ends_with(".sql"))
        .map(|n| n.trim_end_matches(".sql").to_string())
        .collect();
    names.sort_by_key(|n| n[1..].parse::<u32>().unwrap_or(u32::MAX));
    // The event table's physical columns, as the engine plans them.
    let mut probe = SqlEngine::new({
        let mut r = ConnectorRegistry::new();
        streams_connectors::register_builtin(&mut r);
        r
    });
    probe.execute(&ddl()).unwrap();
    let physical = Arc::clone(&probe.catalog().table("nexmark").unwrap().physical);
    let ctx = reference_context(physical).await;
    let (mut ran, mut failures) = (Vec::new(), Vec::new());
    for name in names {
        if only.as_deref().is_some_and(|q| q != name) {
            continue;
        }
        let file = dir.join(format!("{name}.sql"));
        let text = std::fs::read_to_string(&file).unwrap();
        if text
            .lines()
            .any(|l| l.trim_start().starts_with("-- needs:"))
        {
            continue;
        }
        let reference_file = root().join(format!("sql/tests/nexmark/ref/{name}.sql"));
        let reference_sql = std::fs::read_to_string(&reference_file)
            .unwrap_or_else(|_| panic!("{name}: no {}", reference_file.display()));
        let stream = match run_stream(&file).await {
            Ok(s) => s,
            Err(e) => {
                failures.push(format!("{name}: {e}"));
                continue;
            }
        };
        let frame = ctx
            .sql(&reference_sql)
            .await
            .unwrap_or_else(|e| panic!("{name} reference: {e}"));
        let declared = Arc::new(frame.schema().as_arrow().clone());
        let batches = frame.collect().await.unwrap();
        // Batches may carry other string types than the plan declares.
        let schema = batches.first().map_or(declared, |b| b.schema());
        let reference = streams_core::arrow::compute::concat_batches(&schema, &batches).unwrap();
        match compare(&name, &stream, &reference, &reference_sql) {
            Ok(()) => {
                println!("{name}: {} rows match", reference.num_rows());
                ran.push(name);
            }
            Err(e) => failures.push(e),
        }
    }
    assert!(
        failures.is_empty(),
        "{} queries failed:\n{}",
        failures.len(),
        failures.join("\n\n")
    );
    assert!(!ran.is_empty(), "no Nexmark query ran");
}

/// The package's directory: as `cargo test` says when it runs the test (a binary built in
/// another checkout of the same cache would otherwise look in that checkout), else as it was
/// when the test was built.
fn manifest_dir() -> std::path::PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")))
}
