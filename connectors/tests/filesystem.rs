//! The filesystem connector through real jobs: rows written by a checkpointing job and read
//! back by another are the input, in every format; a writing job crashed and resumed again and
//! again leaves each row in the visible files exactly once; a reading job resumed from its
//! checkpoints neither loses nor repeats rows; bad lines and bad options are reported.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use streams_connectors::filesystem::Filesystem;
use streams_connectors::{StoreHandle, format};
use streams_core::arrow::array::{
    AsArray, Float64Array, Int64Array, RecordBatch, StringArray, TimestampMillisecondArray,
};
use streams_core::arrow::compute::{sort_to_indices, take_record_batch};
use streams_core::arrow::datatypes::{DataType, Field, Int64Type, Schema, SchemaRef, TimeUnit};
use streams_core::connector::{Connector, ConnectorRegistry, Options};
use streams_core::plan::{JobConfig, StreamPlanBuilder, compile};
use streams_core::runtime::{CheckpointConfig, JobGraph, launch};
use streams_core::testing::{
    CollectSink, MemoryCheckpoints, MemorySource, Step, TransactionalSink,
};
use streams_core::{SinkFactory, SourceFactory};

fn options(pairs: &[(&str, &str)]) -> Options {
    Options::new(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())))
}

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("name", DataType::Utf8, true),
        Field::new("amount", DataType::Float64, false),
        Field::new(
            "ts",
            DataType::Timestamp(TimeUnit::Millisecond, None),
            false,
        ),
    ]))
}

fn raw_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![Field::new("line", DataType::Utf8, false)]))
}

/// Rows `from..from + n`: some names null, some with a comma or a quote (CSV must quote them).
fn rows(schema: &SchemaRef, from: i64, n: i64) -> RecordBatch {
    let ids: Vec<i64> = (from..from + n).collect();
    if schema.fields().len() == 1 {
        let lines: Vec<String> = ids.iter().map(|i| format!("line {i}: \"x\", y")).collect();
        return RecordBatch::try_new(schema.clone(), vec![Arc::new(StringArray::from(lines))])
            .unwrap();
    }
    let names: Vec<Option<String>> = ids
        .iter()
        .map(|i| match i % 4 {
            0 => None,
            1 => Some(format!("a, {i}")),
            2 => Some(format!("say \"{i}\"")),
            _ => Some(format!("n{i}")),
        })
        .collect();
    RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(Int64Array::from(ids.clone())),
            Arc::new(StringArray::from(names)),
            Arc::new(Float64Array::from_iter_values(
                ids.iter().map(|i| *i as f64 / 4.0),
            )),
            Arc::new(TimestampMillisecondArray::from_iter_values(
                ids.iter().map(|i| 1_700_000_000_000 + i * 1_001),
            )),
        ],
    )
    .unwrap()
}

/// `splits` splits of `batches` batches of `per` rows each, with a pause every 4 batches.
fn input(schema: &SchemaRef, splits: i64, batches: i64, per: i64) -> MemorySource {
    let mut source = MemorySource::new("input", schema.clone());
    for s in 0..splits {
        let mut steps = Vec::new();
        for b in 0..batches {
            steps.push(Step::Batch(rows(schema, (s * batches + b) * per, per)));
            if b % 4 == 3 {
                steps.push(Step::Sleep(Duration::from_millis(1)));
            }
        }
        source = source.with_split(steps);
    }
    source
}

fn config(storage: Option<MemoryCheckpoints>, every: Duration) -> JobConfig {
    let mut config = JobConfig {
        parallelism: 2,
        ..JobConfig::default()
    };
    config.runtime.checkpointing = storage.map(|s| CheckpointConfig::new(Some(every), Arc::new(s)));
    config
}

fn job(source: Arc<dyn SourceFactory>, sink: Arc<dyn SinkFactory>, config: &JobConfig) -> JobGraph {
    let plan = StreamPlanBuilder::scan("in", source)
        .unwrap()
        .sink("out", sink)
        .unwrap();
    compile(&[plan], config).unwrap()
}

