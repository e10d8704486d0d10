//! Window table functions (`TABLE(TUMBLE(TABLE bid, DESCRIPTOR(ts), INTERVAL '10' SECOND))`)
//! before DataFusion plans the query: each call becomes a reference to a synthetic relation
//! (the input's columns plus `window_start`, `window_end`, `window_time`), remembered here so
//! the rewrite can turn the aggregate over it into a window aggregate.

use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::Duration;

use streams_core::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use streams_core::datafusion::sql::sqlparser::ast::{
    Expr, FunctionArg, FunctionArgExpr, FunctionArguments, Statement, TableFactor, VisitMut,
    VisitorMut,
};
use streams_core::datafusion::sql::sqlparser::dialect::GenericDialect;
use streams_core::datafusion::sql::sqlparser::parser::Parser;
use streams_core::window::WindowSpec;

use crate::catalog::Catalog;
use crate::dialect::TABLE_ARG;
use crate::{Error, Result};

/// One window table function call of a query.
#[derive(Clone, Debug)]
pub(crate) struct WindowTvf {
    /// The synthetic relation standing for the call.
    pub(crate) name: String,
    /// The input table.
    pub(crate) input: String,
    /// The windows.
    pub(crate) spec: WindowSpec,
    /// The `DESCRIPTOR` column.
    pub(crate) time_column: String,
    /// Columns of the synthetic relation.
    pub(crate) schema: SchemaRef,
    /// `PARTITION BY` columns of a SESSION window.
    pub(crate) partition: Vec<String>,
}

/// Replaces window table function calls in `s`; returns the statement and the calls.
pub(crate) fn extract(
    mut s: Statement,
    catalog: &Catalog,
    interval: &dyn Fn(&Expr) -> Result<Duration>,
) -> Result<(Statement, Vec<WindowTvf>)> {
    let mut v = Extract {
        catalog,
        interval,
        found: Vec::new(),
    };
    if let ControlFlow::Break(e) = s.visit(&mut v) {
        return Err(e);
    }
    Ok((s, v.found))
}

struct Extract<'a> {
    catalog: &'a Catalog,
    interval: &'a dyn Fn(&Expr) -> Result<Duration>,
    found: Vec<WindowTvf>,
}

impl VisitorMut for Extract<'_> {
    type Break = Error;

    fn pre_visit_table_factor(&mut self, tf: &mut TableFactor) -> ControlFlow<Error> {
        let TableFactor::TableFunction {
            expr: Expr::Function(f),
            alias,
        } = tf
        else {
            return ControlFlow::Continue(());
        };
        let kind = f.name.to_string().to_ascii_uppercase();
        if !matches!(kind.as_str(), "TUMBLE" | "HOP" | "CUMULATE" | "SESSION") {
            return ControlFlow::Continue(());
        }
        let args: Vec<Expr> = match &f.args {
            FunctionArguments::List(l) => l
                .args
                .iter()
                .filter_map(|a| match a {
                    FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => Some(e.clone()),
                    FunctionArg::Named {
                        arg: FunctionArgExpr::Expr(e),
                        ..
                    } => Some(e.clone()),
                    _ => None,
                })
                .collect(),
            _ => Vec::new(),
        };
        let call = match self.window(&kind, &args) {
            Ok(c) => c,
            Err(e) => return ControlFlow::Break(e),
        };
        let replacement = match table_reference(&call.name, alias.take()) {
            Ok(t) => t,
            Err(e) => return ControlFlow::Break(e),
        };
        *tf = replacement;
        self.found.push(call);
        ControlFlow::Continue(())
    }
}

fn bad(kind: &str, what: &str) -> Error {
    let usage = match kind {
        "TUMBLE" => "TUMBLE(TABLE t, DESCRIPTOR(ts), size [, offset])",
        "HOP" => "HOP(TABLE t, DESCRIPTOR(ts), slide, size)",
        "CUMULATE" => "CUMULATE(TABLE t, DESCRIPTOR(ts), step, max size)",
        _ => "SESSION(TABLE t PARTITION BY k, DESCRIPTOR(ts), gap)",
    };
    Error::Plan(format!("{kind}: {what}; write {usage}"))
}

