//! Unit tests of the filesystem connector: chunk borders, positions, the sink's two phases.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

use std::path::Path;

use streams_core::arrow::array::{Array, AsArray, Int64Array, StringArray};
use streams_core::arrow::datatypes::{DataType, Field, Int64Type, Schema};
use streams_core::arrow::record_batch::RecordBatch;
use streams_core::metrics::OperatorMetrics;
use streams_core::state::OperatorState;
use streams_core::{SinkContext, Source, SourceContext, SourceEvent};

use super::part::PartNames;
use super::*;

fn options(pairs: &[(&str, &str)]) -> Options {
    Options::new(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())))
}

fn raw_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![Field::new("line", DataType::Utf8, false)]))
}

fn id_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("name", DataType::Utf8, true),
    ]))
}

fn source_ctx() -> SourceContext {
    SourceContext {
        node: 0,
        subtask: 0,
        parallelism: 1,
        metrics: Arc::new(OperatorMetrics::default()),
    }
}

fn source_at(dir: &Path, pairs: &[(&str, &str)], chunk: usize) -> FilesystemSource {
    let mut all = vec![("path", dir.to_str().unwrap())];
    all.extend_from_slice(pairs);
    let opts = options(&all);
    let schema = if opts.get("format") == Some("raw") {
        raw_schema()
    } else {
        id_schema()
    };
    let t = Table::from_options("t", schema, &opts).unwrap();
    let files = list_files("t", &t.path).unwrap();
    FilesystemSource::new(t, files, OnError::Fail, None).with_chunk_bytes(chunk)
}

/// Reads events until `stop` batches were returned (or the end); the batches and whether it
/// ended.
async fn read(source: &mut Box<dyn Source>, stop: usize) -> (Vec<RecordBatch>, bool) {
    let mut out = Vec::new();
    while out.len() < stop {
        match source.next().await.unwrap() {
            SourceEvent::Batch { batch, .. } => out.push(batch),
            SourceEvent::End => return (out, true),
            _ => {}
        }
    }
    (out, false)
}

fn strings(batches: &[RecordBatch]) -> Vec<String> {
    batches
        .iter()
        .flat_map(|b| {
            let c = b.column(0).as_string::<i32>();
            (0..c.len())
                .map(|i| c.value(i).to_string())
                .collect::<Vec<_>>()
        })
        .collect()
}

fn ids(batches: &[RecordBatch]) -> Vec<i64> {
    let mut v: Vec<i64> = batches
        .iter()
        .flat_map(|b| b.column(0).as_primitive::<Int64Type>().values().to_vec())
        .collect();
    v.sort_unstable();
    v
}

#[test]
fn sizes_parse_like_flink() {
    assert_eq!(parse_size("t", "128MB").unwrap(), 128 << 20);
    assert_eq!(parse_size("t", "64 kb").unwrap(), 64 << 10);
    assert_eq!(parse_size("t", "1g").unwrap(), 1 << 30);
    assert_eq!(parse_size("t", "4096").unwrap(), 4096);
    for bad in ["", "MB", "12 parsecs", "0", "-1mb", "99999999999tb"] {
        let e = parse_size("t", bad).unwrap_err().to_string();
        assert!(e.contains("'sink.rolling-policy.file-size'"), "{bad}: {e}");
    }
}

#[test]
fn part_names_tell_this_runs_files_apart() {
    let n = PartNames::new(Path::new("/d"), 0xab, 3, "json");
    assert_eq!(n.visible(7), Path::new("/d/part-000000ab-3-7.json"));
    assert_eq!(n.hidden_number(".part-000000ab-3-7.inprogress"), Some(7));
    assert_eq!(n.hidden_number(".part-000000ab-3-12.pending"), Some(12));
    assert_eq!(
        n.hidden_number(".part-000000ab-31-7.pending"),
        None,
        "subtask 31"
    );
    assert_eq!(
        n.hidden_number(".part-000000ac-3-7.pending"),
        None,
        "another run"
    );
    assert_eq!(n.hidden_number("part-000000ab-3-7.json"), None, "visible");
}

