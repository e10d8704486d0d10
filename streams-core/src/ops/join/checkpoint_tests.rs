//! Checkpoint and restore of the three joins. Each input is cut at every step: the state taken
//! there, round-tripped through bytes into a fresh operator (and once more out of that one),
//! must give what the uninterrupted run gives (same rows, same forwarded watermarks, and for
//! update streams a changelog that never retracts what it did not insert); the operator that
//! took the checkpoint must go on unchanged. State of another shape is refused.

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, Int8Array, Int64Array, RecordBatch, StringArray,
    TimestampMillisecondArray,
};
use datafusion::arrow::datatypes::{DataType, Field, Int8Type, Schema, SchemaRef, TimeUnit};
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use datafusion::logical_expr::Operator as BinOp;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::expressions::{BinaryExpr, Column};

use super::{IntervalJoinConfig, JoinSpec, JoinType, RegularJoinConfig, WindowJoinConfig};
use crate::Error;
use crate::changelog::{DELETE, INSERT, OP_COLUMN, UPDATE_AFTER, UPDATE_BEFORE};
use crate::message::Barrier;
use crate::metrics::OperatorMetrics;
use crate::operator::{Operator, OperatorContext, OperatorFactory, Output};
use crate::state::OperatorState;
use crate::window::WindowSpec;

/// One input event: rows on input 0 or 1, or a watermark.
#[derive(Clone, Debug)]
enum Step {
    Rows(usize, RecordBatch),
    Watermark(i64),
}

/// What a run emitted, in order: `(port, row, change kind)` and forwarded watermarks.
#[derive(Clone, Debug, Default)]
struct Run {
    rows: Vec<(usize, String, i8)>,
    watermarks: Vec<Option<i64>>,
}

impl Run {
    fn then(mut self, next: Run) -> Run {
        self.rows.extend(next.rows);
        self.watermarks.extend(next.watermarks);
        self
    }

    fn sorted(&self) -> Vec<(usize, String, i8)> {
        let mut rows = self.rows.clone();
        rows.sort();
        rows
    }

    /// The rows applied as a changelog; panics on a retraction of a row not present.
    fn applied(&self) -> BTreeMap<(usize, String), i64> {
        let mut table = BTreeMap::new();
        for (port, row, op) in &self.rows {
            let key = (*port, row.clone());
            if matches!(*op, INSERT | UPDATE_AFTER) {
                *table.entry(key).or_insert(0) += 1;
                continue;
            }
            let n = table
                .get_mut(&key)
                .unwrap_or_else(|| panic!("retracted {row}, never inserted"));
            *n -= 1;
            if *n == 0 {
                table.remove(&key);
            }
        }
        table
    }
}

fn ctx() -> OperatorContext {
    OperatorContext {
        node: 0,
        name: "join".into(),
        subtask: 0,
        parallelism: 1,
        metrics: Arc::new(OperatorMetrics::default()),
        storage: None,
    }
}

fn fresh(factory: &dyn OperatorFactory) -> Box<dyn Operator> {
    let mut op = factory.create(0, 1).unwrap();
    op.start(&ctx()).unwrap();
    op
}

fn collect(out: &mut Output, run: &mut Run) {
    for port in 0..out.ports() {
        for b in out.take(port) {
            let changes = b.schema().fields().last().map(|f| f.name().as_str()) == Some(OP_COLUMN);
            let width = b.num_columns() - usize::from(changes);
            let opts = FormatOptions::default().with_null("NULL");
            let fmts: Vec<_> = b.columns()[..width]
                .iter()
                .map(|c| ArrayFormatter::try_new(c.as_ref(), &opts).unwrap())
                .collect();
            for r in 0..b.num_rows() {
                let row: Vec<String> = fmts.iter().map(|f| f.value(r).to_string()).collect();
                let op = if changes {
                    b.column(width).as_primitive::<Int8Type>().value(r)
                } else {
                    INSERT
                };
                run.rows.push((port, row.join(" | "), op));
            }
        }
    }
}

/// Feeds `steps` to `op`, then closes it when `close`.
fn drive(op: &mut dyn Operator, steps: &[Step], close: bool) -> Run {
    let mut run = Run::default();
    let mut out = Output::new();
    for step in steps {
        match step {
            Step::Rows(input, b) => op.process_batch(*input, b.clone(), &mut out).unwrap(),
            Step::Watermark(wm) => run
                .watermarks
                .push(op.process_watermark(*wm, &mut out).unwrap()),
        }
        collect(&mut out, &mut run);
    }
    if close {
        op.close(&mut out).unwrap();
        collect(&mut out, &mut run);
    }
    run
}

