use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, Int32Array, Int64Array, RecordBatch, StructArray};
use datafusion::arrow::datatypes::{DataType, Field, Fields, Schema};
use datafusion::common::DFSchema;
use datafusion::execution::context::ExecutionProps;
use datafusion::functions::core::expr_fn::get_field;
use datafusion::logical_expr::physical_planning_context::PhysicalPlanningContext;
use datafusion::logical_expr::{Expr, col, lit, when};
use datafusion::physical_expr::{PhysicalExpr, create_physical_expr};
use proptest::prelude::*;

use super::whole_cases;

fn schema() -> Schema {
    let fields = Fields::from(vec![Field::new("t", DataType::Int64, true)]);
    Schema::new(vec![
        Field::new("k", DataType::Int32, true),
        Field::new("a", DataType::Int64, true),
        Field::new("b", DataType::Int64, true),
        Field::new("s", DataType::Struct(fields), true),
    ])
}

fn physical(expr: &Expr) -> Arc<dyn PhysicalExpr> {
    let schema = DFSchema::try_from(schema()).unwrap();
    create_physical_expr(
        expr,
        &schema,
        &ExecutionProps::new(),
        &PhysicalPlanningContext::default(),
    )
    .unwrap()
}

/// The Nexmark event time's shape, one with literal values and no ELSE, and one nested in
/// a comparison.
fn cases() -> Vec<Expr> {
    let k = || col("k");
    vec![
        when(k().eq(lit(0)), col("a"))
            .when(k().eq(lit(1)), col("b"))
            .otherwise(get_field(col("s"), "t"))
            .unwrap(),
        when(k().gt(lit(1)).and(col("a").is_not_null()), lit("x"))
            .when(k().is_null(), lit("y"))
            .end()
            .unwrap(),
        when(k().lt_eq(lit(1)), col("a"))
            .otherwise(col("b"))
            .unwrap()
            .gt(lit(5_i64)),
    ]
}

/// A row's `k`, `a`, `b` and `s.t`.
type Row = (Option<i32>, Option<i64>, Option<i64>, Option<i64>);

fn batch(rows: &[Row]) -> RecordBatch {
    let t: ArrayRef = Arc::new(Int64Array::from_iter(rows.iter().map(|r| r.3)));
    let s = StructArray::new(
        Fields::from(vec![Field::new("t", DataType::Int64, true)]),
        vec![t],
        None,
    );
    RecordBatch::try_new(
        Arc::new(schema()),
        vec![
            Arc::new(Int32Array::from_iter(rows.iter().map(|r| r.0))),
            Arc::new(Int64Array::from_iter(rows.iter().map(|r| r.1))),
            Arc::new(Int64Array::from_iter(rows.iter().map(|r| r.2))),
            Arc::new(s),
        ],
    )
    .unwrap()
}

fn evaluate(expr: &Arc<dyn PhysicalExpr>, batch: &RecordBatch) -> ArrayRef {
    expr.evaluate(batch)
        .unwrap()
        .into_array(batch.num_rows())
        .unwrap()
}

#[test]
fn cheap_cases_are_rewritten_and_others_are_not() {
    for case in cases() {
        let whole = whole_cases(physical(&case), &schema()).unwrap();
        assert!(format!("{whole:?}").contains("WholeCase"), "{whole:?}");
        assert_eq!(whole.to_string(), physical(&case).to_string());
    }
    // A division can fail (by zero): it stays behind its condition.
    let guarded = when(col("b").not_eq(lit(0_i64)), col("a") / col("b"))
        .otherwise(lit(0_i64))
        .unwrap();
    let kept = whole_cases(physical(&guarded), &schema()).unwrap();
    assert!(!format!("{kept:?}").contains("WholeCase"));
    let rows = [(Some(0), Some(4), Some(0), None)];
    assert_eq!(evaluate(&kept, &batch(&rows)).len(), 1);
}

proptest! {
    #[test]
    fn a_case_evaluated_whole_equals_datafusions(
        rows in prop::collection::vec(
            (
                prop::option::weighted(0.9, 0..4_i32),
                prop::option::weighted(0.8, -10..10_i64),
                prop::option::weighted(0.8, -10..10_i64),
                prop::option::weighted(0.8, -10..10_i64),
            ),
            0..40,
        )
    ) {
        let batch = batch(&rows);
        for case in cases() {
            let datafusion = physical(&case);
            let whole = whole_cases(Arc::clone(&datafusion), &schema()).unwrap();
            let (got, want) = (evaluate(&whole, &batch), evaluate(&datafusion, &batch));
            prop_assert_eq!(&got, &want);
        }
    }
}