#[test]
fn listing_is_recursive_sorted_and_skips_hidden_names() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir_all(d.join("b/c")).unwrap();
    std::fs::create_dir_all(d.join(".hidden")).unwrap();
    for f in [
        "z.json",
        "b/a.json",
        "b/c/x.json",
        "_SUCCESS",
        ".part-1.inprogress",
        ".hidden/y",
    ] {
        std::fs::write(d.join(f), "").unwrap();
    }
    let got = list_files("t", d).unwrap();
    let want: Vec<_> = ["b/a.json", "b/c/x.json", "z.json"]
        .iter()
        .map(|f| d.join(f))
        .collect();
    assert_eq!(got, want);
    assert_eq!(
        list_files("t", &d.join("z.json")).unwrap(),
        vec![d.join("z.json")]
    );
}

#[tokio::test]
async fn lines_are_the_same_whatever_the_chunk_size() {
    let dir = tempfile::tempdir().unwrap();
    let long = "x".repeat(100);
    let text = format!("\u{feff}first\r\nsecond\n\n\r\n{long}\nlast without break");
    std::fs::write(dir.path().join("a.txt"), &text).unwrap();
    let want = vec!["first", "second", long.as_str(), "last without break"];
    for chunk in [1, 3, 7, 64, 4 << 20] {
        let f = source_at(dir.path(), &[("format", "raw")], chunk);
        let mut s = f.create(0, 1).unwrap();
        s.start(&source_ctx()).await.unwrap();
        let (batches, ended) = read(&mut s, usize::MAX).await;
        assert!(ended);
        assert_eq!(strings(&batches), want, "chunk {chunk}");
    }
}

#[tokio::test]
async fn a_csv_header_is_skipped_in_every_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.csv"), "id,name\n1,a\n2,b\n").unwrap();
    std::fs::write(dir.path().join("b.csv"), "id,name\r\n3,c").unwrap();
    let f = source_at(dir.path(), &[("format", "csv"), ("csv.header", "true")], 5);
    let mut s = f.create(0, 1).unwrap();
    s.start(&source_ctx()).await.unwrap();
    let (batches, _) = read(&mut s, usize::MAX).await;
    assert_eq!(ids(&batches), vec![1, 2, 3]);
}

#[tokio::test]
async fn a_restored_reader_goes_on_from_the_checkpointed_line() {
    let dir = tempfile::tempdir().unwrap();
    let mut all = Vec::new();
    for file in 0..3 {
        let mut text = String::new();
        for i in 0..20_000 {
            let id = file * 100_000 + i;
            all.push(id);
            text.push_str(&format!("{{\"id\": {id}, \"name\": \"n{i}\"}}\n"));
            if i % 1000 == 0 {
                text.push('\n');
            }
        }
        std::fs::write(dir.path().join(format!("f{file}.json")), text).unwrap();
    }
    all.sort_unstable();
    // Small chunks: a checkpoint falls inside files and between chunks.
    let f = source_at(dir.path(), &[], 100_000);
    for stop in [1, 2, 5, 9] {
        let mut first = f.create(0, 1).unwrap();
        first.start(&source_ctx()).await.unwrap();
        let (mut got, _) = read(&mut first, stop).await;
        let position = first.snapshot_position(1).unwrap();
        // Read on past the checkpoint, then "crash": those rows are lost with the run.
        let _ = read(&mut first, 2).await;
        drop(first);
        let mut second = f.create(0, 1).unwrap();
        second.restore_position(&position).unwrap();
        second.start(&source_ctx()).await.unwrap();
        let (rest, ended) = read(&mut second, usize::MAX).await;
        assert!(ended);
        got.extend(rest);
        assert_eq!(ids(&got), all, "stopped after {stop} batches");
    }
}

#[tokio::test]
async fn bad_lines_are_named_by_file_and_line_after_a_restore_too() {
    let dir = tempfile::tempdir().unwrap();
    let mut text = String::new();
    for i in 0..30 {
        text.push_str(&format!("{{\"id\": {i}}}\n"));
    }
    text.push_str("{\"id\": oops}\n");
    std::fs::write(dir.path().join("a.json"), text).unwrap();
    let f = source_at(dir.path(), &[], 64);
    let mut first = f.create(0, 1).unwrap();
    first.start(&source_ctx()).await.unwrap();
    let (_, _) = read(&mut first, 3).await;
    let position = first.snapshot_position(1).unwrap();
    let mut second = f.create(0, 1).unwrap();
    second.restore_position(&position).unwrap();
    second.start(&source_ctx()).await.unwrap();
    let err = loop {
        match second.next().await {
            Err(e) => break e.to_string(),
            Ok(SourceEvent::End) => panic!("no error"),
            Ok(_) => {}
        }
    };
    assert!(err.contains("a.json', line 31"), "{err}");
}

