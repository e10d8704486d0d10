//! The fast path of the JSON format, for tables whose columns are all scalars (integers,
//! floats, booleans, strings, timestamps without zone): one pass over each record straight
//! into column buffers, where Arrow's decoder first builds a tape of the whole batch and then
//! walks it once per column (the tape was three quarters of a JSON file job's CPU).
//!
//! It takes only input it reads exactly as Arrow's decoder does. Anything else gives the
//! batch back (`None`): a number for a string column (Arrow coerces it), a fraction for an
//! integer column, an escaped surrogate pair, a timestamp with a zone or in another form, a
//! repeated key, a record that is not one object, malformed JSON. Arrow's decoder then
//! decodes the batch and names the bad records, so what a table reads never depends on
//! which path read it.

use std::sync::Arc;

use streams_core::arrow::array::builder::NullBufferBuilder;
use streams_core::arrow::array::{
    Array, ArrayBuilder, ArrayRef, BooleanBuilder, LargeStringBuilder, PrimitiveArray,
    StringBuilder, StringViewBuilder,
};
use streams_core::arrow::datatypes::{
    DataType, Float32Type, Float64Type, Int8Type, Int16Type, Int32Type, Int64Type, SchemaRef,
    TimeUnit, TimestampMicrosecondType, TimestampMillisecondType, TimestampNanosecondType,
    TimestampSecondType,
};
use streams_core::arrow::record_batch::RecordBatch;

/// Values nested deeper than this in a key the table does not have go to Arrow's decoder.
const MAX_DEPTH: usize = 64;

/// Bounds of a string column's block: Arrow's first and largest blocks. A column needing more
/// gets several; a batch after one of a few long strings does not get a huge block.
const MIN_BLOCK: usize = 8 << 10;
const MAX_BLOCK: usize = 2 << 20;

/// A column being built.
enum Column {
    /// Integers of `Int8` to `Int64`, kept as `i64` and range-checked.
    Int {
        ty: DataType,
        values: Vec<i64>,
        nulls: NullBufferBuilder,
    },
    Float {
        single: bool,
        values: Vec<f64>,
        nulls: NullBufferBuilder,
    },
    Bool(BooleanBuilder),
    Utf8(StringBuilder),
    LargeUtf8(LargeStringBuilder),
    Utf8View {
        builder: StringViewBuilder,
        /// Bytes of string data per row in the last batch, to size the next one's block.
        per_row: usize,
    },
    Timestamp {
        unit: TimeUnit,
        values: Vec<i64>,
        nulls: NullBufferBuilder,
    },
}

impl Column {
    fn new(ty: &DataType) -> Option<Column> {
        Some(match ty {
            DataType::Int8 | DataType::Int16 | DataType::Int32 | DataType::Int64 => Column::Int {
                ty: ty.clone(),
                values: Vec::new(),
                nulls: NullBufferBuilder::new(0),
            },
            DataType::Float32 | DataType::Float64 => Column::Float {
                single: *ty == DataType::Float32,
                values: Vec::new(),
                nulls: NullBufferBuilder::new(0),
            },
            DataType::Boolean => Column::Bool(BooleanBuilder::new()),
            DataType::Utf8 => Column::Utf8(StringBuilder::new()),
            DataType::LargeUtf8 => Column::LargeUtf8(LargeStringBuilder::new()),
            DataType::Utf8View => Column::Utf8View {
                builder: StringViewBuilder::new(),
                per_row: 0,
            },
            DataType::Timestamp(unit, None) => Column::Timestamp {
                unit: *unit,
                values: Vec::new(),
                nulls: NullBufferBuilder::new(0),
            },
            _ => return None,
        })
    }

    fn null(&mut self) {
        match self {
            Column::Int { values, nulls, .. } | Column::Timestamp { values, nulls, .. } => {
                values.push(0);
                nulls.append_null();
            }
            Column::Float { values, nulls, .. } => {
                values.push(0.0);
                nulls.append_null();
            }
            Column::Bool(b) => b.append_null(),
            Column::Utf8(b) => b.append_null(),
            Column::LargeUtf8(b) => b.append_null(),
            Column::Utf8View { builder, .. } => builder.append_null(),
        }
    }

