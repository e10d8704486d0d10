//! The regular join against a model: random inserts and retractions on both sides, in random
//! batches, for each join type, with and without a residual condition. The output, applied as
//! a changelog, must never retract a row it has not inserted, and must end equal to the join
//! (computed naively) of what both sides hold at the end, also when the join is checkpointed
//! and restored into a fresh operator at a random point.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;
use streams_core::arrow::array::{Array, AsArray, Int8Array, Int64Array, RecordBatch};
use streams_core::arrow::datatypes::{DataType, Field, Int8Type, Int64Type, Schema, SchemaRef};
use streams_core::changelog::{DELETE, INSERT, OP_COLUMN, UPDATE_AFTER, UPDATE_BEFORE};
use streams_core::datafusion::logical_expr::Operator as BinOp;
use streams_core::datafusion::physical_expr::PhysicalExpr;
use streams_core::datafusion::physical_expr::expressions::{BinaryExpr, Column};
use streams_core::ops::join::{JoinSpec, JoinType, RegularJoinConfig};
use streams_core::state::OperatorState;
use streams_core::{Barrier, Operator, OperatorFactory, Output};

type Row = (Option<i64>, Option<i64>, Option<i64>, Option<i64>);

/// One change to one side: insert `(k, v)`, or retract the `n`-th row it holds now.
#[derive(Clone, Debug)]
enum Change {
    Insert(i64, i64),
    Retract(usize),
}

fn side_schema(names: [&str; 2], updates: bool) -> SchemaRef {
    let mut fields = vec![
        Field::new(names[0], DataType::Int64, true),
        Field::new(names[1], DataType::Int64, true),
    ];
    if updates {
        fields.push(Field::new(OP_COLUMN, DataType::Int8, false));
    }
    Arc::new(Schema::new(fields))
}

fn config(join_type: JoinType, updates: [bool; 2], filter: bool) -> RegularJoinConfig {
    let outer = join_type.outer();
    let joined = Arc::new(Schema::new(vec![
        Field::new("k", DataType::Int64, true),
        Field::new("v", DataType::Int64, true),
        Field::new("k2", DataType::Int64, true),
        Field::new("w", DataType::Int64, true),
    ]));
    let mut out: Vec<Field> = joined.fields().iter().map(|f| f.as_ref().clone()).collect();
    let emits_updates = outer.iter().any(|o| *o) || updates.iter().any(|u| *u);
    if emits_updates {
        out.push(Field::new(OP_COLUMN, DataType::Int8, false));
    }
    let key = |i: usize| Arc::new(Column::new("k", i)) as Arc<dyn PhysicalExpr>;
    // `v <= w` over the joined row.
    let residual = filter.then(|| {
        Arc::new(BinaryExpr::new(
            Arc::new(Column::new("v", 1)),
            BinOp::LtEq,
            Arc::new(Column::new("w", 3)),
        )) as Arc<dyn PhysicalExpr>
    });
    RegularJoinConfig {
        join: JoinSpec {
            left_keys: vec![key(0)],
            right_keys: vec![key(0)],
            filter: residual,
            join_type,
            joined_schema: joined,
        },
        outer,
        input_schemas: [
            side_schema(["k", "v"], updates[0]),
            side_schema(["k2", "w"], updates[1]),
        ],
        output_schema: Arc::new(Schema::new(out)),
        ttl: None,
        cache: None,
    }
}

/// Turns changes into batches (with the change column when `updates`), tracking what the side
/// holds; retractions of plain streams are skipped.
fn batches(
    schema: &SchemaRef,
    changes: &[Change],
    chunk: usize,
    updates: bool,
    held: &mut Vec<(i64, i64)>,
) -> Vec<RecordBatch> {
    let mut rows: Vec<(i64, i64, i8)> = Vec::new();
    for c in changes {
        match c {
            Change::Insert(k, v) => {
                held.push((*k, *v));
                rows.push((
                    *k,
                    *v,
                    if rows.len().is_multiple_of(2) {
                        INSERT
                    } else {
                        UPDATE_AFTER
                    },
                ));
            }
            Change::Retract(n) if updates && !held.is_empty() => {
                let (k, v) = held.remove(n % held.len());
                rows.push((
                    k,
                    v,
                    if n.is_multiple_of(2) {
                        DELETE
                    } else {
                        UPDATE_BEFORE
                    },
                ));
            }
            Change::Retract(_) => {}
        }
    }
    rows.chunks(chunk.max(1))
        .map(|c| {
            let mut cols: Vec<Arc<dyn Array>> = vec![
                Arc::new(Int64Array::from_iter_values(c.iter().map(|r| r.0))),
                Arc::new(Int64Array::from_iter_values(c.iter().map(|r| r.1))),
            ];
            if updates {
                cols.push(Arc::new(Int8Array::from_iter_values(c.iter().map(|r| r.2))));
            }
            RecordBatch::try_new(Arc::clone(schema), cols).unwrap()
        })
        .collect()
}