fn sink_ctx(checkpointing: bool) -> SinkContext {
    SinkContext {
        node: 1,
        subtask: 0,
        parallelism: 1,
        schema: id_schema(),
        checkpointing,
    }
}

fn rows(from: i64, n: i64) -> RecordBatch {
    RecordBatch::try_new(
        id_schema(),
        vec![
            Arc::new(Int64Array::from((from..from + n).collect::<Vec<_>>())),
            Arc::new(StringArray::from(vec![Some("x"); n as usize])),
        ],
    )
    .unwrap()
}

/// (visible, hidden) file names.
fn files(dir: &Path) -> (Vec<String>, Vec<String>) {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names.into_iter().partition(|n| !n.starts_with('.'))
}

fn visible_ids(dir: &Path) -> Vec<i64> {
    let mut out = Vec::new();
    for name in files(dir).0 {
        for line in std::fs::read_to_string(dir.join(name)).unwrap().lines() {
            let start = line.find(':').unwrap() + 1;
            let end = line.find(',').unwrap();
            out.push(line[start..end].parse().unwrap());
        }
    }
    out.sort_unstable();
    out
}

#[tokio::test]
async fn files_become_visible_at_commit_and_a_crash_leaves_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let opts = options(&[
        ("path", out.to_str().unwrap()),
        ("sink.rolling-policy.file-size", "1kb"),
    ]);
    let factory = Filesystem::new(None).sink("t", id_schema(), &opts).unwrap();
    let mut first = factory.create(0, 1).unwrap();
    first.start(&sink_ctx(true)).await.unwrap();
    for k in 0..5 {
        first.write(rows(k * 20, 20)).await.unwrap();
    }
    assert!(files(&out).0.is_empty(), "nothing visible while written");
    let state1 = first.pre_commit(1).await.unwrap().unwrap();
    assert!(
        files(&out).0.is_empty(),
        "nothing visible before the commit"
    );
    let before = files(&out);
    first.pre_commit(2).await.unwrap().unwrap();
    assert_eq!(
        files(&out),
        before,
        "a checkpoint without rows makes no file"
    );
    first.commit(1).await.unwrap();
    let committed = files(&out).0;
    assert!(
        committed.len() > 1,
        "a file rolls after the batch that takes it past 1kb: {committed:?}"
    );
    assert_eq!(visible_ids(&out), (0..100).collect::<Vec<_>>());
    assert!(files(&out).1.is_empty(), "{:?}", files(&out).1);
    // Rows of checkpoint 3, pre-committed, then a crash before checkpoint 3 completed, and
    // rows after it.
    first.write(rows(100, 50)).await.unwrap();
    first.pre_commit(3).await.unwrap().unwrap();
    first.write(rows(150, 50)).await.unwrap();
    drop(first);
    assert!(!files(&out).1.is_empty());

    // The job resumes from checkpoint 1: the files of 3 and after are removed; the commit of
    // 1 again changes nothing.
    let bytes1 = state1.encode().unwrap();
    let mut second = factory.create(0, 1).unwrap();
    second
        .restore(1, Some(OperatorState::decode(&bytes1).unwrap()))
        .await
        .unwrap();
    second.start(&sink_ctx(true)).await.unwrap();
    second.commit(1).await.unwrap();
    assert_eq!(files(&out).0, committed);
    assert!(files(&out).1.is_empty(), "{:?}", files(&out).1);

    // Resuming from checkpoint 3 instead (it completed, the commit did not run): its files
    // become visible, once, however often the commit repeats.
    std::fs::remove_dir_all(&out).unwrap();
    let mut a = factory.create(0, 1).unwrap();
    a.start(&sink_ctx(true)).await.unwrap();
    a.write(rows(0, 10)).await.unwrap();
    a.pre_commit(1).await.unwrap().unwrap();
    a.commit(1).await.unwrap();
    a.write(rows(10, 10)).await.unwrap();
    let s2 = a.pre_commit(2).await.unwrap().unwrap();
    a.write(rows(20, 10)).await.unwrap();
    drop(a);
    for _ in 0..2 {
        let mut b = factory.create(0, 1).unwrap();
        b.restore(
            2,
            Some(OperatorState::decode(&s2.encode().unwrap()).unwrap()),
        )
        .await
        .unwrap();
        b.start(&sink_ctx(true)).await.unwrap();
        b.commit(2).await.unwrap();
        assert_eq!(visible_ids(&out), (0..20).collect::<Vec<_>>());
        assert!(files(&out).1.is_empty(), "{:?}", files(&out).1);
    }
}

