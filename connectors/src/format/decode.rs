//! Payloads to batches.

use std::sync::Arc;

use streams_core::Result;
use streams_core::arrow::array::{
    ArrayRef, BinaryBuilder, LargeBinaryBuilder, LargeStringBuilder, StringBuilder,
};
use streams_core::arrow::compute::concat_batches;
use streams_core::arrow::datatypes::{DataType, SchemaRef};
use streams_core::arrow::error::ArrowError;
use streams_core::arrow::record_batch::RecordBatch;

use streams_core::arrow::json::reader::Decoder as JsonDecoder;

use super::flat_json::FlatJson;
use super::{BadRecords, Csv, Format};

/// Decodes payloads of one table into batches of its columns.
#[derive(Debug)]
pub struct RecordDecoder {
    schema: SchemaRef,
    format: Format,
    bad: BadRecords,
    /// The JSON decoder of the last call that succeeded (with room for that many rows), kept
    /// for the next: building one per batch allocated (and page-faulted) its buffers afresh.
    kept_json: Option<(usize, JsonDecoder)>,
    /// The JSON fast path, while the table's columns suit it and its records mostly do.
    flat: Option<FlatJson>,
    /// Batches in a row the fast path gave back.
    flat_misses: u32,
}

/// After this many batches in a row that the fast path gave back, a decoder stops trying it
/// (the records are of a form it does not read, and each try costs a pass).
const FLAT_MISSES: u32 = 3;

impl RecordDecoder {
    /// A decoder of `format` payloads into rows of `schema`; unreadable payloads go to `bad`.
    pub fn new(schema: SchemaRef, format: Format, bad: BadRecords) -> Self {
        RecordDecoder {
            flat: matches!(format, Format::Json)
                .then(|| FlatJson::new(&schema))
                .flatten(),
            flat_misses: 0,
            schema,
            format,
            bad,
            kept_json: None,
        }
    }

    /// The bad-record policy (started by the source with its metrics).
    pub fn bad_records(&mut self) -> &mut BadRecords {
        &mut self.bad
    }

    /// One row per payload of `records`, minus those that cannot be read; `place(i)` names
    /// record `i` in errors and dead letters (e.g. `queue 2, offset 17`).
    pub fn decode(
        &mut self,
        records: &[&[u8]],
        place: impl Fn(usize) -> String,
    ) -> Result<RecordBatch> {
        let out = if let Format::Raw = self.format {
            self.raw(records, &place)
        } else if let Some(batch) = self.flat_path(records) {
            Ok(batch)
        } else {
            match self.all(records) {
                Ok(b) => Ok(b),
                Err(_) => {
                    let mut good = Vec::new();
                    self.find_bad(records, 0, &place, &mut good)
                        .and_then(|()| Ok(concat_batches(&self.schema, &good)?))
                }
            }
        };
        // Dead letters of this call go out together (also when the call fails).
        self.bad.flush()?;
        out
    }

    /// The JSON fast path's batch, if it takes every record. Only whole calls count as misses:
    /// the halves `find_bad` decodes around a bad record go to Arrow's decoder alone.
    fn flat_path(&mut self, records: &[&[u8]]) -> Option<RecordBatch> {
        let flat = self.flat.as_mut()?;
        if let Some(batch) = flat.decode(records) {
            self.flat_misses = 0;
            return Some(batch);
        }
        self.flat_misses += 1;
        if self.flat_misses >= FLAT_MISSES {
            self.flat = None;
        }
        None
    }

    /// Decodes `records` (starting at index `first` of the caller's), halving the range that
    /// fails until the bad records are single: a few decodes per bad record, not one per
    /// record.
    fn find_bad(
        &mut self,
        records: &[&[u8]],
        first: usize,
        place: &impl Fn(usize) -> String,
        good: &mut Vec<RecordBatch>,
    ) -> Result<()> {
        match self.all(records) {
            Ok(b) => {
                good.push(b);
                Ok(())
            }
            Err(problem) if records.len() == 1 => {
                self.bad.handle(&place(first), records[0], &problem)
            }
            Err(_) => {
                let mid = records.len() / 2;
                self.find_bad(&records[..mid], first, place, good)?;
                self.find_bad(&records[mid..], first + mid, place, good)
            }
        }
    }

