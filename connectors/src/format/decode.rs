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

use super::{BadRecords, Csv, Format};

/// Decodes payloads of one table into batches of its columns.
#[derive(Debug)]
pub struct RecordDecoder {
    schema: SchemaRef,
    format: Format,
    bad: BadRecords,
}

impl RecordDecoder {
    /// A decoder of `format` payloads into rows of `schema`; unreadable payloads go to `bad`.
    pub fn new(schema: SchemaRef, format: Format, bad: BadRecords) -> Self {
        RecordDecoder {
            schema,
            format,
            bad,
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
        if let Format::Raw = self.format {
            return self.raw(records, place);
        }
        match self.all(records) {
            Ok(Some(b)) if b.num_rows() == records.len() => Ok(b),
            Ok(None) if records.is_empty() => Ok(RecordBatch::new_empty(Arc::clone(&self.schema))),
            // Some record is bad, or made other than one row: find which, one by one.
            _ => {
                let mut good = Vec::with_capacity(records.len());
                for (i, r) in records.iter().enumerate() {
                    let problem = match self.all(std::slice::from_ref(r)) {
                        Ok(Some(b)) if b.num_rows() == 1 => {
                            good.push(b);
                            continue;
                        }
                        Ok(Some(b)) => format!("it holds {} rows, not one", b.num_rows()),
                        Ok(None) => "it is empty".to_string(),
                        Err(e) => strip_arrow(e),
                    };
                    self.bad.handle(&place(i), r, &problem)?;
                }
                Ok(concat_batches(&self.schema, &good)?)
            }
        }
    }

    /// Every payload through one Arrow decoder.
    fn all(&self, records: &[&[u8]]) -> std::result::Result<Option<RecordBatch>, ArrowError> {
        let n = records.len().max(1);
        match &self.format {
            Format::Json => {
                let mut d = streams_core::arrow::json::ReaderBuilder::new(Arc::clone(&self.schema))
                    .with_batch_size(n)
                    .build_decoder()?;
                for r in records {
                    feed(r, |b| d.decode(b))?;
                }
                d.flush()
            }
            Format::Csv(csv) => {
                let mut d = csv_builder(&self.schema, csv)?
                    .with_batch_size(n)
                    .build_decoder();
                for r in records {
                    feed(r, |b| d.decode(b))?;
                    if !r.ends_with(b"\n") {
                        feed(b"\n", |b| d.decode(b))?;
                    }
                }
                d.flush()
            }
            Format::Raw => Err(ArrowError::InvalidArgumentError(
                "raw is not decoded".into(),
            )),
        }
    }

    fn raw(&mut self, records: &[&[u8]], place: impl Fn(usize) -> String) -> Result<RecordBatch> {
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