    /// Makes room for a batch of `rows`.
    ///
    /// A view builder left to itself keeps the size its blocks grew to (2 MiB) from batch to
    /// batch, and its arrays keep whole blocks: a 600 KB column of a batch held 2 MiB, a job
    /// buffering such rows (q7's join) three times the memory its rows need, and blocks of
    /// that size are fresh pages from the kernel on every batch. So the block is sized for
    /// the batch from the last one.
    fn reserve(&mut self, rows: usize) {
        match self {
            Column::Int { values, .. } | Column::Timestamp { values, .. } => values.reserve(rows),
            Column::Float { values, .. } => values.reserve(rows),
            Column::Utf8View { builder, per_row } if *per_row > 0 && builder.len() == 0 => {
                let bytes = per_row.saturating_mul(rows);
                let block = bytes.saturating_add(bytes / 8).clamp(MIN_BLOCK, MAX_BLOCK);
                *builder =
                    StringViewBuilder::with_capacity(rows).with_fixed_block_size(block as u32);
            }
            _ => {}
        }
    }

    /// Reads the value at `p` into this column; `None` if Arrow's decoder should.
    fn value(&mut self, p: &mut Parser<'_>, scratch: &mut Vec<u8>) -> Option<()> {
        if p.peek() == Some(b'n') && p.literal(b"null") {
            self.null();
            return Some(());
        }
        match self {
            Column::Int { ty, values, nulls } => {
                let v = p.integer()?;
                let fits = match ty {
                    DataType::Int8 => i8::try_from(v).is_ok(),
                    DataType::Int16 => i16::try_from(v).is_ok(),
                    DataType::Int32 => i32::try_from(v).is_ok(),
                    _ => true,
                };
                fits.then(|| {
                    values.push(v);
                    nulls.append_non_null();
                })
            }
            Column::Float {
                single,
                values,
                nulls,
            } => {
                let text = p.number()?;
                let v = if *single {
                    f64::from(text.parse::<f32>().ok().filter(|v| v.is_finite())?)
                } else {
                    text.parse::<f64>().ok().filter(|v| v.is_finite())?
                };
                values.push(v);
                nulls.append_non_null();
                Some(())
            }
            Column::Bool(b) => {
                if p.literal(b"true") {
                    b.append_value(true);
                } else if p.literal(b"false") {
                    b.append_value(false);
                } else {
                    return None;
                }
                Some(())
            }
            Column::Utf8(b) => {
                b.append_value(p.string(scratch)?);
                Some(())
            }
            Column::LargeUtf8(b) => {
                b.append_value(p.string(scratch)?);
                Some(())
            }
            Column::Utf8View { builder, .. } => {
                builder.append_value(p.string(scratch)?);
                Some(())
            }
            Column::Timestamp {
                unit,
                values,
                nulls,
            } => {
                let (seconds, nanos) = timestamp(p.string(scratch)?.as_bytes())?;
                let v = match unit {
                    TimeUnit::Second => seconds,
                    TimeUnit::Millisecond => seconds.checked_mul(1_000)? + nanos / 1_000_000,
                    TimeUnit::Microsecond => seconds.checked_mul(1_000_000)? + nanos / 1_000,
                    TimeUnit::Nanosecond => {
                        seconds.checked_mul(1_000_000_000)?.checked_add(nanos)?
                    }
                };
                values.push(v);
                nulls.append_non_null();
                Some(())
            }
        }
    }

