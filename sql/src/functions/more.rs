//! `MOD`, `REGEXP_EXTRACT` and the time parts (`HOUR(ts)` ...), with Flink's types: integer
//! results are BIGINT, and a bad argument (zero divisor, no match) gives NULL rather than
//! failing the job.

use std::sync::{Arc, Mutex, PoisonError};

use regex::Regex;

use super::pieces::pieces;
use streams_core::arrow::array::{Array, ArrayRef, AsArray, Int64Array};
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
    compiled: Compiled,
}

impl RegexpExtract {
    fn new() -> Self {
        RegexpExtract {
            signature: Signature::user_defined(Volatility::Immutable),
            compiled: Compiled::default(),
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
        Ok(DataType::Utf8View)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let n = args.number_rows;
        let text = args.args[0].to_array(n)?;
        // The usual case, a constant pattern and group: neither expanded into a column.
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
            let out = match pattern.as_deref().zip(group) {
                Some((pattern, group)) => {
                    let mut extract = Extract::new(self.compiled.get(pattern)?);
                    pieces(&text, |_, t| extract.run(t, group))?
                }
                None => pieces(&text, |_, _| None)?,
            };
            return Ok(ColumnarValue::Array(out));
        }
        let patterns = args.args[1].to_array(n)?;
        let patterns = patterns.as_string::<i32>();
        let groups = args.args.get(2).map(|g| g.to_array(n)).transpose()?;
        let groups = groups.as_ref().map(|g| g.as_primitive::<Int64Type>());
        let mut failed = None;
        // Patterns from a column repeat from row to row: looked up again only when they change.
        let mut last: Option<(&str, Extract)> = None;
        let out = pieces(&text, |i, t| {
            let group = match groups {
                Some(g) if g.is_null(i) => None,
                Some(g) => usize::try_from(g.value(i)).ok(),
                None => Some(1),
            };
            let group = group.filter(|_| !patterns.is_null(i) && failed.is_none())?;
            let pattern = patterns.value(i);
            if last.as_ref().is_none_or(|(p, _)| *p != pattern) {
                match self.compiled.get(pattern) {
                    Ok(re) => last = Some((pattern, Extract::new(re))),
                    Err(e) => failed = Some(e),
                }
            }
            match (&mut last, &failed) {
                (Some((_, extract)), None) => extract.run(t, group),
                _ => None,
            }
        })?;
        match failed {
            Some(e) => Err(e),
            None => Ok(ColumnarValue::Array(out)),
        }
    }
}

/// Compiled patterns, kept between batches: compiling `(&|^)channel_id=([^&]*)` took longer
/// than matching a batch of urls with it, and a `Regex` that is kept keeps the lazy DFA states
/// it built while matching. The function is one value per session, so this is shared by its
/// calls; the least recently used pattern goes when more than `KEPT` are.
#[derive(Debug, Default)]
struct Compiled(Mutex<Vec<(String, Arc<Regex>)>>);

impl Compiled {
    const KEPT: usize = 64;

    fn get(&self, pattern: &str) -> Result<Arc<Regex>> {
        let lock = || self.0.lock().unwrap_or_else(PoisonError::into_inner);
        {
            let mut kept = lock();
            if let Some(i) = kept.iter().position(|(p, _)| p == pattern) {
                let entry = kept.remove(i);
                let re = Arc::clone(&entry.1);
                kept.push(entry);
                return Ok(re);
            }
        }
        // Compiled without holding the lock: other calls go on matching meanwhile.
        let re = Arc::new(compile(pattern)?);
        let mut kept = lock();
        if kept.len() >= Self::KEPT {
            kept.remove(0);
        }
        kept.push((pattern.to_string(), Arc::clone(&re)));
        Ok(re)
    }
}

// What is kept does not change what the function is.
impl PartialEq for Compiled {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for Compiled {}

impl std::hash::Hash for Compiled {
    fn hash<H: std::hash::Hasher>(&self, _: &mut H) {}
}

/// One pattern, with its capture positions reused from row to row.
struct Extract {
    re: Arc<Regex>,
    locations: regex::CaptureLocations,
}

impl Extract {
    fn new(re: Arc<Regex>) -> Self {
        let locations = re.capture_locations();
        Extract { re, locations }
    }

    fn run<'t>(&mut self, text: &'t str, group: usize) -> Option<&'t str> {
        if group == 0 {
            return self.re.find(text).map(|m| m.as_str());
        }
        self.re.captures_read(&mut self.locations, text)?;
        let (start, end) = self.locations.get(group)?;
        text.get(start..end)
    }
}

fn compile(pattern: &str) -> Result<Regex> {
    match Regex::new(pattern) {
        Ok(re) => Ok(re),
        Err(e) => exec_err!("REGEXP_EXTRACT: bad regular expression '{pattern}': {e}"),
    }
}