fn path_options<'a>(path: &'a Path, more: &[(&'a str, &'a str)]) -> Options {
    let mut all = vec![("path", path.to_str().unwrap())];
    all.extend_from_slice(more);
    options(&all)
}

/// Everything the source of `options` reads, in one job.
async fn read_back(schema: &SchemaRef, options: &Options) -> RecordBatch {
    let source = Filesystem::new(None)
        .source("in", schema.clone(), options)
        .unwrap();
    let sink = Arc::new(CollectSink::new());
    let config = JobConfig {
        parallelism: 2,
        ..JobConfig::default()
    };
    let graph = job(source, sink.clone(), &config);
    launch(graph, &config.runtime)
        .unwrap()
        .wait()
        .await
        .unwrap();
    sink.concat(schema).unwrap()
}

fn sorted(batch: &RecordBatch) -> RecordBatch {
    let order = sort_to_indices(batch.column(0), None, None).unwrap();
    take_record_batch(batch, &order).unwrap()
}

/// (visible, hidden) file names.
fn names(dir: &Path) -> (Vec<String>, Vec<String>) {
    let mut all: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    all.sort();
    all.into_iter().partition(|n| !n.starts_with('.'))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_format_round_trips_through_a_sink_job_and_a_source_job() {
    // (case, format options, extension of the files written)
    type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a str);
    let cases: &[Case] = &[
        ("json", &[("format", "json")], "json"),
        ("csv", &[("format", "csv")], "csv"),
        (
            "csv with header",
            &[("format", "csv"), ("csv.header", "true")],
            "csv",
        ),
        ("raw", &[("format", "raw")], "txt"),
        ("parquet", &[("format", "parquet")], "parquet"),
    ];
    for (what, format_options, ext) in cases {
        let schema = if *what == "raw" {
            raw_schema()
        } else {
            schema()
        };
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let opts = path_options(&out, format_options);
        let source = Arc::new(input(&schema, 3, 12, 250));
        let sink = Filesystem::new(None)
            .sink("out", schema.clone(), &opts)
            .unwrap();
        let config = config(Some(MemoryCheckpoints::new()), Duration::from_millis(5));
        launch(job(source.clone(), sink, &config), &config.runtime)
            .unwrap()
            .wait()
            .await
            .unwrap();
        let (visible, hidden) = names(&out);
        assert!(
            hidden.is_empty(),
            "{what}: every file was committed: {hidden:?}"
        );
        assert!(
            !visible.is_empty() && visible.iter().all(|n| n.ends_with(&format!(".{ext}"))),
            "{what}: {visible:?}"
        );
        if *what == "csv with header" {
            let first = std::fs::read_to_string(out.join(&visible[0])).unwrap();
            assert!(first.starts_with("id,name,amount,ts\n"), "{first:.60}");
        }
        let want = rows(&schema, 0, 3 * 12 * 250);
        let got = read_back(&schema, &opts).await;
        assert_eq!(got.num_rows(), 3 * 12 * 250, "{what}");
        assert_eq!(sorted(&got), sorted(&want), "{what}");
    }
}

