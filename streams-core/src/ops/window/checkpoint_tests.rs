//! Window aggregates resume from a checkpoint taken anywhere with the results of an
//! uninterrupted run, for every window kind and for aggregates with vectorized accumulators,
//! row accumulators (count distinct) and bytes (max of a string).

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

use std::sync::Arc;
use std::time::Duration;

use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::functions_aggregate::average::avg_udaf;
use datafusion::functions_aggregate::count::count_udaf;
use proptest::prelude::*;

use super::{AggregateSpec, WindowAggregate, WindowAggregateConfig};
use crate::operator::{Operator, Output};
use crate::ops::testkit::{
    Row, Step, aggregate, all_aggregates, assert_refused, batch, check_at, check_everywhere,
    column, feed, lines, schema, state_after,
};
use crate::window::WindowSpec;

fn config(spec: WindowSpec, keyed: bool, aggregates: Vec<AggregateSpec>) -> WindowAggregateConfig {
    let input = schema();
    let ts = DataType::Timestamp(TimeUnit::Millisecond, None);
    let keys = if keyed {
        vec![column(&input, "k")]
    } else {
        vec![]
    };
    let key_fields: Vec<Field> = if keyed {
        vec![Field::new("k", DataType::Utf8, false)]
    } else {
        vec![]
    };
    let mut fields = vec![
        Field::new("window_start", ts.clone(), false),
        Field::new("window_end", ts.clone(), false),
        Field::new("window_time", ts, false),
    ];
    fields.extend(key_fields.iter().cloned());
    fields.extend(aggregates.iter().map(|a| a.expr.field().as_ref().clone()));
    WindowAggregateConfig {
        spec,
        time_column: 2,
        keys,
        key_schema: Arc::new(Schema::new(key_fields)),
        aggregates,
        output_schema: Arc::new(Schema::new(fields)) as SchemaRef,
        allowed_lateness: 0,
        late_output: true,
        early_fire: None,
    }
}

fn maker(config: WindowAggregateConfig) -> impl Fn() -> Box<dyn Operator> {
    move || Box::new(WindowAggregate::new(config.clone()).unwrap()) as Box<dyn Operator>
}

/// Rows over several windows and keys, out of order, with watermarks between batches and
/// rows that arrive late for some windows but not all.
fn script() -> Vec<Step> {
    let batches: [&[Row]; 8] = [
        &[("a", 1, 100), ("b", 2, 250), ("a", 3, 900)],
        &[("a", 1, 1_100), ("c", 7, 400), ("b", 2, 1_950)],
        &[("b", -4, 2_100), ("a", 3, 1_300)],
        &[("a", 5, 2_500), ("c", 6, 3_050), ("a", 5, 1_999)],
        &[("a", 8, 500), ("b", 1, 3_900), ("c", 2, 4_400)],
        &[("c", 3, 6_100), ("a", 1, 4_050), ("b", 9, 5_200)],
        &[("a", 2, 2_900), ("b", 9, 7_700), ("c", 1, 6_300)],
        &[("a", 4, 9_100), ("b", 3, 8_000)],
    ];
    let watermarks = [
        None,
        Some(1_000),
        Some(1_500),
        None,
        Some(3_000),
        Some(4_500),
        Some(6_000),
        Some(9_000),
    ];
    let mut steps = Vec::new();
    for (b, w) in batches.iter().zip(watermarks) {
        steps.push(Step::Batch(batch(b)));
        if let Some(w) = w {
            steps.push(Step::Watermark(w));
        }
    }
    steps
}

fn check(spec: WindowSpec, keyed: bool) {
    let make = maker(config(spec, keyed, all_aggregates(&schema())));
    let expected = check_everywhere(&make, &script());
    assert!(
        expected.iter().any(|l| l.starts_with("1: ")),
        "the script has late rows"
    );
    assert!(expected.len() > 5, "{expected:#?}");
}

#[test]
fn tumble_resumes_anywhere() {
    check(
        WindowSpec::Tumble {
            size: 1_000,
            offset: 0,
        },
        true,
    );
    check(
        WindowSpec::Tumble {
            size: 2_000,
            offset: 500,
        },
        false,
    );
}

#[test]
fn hop_resumes_anywhere() {
    let spec = WindowSpec::Hop {
        size: 2_000,
        slide: 500,
    };
    check(spec, true);
    check(spec, false);
}

#[test]
fn cumulate_resumes_anywhere() {
    let spec = WindowSpec::Cumulate {
        step: 500,
        max: 2_000,
    };
    check(spec, true);
    check(spec, false);
}

#[test]
fn session_resumes_anywhere() {
    // A gap long enough that rows bridge sessions (merged slots) before they fire.
    for gap in [400, 700] {
        check(WindowSpec::Session { gap }, true);
        check(WindowSpec::Session { gap }, false);
    }
}

#[test]
fn early_results_resume_anywhere() {
    // Early firing every batch (an interval of zero): results of open windows go out after
    // each batch, and sealing live panes for them must not change a later result.
    for spec in [
        WindowSpec::Hop {
            size: 2_000,
            slide: 500,
        },
        WindowSpec::Tumble {
            size: 1_000,
            offset: 0,
        },
    ] {
        let mut c = config(spec, true, all_aggregates(&schema()));
        c.early_fire = Some(Duration::ZERO);
        check_everywhere(&maker(c), &script());
    }
}

