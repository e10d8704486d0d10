#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

use std::collections::BTreeMap;

use streams_core::arrow::array::{Array, AsArray, RecordBatch};
use streams_core::arrow::datatypes::{
    DataType, Field, Int32Type, Int64Type, Schema, TimeUnit, TimestampMillisecondType,
};

use super::*;

fn options(pairs: &[(&str, &str)]) -> Options {
    Options::new(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())))
}

fn event_table() -> SchemaRef {
    Arc::new(Schema::new(event_table_fields()))
}

/// Every event of every split, as (split, batch) in generation order.
async fn drain(
    source: &NexmarkSource,
    subtask: usize,
    parallelism: usize,
) -> Vec<(usize, RecordBatch)> {
    let mut s = source.create(subtask, parallelism).unwrap();
    let mut out = Vec::new();
    loop {
        match s.next().await.unwrap() {
            SourceEvent::Batch { split, batch } => out.push((split, batch)),
            SourceEvent::End => return out,
            _ => {}
        }
    }
}

/// (event type, event time, bid price or -1) per event, sorted.
fn fingerprint(batches: &[(usize, RecordBatch)]) -> Vec<(i32, i64, i64)> {
    let mut out = Vec::new();
    for (_, b) in batches {
        let ty = b.column(0).as_primitive::<Int32Type>();
        let bid = b.column(3).as_struct();
        let price = bid.column(2).as_primitive::<Int64Type>();
        // `dateTime` of the row of the event's own type (person: field 6, others: 5).
        let time = |column: usize, field: usize, r: usize| {
            b.column(column)
                .as_struct()
                .column(field)
                .as_primitive::<TimestampMillisecondType>()
                .value(r)
        };
        for (r, t) in ty.values().iter().enumerate() {
            let at = match t {
                0 => time(1, 6, r),
                1 => time(2, 5, r),
                _ => time(3, 5, r),
            };
            let p = if bid.is_valid(r) { price.value(r) } else { -1 };
            out.push((*t, at, p));
        }
    }
    out.sort_unstable();
    out
}

#[tokio::test]
async fn generates_the_event_table_in_the_configured_proportions() {
    let source = NexmarkSource::new(
        "nexmark",
        event_table(),
        &options(&[("events.num", "10000"), ("splits", "3"), ("base-time", "0")]),
    )
    .unwrap();
    let batches = drain(&source, 0, 1).await;
    let mut per_type = BTreeMap::new();
    for (_, b) in &batches {
        let ty = b.column(0).as_primitive::<Int32Type>();
        for r in 0..b.num_rows() {
            *per_type.entry(ty.value(r)).or_insert(0) += 1;
            // Exactly the row of the event's own type is set.
            for (c, want) in [(1, 0), (2, 1), (3, 2)] {
                assert_eq!(b.column(c).is_valid(r), ty.value(r) == want);
            }
        }
    }
    // 1 : 3 : 46 out of every 50 events.
    assert_eq!(per_type, BTreeMap::from([(0, 200), (1, 600), (2, 9200)]));
}

#[tokio::test]
async fn events_do_not_depend_on_splits_and_each_split_is_in_time_order() {
    let make = |splits: &str| {
        NexmarkSource::new(
            "nexmark",
            event_table(),
            &options(&[
                ("events.num", "5003"),
                ("splits", splits),
                ("batch-size", "100"),
                ("base-time", "1000"),
            ]),
        )
        .unwrap()
    };
    let one = drain(&make("1"), 0, 1).await;
    // Split numbers are per subtask: tag the second subtask's apart.
    let mut three = drain(&make("3"), 0, 2).await;
    three.extend(
        drain(&make("3"), 1, 2)
            .await
            .into_iter()
            .map(|(s, b)| (s + 10, b)),
    );
    assert_eq!(fingerprint(&one).len(), 5003);
    assert_eq!(fingerprint(&one), fingerprint(&three));
    let mut last: BTreeMap<usize, i64> = BTreeMap::new();
    for (split, b) in &three {
        let bid = b.column(3).as_struct();
        let t = bid.column(5).as_primitive::<TimestampMillisecondType>();
        for r in 0..b.num_rows() {
            if bid.is_valid(r) {
                let prev = last.insert(*split, t.value(r)).unwrap_or(i64::MIN);
                assert!(prev <= t.value(r), "split {split} goes back in time");
            }
        }
    }
}

