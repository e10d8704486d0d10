//! The fast path against Arrow's decoder: on every input it takes, the same batch.

use std::sync::Arc;

use proptest::prelude::*;
use streams_core::arrow::array::AsArray;
use streams_core::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use streams_core::arrow::record_batch::RecordBatch;

use super::FlatJson;

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, true),
        Field::new("small", DataType::Int32, true),
        Field::new("name", DataType::Utf8View, true),
        Field::new("note", DataType::Utf8, true),
        Field::new("price", DataType::Float64, true),
        Field::new("ok", DataType::Boolean, true),
        Field::new("at", DataType::Timestamp(TimeUnit::Millisecond, None), true),
        Field::new(
            "at_us",
            DataType::Timestamp(TimeUnit::Microsecond, None),
            true,
        ),
    ]))
}

/// Arrow's decoder as the JSON format configures it, or `None` if it refuses the records.
fn arrow(schema: &SchemaRef, records: &[&str]) -> Option<RecordBatch> {
    let mut d = streams_core::arrow::json::ReaderBuilder::new(Arc::clone(schema))
        .with_batch_size(records.len().max(1))
        .with_coerce_primitive(true)
        .build_decoder()
        .ok()?;
    for r in records {
        d.decode(r.as_bytes()).ok()?;
        d.decode(b"\n").ok()?;
    }
    d.flush().ok()?
}

fn fast(schema: &SchemaRef, records: &[&str]) -> Option<RecordBatch> {
    let bytes: Vec<&[u8]> = records.iter().map(|r| r.as_bytes()).collect();
    FlatJson::new(schema)?.decode(&bytes)
}

#[test]
fn plain_records_take_the_fast_path_and_equal_arrows() {
    let s = schema();
    let records = [
        r#"{"id": 1, "small": -2, "name": "a", "note": "x\"y\\z\n\u00e9\/", "price": 1.5e3, "ok": true, "at": "2026-01-01T00:00:00", "at_us": "1969-12-31 23:59:59.5"}"#,
        r#"{"at":"2024-02-29 12:34:56.789","id":-9223372036854775808,"name":null,"extra":{"k":[1,2,{"z":null}],"s":"\u0041"}}"#,
        r#"  {}  "#,
        r#"{"price": -0.0, "ok": false, "small": 2147483647, "note": "日本"}"#,
        r#"{"at": "1900-03-01T01:02:03.123456789", "at_us": "2100-12-31T23:59:59.000001"}"#,
    ];
    let want = arrow(&s, &records).expect("arrow reads them");
    let got = fast(&s, &records).expect("the fast path takes them");
    assert_eq!(got, want);
}

