//! Test helpers for stateful operators: a scripted input of batches and watermarks, the output
//! as sorted text lines, and the checkpoint check every stateful operator must pass (stopping
//! anywhere, taking a checkpoint through bytes and resuming from it changes no result).

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

use std::sync::Arc;

use datafusion::arrow::array::TimestampMillisecondArray;
use datafusion::arrow::array::{ArrayRef, Int64Array, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use datafusion::functions_aggregate::average::avg_udaf;
use datafusion::functions_aggregate::count::count_udaf;
use datafusion::functions_aggregate::min_max::{max_udaf, min_udaf};
use datafusion::functions_aggregate::sum::sum_udaf;
use datafusion::logical_expr::AggregateUDF;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::aggregate::AggregateExprBuilder;
use datafusion::physical_expr::expressions::{Column, Literal, cast};
use datafusion::scalar::ScalarValue;

use super::window::AggregateSpec;
use crate::message::Barrier;
use crate::metrics::OperatorMetrics;
use crate::operator::{Operator, OperatorContext, Output};
use crate::state::OperatorState;

/// One input event of the test schema: key, value, event time (ms).
pub(crate) type Row = (&'static str, i64, i64);

/// What the operator is fed, in order.
#[derive(Clone, Debug)]
pub(crate) enum Step {
    Batch(RecordBatch),
    Watermark(i64),
}

/// `k` (string), `v` (bigint), `ts` (timestamp ms).
pub(crate) fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("k", DataType::Utf8, false),
        Field::new("v", DataType::Int64, true),
        Field::new(
            "ts",
            DataType::Timestamp(TimeUnit::Millisecond, None),
            false,
        ),
    ]))
}

pub(crate) fn batch(rows: &[Row]) -> RecordBatch {
    let k: StringArray = rows.iter().map(|r| Some(r.0)).collect();
    let v: Int64Array = rows.iter().map(|r| r.1).collect();
    let ts = TimestampMillisecondArray::from(rows.iter().map(|r| r.2).collect::<Vec<_>>());
    RecordBatch::try_new(schema(), vec![Arc::new(k), Arc::new(v), Arc::new(ts)]).unwrap()
}

pub(crate) fn column(schema: &SchemaRef, name: &str) -> Arc<dyn PhysicalExpr> {
    Arc::new(Column::new_with_schema(name, schema).unwrap())
}

/// `fun(column)`, or `fun(1)` without a column. AVG takes its argument as DOUBLE, as the
/// planner's type coercion gives it.
pub(crate) fn aggregate(
    fun: Arc<AggregateUDF>,
    arg: Option<&str>,
    distinct: bool,
    schema: &SchemaRef,
    alias: &str,
) -> AggregateSpec {
    let arg: Arc<dyn PhysicalExpr> = match arg {
        Some(c) if fun.name() == "avg" => {
            cast(column(schema, c), schema, DataType::Float64).unwrap()
        }
        Some(c) => column(schema, c),
        None => Arc::new(Literal::new(ScalarValue::Int64(Some(1)))),
    };
    let expr = AggregateExprBuilder::new(fun, vec![arg])
        .schema(Arc::clone(schema))
        .alias(alias)
        .with_distinct(distinct)
        .build()
        .unwrap();
    AggregateSpec {
        expr: Arc::new(expr),
        filter: None,
    }
}

/// count(*), sum(v), min(v), max(v), avg(v), count(DISTINCT v), max(k).
pub(crate) fn all_aggregates(schema: &SchemaRef) -> Vec<AggregateSpec> {
    vec![
        aggregate(count_udaf(), None, false, schema, "n"),
        aggregate(sum_udaf(), Some("v"), false, schema, "s"),
        aggregate(min_udaf(), Some("v"), false, schema, "lo"),
        aggregate(max_udaf(), Some("v"), false, schema, "hi"),
        aggregate(avg_udaf(), Some("v"), false, schema, "mean"),
        aggregate(count_udaf(), Some("v"), true, schema, "distinct_v"),
        aggregate(max_udaf(), Some("k"), false, schema, "max_k"),
    ]
}

/// Rows as sorted text lines prefixed with their port, timestamps as epoch milliseconds.
pub(crate) fn lines(out: &[(usize, RecordBatch)]) -> Vec<String> {
    let mut lines = Vec::new();
    let opts = FormatOptions::default().with_null("NULL");
    for (port, b) in out {
        let cols: Vec<ArrayRef> = b
            .columns()
            .iter()
            .map(|c| match c.data_type() {
                DataType::Timestamp(_, _) => {
                    datafusion::arrow::compute::cast(c, &DataType::Int64).unwrap()
                }
                _ => Arc::clone(c),
            })
            .collect();
        let fmts: Vec<_> = cols
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &opts).unwrap())
            .collect();
        for r in 0..b.num_rows() {
            let row: Vec<String> = fmts.iter().map(|f| f.value(r).to_string()).collect();
            lines.push(format!("{port}: {}", row.join(" | ")));
        }
    }
    lines.sort();
    lines
}

