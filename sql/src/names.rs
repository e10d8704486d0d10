//! Output names of nested field access, as Flink gives them: `SELECT bid.price FROM nexmark`
//! (where `bid` is a `ROW` column) yields a column `price`. DataFusion would call it
//! `nexmark.bid[price]`, which no later clause or outer query could name, so such items get
//! an alias before planning. `t.c` where `t` is a relation of the same `SELECT` is left alone.

use std::collections::HashSet;
use std::ops::ControlFlow;

use streams_core::datafusion::sql::sqlparser::ast::{
    Expr, Query, SelectItem, SetExpr, Statement, TableFactor, TableWithJoins, VisitMut, VisitorMut,
};

/// Names the field accesses of every `SELECT` in `s`, subqueries included.
pub(crate) fn name_field_accesses(s: &mut Statement) {
    let _ = s.visit(&mut NameFields);
}

struct NameFields;

impl VisitorMut for NameFields {
    type Break = ();

    fn pre_visit_query(&mut self, query: &mut Query) -> ControlFlow<()> {
        name_in(&mut query.body);
        ControlFlow::Continue(())
    }
}

fn name_in(body: &mut SetExpr) {
    match body {
        SetExpr::Select(select) => {
            let mut relations = HashSet::new();
            for from in &select.from {
                relation_names(from, &mut relations);
            }
            for item in &mut select.projection {
                let SelectItem::UnnamedExpr(Expr::CompoundIdentifier(ids)) = item else {
                    continue;
                };
                let qualified_column = ids.len() == 2 && relations.contains(&ids[0].value);
                if let (false, Some(last)) = (qualified_column, ids.last().cloned()) {
                    let expr = Expr::CompoundIdentifier(std::mem::take(ids));
                    *item = SelectItem::ExprWithAlias { expr, alias: last };
                }
            }
        }
        SetExpr::SetOperation { left, right, .. } => {
            name_in(left);
            name_in(right);
        }
        // Nested queries are visited on their own.
        _ => {}
    }
}

fn relation_names(from: &TableWithJoins, out: &mut HashSet<String>) {
    for factor in std::iter::once(&from.relation).chain(from.joins.iter().map(|j| &j.relation)) {
        match factor {
            TableFactor::Table { name, alias, .. } => {
                if let Some(a) = alias {
                    out.insert(a.name.value.clone());
                }
                if let Some(last) = name.0.last().and_then(|p| p.as_ident()) {
                    out.insert(last.value.clone());
                }
            }
            TableFactor::NestedJoin {
                table_with_joins, ..
            } => relation_names(table_with_joins, out),
            other => {
                if let Some(a) = factor_alias(other) {
                    out.insert(a);
                }
            }
        }
    }
}

fn factor_alias(factor: &TableFactor) -> Option<String> {
    match factor {
        TableFactor::Derived { alias, .. }
        | TableFactor::TableFunction { alias, .. }
        | TableFactor::Function { alias, .. }
        | TableFactor::UNNEST { alias, .. } => alias.as_ref().map(|a| a.name.value.clone()),
        _ => None,
    }
}
