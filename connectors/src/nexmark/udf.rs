//! The Nexmark suite's user-defined function (Flink's suite registers it in Java for q14).

use std::sync::Arc;

use streams_core::arrow::array::Int64Array;
use streams_core::arrow::datatypes::DataType;
use streams_core::datafusion::common::cast::as_string_array;
use streams_core::datafusion::common::{ScalarValue, exec_err};
use streams_core::datafusion::logical_expr::{ColumnarValue, ScalarUDF, Volatility, create_udf};

/// `count_char(s, c)`: how many times the first character of `c` occurs in `s` (NULL if
/// either is NULL or `c` is empty). Register it where q14 runs (`SqlEngine::register_udf`).
pub fn count_char() -> ScalarUDF {
    create_udf(
        "count_char",
        vec![DataType::Utf8, DataType::Utf8],
        DataType::Int64,
        Volatility::Immutable,
        Arc::new(|args: &[ColumnarValue]| {
            let count = |s: &str, c: char| -> i64 {
                if c.is_ascii() {
                    s.bytes().filter(|b| *b == c as u8).count() as i64
                } else {
                    s.chars().filter(|x| *x == c).count() as i64
                }
            };
            // The usual call, `count_char(extra, 'c')`: the character is decoded once.
            if let [ColumnarValue::Array(text), ColumnarValue::Scalar(c)] = args {
                let c = match c {
                    ScalarValue::Utf8(c) | ScalarValue::LargeUtf8(c) | ScalarValue::Utf8View(c) => {
                        c.as_deref().and_then(|c| c.chars().next())
                    }
                    _ => return exec_err!("count_char: the second argument must be a string"),
                };
                let s = as_string_array(text)?;
                let counts: Int64Array = s.iter().map(|s| Some(count(s?, c?))).collect();
                return Ok(ColumnarValue::Array(Arc::new(counts)));
            }
            let arrays = ColumnarValue::values_to_arrays(args)?;
            let (s, c) = (as_string_array(&arrays[0])?, as_string_array(&arrays[1])?);
            let counts: Int64Array = s
                .iter()
                .zip(c.iter())
                .map(|(s, c)| Some(count(s?, c?.chars().next()?)))
                .collect();
            Ok(ColumnarValue::Array(Arc::new(counts)))
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use streams_core::arrow::array::AsArray;
    use streams_core::arrow::datatypes::Int64Type;
    use streams_core::datafusion::prelude::SessionContext;

    #[tokio::test]
    async fn counts_the_first_character_of_its_second_argument() {
        let ctx = SessionContext::new();
        ctx.register_udf(count_char());
        let batches = ctx
            .sql(
                "SELECT count_char(s, c) FROM (VALUES ('a-b-c', '-x'), (NULL, '-'), ('x', '')) \
                 AS t(s, c)",
            )
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        let got: Vec<Option<i64>> = batches[0]
            .column(0)
            .as_primitive::<Int64Type>()
            .iter()
            .collect();
        assert_eq!(got, vec![Some(2), None, None]);
        let batches = ctx
            .sql("SELECT count_char(s, 'é') FROM (VALUES ('aéé-é'), (NULL)) AS t(s)")
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        let got: Vec<Option<i64>> = batches[0]
            .column(0)
            .as_primitive::<Int64Type>()
            .iter()
            .collect();
        assert_eq!(got, vec![Some(3), None]);
    }
}
