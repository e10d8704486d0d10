//! Flink functions DataFusion does not have under the same name and meaning: `DATE_FORMAT`
//! with Java date patterns, `SPLIT_INDEX`, `MOD`, `REGEXP_EXTRACT`, and the time parts
//! `YEAR` ... `SECOND`.

mod more;
mod pieces;
mod regexp;

use std::sync::Arc;

use pieces::pieces;

use streams_core::arrow::array::{Array, ArrayRef, AsArray, StringBuilder};
use streams_core::arrow::compute::cast;
use streams_core::arrow::datatypes::{DataType, TimeUnit, TimestampMillisecondType};
use streams_core::datafusion::common::{Result, ScalarValue, exec_err};
use streams_core::datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, TypeSignature,
    Volatility,
};

/// The functions to register in a SQL session.
pub(crate) fn flink_functions() -> Vec<ScalarUDF> {
    let mut out = vec![
        ScalarUDF::new_from_impl(DateFormat::new()),
        ScalarUDF::new_from_impl(SplitIndex::new()),
    ];
    out.extend(more::functions());
    out
}

/// Java's `SimpleDateFormat` letters as chrono's `strftime` (the common ones); other
/// characters are kept, and `'text'` is literal.
fn java_to_strftime(pattern: &str) -> String {
    let mut out = String::new();
    let chars: Vec<char> = pattern.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '\'' {
            i += 1;
            while i < chars.len() && chars[i] != '\'' {
                if chars[i] == '%' {
                    out.push('%');
                }
                out.push(chars[i]);
                i += 1;
            }
            i += 1;
            continue;
        }
        let mut n = 1;
        while i + n < chars.len() && chars[i + n] == c {
            n += 1;
        }
        let spec = match (c, n) {
            ('y', 2) => "%y".to_string(),
            ('y', _) => "%Y".to_string(),
            ('M', 1) => "%-m".to_string(),
            ('M', 2) => "%m".to_string(),
            ('M', 3) => "%b".to_string(),
            ('M', _) => "%B".to_string(),
            ('d', 1) => "%-d".to_string(),
            ('d', _) => "%d".to_string(),
            ('H', 1) => "%-H".to_string(),
            ('H', _) => "%H".to_string(),
            ('m', 1) => "%-M".to_string(),
            ('m', _) => "%M".to_string(),
            ('s', 1) => "%-S".to_string(),
            ('s', _) => "%S".to_string(),
            // Java's S is milliseconds; chrono writes them as %3f.
            ('S', _) => "%3f".to_string(),
            ('E', k) if k >= 4 => "%A".to_string(),
            ('E', _) => "%a".to_string(),
            ('a', _) => "%p".to_string(),
            ('%', _) => "%%".repeat(n),
            (other, k) => other.to_string().repeat(k),
        };
        out.push_str(&spec);
        i += n;
    }
    out
}

/// `DATE_FORMAT(timestamp, 'yyyy-MM-dd HH:mm:ss')`.
#[derive(Debug, PartialEq, Eq, Hash)]
struct DateFormat {
    signature: Signature,
}

impl DateFormat {
    fn new() -> Self {
        DateFormat {
            signature: Signature::one_of(
                vec![
                    TypeSignature::Exact(vec![
                        DataType::Timestamp(TimeUnit::Millisecond, None),
                        DataType::Utf8,
                    ]),
                    TypeSignature::Any(2),
                ],
                Volatility::Immutable,
            ),
        }
    }
}

impl ScalarUDFImpl for DateFormat {
    fn name(&self) -> &str {
        "date_format"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let n = args.number_rows;
        let [ts, pattern] = args.args.as_slice() else {
            return exec_err!("DATE_FORMAT takes a timestamp and a pattern");
        };
        let ts = cast(
            &ts.to_array(n)?,
            &DataType::Timestamp(TimeUnit::Millisecond, None),
        )?;
        let ts = ts.as_primitive::<TimestampMillisecondType>();
        let patterns = cast(&pattern.to_array(n)?, &DataType::Utf8)?;
        let patterns = patterns.as_string::<i32>();
        let mut out = StringBuilder::with_capacity(n, n * 20);
        let mut cached: Option<(String, String)> = None;
        for i in 0..n {
            if ts.is_null(i) || patterns.is_null(i) {
                out.append_null();
                continue;
            }
            let p = patterns.value(i);
            if cached.as_ref().is_none_or(|(java, _)| java != p) {
                cached = Some((p.to_string(), java_to_strftime(p)));
            }
            let fmt = cached.as_ref().map_or("", |(_, f)| f.as_str());
            match ts.value_as_datetime(i) {
                Some(dt) => {
                    use std::fmt::Write as _;
                    let mut text = String::new();
                    if write!(text, "{}", dt.format(fmt)).is_err() {
                        return exec_err!("DATE_FORMAT: the pattern '{p}' cannot be used");
                    }
                    out.append_value(text);
                }
                None => out.append_null(),
            }
        }
        Ok(ColumnarValue::Array(Arc::new(out.finish()) as ArrayRef))
    }
}

