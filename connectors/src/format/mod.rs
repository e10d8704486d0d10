//! Record formats (`'format'` = `json`, `csv` or `raw`): turning the payloads of records (queue
//! records, lines of a file) into Arrow batches, and rows back into payloads. A payload holds
//! one row. Decoding works on a whole batch of payloads at once and falls back to one payload
//! at a time only to find the bad ones, which go to the table's [`BadRecords`] policy.

mod decode;
mod encode;
mod flat_json;
mod on_error;

use std::sync::Arc;

use streams_core::arrow::datatypes::{DataType, Schema, SchemaRef};
use streams_core::connector::{OptionSpec, Options};
use streams_core::{Error, Result};

pub use decode::RecordDecoder;
pub use encode::RecordEncoder;
pub(crate) use encode::json_writer;
pub use on_error::{BadRecords, ERROR_HEADER, ON_ERROR_OPTIONS, OnError, SOURCE_HEADER};

/// The options of the formats, for connectors' option tables.
pub const FORMAT_OPTIONS: [OptionSpec; 3] = [
    OptionSpec {
        name: "csv.field-delimiter",
        required: false,
        doc: "csv: the field separator, one character (default ,); \\t for a tab",
    },
    OptionSpec {
        name: "csv.quote-character",
        required: false,
        doc: "csv: the quote character (default \")",
    },
    OptionSpec {
        name: "csv.null-literal",
        required: false,
        doc: "csv: the text that stands for NULL (default: an empty field)",
    },
];

/// Settings of the `csv` format.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Csv {
    /// Field separator.
    pub delimiter: u8,
    /// Quote character.
    pub quote: u8,
    /// The text of a NULL; `None`: an empty field.
    pub null_literal: Option<String>,
}

impl Default for Csv {
    fn default() -> Self {
        Csv {
            delimiter: b',',
            quote: b'"',
            null_literal: None,
        }
    }
}

/// How a row is written in a payload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Format {
    /// One JSON object per row, fields by column name.
    Json,
    /// One CSV line per row, fields in column order, no header.
    Csv(Csv),
    /// The payload itself, as the table's only column (`STRING` or `BYTES`).
    Raw,
}

impl Format {
    /// `schema` narrowed to `columns`, if this format reads each column by name, so that a
    /// decoder for the narrowed schema skips the values of the other columns (JSON); CSV
    /// fields are found by position.
    pub(crate) fn projected(&self, schema: &SchemaRef, columns: &[usize]) -> Option<SchemaRef> {
        match self {
            Format::Json => schema.project(columns).ok().map(Arc::new),
            Format::Csv(_) | Format::Raw => None,
        }
    }

    /// The format `options` choose for table `table` with columns `schema` (default `json`);
    /// `also` names further formats the connector reads itself (e.g. `parquet`), returned as
    /// `Ok(None)`.
    pub fn from_options(
        table: &str,
        schema: &Schema,
        options: &Options,
        also: &[&str],
    ) -> Result<Option<Format>> {
        let name = options.get("format").unwrap_or("json");
        let format = match name {
            "json" => Format::Json,
            "csv" => Format::Csv(csv_options(table, options)?),
            "raw" => {
                check_raw(table, schema)?;
                Format::Raw
            }
            other if also.contains(&other) => return Ok(None),
            other => {
                let mut known = vec!["json", "csv", "raw"];
                known.extend_from_slice(also);
                return Err(Error::plan(format!(
                    "table `{table}`: 'format' = '{other}' is not known; use one of {}",
                    known.join(", ")
                )));
            }
        };
        if !matches!(format, Format::Csv(_))
            && let Some((key, _)) = options.iter().find(|(k, _)| k.starts_with("csv."))
        {
            return Err(Error::plan(format!(
                "table `{table}`: option '{key}' applies to 'format' = 'csv' only"
            )));
        }
        Ok(Some(format))
    }

    /// Its name, as written in `'format'`.
    pub fn name(&self) -> &'static str {
        match self {
            Format::Json => "json",
            Format::Csv(_) => "csv",
            Format::Raw => "raw",
        }
    }
}

fn one_char(table: &str, options: &Options, key: &str, default: u8) -> Result<u8> {
    let Some(v) = options.get(key) else {
        return Ok(default);
    };
    match v {
        "\\t" => Ok(b'\t'),
        _ if v.len() == 1 && v.is_ascii() => Ok(v.as_bytes()[0]),
        _ => Err(Error::plan(format!(
            "table `{table}`: option '{key}' = '{v}' is not valid; expected one ASCII character"
        ))),
    }
}

fn csv_options(table: &str, options: &Options) -> Result<Csv> {
    let delimiter = one_char(table, options, "csv.field-delimiter", b',')?;
    let quote = one_char(table, options, "csv.quote-character", b'"')?;
    if delimiter == quote || delimiter == b'\n' || quote == b'\n' {
        return Err(Error::plan(format!(
            "table `{table}`: the csv field delimiter and quote character must differ and not \
             be a line break"
        )));
    }
    Ok(Csv {
        delimiter,
        quote,
        null_literal: options.get("csv.null-literal").map(str::to_string),
    })
}

fn check_raw(table: &str, schema: &Schema) -> Result<()> {
    let ok = schema.fields().len() == 1
        && matches!(
            schema.field(0).data_type(),
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Binary | DataType::LargeBinary
        );
    if ok {
        Ok(())
    } else {
        Err(Error::plan(format!(
            "table `{table}`: 'format' = 'raw' needs exactly one column, of type STRING or \
             BYTES (it has {})",
            schema
                .fields()
                .iter()
                .map(|f| format!("{} {}", f.name(), f.data_type()))
                .collect::<Vec<_>>()
                .join(", ")
        )))
    }
}