    fn finish(&mut self) -> ArrayRef {
        fn ints<T>(values: &mut Vec<i64>, nulls: &mut NullBufferBuilder) -> ArrayRef
        where
            T: streams_core::arrow::datatypes::ArrowPrimitiveType,
            T::Native: TryFrom<i64> + Default,
        {
            let values: Vec<T::Native> = std::mem::take(values)
                .into_iter()
                .map(|v| T::Native::try_from(v).unwrap_or_default())
                .collect();
            Arc::new(PrimitiveArray::<T>::new(values.into(), nulls.finish()))
        }
        match self {
            Column::Int { ty, values, nulls } => match ty {
                DataType::Int8 => ints::<Int8Type>(values, nulls),
                DataType::Int16 => ints::<Int16Type>(values, nulls),
                DataType::Int32 => ints::<Int32Type>(values, nulls),
                _ => Arc::new(PrimitiveArray::<Int64Type>::new(
                    std::mem::take(values).into(),
                    nulls.finish(),
                )),
            },
            Column::Float {
                single: true,
                values,
                nulls,
            } => {
                let values: Vec<f32> = values.drain(..).map(|v| v as f32).collect();
                Arc::new(PrimitiveArray::<Float32Type>::new(
                    values.into(),
                    nulls.finish(),
                ))
            }
            Column::Float { values, nulls, .. } => Arc::new(PrimitiveArray::<Float64Type>::new(
                std::mem::take(values).into(),
                nulls.finish(),
            )),
            Column::Bool(b) => Arc::new(b.finish()),
            Column::Utf8(b) => Arc::new(b.finish()),
            Column::LargeUtf8(b) => Arc::new(b.finish()),
            Column::Utf8View { builder, per_row } => {
                let array = builder.finish();
                let bytes: usize = array.data_buffers().iter().map(|b| b.len()).sum();
                *per_row = bytes.div_ceil(array.len().max(1));
                if *per_row == 0 {
                    // Every string inline: no block to size, and none of the grown size.
                    *builder = StringViewBuilder::new();
                }
                Arc::new(array)
            }
            Column::Timestamp {
                unit,
                values,
                nulls,
            } => {
                let (values, nulls) = (std::mem::take(values).into(), nulls.finish());
                match unit {
                    TimeUnit::Second => {
                        Arc::new(PrimitiveArray::<TimestampSecondType>::new(values, nulls))
                    }
                    TimeUnit::Millisecond => Arc::new(
                        PrimitiveArray::<TimestampMillisecondType>::new(values, nulls),
                    ),
                    TimeUnit::Microsecond => Arc::new(
                        PrimitiveArray::<TimestampMicrosecondType>::new(values, nulls),
                    ),
                    TimeUnit::Nanosecond => Arc::new(
                        PrimitiveArray::<TimestampNanosecondType>::new(values, nulls),
                    ),
                }
            }
        }
    }
}

/// Decodes batches of JSON records of one flat schema.
pub(crate) struct FlatJson {
    schema: SchemaRef,
    names: Vec<Box<[u8]>>,
    nullable: Vec<bool>,
    columns: Vec<Column>,
    /// Per column, the number of the record that last set it (a record sets each once).
    seen: Vec<u64>,
    record: u64,
    scratch: Vec<u8>,
}

impl std::fmt::Debug for FlatJson {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FlatJson").finish_non_exhaustive()
    }
}

impl FlatJson {
    /// The fast path for `schema`, if every column is a scalar it reads.
    pub(crate) fn new(schema: &SchemaRef) -> Option<FlatJson> {
        let columns = schema
            .fields()
            .iter()
            .map(|f| Column::new(f.data_type()))
            .collect::<Option<Vec<_>>>()?;
        Some(FlatJson {
            schema: Arc::clone(schema),
            names: schema
                .fields()
                .iter()
                .map(|f| f.name().as_bytes().into())
                .collect(),
            nullable: schema.fields().iter().map(|f| f.is_nullable()).collect(),
            seen: vec![0; columns.len()],
            columns,
            record: 0,
            scratch: Vec::new(),
        })
    }

    /// One row per record, or `None` if any record is for Arrow's decoder.
    pub(crate) fn decode(&mut self, records: &[&[u8]]) -> Option<RecordBatch> {
        for c in &mut self.columns {
            c.reserve(records.len());
        }
        let done = records.iter().all(|r| self.one(r).is_some());
        if !done {
            // Part of a row may be in the columns: start them over.
            for (c, f) in self.columns.iter_mut().zip(self.schema.fields()) {
                *c = Column::new(f.data_type())?;
            }
            return None;
        }
        let arrays = self.columns.iter_mut().map(Column::finish).collect();
        RecordBatch::try_new(Arc::clone(&self.schema), arrays).ok()
    }