    /// Every payload through one Arrow decoder; an error if any payload does not make exactly
    /// one row.
    fn all(&mut self, records: &[&[u8]]) -> std::result::Result<RecordBatch, String> {
        let n = records.len().max(1);
        let batch = match &self.format {
            Format::Json => {
                // Kept for the next call unless this one failed (a decoder that failed part
                // way holds half a record).
                let (rows, mut d) = match self.kept_json.take() {
                    Some((rows, d)) if rows >= n => (rows, d),
                    _ => (n, self.json_decoder(n)?),
                };
                for (i, r) in records.iter().enumerate() {
                    feed(r, |b| d.decode(b)).map_err(strip_arrow)?;
                    if d.has_partial_record() {
                        return Err("it ends in the middle of a JSON value".into());
                    }
                    if d.len() != i + 1 {
                        return Err(rows_problem(d.len() - i.min(d.len())));
                    }
                }
                let batch = d.flush().map_err(strip_arrow)?;
                self.kept_json = Some((rows, d));
                batch
            }
            Format::Csv(csv) => {
                // Made per call: Arrow's CSV decoder numbers lines across batches, and its
                // errors name that line.
                let mut d = csv_builder(&self.schema, csv)
                    .map_err(strip_arrow)?
                    .with_batch_size(n)
                    .build_decoder();
                for (i, r) in records.iter().enumerate() {
                    feed(r, |b| d.decode(b)).map_err(strip_arrow)?;
                    if !r.ends_with(b"\n") {
                        feed(b"\n", |b| d.decode(b)).map_err(strip_arrow)?;
                    }
                    let rows = n - d.capacity();
                    if rows != i + 1 {
                        return Err(rows_problem(rows - i.min(rows)));
                    }
                }
                d.flush().map_err(strip_arrow)?
            }
            Format::Raw => return Err("raw is not decoded".into()),
        };
        match batch {
            Some(b) if b.num_rows() == records.len() => Ok(b),
            Some(b) => Err(rows_problem(b.num_rows())),
            None if records.is_empty() => Ok(RecordBatch::new_empty(Arc::clone(&self.schema))),
            None => Err("it is empty".into()),
        }
    }

    /// A JSON decoder with room for `rows` rows per batch.
    fn json_decoder(&self, rows: usize) -> std::result::Result<JsonDecoder, String> {
        streams_core::arrow::json::ReaderBuilder::new(Arc::clone(&self.schema))
            .with_batch_size(rows)
            // As Flink's JSON format: a number or boolean read into a STRING column.
            .with_coerce_primitive(true)
            .build_decoder()
            .map_err(strip_arrow)
    }

    fn raw(&mut self, records: &[&[u8]], place: &impl Fn(usize) -> String) -> Result<RecordBatch> {
        let column: ArrayRef = match self.schema.field(0).data_type() {
            DataType::Binary => {
                let mut b = BinaryBuilder::with_capacity(records.len(), bytes_of(records));
                records.iter().for_each(|r| b.append_value(r));
                Arc::new(b.finish())
            }
            DataType::LargeBinary => {
                let mut b = LargeBinaryBuilder::with_capacity(records.len(), bytes_of(records));
                records.iter().for_each(|r| b.append_value(r));
                Arc::new(b.finish())
            }
            large => {
                let large = matches!(large, DataType::LargeUtf8);
                let mut s = StringBuilder::with_capacity(records.len(), bytes_of(records));
                let mut l = LargeStringBuilder::new();
                for (i, r) in records.iter().enumerate() {
                    match std::str::from_utf8(r) {
                        Ok(text) if large => l.append_value(text),
                        Ok(text) => s.append_value(text),
                        Err(e) => {
                            self.bad
                                .handle(&place(i), r, &format!("it is not UTF-8: {e}"))?
                        }
                    }
                }
                if large {
                    Arc::new(l.finish())
                } else {
                    Arc::new(s.finish())
                }
            }
        };
        Ok(RecordBatch::try_new(
            Arc::clone(&self.schema),
            vec![column],
        )?)
    }
}

fn rows_problem(rows: usize) -> String {
    match rows {
        0 => "it is empty".to_string(),
        n => format!("it holds {n} rows, not one"),
    }
}

fn bytes_of(records: &[&[u8]]) -> usize {
    records.iter().map(|r| r.len()).sum()
}

/// Hands all of `bytes` to an Arrow decoder that may take them in several calls.
fn feed(
    mut bytes: &[u8],
    mut decode: impl FnMut(&[u8]) -> std::result::Result<usize, ArrowError>,
) -> std::result::Result<(), ArrowError> {
    while !bytes.is_empty() {
        let used = decode(bytes)?;
        if used == 0 {
            return Err(ArrowError::ParseError("the decoder took no input".into()));
        }
        bytes = &bytes[used..];
    }
    Ok(())
}

/// A CSV reader builder for `csv`'s settings, without header.
pub(crate) fn csv_builder(
    schema: &SchemaRef,
    csv: &Csv,
) -> std::result::Result<streams_core::arrow::csv::ReaderBuilder, ArrowError> {
    let mut b = streams_core::arrow::csv::ReaderBuilder::new(Arc::clone(schema))
        .with_header(false)
        .with_delimiter(csv.delimiter)
        .with_quote(csv.quote);
    if let Some(null) = &csv.null_literal {
        let pattern = format!("^{}$", regex_escape(null));
        let re = regex_lite_compile(&pattern)?;
        b = b.with_null_regex(re);
    }
    Ok(b)
}

fn regex_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if "\\.+*?()|[]{}^$#&-~".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn regex_lite_compile(pattern: &str) -> std::result::Result<regex::Regex, ArrowError> {
    regex::Regex::new(pattern).map_err(|e| ArrowError::InvalidArgumentError(e.to_string()))
}