fn reference(
    left: &[(i64, i64)],
    right: &[(i64, i64)],
    join_type: JoinType,
    filter: bool,
) -> BTreeMap<Row, i64> {
    let matches = |l: &(i64, i64), r: &(i64, i64)| l.0 == r.0 && (!filter || l.1 <= r.1);
    let mut out = BTreeMap::new();
    let [outer_left, outer_right] = join_type.outer();
    for l in left {
        let mut any = false;
        for r in right.iter().filter(|r| matches(l, r)) {
            any = true;
            *out.entry((Some(l.0), Some(l.1), Some(r.0), Some(r.1)))
                .or_insert(0) += 1;
        }
        if !any && outer_left {
            *out.entry((Some(l.0), Some(l.1), None, None)).or_insert(0) += 1;
        }
    }
    for r in right {
        if outer_right && !left.iter().any(|l| matches(l, r)) {
            *out.entry((None, None, Some(r.0), Some(r.1))).or_insert(0) += 1;
        }
    }
    out
}

/// Applies output batches; panics on a retraction of a row not in the table.
fn apply(table: &mut BTreeMap<Row, i64>, batch: &RecordBatch) {
    let col = |i: usize| batch.column(i).as_primitive::<Int64Type>();
    let ops = (batch.num_columns() > 4).then(|| batch.column(4).as_primitive::<Int8Type>());
    for r in 0..batch.num_rows() {
        let get = |i: usize| col(i).is_valid(r).then(|| col(i).value(r));
        let row = (get(0), get(1), get(2), get(3));
        match ops.map_or(INSERT, |o| o.value(r)) {
            INSERT | UPDATE_AFTER => *table.entry(row).or_insert(0) += 1,
            _ => {
                let n = table
                    .get_mut(&row)
                    .unwrap_or_else(|| panic!("retracted {row:?}, never inserted"));
                *n -= 1;
                if *n == 0 {
                    table.remove(&row);
                }
            }
        }
    }
}

/// A fresh join restored from `op`'s checkpoint state, encoded and decoded.
fn restored(op: &mut dyn Operator, cfg: &RegularJoinConfig) -> Box<dyn Operator> {
    let barrier = Barrier {
        id: 1,
        then_stop: false,
    };
    let state = op
        .checkpoint(&barrier)
        .unwrap()
        .expect("a join keeps state");
    let state = OperatorState::decode(&state.encode().unwrap()).unwrap();
    let mut fresh = cfg.create(0, 1).unwrap();
    fresh.restore(state).unwrap();
    fresh
}