    fn one(&mut self, record: &[u8]) -> Option<()> {
        // Arrow's decoder checks the UTF-8 of strings; outside them only ASCII is valid JSON.
        // Checked once per record: once more per string value was a tenth of the time.
        let text = std::str::from_utf8(record).ok()?;
        self.record += 1;
        let mut p = Parser {
            s: text,
            b: record,
            i: 0,
        };
        p.ws();
        p.eat(b'{')?;
        p.ws();
        let mut guess = 0;
        if p.eat(b'}').is_none() {
            loop {
                p.ws();
                let key = p.key()?;
                let column = if self.names.get(guess).is_some_and(|n| same(n, key)) {
                    Some(guess)
                } else {
                    self.names.iter().position(|n| same(n, key))
                };
                p.ws();
                p.eat(b':')?;
                p.ws();
                match column {
                    Some(c) => {
                        if self.seen[c] == self.record {
                            return None;
                        }
                        self.seen[c] = self.record;
                        self.columns[c].value(&mut p, &mut self.scratch)?;
                        guess = c + 1;
                    }
                    None => p.skip(0)?,
                }
                p.ws();
                match p.next()? {
                    b',' => continue,
                    b'}' => break,
                    _ => return None,
                }
            }
        }
        p.ws();
        if p.i != record.len() {
            return None;
        }
        for c in 0..self.columns.len() {
            if self.seen[c] != self.record {
                if !self.nullable[c] {
                    return None;
                }
                self.columns[c].null();
            }
        }
        Some(())
    }
}

/// A cursor over one record.
struct Parser<'a> {
    /// The record, checked to be UTF-8 once; `b` is its bytes.
    s: &'a str,
    b: &'a [u8],
    i: usize,
}

impl<'a> Parser<'a> {
    fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.b.get(self.i) {
            self.i += 1;
        }
    }

    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let c = *self.b.get(self.i)?;
        self.i += 1;
        Some(c)
    }

    fn eat(&mut self, c: u8) -> Option<()> {
        (self.b.get(self.i) == Some(&c)).then(|| self.i += 1)
    }

    /// Consumes `word` if it is next and ends there.
    fn literal(&mut self, word: &[u8]) -> bool {
        let end = self.i + word.len();
        let ends = !matches!(self.b.get(end), Some(c) if c.is_ascii_alphanumeric());
        if self.b.get(self.i..end).is_some_and(|b| same(b, word)) && ends {
            self.i = end;
            return true;
        }
        false
    }

    /// A key without escapes.
    fn key(&mut self) -> Option<&'a [u8]> {
        self.eat(b'"')?;
        let rest = &self.b[self.i..];
        // Keys are short: a plain loop beats setting up a vector search.
        let end = rest.iter().position(|&c| c == b'"' || c == b'\\')?;
        if rest[end] != b'"' {
            return None;
        }
        self.i += end + 1;
        Some(&rest[..end])
    }

    /// A string value, unescaped into `scratch` when it has escapes.
    fn string<'s>(&mut self, scratch: &'s mut Vec<u8>) -> Option<&'s str>
    where
        'a: 's,
    {
        self.eat(b'"')?;
        let start = self.i;
        let end = start + memchr::memchr2(b'"', b'\\', &self.b[start..])?;
        if self.b[end] == b'"' {
            self.i = end + 1;
            // Between two ASCII quotes: on character boundaries.
            return self.s.get(start..end);
        }
        scratch.clear();
        scratch.extend_from_slice(&self.b[start..end]);
        self.i = end;
        loop {
            match self.next()? {
                b'"' => break,
                b'\\' => {
                    let c = match self.next()? {
                        b'"' => b'"',
                        b'\\' => b'\\',
                        b'/' => b'/',
                        b'b' => 8,
                        b'f' => 12,
                        b'n' => b'\n',
                        b'r' => b'\r',
                        b't' => b'\t',
                        b'u' => {
                            let hex = std::str::from_utf8(self.b.get(self.i..self.i + 4)?).ok()?;
                            let code = u32::from_str_radix(hex, 16).ok()?;
                            self.i += 4;
                            // Surrogate pairs: Arrow's decoder.
                            let c = char::from_u32(code)?;
                            let mut utf8 = [0; 4];
                            scratch.extend_from_slice(c.encode_utf8(&mut utf8).as_bytes());
                            continue;
                        }
                        _ => return None,
                    };
                    scratch.push(c);
                }
                _ => {
                    let rest = &self.b[self.i - 1..];
                    let run = memchr::memchr2(b'"', b'\\', rest)?;
                    scratch.extend_from_slice(&rest[..run]);
                    self.i += run - 1;
                }
            }
        }
        std::str::from_utf8(scratch).ok()
    }

    /// A number as JSON writes it: `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`.
    fn number(&mut self) -> Option<&'a str> {
        let start = self.i;
        let digits = |p: &mut Self| {
            let from = p.i;
            while p.b.get(p.i).is_some_and(u8::is_ascii_digit) {
                p.i += 1;
            }
            p.i > from
        };
        let _ = self.eat(b'-');
        if self.b.get(self.i) == Some(&b'0') {
            self.i += 1;
        } else if !digits(self) {
            return None;
        }
        if self.eat(b'.').is_some() && !digits(self) {
            return None;
        }
        if let Some(b'e' | b'E') = self.b.get(self.i) {
            self.i += 1;
            if let Some(b'+' | b'-') = self.b.get(self.i) {
                self.i += 1;
            }
            if !digits(self) {
                return None;
            }
        }
        if self.b.get(self.i).is_some_and(u8::is_ascii_alphanumeric) {
            return None;
        }
        self.s.get(start..self.i)
    }

    /// An integer without fraction or exponent that fits in `i64`, read in one pass.
    fn integer(&mut self) -> Option<i64> {
        let negative = self.eat(b'-').is_some();
        let start = self.i;
        let mut value: i64 = 0;
        while let Some(d) = self.peek().filter(u8::is_ascii_digit) {
            // Accumulated negative, so that `i64::MIN` fits.
            value = value.checked_mul(10)?.checked_sub(i64::from(d - b'0'))?;
            self.i += 1;
        }
        let digits = self.i - start;
        let leading_zero = digits > 1 && self.b[start] == b'0';
        // A fraction, an exponent or a letter after the digits: Arrow's decoder.
        let ends = !matches!(self.peek(), Some(c) if c.is_ascii_alphanumeric() || c == b'.');
        if digits == 0 || leading_zero || !ends {
            return None;
        }
        if negative {
            Some(value)
        } else {
            value.checked_neg()
        }
    }

    /// Skips a value of a key the table does not have, checking that it is JSON.
    fn skip(&mut self, depth: usize) -> Option<()> {
        if depth > MAX_DEPTH {
            return None;
        }
        match *self.b.get(self.i)? {
            b'"' => {
                let mut scratch = Vec::new();
                self.string(&mut scratch).map(|_| ())
            }
            open @ (b'{' | b'[') => {
                self.i += 1;
                let close = if open == b'{' { b'}' } else { b']' };
                self.ws();
                if self.eat(close).is_some() {
                    return Some(());
                }
                loop {
                    self.ws();
                    if open == b'{' {
                        self.key()?;
                        self.ws();
                        self.eat(b':')?;
                        self.ws();
                    }
                    self.skip(depth + 1)?;
                    self.ws();
                    match self.next()? {
                        b',' => continue,
                        c if c == close => return Some(()),
                        _ => return None,
                    }
                }
            }
            b't' => self.literal(b"true").then_some(()),
            b'f' => self.literal(b"false").then_some(()),
            b'n' => self.literal(b"null").then_some(()),
            _ => self.number().map(|_| ()),
        }
    }
}