/// The state of `op` through bytes into a fresh operator of `factory`, started.
fn round_trip(op: &mut dyn Operator, factory: &dyn OperatorFactory) -> Box<dyn Operator> {
    let barrier = Barrier {
        id: 1,
        then_stop: false,
    };
    let state = op
        .checkpoint(&barrier)
        .unwrap()
        .expect("a join keeps state");
    let state = OperatorState::decode(&state.encode().unwrap()).unwrap();
    let mut restored = factory.create(0, 1).unwrap();
    restored.restore(state).unwrap();
    restored.start(&ctx()).unwrap();
    restored
}

/// Cuts `steps` everywhere and compares each way of going on with the uninterrupted run.
fn check_cuts(factory: &dyn OperatorFactory, steps: &[Step]) {
    let whole = drive(fresh(factory).as_mut(), steps, true);
    assert!(!whole.rows.is_empty(), "the test input joins nothing");
    let expected = (whole.sorted(), whole.applied());
    for k in 0..=steps.len() {
        let mut first = fresh(factory);
        let before = drive(first.as_mut(), &steps[..k], false);
        let mut restored = round_trip(first.as_mut(), factory);
        let mut twice = round_trip(restored.as_mut(), factory);
        let runs = [
            ("restored", drive(restored.as_mut(), &steps[k..], true)),
            ("restored twice", drive(twice.as_mut(), &steps[k..], true)),
            ("continued", drive(first.as_mut(), &steps[k..], true)),
        ];
        for (what, after) in runs {
            let run = before.clone().then(after);
            assert_eq!(run.watermarks, whole.watermarks, "{what} at step {k}");
            assert_eq!(
                (run.sorted(), run.applied()),
                expected,
                "{what} at step {k}"
            );
        }
    }
}

/// A tiny deterministic generator.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> i64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n) as i64
    }

    fn key(&mut self) -> Option<i64> {
        (self.below(8) != 0).then(|| self.below(3))
    }
}

fn key_array(key_type: &DataType, keys: impl Iterator<Item = Option<i64>>) -> ArrayRef {
    match key_type {
        DataType::Utf8 => Arc::new(
            keys.map(|k| k.map(|k| format!("k{k}")))
                .collect::<StringArray>(),
        ),
        _ => Arc::new(keys.collect::<Int64Array>()),
    }
}

// ---- window and interval joins: inputs `(k, v, ts)` and `(k2, w, ts2)` ----

fn timed_schema(side: usize, key_type: &DataType) -> SchemaRef {
    let names = [["k", "v", "ts"], ["k2", "w", "ts2"]][side];
    Arc::new(Schema::new(vec![
        Field::new(names[0], key_type.clone(), true),
        Field::new(names[1], DataType::Int64, false),
        Field::new(
            names[2],
            DataType::Timestamp(TimeUnit::Millisecond, None),
            false,
        ),
    ]))
}

fn timed_spec(join_type: JoinType, filter: bool, key_type: &DataType) -> JoinSpec {
    let fields: Vec<Field> = (0..2)
        .flat_map(|s| timed_schema(s, key_type).fields().to_vec())
        .map(|f| f.as_ref().clone().with_nullable(true))
        .collect();
    JoinSpec {
        left_keys: vec![Arc::new(Column::new("k", 0))],
        right_keys: vec![Arc::new(Column::new("k2", 0))],
        // `v <= w` over the joined row.
        filter: filter.then(|| {
            Arc::new(BinaryExpr::new(
                Arc::new(Column::new("v", 1)),
                BinOp::LtEq,
                Arc::new(Column::new("w", 4)),
            )) as Arc<dyn PhysicalExpr>
        }),
        join_type,
        joined_schema: Arc::new(Schema::new(fields)),
    }
}

fn window_join(
    window: Option<WindowSpec>,
    join_type: JoinType,
    filter: bool,
    key_type: &DataType,
) -> WindowJoinConfig {
    let join = timed_spec(join_type, filter, key_type);
    let bound = |n: &str| Field::new(n, DataType::Timestamp(TimeUnit::Millisecond, None), false);
    let mut fields = vec![bound("window_start"), bound("window_end")];
    fields.extend(
        join.joined_schema
            .fields()
            .iter()
            .map(|f| f.as_ref().clone()),
    );
    WindowJoinConfig {
        join,
        window,
        left_time: 2,
        right_time: 2,
        input_schemas: [timed_schema(0, key_type), timed_schema(1, key_type)],
        output_schema: Arc::new(Schema::new(fields)),
        allowed_lateness: if window.is_some() { 3 } else { 0 },
        late_output: true,
    }
}

fn interval_join(join_type: JoinType, filter: bool, key_type: &DataType) -> IntervalJoinConfig {
    IntervalJoinConfig {
        join: timed_spec(join_type, filter, key_type),
        left_time: 2,
        right_time: 2,
        input_schemas: [timed_schema(0, key_type), timed_schema(1, key_type)],
        lower: -4,
        upper: 6,
        late_output: true,
    }
}

