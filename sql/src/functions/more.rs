//! `MOD`, `REGEXP_EXTRACT` and the time parts (`HOUR(ts)` ...), with Flink's types: integer
//! results are BIGINT, and a bad argument (zero divisor, no match) gives NULL rather than
//! failing the job.

use std::sync::Arc;

use regex::Regex;
use streams_core::arrow::array::{Array, ArrayRef, AsArray, Int64Array, StringBuilder};
use streams_core::arrow::compute::kernels::temporal::{DatePart, date_part};
use streams_core::arrow::compute::{cast, kernels::numeric::rem};
use streams_core::arrow::datatypes::{DataType, Float64Type, Int64Type};
use streams_core::datafusion::common::{Result, ScalarValue, exec_err, plan_err};
use streams_core::datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};

pub(super) fn functions() -> Vec<ScalarUDF> {
    let mut out = vec![
        ScalarUDF::new_from_impl(Mod::new()),
        ScalarUDF::new_from_impl(RegexpExtract::new()),
    ];
    for (name, part) in [
        ("year", DatePart::Year),
        ("quarter", DatePart::Quarter),
        ("month", DatePart::Month),
        ("week", DatePart::Week),
        ("dayofyear", DatePart::DayOfYear),
        ("dayofmonth", DatePart::Day),
        ("dayofweek", DatePart::DayOfWeekSunday1),
        ("hour", DatePart::Hour),
        ("minute", DatePart::Minute),
        ("second", DatePart::Second),
    ] {
        out.push(ScalarUDF::new_from_impl(TimePart::new(name, part)));
    }
    out
}

/// `MOD(a, b)`: the remainder of integers as BIGINT (of other numbers as DOUBLE); NULL when
/// `b` is 0.
#[derive(Debug, PartialEq, Eq, Hash)]
struct Mod {
    signature: Signature,
}

impl Mod {
    fn new() -> Self {
        Mod {
            signature: Signature::user_defined(Volatility::Immutable),
        }
    }
}

impl ScalarUDFImpl for Mod {
    fn name(&self) -> &str {
        "mod"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        let [a, b] = arg_types else {
            return plan_err!("MOD takes two numbers");
        };
        if !a.is_numeric() || !b.is_numeric() {
            return plan_err!("MOD takes two numbers, not {a} and {b}");
        }
        let t = if a.is_integer() && b.is_integer() {
            DataType::Int64
        } else {
            DataType::Float64
        };
        Ok(vec![t.clone(), t])
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        Ok(arg_types.first().cloned().unwrap_or(DataType::Int64))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let [a, b] = arrays.as_slice() else {
            return exec_err!("MOD takes two numbers");
        };
        let out: ArrayRef = match a.data_type() {
            DataType::Int64 => {
                let (a, b) = (a.as_primitive::<Int64Type>(), b.as_primitive::<Int64Type>());
                let r: Int64Array = a
                    .iter()
                    .zip(b.iter())
                    .map(|(a, b)| match (a, b) {
                        (Some(a), Some(b)) if b != 0 => Some(a.wrapping_rem(b)),
                        _ => None,
                    })
                    .collect();
                Arc::new(r)
            }
            _ => {
                let zero = b.as_primitive::<Float64Type>().values().contains(&0.0);
                if zero {
                    let (a, b) = (
                        a.as_primitive::<Float64Type>(),
                        b.as_primitive::<Float64Type>(),
                    );
                    let r: streams_core::arrow::array::Float64Array = a
                        .iter()
                        .zip(b.iter())
                        .map(|(a, b)| match (a, b) {
                            (Some(a), Some(b)) if b != 0.0 => Some(a % b),
                            _ => None,
                        })
                        .collect();
                    Arc::new(r)
                } else {
                    rem(a, b)?
                }
            }
        };
        Ok(ColumnarValue::Array(out))
    }
}

/// `HOUR(ts)` and the other parts of a timestamp or date, as BIGINT.
#[derive(Debug)]
struct TimePart {
    name: &'static str,
    part: DatePart,
    signature: Signature,
}

impl TimePart {
    fn new(name: &'static str, part: DatePart) -> Self {
        TimePart {
            name,
            part,
            signature: Signature::any(1, Volatility::Immutable),
        }
    }
}

// The name determines the part.
impl PartialEq for TimePart {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}

impl Eq for TimePart {}

impl std::hash::Hash for TimePart {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.name.hash(state);
    }
}

impl ScalarUDFImpl for TimePart {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        match arg_types {
            [DataType::Timestamp(..) | DataType::Date32 | DataType::Date64] => Ok(DataType::Int64),
            [other] => plan_err!(
                "{}() takes a TIMESTAMP or DATE, not {other}",
                self.name.to_uppercase()
            ),
            _ => plan_err!("{}() takes one argument", self.name.to_uppercase()),
        }
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let [ts] = arrays.as_slice() else {
            return exec_err!("{} takes one argument", self.name);
        };
        let parts = date_part(ts.as_ref(), self.part)?;
        Ok(ColumnarValue::Array(cast(&parts, &DataType::Int64)?))
    }
}

