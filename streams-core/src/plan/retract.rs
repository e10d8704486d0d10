//! Unbounded aggregates over update streams. A retraction (`-U`, `-D`) must take its row back
//! out of the aggregate; DataFusion's group accumulators only add, so each aggregate is
//! rewritten into sums of signed values (`+1` for an addition, `-1` for a retraction):
//! `COUNT(x)` as the sum of the signs of non-null `x`, `SUM(x)` as the sum of `x * sign`
//! (NULL once no non-null `x` is left), `AVG(x)` as their quotient. A hidden last aggregate
//! counts the group's rows, so a group whose rows are all retracted is deleted. Aggregates
//! that cannot be taken back this way (MIN, MAX, DISTINCT, ...) are refused by name.

use datafusion::arrow::datatypes::DataType;
use datafusion::common::{Column, DFSchema};
use datafusion::functions_aggregate::sum::sum_udaf;
use datafusion::logical_expr::expr::{AggregateFunction, AggregateFunctionParams};
use datafusion::logical_expr::{Expr, cast, col, lit, when};

use crate::changelog::{DELETE, OP_COLUMN, UPDATE_BEFORE};
use crate::{Error, Result};

/// Aggregates over signed rows, and how to get each original result from their outputs.
#[derive(Debug)]
pub(crate) struct Retractable {
    /// What the operator computes; the last one counts the rows of the group.
    pub(crate) inner: Vec<Expr>,
    /// Per original aggregate: an expression over the inner outputs, given their columns.
    finals: Vec<Final>,
}

#[derive(Debug)]
enum Final {
    /// `COALESCE(count, 0)`.
    Count(usize),
    /// The sum, or NULL without non-null values.
    Sum { sum: usize, count: usize },
    /// The sum over the count, as DOUBLE.
    Avg { sum: usize, count: usize },
}

/// The column the input gains: `-1` for a retraction, `+1` for an addition.
pub(crate) const SIGN_COLUMN: &str = "__sign";

/// The sign of the input's change column, as [`SIGN_COLUMN`].
pub(crate) fn sign_expr() -> Expr {
    when(
        col(Column::new_unqualified(OP_COLUMN))
            .in_list(vec![lit(UPDATE_BEFORE), lit(DELETE)], false),
        lit(-1i64),
    )
    .otherwise(lit(1i64))
    .unwrap_or_else(|_| lit(1i64))
    .alias(SIGN_COLUMN)
}

fn sign() -> Expr {
    col(Column::new_unqualified(SIGN_COLUMN))
}

fn sum_of(arg: Expr, filter: Option<Box<Expr>>) -> Expr {
    Expr::AggregateFunction(AggregateFunction::new_udf(
        sum_udaf(),
        vec![arg],
        false,
        filter,
        vec![],
        None,
    ))
}

/// Rewrites `aggr_expr` over an update stream.
pub(crate) fn rewrite(aggr_expr: &[Expr]) -> Result<Retractable> {
    let mut inner = Vec::new();
    let mut finals = Vec::new();
    for e in aggr_expr {
        let agg = match e {
            Expr::Alias(a) => a.expr.as_ref(),
            other => other,
        };
        let Expr::AggregateFunction(AggregateFunction {
            func,
            params:
                AggregateFunctionParams {
                    args,
                    distinct,
                    filter,
                    order_by,
                    ..
                },
        }) = agg
        else {
            return Err(Error::plan(format!("{e} is not an aggregate")));
        };
        let name = func.name().to_ascii_lowercase();
        let refused = || {
            Error::plan(format!(
                "{e} over an update stream (the result of an unbounded GROUP BY, a regular \
                 join or a Top-N) is not supported: only COUNT, SUM and AVG without DISTINCT \
                 can take back retracted rows"
            ))
        };
        if *distinct || !order_by.is_empty() || args.len() > 1 {
            return Err(refused());
        }
        let arg = args.first().cloned().unwrap_or_else(|| lit(1i64));
        let signed_count = match &arg {
            Expr::Literal(v, _) if !v.is_null() => sign(),
            _ => when(arg.clone().is_not_null(), sign())
                .otherwise(lit(0i64))
                .map_err(Error::from)?,
        };
        let count = inner.len();
        let i = finals.len();
        inner.push(sum_of(signed_count, filter.clone()).alias(format!("__n{i}")));
        match name.as_str() {
            "count" => finals.push(Final::Count(count)),
            "sum" => {
                inner.push(sum_of(arg * sign(), filter.clone()).alias(format!("__s{i}")));
                finals.push(Final::Sum {
                    sum: count + 1,
                    count,
                });
            }
            "avg" | "mean" => {
                inner.push(sum_of(
                    cast(arg, DataType::Float64) * sign(),
                    filter.clone(),
                ));
                finals.push(Final::Avg {
                    sum: count + 1,
                    count,
                });
            }
            _ => return Err(refused()),
        }
    }
    inner.push(sum_of(sign(), None).alias("__rows"));
    Ok(Retractable { inner, finals })
}

impl Retractable {
    /// The original aggregates' results over the inner aggregate's output `schema`, whose
    /// aggregate columns start at `offset`.
    pub(crate) fn finals(&self, schema: &DFSchema, offset: usize) -> Vec<Expr> {
        let column = |i: usize| Expr::Column(Column::from(schema.qualified_field(offset + i)));
        self.finals
            .iter()
            .map(|f| match *f {
                Final::Count(c) => {
                    datafusion::functions::expr_fn::coalesce(vec![column(c), lit(0i64)])
                }
                Final::Sum { sum, count } => when(
                    column(count).eq(lit(0i64)),
                    Expr::Literal(datafusion::common::ScalarValue::Null, None),
                )
                .otherwise(column(sum))
                .unwrap_or_else(|_| column(sum)),
                Final::Avg { sum, count } => when(
                    column(count).eq(lit(0i64)),
                    lit(datafusion::common::ScalarValue::Float64(None)),
                )
                .otherwise(column(sum) / cast(column(count), DataType::Float64))
                .unwrap_or_else(|_| column(sum)),
            })
            .collect()
    }
}