#[test]
fn held_back_early_results_go_out_after_restore() {
    // Two batches, a watermark, a batch.
    let steps = &script()[..4];
    let hop = WindowSpec::Hop {
        size: 2_000,
        slide: 500,
    };
    let with_early = |every| {
        let mut c = config(hop, true, all_aggregates(&schema()));
        c.early_fire = Some(every);
        maker(c)
    };
    let on_timer = |op: &mut dyn Operator| {
        let mut o = Output::new();
        op.on_timer(&mut o).unwrap();
        lines(&o.take(0).into_iter().map(|b| (0, b)).collect::<Vec<_>>())
    };
    // Every hour: the batches' early results wait; after a restore they are due.
    let slow = with_early(Duration::from_secs(3600));
    let mut op = slow();
    op.restore(state_after(&slow, steps)).unwrap();
    let held = on_timer(op.as_mut());
    // Every batch: the last batch's early results are what was held back.
    let fast = with_early(Duration::ZERO);
    let mut out = Vec::new();
    let mut reference = fast();
    feed(
        reference.as_mut(),
        &steps[..steps.len() - 1],
        &mut Vec::new(),
    );
    feed(reference.as_mut(), &steps[steps.len() - 1..], &mut out);
    assert!(!held.is_empty());
    assert_eq!(held, lines(&out));
    // Nothing arrived since the last early results: nothing is due after a restore.
    let mut op = fast();
    op.restore(state_after(&fast, steps)).unwrap();
    assert_eq!(on_timer(op.as_mut()), Vec::<String>::new());
}

#[test]
fn allowed_lateness_resumes_anywhere() {
    let mut c = config(
        WindowSpec::Tumble {
            size: 1_000,
            offset: 0,
        },
        true,
        all_aggregates(&schema()),
    );
    c.allowed_lateness = 700;
    check_everywhere(&maker(c), &script());
}

#[test]
fn state_of_other_aggregates_or_windows_is_refused() {
    let input = schema();
    let count = || vec![aggregate(count_udaf(), None, false, &input, "n")];
    let avg = || vec![aggregate(avg_udaf(), Some("v"), false, &input, "n")];
    let steps = &script()[..4];
    for spec in [
        WindowSpec::Hop {
            size: 2_000,
            slide: 500,
        },
        WindowSpec::Session { gap: 700 },
    ] {
        let state = state_after(&maker(config(spec, true, count())), steps);
        assert_refused(maker(config(spec, true, avg()))(), state.clone());
        assert_refused(maker(config(spec, false, count()))(), state.clone());
        let other = WindowSpec::Tumble {
            size: 2_000,
            offset: 0,
        };
        assert_refused(maker(config(other, true, count()))(), state);
    }
    // Pane state restored into sessions and back.
    let hop = WindowSpec::Hop {
        size: 2_000,
        slide: 500,
    };
    let state = state_after(&maker(config(hop, true, count())), steps);
    let session = WindowSpec::Session { gap: 2_000 };
    assert_refused(maker(config(session, true, count()))(), state);
}

#[test]
fn the_checkpoint_holds_pane_and_session_state() {
    // Not empty placeholders: the partial state of every open pane or session.
    let steps = &script()[..3];
    for (spec, name) in [
        (
            WindowSpec::Tumble {
                size: 1_000,
                offset: 0,
            },
            "pane_chunk",
        ),
        (WindowSpec::Session { gap: 700 }, "session_states"),
    ] {
        let state = state_after(&maker(config(spec, true, all_aggregates(&schema()))), steps);
        let rows: usize = state.batches_named(name).map(|b| b.num_rows()).sum();
        assert!(rows > 0, "{spec:?}: {state:?}");
        assert_eq!(state.value("watermark"), Some(1_000));
    }
}

fn spec_strategy() -> impl Strategy<Value = WindowSpec> {
    prop_oneof![
        (1i64..4).prop_map(|s| WindowSpec::Tumble {
            size: s * 100,
            offset: 0
        }),
        (1i64..3, 1i64..4).prop_map(|(slide, n)| WindowSpec::Hop {
            size: slide * n * 100,
            slide: slide * 100,
        }),
        (1i64..3, 1i64..4).prop_map(|(step, n)| WindowSpec::Cumulate {
            step: step * 100,
            max: step * n * 100,
        }),
        (50i64..300).prop_map(|gap| WindowSpec::Session { gap }),
    ]
}

/// Batches of (key, value, time offset) and, after each, whether a watermark follows.
fn steps_strategy() -> impl Strategy<Value = Vec<Step>> {
    const KEYS: [&str; 3] = ["a", "b", "c"];
    let row = (0usize..3, -5i64..20, -300i64..400);
    prop::collection::vec((prop::collection::vec(row, 1..6), any::<bool>()), 1..12).prop_map(
        |batches| {
            let mut steps = Vec::new();
            let mut now = 0i64;
            for (rows, watermark) in batches {
                now += 150;
                let rows: Vec<Row> = rows
                    .into_iter()
                    .map(|(k, v, dt)| (KEYS[k], v, (now + dt).max(0)))
                    .collect();
                steps.push(Step::Batch(batch(&rows)));
                if watermark {
                    steps.push(Step::Watermark(now - 100));
                }
            }
            steps
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn resuming_from_any_checkpoint_changes_no_result(
        spec in spec_strategy(),
        keyed in any::<bool>(),
        steps in steps_strategy(),
        at in any::<prop::sample::Index>(),
    ) {
        let make = maker(config(spec, keyed, all_aggregates(&schema())));
        let expected = crate::ops::testkit::run(&make, &steps);
        check_at(&make, &steps, at.index(steps.len() + 1), &expected);
    }
}