fn started(mut op: Box<dyn Operator>) -> Box<dyn Operator> {
    let ctx = OperatorContext {
        node: 0,
        name: "test".into(),
        subtask: 0,
        parallelism: 1,
        metrics: Arc::new(OperatorMetrics::default()),
        storage: None,
    };
    op.start(&ctx).unwrap();
    op
}

/// Feeds `steps` to `op`, collecting what it emits on every port.
pub(crate) fn feed(op: &mut dyn Operator, steps: &[Step], out: &mut Vec<(usize, RecordBatch)>) {
    for s in steps {
        let mut o = Output::new();
        match s {
            Step::Batch(b) => op.process_batch(0, b.clone(), &mut o).unwrap(),
            Step::Watermark(w) => {
                op.process_watermark(*w, &mut o).unwrap();
            }
        }
        drain(&mut o, out);
    }
}

fn drain(o: &mut Output, out: &mut Vec<(usize, RecordBatch)>) {
    for port in 0..o.ports() {
        out.extend(o.take(port).into_iter().map(|b| (port, b)));
    }
}

fn close(op: &mut dyn Operator, out: &mut Vec<(usize, RecordBatch)>) {
    let mut o = Output::new();
    op.close(&mut o).unwrap();
    drain(&mut o, out);
}

/// Output of the whole input, uninterrupted, closed at the end.
pub(crate) fn run(make: &dyn Fn() -> Box<dyn Operator>, steps: &[Step]) -> Vec<String> {
    let mut op = started(make());
    let mut out = Vec::new();
    feed(op.as_mut(), steps, &mut out);
    close(op.as_mut(), &mut out);
    lines(&out)
}

/// The state after feeding `steps`, through its bytes.
pub(crate) fn state_after(make: &dyn Fn() -> Box<dyn Operator>, steps: &[Step]) -> OperatorState {
    let mut op = started(make());
    feed(op.as_mut(), steps, &mut Vec::new());
    let state = op
        .checkpoint(&barrier())
        .unwrap()
        .expect("a stateful operator");
    OperatorState::decode(&state.encode().unwrap()).unwrap()
}

fn barrier() -> Barrier {
    Barrier {
        id: 1,
        then_stop: false,
    }
}

/// For a checkpoint after step `k`: the output when a fresh operator restored from it (the
/// state through bytes) takes over, and when the checkpointed operator itself goes on. Both must
/// be the uninterrupted output.
pub(crate) fn check_at(
    make: &dyn Fn() -> Box<dyn Operator>,
    steps: &[Step],
    k: usize,
    expected: &[String],
) {
    let mut first = started(make());
    let mut before = Vec::new();
    feed(first.as_mut(), &steps[..k], &mut before);
    let state = first
        .checkpoint(&barrier())
        .unwrap()
        .expect("a stateful operator");
    let bytes = state.encode().unwrap();
    let decoded = OperatorState::decode(&bytes).unwrap();
    assert_eq!(decoded, state, "state changed through bytes");

    let mut resumed = make();
    resumed.restore(decoded).unwrap();
    let mut resumed = started(resumed);
    let mut out = before.clone();
    feed(resumed.as_mut(), &steps[k..], &mut out);
    close(resumed.as_mut(), &mut out);
    assert_eq!(lines(&out), expected, "restored after step {k}");

    let mut out = before;
    feed(first.as_mut(), &steps[k..], &mut out);
    close(first.as_mut(), &mut out);
    assert_eq!(
        lines(&out),
        expected,
        "went on after a checkpoint at step {k}"
    );
}

/// [`check_at`] after every step, and the uninterrupted output (for more checks).
pub(crate) fn check_everywhere(
    make: &dyn Fn() -> Box<dyn Operator>,
    steps: &[Step],
) -> Vec<String> {
    let expected = run(make, steps);
    for k in 0..=steps.len() {
        check_at(make, steps, k, &expected);
    }
    expected
}

/// Asserts restoring `state` into `op` fails as incompatible.
pub(crate) fn assert_refused(mut op: Box<dyn Operator>, state: OperatorState) {
    match op.restore(state) {
        Err(crate::Error::IncompatibleState(_)) => {}
        other => panic!("expected IncompatibleState, got {other:?}"),
    }
}