/// Batches on random sides with rows near a rising time (some late), and watermarks.
fn timed_steps(seed: u64, key_type: &DataType) -> Vec<Step> {
    let mut rng = Rng(seed);
    let mut steps = Vec::new();
    for i in 0..16 {
        let side = rng.below(2) as usize;
        let base = i * 5;
        let rows: Vec<(Option<i64>, i64, i64)> = (0..1 + rng.below(4))
            .map(|_| (rng.key(), rng.below(10), base + rng.below(18) - 12))
            .collect();
        let b = RecordBatch::try_new(
            timed_schema(side, key_type),
            vec![
                key_array(key_type, rows.iter().map(|r| r.0)),
                Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.1))),
                Arc::new(TimestampMillisecondArray::from_iter_values(
                    rows.iter().map(|r| r.2),
                )),
            ],
        )
        .unwrap();
        steps.push(Step::Rows(side, b));
        if i % 2 == 1 {
            steps.push(Step::Watermark(base - 2));
        }
    }
    steps
}

#[test]
fn window_join_resumes_from_any_checkpoint() {
    let tumble = Some(WindowSpec::Tumble {
        size: 10,
        offset: 0,
    });
    let hop = Some(WindowSpec::Hop {
        size: 20,
        slide: 10,
    });
    let cases = [
        (tumble, JoinType::Inner, false),
        (tumble, JoinType::Left, true),
        (hop, JoinType::Inner, true),
        (hop, JoinType::Left, false),
        (None, JoinType::Left, false),
    ];
    for (seed, (window, join_type, filter)) in (1..).zip(cases) {
        let config = window_join(window, join_type, filter, &DataType::Int64);
        check_cuts(&config, &timed_steps(seed, &DataType::Int64));
    }
}

#[test]
fn interval_join_resumes_from_any_checkpoint() {
    for (seed, (join_type, filter)) in (10..).zip([
        (JoinType::Inner, false),
        (JoinType::Inner, true),
        (JoinType::Left, false),
        (JoinType::Left, true),
    ]) {
        let config = interval_join(join_type, filter, &DataType::Int64);
        check_cuts(&config, &timed_steps(seed, &DataType::Int64));
    }
}

// ---- the regular join: inputs `(k, v)` and `(k2, w)`, each plain or an update stream ----

fn plain_schema(side: usize, updates: bool, key_type: &DataType) -> SchemaRef {
    let names = [["k", "v"], ["k2", "w"]][side];
    let mut fields = vec![
        Field::new(names[0], key_type.clone(), true),
        Field::new(names[1], DataType::Int64, true),
    ];
    if updates {
        fields.push(Field::new(OP_COLUMN, DataType::Int8, false));
    }
    Arc::new(Schema::new(fields))
}

fn regular_join(
    join_type: JoinType,
    updates: [bool; 2],
    filter: bool,
    key_type: &DataType,
) -> RegularJoinConfig {
    let outer = join_type.outer();
    let data = |s: usize| plain_schema(s, false, key_type).fields().to_vec();
    let joined = Arc::new(Schema::new([data(0), data(1)].concat()));
    let mut out = joined.fields().to_vec();
    if outer.contains(&true) || updates.contains(&true) {
        out.push(Arc::new(Field::new(OP_COLUMN, DataType::Int8, false)));
    }
    let mut join = timed_spec(join_type, false, key_type);
    join.joined_schema = joined;
    join.filter = filter.then(|| {
        Arc::new(BinaryExpr::new(
            Arc::new(Column::new("v", 1)),
            BinOp::LtEq,
            Arc::new(Column::new("w", 3)),
        )) as Arc<dyn PhysicalExpr>
    });
    RegularJoinConfig {
        join,
        outer,
        input_schemas: [
            plain_schema(0, updates[0], key_type),
            plain_schema(1, updates[1], key_type),
        ],
        output_schema: Arc::new(Schema::new(out)),
        ttl: None,
        cache: None,
    }
}

/// Batches of inserts and (on update streams) retractions of rows the side holds, including
/// duplicates, null keys, and retractions of rows inserted earlier in the same batch.
fn change_steps(seed: u64, updates: [bool; 2], key_type: &DataType) -> Vec<Step> {
    let mut rng = Rng(seed);
    let mut held: [Vec<(Option<i64>, i64)>; 2] = [Vec::new(), Vec::new()];
    let mut steps = Vec::new();
    for _ in 0..18 {
        let side = rng.below(2) as usize;
        let mut rows: Vec<(Option<i64>, i64, i8)> = Vec::new();
        for _ in 0..1 + rng.below(4) {
            let h = &mut held[side];
            if updates[side] && !h.is_empty() && rng.below(5) < 2 {
                let (k, v) = h.remove(rng.below(h.len() as u64) as usize);
                let op = [DELETE, UPDATE_BEFORE][rng.below(2) as usize];
                rows.push((k, v, op));
            } else {
                let (k, v) = (rng.key(), rng.below(4));
                h.push((k, v));
                rows.push((k, v, [INSERT, UPDATE_AFTER][rng.below(2) as usize]));
            }
        }
        let mut columns = vec![
            key_array(key_type, rows.iter().map(|r| r.0)),
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.1))) as ArrayRef,
        ];
        if updates[side] {
            columns.push(Arc::new(Int8Array::from_iter_values(
                rows.iter().map(|r| r.2),
            )));
        }
        let schema = plain_schema(side, updates[side], key_type);
        steps.push(Step::Rows(
            side,
            RecordBatch::try_new(schema, columns).unwrap(),
        ));
    }
    steps
}