/// `REGEXP_EXTRACT(text, regex [, group])`: the `group`-th (default 1; 0 is the whole match)
/// capture group of the first match, or NULL when nothing matches or the group does not
/// exist.
#[derive(Debug, PartialEq, Eq, Hash)]
struct RegexpExtract {
    signature: Signature,
}

impl RegexpExtract {
    fn new() -> Self {
        RegexpExtract {
            signature: Signature::user_defined(Volatility::Immutable),
        }
    }
}

impl ScalarUDFImpl for RegexpExtract {
    fn name(&self) -> &str {
        "regexp_extract"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        // The text is read in the string type it has (no copy into another per batch).
        let text = match arg_types.first() {
            Some(t @ (DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View)) => t.clone(),
            _ => DataType::Utf8,
        };
        match arg_types.len() {
            2 => Ok(vec![text, DataType::Utf8]),
            3 => Ok(vec![text, DataType::Utf8, DataType::Int64]),
            _ => plan_err!("REGEXP_EXTRACT takes a string, a regex and optionally a group index"),
        }
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let n = args.number_rows;
        let text = args.args[0].to_array(n)?;
        let mut out = StringBuilder::with_capacity(n, n * 8);
        // The usual case, a constant pattern and group: compiled once per batch, and neither
        // expanded into a column.
        let group = match args.args.get(2) {
            None => Some(Some(1)),
            Some(ColumnarValue::Scalar(ScalarValue::Int64(g))) => {
                Some(g.and_then(|g| usize::try_from(g).ok()))
            }
            Some(_) => None,
        };
        if let (ColumnarValue::Scalar(ScalarValue::Utf8(pattern)), Some(group)) =
            (&args.args[1], group)
        {
            let re = pattern.as_deref().map(compile).transpose()?;
            let mut extract = re.as_ref().zip(group).map(|(re, g)| Extract::new(re, g));
            each_text(&text, |value| {
                out.append_option(value.zip(extract.as_mut()).and_then(|(v, e)| e.run(v)))
            });
            return Ok(ColumnarValue::Array(Arc::new(out.finish())));
        }
        let patterns = args.args[1].to_array(n)?;
        let patterns = patterns.as_string::<i32>();
        let groups = args.args.get(2).map(|g| g.to_array(n)).transpose()?;
        let groups = groups.as_ref().map(|g| g.as_primitive::<Int64Type>());
        let mut row = 0;
        let mut failed = None;
        // Patterns from a column repeat from row to row: compiled again only when they change.
        let mut last: Option<(String, Regex)> = None;
        each_text(&text, |value| {
            let i = row;
            row += 1;
            let group = match groups {
                Some(g) if g.is_null(i) => None,
                Some(g) => usize::try_from(g.value(i)).ok(),
                None => Some(1),
            };
            let found = match (value, group) {
                (Some(v), Some(g)) if !patterns.is_null(i) && failed.is_none() => {
                    let pattern = patterns.value(i);
                    if last.as_ref().is_none_or(|(p, _)| p != pattern) {
                        match compile(pattern) {
                            Ok(re) => last = Some((pattern.to_string(), re)),
                            Err(e) => failed = Some(e),
                        }
                    }
                    match (&last, &failed) {
                        (Some((_, re)), None) => Extract::new(re, g).run(v).map(str::to_string),
                        _ => None,
                    }
                }
                _ => None,
            };
            out.append_option(found);
        });
        match failed {
            Some(e) => Err(e),
            None => Ok(ColumnarValue::Array(Arc::new(out.finish()))),
        }
    }
}

/// One pattern's capture group, with the capture positions reused from row to row.
struct Extract<'r> {
    re: &'r Regex,
    group: usize,
    locations: regex::CaptureLocations,
}

impl<'r> Extract<'r> {
    fn new(re: &'r Regex, group: usize) -> Self {
        Extract {
            re,
            group,
            locations: re.capture_locations(),
        }
    }

    fn run<'t>(&mut self, text: &'t str) -> Option<&'t str> {
        if self.group == 0 {
            return self.re.find(text).map(|m| m.as_str());
        }
        self.re.captures_read(&mut self.locations, text)?;
        let (start, end) = self.locations.get(self.group)?;
        text.get(start..end)
    }
}

/// Calls `f` with each value of a string column, in order (`None` for NULL).
fn each_text(array: &ArrayRef, mut f: impl FnMut(Option<&str>)) {
    match array.data_type() {
        DataType::Utf8View => array.as_string_view().iter().for_each(&mut f),
        DataType::LargeUtf8 => array.as_string::<i64>().iter().for_each(&mut f),
        _ => array.as_string::<i32>().iter().for_each(&mut f),
    }
}

fn compile(pattern: &str) -> Result<Regex> {
    match Regex::new(pattern) {
        Ok(re) => Ok(re),
        Err(e) => exec_err!("REGEXP_EXTRACT: bad regular expression '{pattern}': {e}"),
    }
}