#[tokio::test]
async fn without_checkpoints_files_appear_when_finished() {
    let dir = tempfile::tempdir().unwrap();
    let opts = options(&[("path", dir.path().to_str().unwrap())]);
    let factory = Filesystem::new(None).sink("t", id_schema(), &opts).unwrap();
    let mut s = factory.create(0, 1).unwrap();
    s.start(&sink_ctx(false)).await.unwrap();
    s.write(rows(0, 5)).await.unwrap();
    s.write(RecordBatch::new_empty(id_schema())).await.unwrap();
    assert!(files(dir.path()).0.is_empty());
    s.close().await.unwrap();
    assert_eq!(visible_ids(dir.path()), vec![0, 1, 2, 3, 4]);
    assert!(files(dir.path()).1.is_empty());
}

#[tokio::test]
async fn a_restored_parquet_reader_skips_the_rows_it_emitted() {
    let dir = tempfile::tempdir().unwrap();
    let opts = options(&[
        ("path", dir.path().to_str().unwrap()),
        ("format", "parquet"),
    ]);
    let sink = Filesystem::new(None).sink("t", id_schema(), &opts).unwrap();
    let mut w = sink.create(0, 1).unwrap();
    w.start(&sink_ctx(false)).await.unwrap();
    for k in 0..6 {
        w.write(rows(k * 5_000, 5_000)).await.unwrap();
    }
    w.close().await.unwrap();
    let source = Filesystem::new(None)
        .source("t", id_schema(), &opts)
        .unwrap();
    let all: Vec<i64> = (0..30_000).collect();
    for stop in [1, 2, 3] {
        let mut first = source.create(0, 1).unwrap();
        first.start(&source_ctx()).await.unwrap();
        let (mut got, _) = read(&mut first, stop).await;
        let position = first.snapshot_position(1).unwrap();
        let _ = read(&mut first, 1).await;
        let mut second = source.create(0, 1).unwrap();
        second.restore_position(&position).unwrap();
        second.start(&source_ctx()).await.unwrap();
        let (rest, ended) = read(&mut second, usize::MAX).await;
        assert!(ended);
        got.extend(rest);
        assert_eq!(ids(&got), all, "stopped after {stop} batches");
    }
}

#[tokio::test]
async fn a_resumed_reader_reads_the_files_it_started_with() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("b.json"), "{\"id\": 1}\n{\"id\": 2}\n").unwrap();
    let f = source_at(dir.path(), &[], 1 << 20);
    let mut first = f.create(0, 1).unwrap();
    first.start(&source_ctx()).await.unwrap();
    let (got, _) = read(&mut first, 1).await;
    let position = first.snapshot_position(1).unwrap();
    // A file listed before the first one arrives; the restarted job lists it, but reads only
    // what it started with.
    std::fs::write(dir.path().join("a.json"), "{\"id\": 99}\n").unwrap();
    let relisted = source_at(dir.path(), &[], 1 << 20);
    assert_eq!(relisted.splits(), 2);
    let mut second = relisted.create(0, 1).unwrap();
    second.restore_position(&position).unwrap();
    second.start(&source_ctx()).await.unwrap();
    let (rest, ended) = read(&mut second, usize::MAX).await;
    assert!(ended && rest.is_empty(), "{rest:?}");
    assert_eq!(ids(&got), vec![1, 2]);
}