/// The ids in the visible files of `dir` (JSON lines), with their counts.
fn visible_ids(dir: &Path) -> BTreeMap<i64, usize> {
    let mut out = BTreeMap::new();
    for name in names(dir).0 {
        for line in std::fs::read_to_string(dir.join(&name)).unwrap().lines() {
            let start = line.find("\"id\":").unwrap() + 5;
            let end = start + line[start..].find(',').unwrap();
            *out.entry(line[start..end].parse().unwrap()).or_default() += 1;
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sink_job_crashed_again_and_again_writes_each_row_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let schema = schema();
    let (splits, batches, per) = (4, 60, 50);
    let total = (splits * batches * per) as usize;
    let fs = Filesystem::new(None);
    let opts = path_options(&out, &[("sink.rolling-policy.file-size", "4kb")]);
    let storage = MemoryCheckpoints::new();
    let mut crashes = 0;
    let mut slower = 1;
    for delay_ms in [3u64, 7, 2, 11, 5, 9, 4, 13, 6, 8] {
        let before = storage.completed().len();
        let config = config(Some(storage.resume()), Duration::from_millis(3));
        let source = Arc::new(input(&schema, splits, batches, per));
        let sink = fs.sink("out", schema.clone(), &opts).unwrap();
        let mut handle = launch(job(source, sink, &config), &config.runtime).unwrap();
        tokio::select! {
            r = handle.join() => { r.unwrap(); break; }
            _ = tokio::time::sleep(Duration::from_millis(delay_ms * slower)) => {}
        }
        // The crash: tasks stop at their next step and commit nothing more.
        handle.cancel();
        let _ = handle.join().await;
        crashes += 1;
        if storage.completed().len() == before {
            // A loaded machine: give the next run time to complete a checkpoint.
            slower *= 2;
        }
        // What is visible came from completed checkpoints: never twice, never unknown rows.
        if out.exists() {
            let seen = visible_ids(&out);
            assert!(seen.values().all(|n| *n == 1), "after crash {crashes}");
            assert!(seen.keys().all(|id| (0..total as i64).contains(id)));
        }
    }
    let config = config(Some(storage.resume()), Duration::from_millis(3));
    let source = Arc::new(input(&schema, splits, batches, per));
    let sink = fs.sink("out", schema.clone(), &opts).unwrap();
    launch(job(source, sink, &config), &config.runtime)
        .unwrap()
        .wait()
        .await
        .unwrap();
    assert!(crashes > 0 && !storage.completed().is_empty());
    let seen = visible_ids(&out);
    let dupes: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).take(3).collect();
    assert!(
        dupes.is_empty(),
        "duplicates after {crashes} crashes: {dupes:?}"
    );
    assert_eq!(seen.len(), total, "rows after {crashes} crashes");
    assert!(
        names(&out).0.len() > 8,
        "files rolled at 4kb: {:?}",
        names(&out).0
    );
}

fn write_json_lines(dir: &Path, files: i64, lines: i64) -> Vec<i64> {
    let mut ids = Vec::new();
    for f in 0..files {
        let mut text = String::new();
        for i in 0..lines {
            let id = f * 1_000_000 + i;
            ids.push(id);
            text.push_str(&format!(
                "{{\"id\":{id},\"name\":\"n{i}\",\"amount\":{i}.5,\"ts\":{i}}}\n"
            ));
        }
        std::fs::write(dir.join(format!("part-{f}.json")), text).unwrap();
    }
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_job_resumed_from_its_checkpoints_neither_loses_nor_repeats_rows() {
    let dir = tempfile::tempdir().unwrap();
    let want = write_json_lines(dir.path(), 3, 40_000);
    let opts = path_options(dir.path(), &[]);
    let schema = schema();
    let published = TransactionalSink::new();
    let storage = MemoryCheckpoints::new();
    let mut crashes = 0;
    let mut crashed_mid_way = false;
    let published_rows = || -> usize { published.batches().iter().map(|b| b.num_rows()).sum() };
    // Crash until some crash came after a checkpoint inside a file; runs that got no
    // checkpoint through (a slow machine) make the next one longer.
    let mut delay_ms = 10;
    while crashes < 16 && !(crashed_mid_way && crashes >= 4) {
        let before = published_rows();
        let config = config(Some(storage.resume()), Duration::from_millis(2));
        let source = Filesystem::new(None)
            .source("in", schema.clone(), &opts)
            .unwrap();
        let mut handle = launch(
            job(source, Arc::new(published.clone()), &config),
            &config.runtime,
        )
        .unwrap();
        tokio::select! {
            r = handle.join() => { r.unwrap(); break; }
            _ = tokio::time::sleep(Duration::from_millis(delay_ms)) => {}
        }
        handle.cancel();
        let _ = handle.join().await;
        crashes += 1;
        let now = published_rows();
        crashed_mid_way |= now > 0 && now < want.len() && now % 40_000 != 0;
        if now == before {
            delay_ms *= 2;
        }
    }
    let config = config(Some(storage.resume()), Duration::from_millis(2));
    let source = Filesystem::new(None)
        .source("in", schema.clone(), &opts)
        .unwrap();
    launch(
        job(source, Arc::new(published.clone()), &config),
        &config.runtime,
    )
    .unwrap()
    .wait()
    .await
    .unwrap();
    let mut got: Vec<i64> = published
        .batches()
        .iter()
        .flat_map(|b| b.column(0).as_primitive::<Int64Type>().values().to_vec())
        .collect();
    got.sort_unstable();
    let repeated = got.windows(2).filter(|w| w[0] == w[1]).count();
    assert_eq!(repeated, 0, "rows repeated after {crashes} crashes");
    assert_eq!(got, want, "rows after {crashes} crashes");
    assert!(
        crashed_mid_way,
        "no crash came after a checkpoint inside a file ({crashes} crashes)"
    );
}

/// Runs a reading job of `format` over `dir` with `on_error`; the rows and bad-record count.
async fn read_with(
    fs: &Filesystem,
    dir: &Path,
    schema: &SchemaRef,
    more: &[(&str, &str)],
) -> streams_core::Result<(usize, u64)> {
    let source = fs.source("in", schema.clone(), &path_options(dir, more))?;
    let sink = Arc::new(CollectSink::new());
    let config = JobConfig::default();
    let handle = launch(job(source, sink.clone(), &config), &config.runtime)?;
    let metrics = handle.metrics();
    handle.wait().await?;
    let bad = metrics.snapshot().iter().map(|m| m.bad_records).sum();
    Ok((sink.rows(), bad))
}

fn small_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("name", DataType::Utf8, true),
    ]))
}

