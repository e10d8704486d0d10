//! Pushes the columns a job reads into its sources ([`SourceFactory::with_projection`]): a
//! JSON file source then skips the values of the other keys instead of decoding them, as
//! Flink's filesystem source does with projection push-down.
//!
//! The scans of one source in a job share one reader (see `Compiler::scan`), so the source
//! reads the union of what its scans need. What a scan needs is known where the optimizer left
//! a projection right above it, or above its watermark: DataFusion's `OptimizeProjections`
//! puts one there whenever the plan reads fewer columns than the scan has. A scan under
//! anything else keeps every column.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{Column, DFSchema, DFSchemaRef};
use datafusion::logical_expr::{Expr, LogicalPlan};

use super::builder::ext;
use super::compile::downcast;
use super::nodes::{SourceRef, StreamScan, WatermarkNode};
use crate::Result;

/// `plans` (one job's, optimized) with each source narrowed to the columns its scans read,
/// where the source supports it.
pub(super) fn narrow_scans(plans: Vec<LogicalPlan>) -> Result<Vec<LogicalPlan>> {
    let mut demand: HashMap<usize, (SourceRef, Demand)> = HashMap::new();
    for plan in &plans {
        collect(plan, &mut demand);
    }
    let narrowed: HashMap<usize, (SourceRef, Vec<usize>)> = demand
        .into_iter()
        .filter_map(|(id, (source, demand))| {
            let Demand::Columns(columns) = demand else {
                return None;
            };
            let columns: Vec<usize> = columns.into_iter().collect();
            // No column read (`SELECT COUNT(*)`): rows are still counted, so they are still
            // read; a source of no columns is not worth its special cases.
            if columns.is_empty() || columns.len() == source.0.schema().fields().len() {
                return None;
            }
            let projected = source.0.with_projection(&columns)?;
            Some((id, (SourceRef(projected), columns)))
        })
        .collect();
    if narrowed.is_empty() {
        return Ok(plans);
    }
    plans
        .into_iter()
        .map(|plan| {
            let rewritten = plan.transform_up(|node| {
                let Some(scan) = downcast::<StreamScan>(&node) else {
                    return Ok(Transformed::no(node));
                };
                let Some((source, columns)) = narrowed.get(&source_id(&scan.source)) else {
                    return Ok(Transformed::no(node));
                };
                Ok(Transformed::yes(ext(StreamScan {
                    name: scan.name.clone(),
                    source: source.clone(),
                    schema: project(&scan.schema, columns)?,
                    projection: Some(columns.clone()),
                })))
            })?;
            Ok(rewritten.data)
        })
        .collect()
}

/// The columns of one source that a job's scans read.
enum Demand {
    All,
    Columns(BTreeSet<usize>),
}

fn source_id(source: &SourceRef) -> usize {
    Arc::as_ptr(&source.0) as *const () as usize
}

/// Adds what each scan in `plan` reads to `demand`: the columns of a projection right above
/// it or above its watermark (with the event time), else every column.
fn collect(plan: &LogicalPlan, demand: &mut HashMap<usize, (SourceRef, Demand)>) {
    if let LogicalPlan::Projection(p) = plan {
        let (below, time) = match downcast::<WatermarkNode>(&p.input) {
            Some(wm) => (&wm.input, Some(&wm.column)),
            None => (p.input.as_ref(), None),
        };
        if let Some(scan) = downcast::<StreamScan>(below) {
            let mut exprs = p.expr.clone();
            if let Some(t) = time {
                exprs.push(Expr::Column(Column::new_unqualified(t)));
            }
            add(demand, scan, columns_of(scan, &exprs));
            return;
        }
    }
    if let Some(scan) = downcast::<StreamScan>(plan) {
        add(demand, scan, None);
        return;
    }
    for input in plan.inputs() {
        collect(input, demand);
    }
}

/// Adds `columns` of `scan` (`None`: all) to its source's demand.
fn add(
    demand: &mut HashMap<usize, (SourceRef, Demand)>,
    scan: &StreamScan,
    columns: Option<BTreeSet<usize>>,
) {
    let entry = demand
        .entry(source_id(&scan.source))
        .or_insert_with(|| (scan.source.clone(), Demand::Columns(BTreeSet::new())));
    entry.1 = match (std::mem::replace(&mut entry.1, Demand::All), columns) {
        (Demand::Columns(mut have), Some(more)) => {
            have.extend(more);
            Demand::Columns(have)
        }
        _ => Demand::All,
    };
}

/// The scan's columns `exprs` refer to, or `None` if one cannot be told apart.
fn columns_of(scan: &StreamScan, exprs: &[Expr]) -> Option<BTreeSet<usize>> {
    let mut columns = BTreeSet::new();
    for e in exprs {
        for c in e.column_refs() {
            let i = match &c.relation {
                Some(_) => scan.schema.index_of_column(c).ok(),
                None => scan.schema.index_of_column_by_name(None, &c.name),
            }?;
            columns.insert(i);
        }
    }
    Some(columns)
}

/// `schema` (a scan's, qualified) narrowed to `columns`.
fn project(schema: &DFSchemaRef, columns: &[usize]) -> datafusion::common::Result<DFSchemaRef> {
    let fields = columns
        .iter()
        .map(|&i| {
            let (qualifier, field) = schema.qualified_field(i);
            (qualifier.cloned(), Arc::clone(field))
        })
        .collect();
    Ok(Arc::new(DFSchema::new_with_metadata(
        fields,
        schema.metadata().clone(),
    )?))
}

#[cfg(test)]
#[path = "scan_columns_tests.rs"]
mod tests;