/// `SPLIT_INDEX(text, delimiter, index)`: the `index`-th (from 0) piece, or NULL.
#[derive(Debug, PartialEq, Eq, Hash)]
struct SplitIndex {
    signature: Signature,
}

impl SplitIndex {
    fn new() -> Self {
        SplitIndex {
            signature: Signature::any(3, Volatility::Immutable),
        }
    }
}

impl ScalarUDFImpl for SplitIndex {
    fn name(&self) -> &str {
        "split_index"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8View)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let n = args.number_rows;
        let [text, delimiter, index] = args.args.as_slice() else {
            return exec_err!("SPLIT_INDEX takes a string, a delimiter and an index");
        };
        let text = text.to_array(n)?;
        // The usual call, constant delimiter and index (`SPLIT_INDEX(url, '/', 3)`): no
        // per-row arrays, and a one-byte delimiter is searched for as a byte.
        if let (ColumnarValue::Scalar(d), ColumnarValue::Scalar(k)) = (delimiter, index) {
            let d = d.cast_to(&DataType::Utf8)?;
            let k = k.cast_to(&DataType::Int64)?;
            let (ScalarValue::Utf8(d), ScalarValue::Int64(k)) = (d, k) else {
                return exec_err!(
                    "SPLIT_INDEX: the delimiter must be a string, the index an integer"
                );
            };
            let out = match (d.as_deref(), k.and_then(|k| usize::try_from(k).ok())) {
                (Some(d), Some(k)) if !d.is_empty() => match d.as_bytes() {
                    [b] if b.is_ascii() => pieces(&text, |_, t| nth_piece(t, *b, k))?,
                    _ => pieces(&text, |_, t| t.split(d).nth(k))?,
                },
                _ => pieces(&text, |_, _| None)?,
            };
            return Ok(ColumnarValue::Array(out));
        }
        let delimiter = cast(&delimiter.to_array(n)?, &DataType::Utf8)?;
        let index = cast(&index.to_array(n)?, &DataType::Int64)?;
        let delimiter = delimiter.as_string::<i32>();
        let index = index.as_primitive::<streams_core::arrow::datatypes::Int64Type>();
        let out = pieces(&text, |i, t| {
            if delimiter.is_null(i) || index.is_null(i) {
                return None;
            }
            let k = usize::try_from(index.value(i)).ok()?;
            match delimiter.value(i) {
                "" => None,
                d => t.split(d).nth(k),
            }
        })?;
        Ok(ColumnarValue::Array(out))
    }
}

/// The `k`-th piece of `text` cut at an ASCII `delimiter`, found with `memchr` (`str::split`
/// with a `char` checked each candidate with a `memcmp` call: most of `SPLIT_INDEX`'s time).
fn nth_piece(text: &str, delimiter: u8, k: usize) -> Option<&str> {
    let mut cuts = memchr::memchr_iter(delimiter, text.as_bytes());
    let start = match k {
        0 => 0,
        _ => cuts.nth(k - 1)? + 1,
    };
    let end = cuts.next().unwrap_or(text.len());
    // Next to an ASCII byte is always a character boundary.
    text.get(start..end)
}

#[cfg(test)]
mod tests {
    use super::{java_to_strftime, nth_piece};

    #[test]
    fn pieces_cut_at_a_byte_are_those_of_str_split() {
        for text in [
            "",
            "/",
            "a",
            "a/b",
            "/a//b/",
            "https://www.nexmark.com/x_y/é/item.htm?q=1",
        ] {
            for k in 0..8 {
                assert_eq!(
                    nth_piece(text, b'/', k),
                    text.split('/').nth(k),
                    "{text:?} {k}"
                );
            }
        }
    }

    #[test]
    fn java_patterns_become_strftime() {
        assert_eq!(java_to_strftime("yyyy-MM-dd HH:mm:ss"), "%Y-%m-%d %H:%M:%S");
        assert_eq!(
            java_to_strftime("yyyy-MM-dd'T'HH:mm:ss.SSS"),
            "%Y-%m-%dT%H:%M:%S.%3f"
        );
        assert_eq!(java_to_strftime("HH:mm"), "%H:%M");
        assert_eq!(java_to_strftime("HH:mm:ss.S"), "%H:%M:%S.%3f");
        assert_eq!(java_to_strftime("yyyy'%'"), "%Y%%");
    }
}