#[tokio::test]
async fn bad_lines_fail_the_job_or_are_skipped_or_sent_to_a_dead_letter_topic() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("json");
    let csv = dir.path().join("csv");
    std::fs::create_dir_all(&json).unwrap();
    std::fs::create_dir_all(&csv).unwrap();
    std::fs::write(
        json.join("a.json"),
        "{\"id\": 1}\n{not json\n\n{\"id\": 3, \"name\": \"c\"}\n{\"id\": \"x\"}\n",
    )
    .unwrap();
    std::fs::write(csv.join("a.csv"), "id,name\n1,a\nx,b\n3,c\n").unwrap();
    let schema = small_schema();
    let fs = Filesystem::new(None);

    let err = read_with(&fs, &json, &schema, &[])
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("a.json', line 2"), "{err}");
    let (rows, bad) = read_with(&fs, &json, &schema, &[("format.on-error", "skip")])
        .await
        .unwrap();
    assert_eq!((rows, bad), (2, 2));

    let csv_options: &[(&str, &str)] = &[("format", "csv"), ("csv.header", "true")];
    let err = read_with(&fs, &csv, &schema, csv_options)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("a.csv', line 3"), "{err}");
    let mut skip = csv_options.to_vec();
    skip.push(("format.on-error", "skip"));
    assert_eq!(read_with(&fs, &csv, &schema, &skip).await.unwrap(), (2, 1));

    let store_dir = tempfile::tempdir().unwrap();
    let store = Arc::new(streams_queue::Store::open(store_dir.path()).unwrap());
    let with_store = Filesystem::new(Some(StoreHandle::open_store(Arc::clone(&store))));
    let dead_letter = [
        ("format.on-error", "dead-letter"),
        ("format.dead-letter.topic", "bad"),
    ];
    let (rows, bad) = read_with(&with_store, &json, &schema, &dead_letter)
        .await
        .unwrap();
    assert_eq!((rows, bad), (2, 2));
    let letters = store.read("bad", 0, 0, &Default::default()).unwrap();
    let payloads: Vec<&[u8]> = letters.iter().map(|r| &r.payload[..]).collect();
    assert_eq!(payloads, vec![&b"{not json"[..], &b"{\"id\": \"x\"}"[..]]);
    for (r, line) in letters.iter().zip(["line 2", "line 5"]) {
        let header = |k: &str| {
            r.headers
                .iter()
                .find(|(name, _)| name == k)
                .map(|(_, v)| String::from_utf8_lossy(v).to_string())
        };
        assert!(!header(format::ERROR_HEADER).unwrap_or_default().is_empty());
        let source = header(format::SOURCE_HEADER).unwrap();
        assert!(
            source.contains("a.json'") && source.contains(line),
            "{source}"
        );
    }
}