#[test]
fn regular_join_resumes_from_any_checkpoint() {
    let mut seed = 100;
    for join_type in [
        JoinType::Inner,
        JoinType::Left,
        JoinType::Right,
        JoinType::Full,
    ] {
        for updates in [[false, false], [true, true], [true, false], [false, true]] {
            for filter in [false, true] {
                seed += 1;
                let config = regular_join(join_type, updates, filter, &DataType::Int64);
                check_cuts(&config, &change_steps(seed, updates, &DataType::Int64));
            }
        }
    }
}

/// A regular join's state holds only the rows each side holds now (with a key: a row with a
/// null key joins nothing and is retracted without looking it up), not every batch it saw.
#[test]
fn regular_join_state_keeps_only_held_rows() {
    let config = regular_join(JoinType::Full, [true, true], false, &DataType::Int64);
    let steps = change_steps(7, [true, true], &DataType::Int64);
    let mut held = [0i64; 2];
    let mut seen = 0;
    for step in &steps {
        let Step::Rows(side, b) = step else { continue };
        let ops = b.column(2).as_primitive::<Int8Type>();
        for r in (0..b.num_rows()).filter(|r| b.column(0).is_valid(*r)) {
            held[*side] += if matches!(ops.value(r), INSERT | UPDATE_AFTER) {
                1
            } else {
                -1
            };
            seen += 1;
        }
    }
    let state = state_after(&config, &steps);
    let rows = |name| -> i64 { state.batches_named(name).map(|b| b.num_rows() as i64).sum() };
    assert_eq!([rows("left"), rows("right")], held);
    assert!(held[0] + held[1] < seen, "the input retracts some rows");
}

fn state_after(factory: &dyn OperatorFactory, steps: &[Step]) -> OperatorState {
    let mut op = fresh(factory);
    drive(op.as_mut(), steps, false);
    let barrier = Barrier {
        id: 1,
        then_stop: false,
    };
    let state = op.checkpoint(&barrier).unwrap().unwrap();
    OperatorState::decode(&state.encode().unwrap()).unwrap()
}

fn assert_refused(factory: &dyn OperatorFactory, state: OperatorState, what: &str) {
    let mut op = factory.create(0, 1).unwrap();
    match op.restore(state) {
        Err(Error::IncompatibleState(_)) => {}
        other => panic!("{what}: expected IncompatibleState, got {other:?}"),
    }
}

#[test]
fn state_of_other_schemas_or_operators_is_refused() {
    let (int, utf8) = (DataType::Int64, DataType::Utf8);
    let tumble = Some(WindowSpec::Tumble {
        size: 10,
        offset: 0,
    });
    let window = |t: &DataType| window_join(tumble, JoinType::Left, false, t);
    let interval = |t: &DataType| interval_join(JoinType::Left, false, t);
    let regular = |t: &DataType| regular_join(JoinType::Full, [true, false], false, t);
    let states = [
        state_after(&window(&int), &timed_steps(1, &int)),
        state_after(&interval(&int), &timed_steps(2, &int)),
        state_after(&regular(&int), &change_steps(3, [true, false], &int)),
    ];
    let factories: [Box<dyn OperatorFactory>; 3] = [
        Box::new(window(&utf8)),
        Box::new(interval(&utf8)),
        Box::new(regular(&utf8)),
    ];
    let same: [Box<dyn OperatorFactory>; 3] = [
        Box::new(window(&int)),
        Box::new(interval(&int)),
        Box::new(regular(&int)),
    ];
    for (i, state) in states.iter().enumerate() {
        // Another key type: the rows no longer fit the inputs.
        assert_refused(factories[i].as_ref(), state.clone(), "another schema");
        // Another kind of join, and no state at all.
        for (j, other) in same.iter().enumerate() {
            if i == j {
                other.create(0, 1).unwrap().restore(state.clone()).unwrap();
            } else {
                assert_refused(other.as_ref(), state.clone(), "another join");
            }
        }
        assert_refused(same[i].as_ref(), OperatorState::new(), "empty state");
    }
}
