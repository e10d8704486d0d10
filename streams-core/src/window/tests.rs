use proptest::prelude::*;

use super::*;

fn windows(spec: WindowSpec, ts: i64) -> Vec<(i64, i64)> {
    spec.assign(ts).map(|w| (w.start, w.end)).collect()
}

#[test]
fn tumble_aligns_to_the_epoch_and_offset() {
    let t = WindowSpec::Tumble {
        size: 10,
        offset: 0,
    };
    assert_eq!(windows(t, 0), vec![(0, 10)]);
    assert_eq!(windows(t, 9), vec![(0, 10)]);
    assert_eq!(windows(t, 10), vec![(10, 20)]);
    assert_eq!(windows(t, -1), vec![(-10, 0)]);
    let t = WindowSpec::Tumble {
        size: 10,
        offset: 3,
    };
    assert_eq!(windows(t, 2), vec![(-7, 3)]);
    assert_eq!(windows(t, 3), vec![(3, 13)]);
}

#[test]
fn hop_gives_size_over_slide_windows() {
    let h = WindowSpec::Hop { size: 10, slide: 2 };
    assert_eq!(
        windows(h, 7),
        vec![(-2, 8), (0, 10), (2, 12), (4, 14), (6, 16)]
    );
}

#[test]
fn cumulate_grows_within_its_period() {
    let c = WindowSpec::Cumulate { step: 2, max: 8 };
    assert_eq!(windows(c, 0), vec![(0, 2), (0, 4), (0, 6), (0, 8)]);
    assert_eq!(windows(c, 5), vec![(0, 6), (0, 8)]);
    assert_eq!(windows(c, 9), vec![(8, 10), (8, 12), (8, 14), (8, 16)]);
    assert_eq!(windows(c, 13), vec![(8, 14), (8, 16)]);
}

#[test]
fn lateness_follows_the_last_window() {
    let h = WindowSpec::Hop { size: 10, slide: 5 };
    // 7 is in [0, 10) and [5, 15): late only once the second has fired (watermark >= 14).
    assert!(!h.is_late(7, 13, 0));
    assert!(h.is_late(7, 14, 0));
    assert!(!h.is_late(7, 14, 1), "allowed lateness keeps it in");
    assert!(WindowSpec::fires(10, 9, 0));
    assert!(!WindowSpec::fires(10, 8, 0));
}

#[test]
fn invalid_specs_name_the_problem() {
    let e = WindowSpec::Hop { size: 10, slide: 3 }
        .validate()
        .unwrap_err();
    assert!(e.to_string().contains("multiple"), "{e}");
    assert!(
        WindowSpec::Tumble { size: 0, offset: 0 }
            .validate()
            .is_err()
    );
    assert!(
        WindowSpec::Cumulate { step: 3, max: 10 }
            .validate()
            .is_err()
    );
    assert!(WindowSpec::Session { gap: 0 }.validate().is_err());
}

#[test]
fn sessions_merge_when_an_event_bridges_them() {
    let mut s = Sessions::new();
    s.insert(0, 5);
    s.insert(20, 5);
    assert_eq!(s.windows().len(), 2);
    let m = s.insert(4, 5); // [4, 9) touches [0, 5): grows it
    assert_eq!(m.window, Window { start: 0, end: 9 });
    let m = s.insert(12, 10); // [12, 22) intersects [0, 9)? no; [20, 25) yes
    assert_eq!(m.window, Window { start: 12, end: 25 });
    assert_eq!(m.absorbed, vec![Window { start: 20, end: 25 }]);
    let m = s.insert(9, 3); // [9, 12] bridges [0, 9) and [12, 25)
    assert_eq!(m.window, Window { start: 0, end: 25 });
    assert_eq!(m.absorbed.len(), 2);
    assert_eq!(s.windows(), &[Window { start: 0, end: 25 }]);
    assert!(s.take_ready(23, 0).is_empty());
    assert_eq!(s.take_ready(24, 0), vec![Window { start: 0, end: 25 }]);
    assert!(s.is_empty());
}

/// Reference: a time is in a window iff start <= ts < end, over all windows that could hold it.
fn reference(spec: WindowSpec, ts: i64) -> Vec<(i64, i64)> {
    let mut out = Vec::new();
    match spec {
        WindowSpec::Tumble { size, offset } => {
            for k in -3..=3 {
                let start = (ts.div_euclid(size) + k) * size + offset;
                if start <= ts && ts < start + size {
                    out.push((start, start + size));
                }
            }
        }
        WindowSpec::Hop { size, slide } => {
            let base = ts.div_euclid(slide) * slide;
            for k in 0..=(size / slide + 1) {
                let start = base - k * slide;
                if start <= ts && ts < start + size {
                    out.push((start, start + size));
                }
            }
        }
        WindowSpec::Cumulate { step, max } => {
            let p = ts.div_euclid(max) * max;
            for k in 1..=max / step {
                if ts < p + k * step {
                    out.push((p, p + k * step));
                }
            }
        }
        WindowSpec::Session { gap } => out.push((ts, ts + gap)),
    }
    out.sort_unstable();
    out.dedup();
    out
}

fn spec() -> impl Strategy<Value = WindowSpec> {
    prop_oneof![
        (1i64..50, 0i64..50).prop_map(|(size, o)| WindowSpec::Tumble {
            size,
            offset: o % size
        }),
        (1i64..10, 1i64..8).prop_map(|(slide, n)| WindowSpec::Hop {
            size: slide * n,
            slide
        }),
        (1i64..10, 1i64..8).prop_map(|(step, n)| WindowSpec::Cumulate {
            step,
            max: step * n
        }),
    ]
}

proptest! {
    // Aggregating by pane gives the same windows: a time's pane is in exactly the windows that
    // hold the time.
    #[test]
    fn windows_are_unions_of_panes(spec in spec(), ts in -1000i64..1000) {
        let pane = spec.pane(ts).unwrap();
        prop_assert!(pane.contains(ts));
        for w in spec.assign(ts) {
            let panes: Vec<Window> = spec.panes_of(w).collect();
            prop_assert!(panes.contains(&pane));
            prop_assert_eq!(panes.first().map(|p| p.start), Some(w.start));
            prop_assert_eq!(panes.last().map(|p| p.end), Some(w.end));
        }
    }

    #[test]
    fn assignment_matches_the_reference(spec in spec(), ts in -1000i64..1000) {
        prop_assert!(spec.validate().is_ok());
        prop_assert_eq!(windows(spec, ts), reference(spec, ts));
    }

    // Sessions against a reference that clusters the sorted events by gap.
    #[test]
    fn sessions_match_clustering(mut events in proptest::collection::vec(0i64..200, 1..40), gap in 1i64..20) {
        let mut s = Sessions::new();
        for &t in &events {
            s.insert(t, gap);
        }
        events.sort_unstable();
        let mut want: Vec<Window> = Vec::new();
        for t in events {
            match want.last_mut() {
                Some(w) if t <= w.end => w.end = w.end.max(t + gap),
                _ => want.push(Window { start: t, end: t + gap }),
            }
        }
        prop_assert_eq!(s.windows(), &want[..]);
    }
}