#[test]
fn options_are_checked_when_the_table_is_planned() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("f.json");
    std::fs::write(&file, "").unwrap();
    let fs = Filesystem::new(None);
    let d = dir.path().to_str().unwrap();
    let source_err = |pairs: &[(&str, &str)]| {
        fs.source("t", small_schema(), &options(pairs))
            .unwrap_err()
            .to_string()
    };
    let sink_err = |pairs: &[(&str, &str)]| {
        fs.sink("t", small_schema(), &options(pairs))
            .unwrap_err()
            .to_string()
    };
    let e = source_err(&[("path", d), ("format", "avro")]);
    assert!(
        e.contains("table `t`") && e.contains("'format' = 'avro'"),
        "{e}"
    );
    let e = source_err(&[]);
    assert!(e.contains("'path'"), "{e}");
    let mut registry = ConnectorRegistry::new();
    registry.register(Arc::new(Filesystem::new(None)));
    let e = registry
        .resolve("t", "filesystem", &options(&[]))
        .unwrap_err()
        .to_string();
    assert!(e.contains("needs option 'path'"), "{e}");
    let e = source_err(&[("path", d), ("format", "csv"), ("csv.header", "yes")]);
    assert!(e.contains("'csv.header' = 'yes'"), "{e}");
    let e = source_err(&[("path", d), ("csv.header", "true")]);
    assert!(
        e.contains("'csv.header' applies to 'format' = 'csv'"),
        "{e}"
    );
    let e = sink_err(&[("path", d), ("format", "parquet"), ("csv.header", "true")]);
    assert!(
        e.contains("'csv.header' applies to 'format' = 'csv'"),
        "{e}"
    );
    let e = sink_err(&[("path", d), ("sink.rolling-policy.file-size", "big")]);
    assert!(e.contains("'sink.rolling-policy.file-size' = 'big'"), "{e}");
    let missing = dir.path().join("nope");
    let e = source_err(&[("path", missing.to_str().unwrap())]);
    assert!(e.contains("'path'") && e.contains("nope"), "{e}");
    let e = sink_err(&[("path", file.to_str().unwrap())]);
    assert!(e.contains("f.json") && e.contains("is a file"), "{e}");
    let e = source_err(&[
        ("path", d),
        ("format", "parquet"),
        ("format.on-error", "skip"),
    ]);
    assert!(e.contains("'format.on-error'"), "{e}");
    assert!(
        fs.sink("t", small_schema(), &options(&[("path", d)]))
            .is_ok()
    );
}

#[tokio::test]
async fn parquet_columns_are_found_by_name_and_cast() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let opts = path_options(&out, &[("format", "parquet")]);
    let schema = schema();
    let sink = Filesystem::new(None)
        .sink("out", schema.clone(), &opts)
        .unwrap();
    let config = config(None, Duration::from_millis(5));
    let source = Arc::new(input(&schema, 1, 2, 10));
    launch(job(source, sink, &config), &config.runtime)
        .unwrap()
        .wait()
        .await
        .unwrap();
    // Another table over the same files: fewer columns, in another order, `amount` as text.
    let narrow = Arc::new(Schema::new(vec![
        Field::new("amount", DataType::Utf8, false),
        Field::new("id", DataType::Int64, false),
    ]));
    let got = sorted_by(&read_back(&narrow, &opts).await, 1);
    assert_eq!(got.num_rows(), 20);
    assert_eq!(got.column(0).as_string::<i32>().value(3), "0.75");
    let missing = Arc::new(Schema::new(vec![Field::new("nope", DataType::Int64, true)]));
    let source = Filesystem::new(None).source("in", missing, &opts).unwrap();
    let config = JobConfig::default();
    let err = launch(
        job(source, Arc::new(CollectSink::new()), &config),
        &config.runtime,
    )
    .unwrap()
    .wait()
    .await
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("no column `nope`") && err.contains(".parquet"),
        "{err}"
    );
}

fn sorted_by(batch: &RecordBatch, column: usize) -> RecordBatch {
    let order = sort_to_indices(batch.column(column), None, None).unwrap();
    take_record_batch(batch, &order).unwrap()
}