#[test]
fn what_the_fast_path_leaves_to_arrow() {
    let s = schema();
    for record in [
        r#"{"id": 1.5}"#,                    // a fraction for an integer: Arrow truncates
        r#"{"small": 2147483648}"#,          // out of range for INT
        r#"{"name": 12}"#,                   // a number for a string: Arrow coerces
        r#"{"id": "12"}"#,                   // a string for a number
        r#"{"note": "\ud83d\ude00"}"#,       // a surrogate pair
        r#"{"at": "2026-01-01T00:00:00Z"}"#, // a zone
        r#"{"at": "2026-01-01"}"#,           // a date alone
        r#"{"at": 1700000000000}"#,          // epoch milliseconds
        r#"{"id": 1, "id": 2}"#,             // a repeated key
        r#"{"id": 1} {"id": 2}"#,            // two objects
        r#"{"id": 01}"#,                     // not JSON
        r#"{"id": 1,}"#,                     // not JSON
        r#"{"x": [1,,2]}"#,                  // not JSON, in a key the table lacks
        r#"[1, 2]"#,                         // not an object
        r#"{"at": "2026-02-30T00:00:00"}"#,  // no such day
    ] {
        assert!(fast(&s, &[record]).is_none(), "{record}");
    }
    // After giving a batch back it starts clean.
    let mut d = FlatJson::new(&s).unwrap();
    assert!(d.decode(&[br#"{"id": 1}"#, br#"{"id": 1.5}"#]).is_none());
    let b = d.decode(&[br#"{"id": 7}"#]).unwrap();
    assert_eq!(b, arrow(&s, &[r#"{"id": 7}"#]).unwrap());
}

#[test]
fn nested_columns_are_not_for_the_fast_path() {
    let s = Arc::new(Schema::new(vec![Field::new(
        "l",
        DataType::List(Arc::new(Field::new("item", DataType::Int64, true))),
        true,
    )]));
    assert!(FlatJson::new(&s).is_none());
}

/// One JSON value for a column of `ty`, sometimes of another type or malformed.
fn value(ty: usize) -> BoxedStrategy<String> {
    let text = "[ -~\\u{e9}\\u{65e5}\\n\\t\"\\\\]{0,12}";
    let string = text.prop_map(|t| serde_json::to_string(&t).unwrap_or_default());
    let odd = prop_oneof![
        Just("null".to_string()),
        Just("1.25".to_string()),
        Just("\"7\"".to_string()),
        Just("{\"a\": [1, \"b\"]}".to_string()),
        Just("tru".to_string()),
    ];
    let usual = match ty {
        0 => any::<i64>().prop_map(|v| v.to_string()).boxed(),
        1 => any::<i32>().prop_map(|v| v.to_string()).boxed(),
        2 | 3 => string.boxed(),
        4 => prop_oneof![
            (-1e6f64..1e6).prop_map(|v| format!("{v}")),
            (-1e6f64..1e6).prop_map(|v| format!("{v:e}")),
            any::<i32>().prop_map(|v| v.to_string()),
        ]
        .boxed(),
        5 => any::<bool>().prop_map(|v| v.to_string()).boxed(),
        _ => (
            1600i64..2400,
            1u32..13,
            1u32..32,
            0u32..24,
            0u32..60,
            0u32..60,
            0u32..1000,
        )
            .prop_map(|(y, mo, d, h, mi, s, ms)| {
                format!("\"{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{ms:03}\"")
            })
            .boxed(),
    };
    prop_oneof![8 => usual, 1 => odd].boxed()
}

/// A record: some of the columns (each once) in any order, maybe a key the table lacks,
/// with or without spaces.
fn record() -> impl Strategy<Value = String> {
    const NAMES: [&str; 9] = [
        "id", "small", "name", "note", "price", "ok", "at", "at_us", "other",
    ];
    let fields = proptest::sample::subsequence(NAMES.to_vec(), 0..=NAMES.len())
        .prop_shuffle()
        .prop_flat_map(|keys| {
            keys.into_iter()
                .map(|k| {
                    let ty = NAMES.iter().position(|n| *n == k).unwrap_or(8).min(7);
                    value(ty).prop_map(move |v| (k.to_string(), v))
                })
                .collect::<Vec<_>>()
        });
    (fields, any::<bool>()).prop_map(|(fields, spaced)| {
        let sep = if spaced { ", " } else { "," };
        let body: Vec<String> = fields
            .iter()
            .map(|(k, v)| format!("\"{k}\":{}{v}", if spaced { " " } else { "" }))
            .collect();
        format!("{{{}}}", body.join(sep))
    })
}

proptest! {
    #[test]
    fn whatever_the_fast_path_takes_arrow_reads_the_same(
        records in proptest::collection::vec(record(), 1..6)
    ) {
        let s = schema();
        let texts: Vec<&str> = records.iter().map(String::as_str).collect();
        if let Some(got) = fast(&s, &texts) {
            let want = arrow(&s, &texts);
            prop_assert_eq!(Some(got), want, "{:?}", texts);
        }
    }
}

#[test]
fn most_generated_batches_of_usual_values_take_the_fast_path() {
    // The property above only means something if the fast path takes most usual input.
    let s = schema();
    let usual: Vec<String> = (0..200)
        .map(|i| {
            format!(
                r#"{{"id": {i}, "small": {}, "name": "n{i}", "note": "a\"b{i}", "price": {}.5, "ok": {}, "at": "2026-01-01T00:00:{:02}.{:03}"}}"#,
                -i,
                i * 3,
                i % 2 == 0,
                i % 60,
                i
            )
        })
        .collect();
    let texts: Vec<&str> = usual.iter().map(String::as_str).collect();
    assert_eq!(fast(&s, &texts), arrow(&s, &texts));
    assert!(fast(&s, &texts).is_some());
}

#[test]
fn the_property_checks_the_fast_path_often() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let s = schema();
    let mut runner = TestRunner::deterministic();
    let strategy = proptest::collection::vec(record(), 1..6);
    let taken = (0..500)
        .filter(|_| {
            let records = strategy.new_tree(&mut runner).unwrap().current();
            let texts: Vec<&str> = records.iter().map(String::as_str).collect();
            fast(&s, &texts).is_some()
        })
        .count();
    assert!(taken > 100, "the fast path took {taken} of 500 batches");
}

/// From the second batch on (the first grows its blocks as Arrow's builder does), a string
/// column holds about its strings' bytes, not the block size the builder grew to on earlier
/// batches; the values equal Arrow's decoder's.
#[test]
fn string_columns_hold_about_their_bytes_batch_after_batch() {
    let s = schema();
    let mut decoder = FlatJson::new(&s).expect("a flat schema");
    for batch in 0..4 {
        let owned: Vec<String> = (0..8192)
            .map(|i| {
                format!(
                    r#"{{"id": {i}, "name": "{}"}}"#,
                    "n".repeat(60 + (i + batch) % 30)
                )
            })
            .collect();
        let records: Vec<&str> = owned.iter().map(String::as_str).collect();
        let bytes: Vec<&[u8]> = records.iter().map(|r| r.as_bytes()).collect();
        let got = decoder.decode(&bytes).expect("the fast path takes them");
        assert_eq!(Some(&got), arrow(&s, &records).as_ref());
        let names = got.column(2).as_string_view();
        let used: usize = names.data_buffers().iter().map(|b| b.len()).sum();
        let held: usize = names.data_buffers().iter().map(|b| b.capacity()).sum();
        assert!(
            batch == 0 || held <= used + used / 4 + (8 << 10),
            "batch {batch}: {held} bytes held for {used}"
        );
    }
}

/// A batch after one of a few long strings gets a block of at most Arrow's largest size, not
/// one sized for every row being as long.
#[test]
fn a_batch_after_long_strings_gets_a_bounded_block() {
    let s = schema();
    let mut decoder = FlatJson::new(&s).expect("a flat schema");
    let long = format!(r#"{{"id": 0, "name": "{}"}}"#, "n".repeat(100_000));
    decoder
        .decode(&[long.as_bytes()])
        .expect("the fast path takes it");
    let owned: Vec<String> = (0..8192)
        .map(|i| format!(r#"{{"id": {i}, "name": "name-{i:015}"}}"#))
        .collect();
    let bytes: Vec<&[u8]> = owned.iter().map(|r| r.as_bytes()).collect();
    let got = decoder.decode(&bytes).expect("the fast path takes them");
    let names = got.column(2).as_string_view();
    let held: usize = names.data_buffers().iter().map(|b| b.capacity()).sum();
    assert!(held <= 2 << 20, "{held} bytes held");
}