#[tokio::test]
async fn a_resumed_subtask_generates_exactly_the_events_not_yet_emitted() {
    let source = NexmarkSource::new(
        "nexmark",
        event_table(),
        &options(&[
            ("events.num", "3001"),
            ("splits", "3"),
            ("batch-size", "64"),
            ("base-time", "1000"),
        ]),
    )
    .unwrap();
    let whole = drain(&source, 0, 2).await;
    for cut in [0, 1, 5, 11] {
        let mut first = source.create(0, 2).unwrap();
        let mut got = Vec::new();
        while got.len() < cut {
            match first.next().await.unwrap() {
                SourceEvent::Batch { split, batch } => got.push((split, batch)),
                SourceEvent::End => break,
                _ => {}
            }
        }
        let position = first.snapshot_position(1).unwrap();
        let mut second = source.create(0, 2).unwrap();
        second.restore_position(&position).unwrap();
        loop {
            match second.next().await.unwrap() {
                SourceEvent::Batch { split, batch } => got.push((split, batch)),
                SourceEvent::End => break,
                _ => {}
            }
        }
        assert_eq!(
            fingerprint(&got),
            fingerprint(&whole),
            "cut after {cut} batches"
        );
    }
    let mut other = source.create(1, 2).unwrap();
    assert!(
        other.restore_position(&[0; 16]).is_err(),
        "subtask 1 has one split"
    );
}

#[tokio::test]
async fn declared_subset_of_fields_is_projected_and_cast() {
    let bid = DataType::Struct(
        vec![
            Field::new("price", DataType::Float64, true),
            Field::new(
                "datetime",
                DataType::Timestamp(TimeUnit::Microsecond, None),
                true,
            ),
        ]
        .into(),
    );
    let schema = Arc::new(Schema::new(vec![Field::new("bid", bid.clone(), true)]));
    let source = NexmarkSource::new(
        "t",
        schema,
        &options(&[("events.num", "100"), ("base-time", "2020-01-01 00:00:00")]),
    )
    .unwrap();
    let batches = drain(&source, 0, 1).await;
    let b = &batches[0].1;
    assert_eq!(b.column(0).data_type(), &bid);
    let row = b.column(0).as_struct();
    let first = (0..b.num_rows()).find(|r| row.is_valid(*r)).unwrap();
    let us = row
        .column(1)
        .as_primitive::<streams_core::arrow::datatypes::TimestampMicrosecondType>();
    assert!(us.value(first) >= 1_577_836_800_000_000);
}

#[test]
fn bad_tables_and_options_are_refused_by_name() {
    let err = |schema: SchemaRef, opts: &[(&str, &str)]| {
        NexmarkSource::new("t", schema, &options(opts))
            .unwrap_err()
            .to_string()
    };
    let one = |f: Field| Arc::new(Schema::new(vec![f]));
    let e = err(one(Field::new("price", DataType::Int64, true)), &[]);
    assert!(e.contains("no column `price`"), "{e}");
    let e = err(
        one(Field::new(
            "bid",
            DataType::Struct(vec![Field::new("cost", DataType::Int64, true)].into()),
            true,
        )),
        &[],
    );
    assert!(e.contains("no field `cost`"), "{e}");
    let e = err(one(Field::new("bid", DataType::Int64, true)), &[]);
    assert!(e.contains("must be a ROW"), "{e}");
    let e = err(event_table(), &[("rate.shape", "triangle")]);
    assert!(e.contains("'rate.shape'"), "{e}");
    let e = err(event_table(), &[("splits", "0")]);
    assert!(e.contains("'splits' must be positive"), "{e}");
    let e = err(event_table(), &[("base-time", "yesterday")]);
    assert!(e.contains("'base-time'"), "{e}");
    let e = err(event_table(), &[("events.num", "-3")]);
    assert!(e.contains("'events.num'"), "{e}");
}

#[tokio::test]
async fn a_seed_gives_another_reproducible_stream() {
    let with = |seed: Option<&str>| {
        let mut o = vec![("events.num", "2000"), ("base-time", "0")];
        if let Some(s) = seed {
            o.push(("seed", s));
        }
        NexmarkSource::new("nexmark", event_table(), &options(&o)).unwrap()
    };
    let default = fingerprint(&drain(&with(None), 0, 1).await);
    let zero = fingerprint(&drain(&with(Some("0")), 0, 1).await);
    let seven = fingerprint(&drain(&with(Some("7")), 0, 1).await);
    let seven_again = fingerprint(&drain(&with(Some("7")), 0, 1).await);
    assert_eq!(default, zero, "seed 0 is Flink's stream");
    assert_eq!(seven, seven_again, "reproducible");
    assert_ne!(seven, default, "another stream");
    // Same event types and times: only the random fields change.
    let shape = |f: &[(i32, i64, i64)]| f.iter().map(|(t, at, _)| (*t, *at)).collect::<Vec<_>>();
    assert_eq!(shape(&seven), shape(&default));
    let e = NexmarkSource::new("nexmark", event_table(), &options(&[("seed", "-1")])).unwrap_err();
    assert!(e.to_string().contains("'seed' = '-1'"), "{e}");
}
