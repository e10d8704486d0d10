//! `MOD` and the time parts (`HOUR(ts)` ...), with Flink's types: integer
//! results are BIGINT, and a bad argument (a zero divisor) gives NULL rather than
//! failing the job.

use std::sync::Arc;

use streams_core::arrow::array::{Array, ArrayRef, AsArray, Int64Array};
use streams_core::arrow::compute::kernels::temporal::{DatePart, date_part};
use streams_core::arrow::compute::{cast, kernels::numeric::rem};
use streams_core::arrow::datatypes::{DataType, Float64Type, Int64Type};
use streams_core::datafusion::common::{Result, exec_err, plan_err};
use streams_core::datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};

pub(super) fn functions() -> Vec<ScalarUDF> {
    let mut out = vec![
        ScalarUDF::new_from_impl(Mod::new()),
        ScalarUDF::new_from_impl(super::regexp::RegexpExtract::new()),
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
