#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

use std::sync::Arc;
use std::time::Duration;

use streams_core::SinkContext;
use streams_core::arrow::array::{
    AsArray, Int8Array, Int64Array, RecordBatch, StringArray, TimestampMillisecondArray,
};
use streams_core::arrow::datatypes::{DataType, Field, Int64Type, Schema, SchemaRef, TimeUnit};
use streams_core::changelog::{INSERT, OP_COLUMN, UPDATE_AFTER, UPDATE_BEFORE};
use streams_core::connector::{Connector, Options};

use crate::{ViewCatalog, ViewConnector};

fn counts() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("k", DataType::Utf8, false),
        Field::new("n", DataType::Int64, false),
    ]))
}

fn changes(schema: &SchemaRef, rows: &[(&str, i64, i8)]) -> RecordBatch {
    let mut fields = schema.fields().to_vec();
    fields.push(Arc::new(Field::new(OP_COLUMN, DataType::Int8, false)));
    RecordBatch::try_new(
        Arc::new(Schema::new(fields)),
        vec![
            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.0))),
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.1))),
            Arc::new(Int8Array::from_iter_values(rows.iter().map(|r| r.2))),
        ],
    )
    .unwrap()
}

fn ctx(schema: &SchemaRef, checkpointing: bool) -> SinkContext {
    SinkContext {
        node: 1,
        subtask: 0,
        parallelism: 2,
        schema: Arc::clone(schema),
        checkpointing,
    }
}

fn sorted(batch: &RecordBatch) -> Vec<(String, i64)> {
    let mut out: Vec<(String, i64)> = (0..batch.num_rows())
        .map(|i| {
            (
                batch.column(0).as_string::<i32>().value(i).to_string(),
                batch.column(1).as_primitive::<Int64Type>().value(i),
            )
        })
        .collect();
    out.sort();
    out
}

#[tokio::test]
async fn readers_see_one_epoch_of_every_subtask_and_never_half_an_update() {
    let views = ViewCatalog::new();
    let sink = ViewConnector::new(Arc::clone(&views))
        .sink("counts", counts(), &Options::default())
        .unwrap();
    let mut a = sink.create(0, 2).unwrap();
    let mut b = sink.create(1, 2).unwrap();
    a.start(&ctx(&counts(), true)).await.unwrap();
    b.start(&ctx(&counts(), true)).await.unwrap();
    let view = views.get("counts").unwrap();
    assert_eq!(view.snapshot().epoch, 0);
    assert_eq!(view.snapshot().batch.num_rows(), 0);

    a.write(changes(&counts(), &[("x", 1, INSERT)]))
        .await
        .unwrap();
    b.write(changes(&counts(), &[("y", 1, INSERT)]))
        .await
        .unwrap();
    a.pre_commit(1).await.unwrap();
    b.pre_commit(1).await.unwrap();
    // Written, staged, but the checkpoint has not completed: nothing shows.
    assert_eq!(view.snapshot().epoch, 0);
    a.commit(1).await.unwrap();
    assert_eq!(
        view.snapshot().epoch,
        0,
        "one subtask alone does not make an epoch"
    );
    b.commit(1).await.unwrap();
    let one = view.snapshot();
    assert_eq!(
        (one.epoch, sorted(&one.batch)),
        (1, vec![("x".into(), 1), ("y".into(), 1)])
    );

    // x goes 1 -> 2 in epoch 2; subtask a commits 2 before b: readers stay at epoch 1.
    a.write(changes(
        &counts(),
        &[("x", 1, UPDATE_BEFORE), ("x", 2, UPDATE_AFTER)],
    ))
    .await
    .unwrap();
    a.pre_commit(2).await.unwrap();
    b.pre_commit(2).await.unwrap();
    a.commit(2).await.unwrap();
    let still = view.snapshot();
    assert_eq!(
        (still.epoch, sorted(&still.batch)),
        (1, vec![("x".into(), 1), ("y".into(), 1)])
    );
    b.commit(2).await.unwrap();
    let two = view.snapshot();
    assert_eq!(
        (two.epoch, sorted(&two.batch)),
        (2, vec![("x".into(), 2), ("y".into(), 1)])
    );

    // A restarted subtask gets its rows back from the checkpoint.
    let state = a.pre_commit(3).await.unwrap();
    let mut again = sink.create(0, 2).unwrap();
    again.restore(3, state).await.unwrap();
    again.start(&ctx(&counts(), true)).await.unwrap();
    again.commit(3).await.unwrap();
    b.pre_commit(3).await.unwrap();
    b.commit(3).await.unwrap();
    let three = view.snapshot();
    assert_eq!(
        (three.epoch, sorted(&three.batch)),
        (3, vec![("x".into(), 2), ("y".into(), 1)])
    );
}

#[tokio::test]
async fn windows_expire_after_the_retention_and_options_are_checked() {
    let schema: SchemaRef = Arc::new(Schema::new(vec![
        Field::new(
            "window_end",
            DataType::Timestamp(TimeUnit::Millisecond, None),
            false,
        ),
        Field::new("n", DataType::Int64, false),
    ]));
    let views = ViewCatalog::new();
    let connector = ViewConnector::new(Arc::clone(&views));
    let options = Options::new([("retention".to_string(), "10s".to_string())]);
    let sink = connector.sink("w", Arc::clone(&schema), &options).unwrap();
    let mut s = sink.create(0, 1).unwrap();
    s.start(&SinkContext {
        parallelism: 1,
        ..ctx(&schema, false)
    })
    .await
    .unwrap();
    let batch = RecordBatch::try_new(
        Arc::clone(&schema),
        vec![
            Arc::new(TimestampMillisecondArray::from(vec![
                10_000, 20_000, 30_000,
            ])),
            Arc::new(Int64Array::from(vec![1, 2, 3])),
        ],
    )
    .unwrap();
    s.write(batch).await.unwrap();
    assert_eq!(views.get("w").unwrap().snapshot().batch.num_rows(), 3);
    // Watermark 31 s, retention 10 s: windows ending at or before 21 s go.
    s.watermark(31_000).await.unwrap();
    let left = views.get("w").unwrap().snapshot().batch;
    assert_eq!(
        left.column(1).as_primitive::<Int64Type>().values().to_vec(),
        vec![3]
    );
    assert_eq!(
        views.get("w").unwrap().retention(),
        Some(Duration::from_secs(10))
    );

    let bad = Options::new([("retention".to_string(), "soon".to_string())]);
    let e = connector.sink("w2", Arc::clone(&schema), &bad).unwrap_err();
    assert!(e.to_string().contains("'retention' = 'soon'"), "{e}");
    let e = connector
        .source("w", schema, &Options::default())
        .unwrap_err();
    assert!(e.to_string().contains("materialized view"), "{e}");
}