impl Extract<'_> {
    fn window(&self, kind: &str, args: &[Expr]) -> Result<WindowTvf> {
        let Some(Expr::Tuple(table)) = args.first() else {
            return Err(bad(kind, "the first argument must be TABLE name"));
        };
        let (input, partition) = match table.as_slice() {
            [
                Expr::Identifier(marker),
                Expr::CompoundIdentifier(name),
                keys @ ..,
            ] if marker.value == TABLE_ARG => {
                let keys = keys
                    .iter()
                    .map(|k| match k {
                        Expr::Identifier(i) => Ok(i.value.clone()),
                        other => Err(bad(
                            kind,
                            &format!("PARTITION BY takes columns, not {other}"),
                        )),
                    })
                    .collect::<Result<Vec<_>>>()?;
                (
                    name.iter()
                        .map(|i| i.value.clone())
                        .collect::<Vec<_>>()
                        .join("."),
                    keys,
                )
            }
            _ => return Err(bad(kind, "the first argument must be TABLE name")),
        };
        if !partition.is_empty() && kind != "SESSION" {
            return Err(bad(kind, "PARTITION BY belongs to SESSION windows"));
        }
        let expected = match kind {
            "TUMBLE" => 3..=4,
            "SESSION" => 3..=3,
            _ => 4..=4,
        };
        if !expected.contains(&args.len()) {
            return Err(bad(kind, &format!("{} arguments given", args.len())));
        }
        let time_column = match args.get(1) {
            Some(Expr::Function(d)) if d.name.to_string().eq_ignore_ascii_case("DESCRIPTOR") => {
                match &d.args {
                    FunctionArguments::List(l) => match l.args.as_slice() {
                        [FunctionArg::Unnamed(FunctionArgExpr::Expr(Expr::Identifier(c)))] => {
                            c.value.clone()
                        }
                        _ => return Err(bad(kind, "DESCRIPTOR takes one column")),
                    },
                    _ => return Err(bad(kind, "DESCRIPTOR takes one column")),
                }
            }
            _ => {
                return Err(bad(
                    kind,
                    "the second argument must be DESCRIPTOR(time column)",
                ));
            }
        };
        let ms = |i: usize| -> Result<i64> {
            let e = args
                .get(i)
                .ok_or_else(|| bad(kind, "an interval is missing"))?;
            Ok((self.interval)(e)?.as_millis() as i64)
        };
        let spec = match kind {
            "TUMBLE" => WindowSpec::Tumble {
                size: ms(2)?,
                offset: if args.len() > 3 { ms(3)? } else { 0 },
            },
            "HOP" => WindowSpec::Hop {
                slide: ms(2)?,
                size: ms(3)?,
            },
            "CUMULATE" => WindowSpec::Cumulate {
                step: ms(2)?,
                max: ms(3)?,
            },
            _ => WindowSpec::Session { gap: ms(2)? },
        };
        spec.validate().map_err(|e| Error::Plan(e.to_string()))?;
        let base: SchemaRef = match (
            self.catalog.tables.get(&input),
            self.catalog.views.get(&input),
        ) {
            (Some(t), _) => Arc::clone(&t.schema),
            (None, Some(v)) => Arc::new(v.schema().as_arrow().clone()),
            (None, None) => {
                return Err(Error::Plan(format!(
                    "{kind}: table `{input}` does not exist"
                )));
            }
        };
        if let Some(t) = self.catalog.tables.get(&input)
            && let Some((wm, _)) = &t.watermark
            && wm != &time_column
        {
            return Err(bad(
                kind,
                &format!(
                    "DESCRIPTOR({time_column}) must name `{input}`'s event-time column `{wm}` (its WATERMARK)"
                ),
            ));
        }
        let tz = match base
            .field_with_name(&time_column)
            .map(|f| f.data_type().clone())
        {
            Ok(DataType::Timestamp(_, tz)) => tz,
            Ok(other) => {
                return Err(bad(
                    kind,
                    &format!("`{time_column}` is {other}, not a timestamp"),
                ));
            }
            Err(_) => {
                return Err(bad(
                    kind,
                    &format!("`{input}` has no column `{time_column}`"),
                ));
            }
        };
        let ts = DataType::Timestamp(TimeUnit::Millisecond, tz);
        let mut fields: Vec<Field> = base.fields().iter().map(|f| f.as_ref().clone()).collect();
        for n in ["window_start", "window_end", "window_time"] {
            fields.push(Field::new(n, ts.clone(), false));
        }
        Ok(WindowTvf {
            name: format!("__window_{}", self.found.len()),
            input,
            spec,
            time_column,
            schema: Arc::new(Schema::new(fields)),
            partition,
        })
    }
}

/// `FROM name [alias]` as a table factor (parsed, so the AST's many fields stay right).
fn table_reference(
    name: &str,
    alias: Option<streams_core::datafusion::sql::sqlparser::ast::TableAlias>,
) -> Result<TableFactor> {
    let sql = format!("SELECT * FROM {name}");
    let parsed = Parser::parse_sql(&GenericDialect {}, &sql)
        .map_err(|e| Error::Plan(format!("internal: {e}")))?;
    let mut factor = None;
    if let Some(Statement::Query(q)) = parsed.into_iter().next()
        && let streams_core::datafusion::sql::sqlparser::ast::SetExpr::Select(s) = *q.body
        && let Some(t) = s.from.into_iter().next()
    {
        factor = Some(t.relation);
    }
    match factor {
        Some(TableFactor::Table {
            name,
            args,
            with_hints,
            version,
            with_ordinality,
            partitions,
            json_path,
            sample,
            index_hints,
            ..
        }) => Ok(TableFactor::Table {
            name,
            alias,
            args,
            with_hints,
            version,
            with_ordinality,
            partitions,
            json_path,
            sample,
            index_hints,
        }),
        _ => Err(Error::Plan("internal: window relation".into())),
    }
}