fn change() -> impl Strategy<Value = Change> {
    prop_oneof![
        3 => (0i64..3, 0i64..4).prop_map(|(k, v)| Change::Insert(k, v)),
        2 => (0usize..16).prop_map(Change::Retract),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn applied_output_is_the_join_of_what_both_sides_hold(
        left in proptest::collection::vec(change(), 0..30),
        right in proptest::collection::vec(change(), 0..30),
        chunks in (1usize..5, 1usize..5),
        order in proptest::collection::vec(any::<bool>(), 0..40),
        join_type in prop_oneof![Just(JoinType::Inner), Just(JoinType::Left), Just(JoinType::Right), Just(JoinType::Full)],
        updates in (any::<bool>(), any::<bool>()),
        filter in any::<bool>(),
        cut in 0usize..64,
        cache in proptest::option::of(1usize..3),
    ) {
        let updates = [updates.0, updates.1];
        let mut cfg = config(join_type, updates, filter);
        // With a cache of one or two keys per side, most rows live in the store.
        cfg.cache = cache;
        let storage = streams_core::testing::MemoryCheckpoints::new();
        let ctx = streams_core::OperatorContext {
            node: 0,
            name: "join".into(),
            subtask: 0,
            parallelism: 1,
            metrics: Arc::new(streams_core::metrics::OperatorMetrics::default()),
            storage: Some(Arc::new(storage)),
        };
        let (mut held_l, mut held_r) = (Vec::new(), Vec::new());
        let mut lb = batches(&cfg.input_schemas[0], &left, chunks.0, updates[0], &mut held_l).into_iter();
        let mut rb = batches(&cfg.input_schemas[1], &right, chunks.1, updates[1], &mut held_r).into_iter();
        // Interleave the two sides as `order` says, then drain both.
        let mut inputs: Vec<(usize, RecordBatch)> = Vec::new();
        for pick_left in order {
            let next = if pick_left { lb.next().map(|b| (0, b)) } else { rb.next().map(|b| (1, b)) };
            inputs.extend(next);
        }
        inputs.extend(lb.map(|b| (0, b)));
        inputs.extend(rb.map(|b| (1, b)));
        let cut = cut % inputs.len().max(1);
        let mut op = cfg.create(0, 1).unwrap();
        op.start(&ctx).unwrap();
        let mut table = BTreeMap::new();
        for (i, (input, b)) in inputs.into_iter().enumerate() {
            if i == cut {
                // Resume from a checkpoint here, through bytes, in a fresh operator (the
                // store goes on as the checkpoint left it: nothing was written since).
                op = restored(op.as_mut(), &cfg);
                op.start(&ctx).unwrap();
            }
            let mut out = Output::new();
            op.process_batch(input, b, &mut out).unwrap();
            for o in out.take(0) {
                assert_eq!(o.schema(), cfg.output_schema);
                apply(&mut table, &o);
            }
        }
        prop_assert_eq!(table, reference(&held_l, &held_r, join_type, filter));
    }
}

/// With a state TTL, rows of a key nobody wrote for the TTL stop joining; keys written since
/// keep joining, and without a TTL nothing is forgotten.
#[test]
fn rows_past_their_ttl_are_forgotten() {
    let run = |ttl: Option<Duration>| {
        let mut config = config(JoinType::Inner, [false, false], false);
        config.ttl = ttl;
        let mut op = config.create(0, 1).unwrap();
        let left = &config.input_schemas[0];
        let right = &config.input_schemas[1];
        let mut out = Output::new();
        let mut held = Vec::new();
        let l = batches(
            left,
            &[Change::Insert(1, 10), Change::Insert(2, 20)],
            8,
            false,
            &mut held,
        );
        op.process_batch(0, l[0].clone(), &mut out).unwrap();
        std::thread::sleep(Duration::from_millis(80));
        // Key 2 is written again on the left: its clock starts over; key 1's does not.
        let l = batches(left, &[Change::Insert(2, 21)], 8, false, &mut held);
        op.process_batch(0, l[0].clone(), &mut out).unwrap();
        op.on_timer(&mut out).unwrap();
        let r = batches(
            right,
            &[Change::Insert(1, 5), Change::Insert(2, 6)],
            8,
            false,
            &mut held,
        );
        op.process_batch(1, r[0].clone(), &mut out).unwrap();
        let mut table = BTreeMap::new();
        for b in out.take(0) {
            apply(&mut table, &b);
        }
        table.keys().map(|row| (row.0, row.1)).collect::<Vec<_>>()
    };
    assert_eq!(
        run(None),
        vec![
            (Some(1), Some(10)),
            (Some(2), Some(20)),
            (Some(2), Some(21))
        ]
    );
    assert_eq!(
        run(Some(Duration::from_millis(50))),
        vec![(Some(2), Some(20)), (Some(2), Some(21))],
        "key 1's row expired; key 2's rows were kept with their key"
    );
}

/// Many retractions make a side compact itself (most stored rows are garbage) while rows and
/// match counts stay right: an outer join over update streams still equals the model.
#[test]
fn a_side_mostly_retracted_is_compacted_without_changing_results() {
    for join_type in [JoinType::Left, JoinType::Full] {
        let cfg = config(join_type, [true, true], false);
        let mut op = cfg.create(0, 1).unwrap();
        let (mut held_l, mut held_r) = (Vec::new(), Vec::new());
        let mut left: Vec<Change> = (0..12_000).map(|i| Change::Insert(i % 40, i)).collect();
        // Retract 11,000 of them, spread over the keys.
        left.extend((0..11_000).map(|i| Change::Retract(i * 7919)));
        // The right side comes and goes all along, so that left rows' match counts keep
        // mattering after compactions (a padded row returns when its last match goes).
        let mut right = Vec::new();
        for i in 0..2_300 {
            right.push(Change::Insert(i % 50, i));
            if i % 3 == 2 {
                right.push(Change::Retract(i as usize * 31));
            }
        }
        let lb = batches(&cfg.input_schemas[0], &left, 500, true, &mut held_l);
        let rb = batches(&cfg.input_schemas[1], &right, 66, true, &mut held_r);
        let mut table = BTreeMap::new();
        let mut rb = rb.into_iter();
        for b in lb {
            let mut out = Output::new();
            op.process_batch(0, b, &mut out).unwrap();
            if let Some(r) = rb.next() {
                op.process_batch(1, r, &mut out).unwrap();
            }
            for o in out.take(0) {
                apply(&mut table, &o);
            }
        }
        for r in rb {
            let mut out = Output::new();
            op.process_batch(1, r, &mut out).unwrap();
            for o in out.take(0) {
                apply(&mut table, &o);
            }
        }
        assert_eq!(held_l.len(), 1_000);
        assert_eq!(
            table,
            reference(&held_l, &held_r, join_type, false),
            "{join_type:?}"
        );
    }
}