/// `YYYY-MM-DD[T ]HH:MM:SS[.fraction]` as seconds since the epoch and nanoseconds; `None`
/// for any other form (a zone, a date alone, a number), which Arrow's decoder reads.
/// Byte-wise equality of short slices (keys, literals), without a call to `memcmp`.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x == y)
}

fn timestamp(s: &[u8]) -> Option<(i64, i64)> {
    fn num(s: &[u8]) -> Option<i64> {
        s.iter().try_fold(0i64, |n, c| {
            c.is_ascii_digit().then(|| n * 10 + i64::from(c - b'0'))
        })
    }
    if s.len() < 19
        || s[4] != b'-'
        || s[7] != b'-'
        || !matches!(s[10], b'T' | b' ')
        || s[13] != b':'
        || s[16] != b':'
    {
        return None;
    }
    let (year, month, day) = (num(&s[0..4])?, num(&s[5..7])?, num(&s[8..10])?);
    let (hour, minute, second) = (num(&s[11..13])?, num(&s[14..16])?, num(&s[17..19])?);
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let days_in_month = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return None,
    };
    if day < 1 || day > days_in_month || hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    let nanos = match &s[19..] {
        [] => 0,
        [b'.', fraction @ ..] if (1..=9).contains(&fraction.len()) => {
            num(fraction)? * 10i64.pow(9 - fraction.len() as u32)
        }
        _ => return None,
    };
    // Days from 1970-01-01 of a proleptic Gregorian date (H. Hinnant's civil algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some((days * 86_400 + hour * 3_600 + minute * 60 + second, nanos))
}

#[cfg(test)]
#[path = "flat_json_tests.rs"]
mod tests;