/// Arrow's messages start with the error kind ("Json error: ..."); users want the rest.
fn strip_arrow(e: ArrowError) -> String {
    let text = e.to_string();
    for prefix in [
        "Json error: ",
        "Parser error: ",
        "Csv error: ",
        "Cast error: ",
    ] {
        if let Some(rest) = text.strip_prefix(prefix) {
            return rest.to_string();
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use streams_core::arrow::array::{AsArray, Int64Array};
    use streams_core::arrow::datatypes::{Field, Int64Type, Schema};

    use super::*;
    use crate::format::OnError;

    fn decoder(format: Format) -> RecordDecoder {
        let schema = Arc::new(Schema::new(vec![
            Field::new("a", DataType::Int64, true),
            Field::new("s", DataType::Utf8, true),
        ]));
        RecordDecoder::new(schema, format, BadRecords::new("t", OnError::Skip, None))
    }

    #[test]
    fn a_payload_of_two_rows_is_bad_even_when_the_count_adds_up() -> Result<()> {
        let mut d = decoder(Format::Json);
        // Two objects in one payload and an empty one: as many rows as payloads, but wrong.
        let records: Vec<&[u8]> = vec![
            br#"{"a": 1}"#,
            br#"{"a": 2} {"a": 3}"#,
            b"",
            br#"{"a": 4, "s": 5}"#,
        ];
        let b = d.decode(&records, |i| format!("record {i}"))?;
        assert_eq!(
            b.column(0).as_primitive::<Int64Type>(),
            &Int64Array::from(vec![1, 4])
        );
        assert_eq!(
            b.column(1).as_string::<i32>().value(1),
            "5",
            "coerced, as Flink does"
        );
        assert_eq!(d.bad_records().count(), 2);
        Ok(())
    }

    #[test]
    fn bad_records_are_found_among_many_and_the_good_keep_their_order() -> Result<()> {
        for format in [Format::Json, Format::Csv(Csv::default())] {
            let text: Vec<String> = (0..1000)
                .map(|i| match (i % 97 == 13, &format) {
                    (true, Format::Json) => format!(r#"{{"a": "x{i}"}}"#),
                    (true, _) => format!("x{i},y"),
                    (false, Format::Json) => format!(r#"{{"a": {i}, "s": "v{i}"}}"#),
                    (false, _) => format!("{i},v{i}"),
                })
                .collect();
            let records: Vec<&[u8]> = text.iter().map(|t| t.as_bytes()).collect();
            let mut d = decoder(format.clone());
            let b = d.decode(&records, |i| format!("record {i}"))?;
            let want: Vec<i64> = (0..1000).filter(|i| i % 97 != 13).collect();
            assert_eq!(
                b.column(0).as_primitive::<Int64Type>().values().to_vec(),
                want,
                "{format:?}"
            );
            assert_eq!(d.bad_records().count(), 11, "{format:?}");
        }
        Ok(())
    }

    #[test]
    fn the_kept_decoder_starts_clean_after_a_batch_with_a_bad_record() -> Result<()> {
        let mut d = decoder(Format::Json);
        let batches: [&[&[u8]]; 4] = [
            &[br#"{"a": 1}"#, br#"{"a": 2}"#],
            &[br#"{"a": 3}"#, br#"{"a": 4"#, br#"{"a": 5}"#],
            &[br#"{"a": 6}"#],
            &[br#"{"a": 7}"#, br#"{"a": 8}"#, br#"{"a": 9}"#],
        ];
        let mut got = Vec::new();
        for records in batches {
            let b = d.decode(records, |i| format!("record {i}"))?;
            got.extend(
                b.column(0)
                    .as_primitive::<Int64Type>()
                    .values()
                    .iter()
                    .copied(),
            );
        }
        assert_eq!(got, [1, 2, 3, 5, 6, 7, 8, 9]);
        assert_eq!(d.bad_records().count(), 1);
        Ok(())
    }

    #[test]
    fn a_bad_record_now_and_then_keeps_the_fast_path() -> Result<()> {
        let mut d = decoder(Format::Json);
        for round in 0..4 {
            // A batch with a bad record goes to Arrow's decoder, which finds it by halving.
            let bad: [&[u8]; 4] = [br#"{"a": 1}"#, br#"{"a": 2}"#, br#"{"a": "#, br#"{"a": 4}"#];
            assert_eq!(d.decode(&bad, |i| format!("record {i}"))?.num_rows(), 3);
            let good: [&[u8]; 2] = [br#"{"a": 5}"#, br#"{"a": 6, "s": "x"}"#];
            assert_eq!(d.decode(&good, |i| format!("record {i}"))?.num_rows(), 2);
            assert!(
                d.flat.is_some(),
                "round {round}: the fast path was given up"
            );
        }
        assert_eq!(d.bad_records().count(), 4);
        Ok(())
    }
}
