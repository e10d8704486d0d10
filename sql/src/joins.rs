//! Joins in SQL: `a JOIN b ON a.k = b.k AND a.ts BETWEEN b.ts - INTERVAL '10' MINUTE AND b.ts`
//! (or the same conditions in `WHERE` over `FROM a, b`) become interval joins. Equalities
//! between the two sides are the keys, bounds between their time columns the interval, and
//! anything else a residual condition.

use streams_core::datafusion::common::{Column, DFSchema, ScalarValue};
use streams_core::datafusion::logical_expr::expr::Between;
use streams_core::datafusion::logical_expr::utils::split_conjunction;
use streams_core::datafusion::logical_expr::{BinaryExpr, Expr, Operator};

use crate::attributes::WindowColumns;

/// The interval of an interval join: `lower <= l.ts - r.ts <= upper`, in ms.
#[derive(Debug, Default)]
pub(crate) struct Split {
    pub(crate) keys: Vec<(Expr, Expr)>,
    pub(crate) lower: Option<i64>,
    pub(crate) upper: Option<i64>,
    pub(crate) left_time: Option<String>,
    pub(crate) right_time: Option<String>,
    pub(crate) residual: Vec<Expr>,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Side {
    Left,
    Right,
}

fn side_of(e: &Expr, left: &DFSchema, right: &DFSchema) -> Option<Side> {
    let cols = e.column_refs();
    if cols.is_empty() {
        return None;
    }
    if cols.iter().all(|c| left.has_column(c)) {
        Some(Side::Left)
    } else if cols.iter().all(|c| right.has_column(c)) {
        Some(Side::Right)
    } else {
        None
    }
}

fn interval_ms(e: &Expr) -> Option<i64> {
    match e {
        Expr::Literal(ScalarValue::IntervalMonthDayNano(Some(v)), _) if v.months == 0 => {
            Some(i64::from(v.days) * 86_400_000 + v.nanoseconds / 1_000_000)
        }
        Expr::Literal(ScalarValue::IntervalDayTime(Some(v)), _) => {
            Some(i64::from(v.days) * 86_400_000 + i64::from(v.milliseconds))
        }
        Expr::Cast(c) => interval_ms(&c.expr),
        _ => None,
    }
}

/// `column [± INTERVAL]` as (column, offset ms).
fn time_term(e: &Expr) -> Option<(&Column, i64)> {
    match e {
        Expr::Column(c) => Some((c, 0)),
        Expr::BinaryExpr(BinaryExpr { left, op, right }) => {
            let (c, base) = time_term(left)?;
            let off = interval_ms(right)?;
            match op {
                Operator::Plus => Some((c, base + off)),
                Operator::Minus => Some((c, base - off)),
                _ => None,
            }
        }
        _ => None,
    }
}

impl Split {
    /// A window join: `l.window_start = r.window_start AND l.window_end = r.window_end` among
    /// the keys, where those are each side's window columns (see `attributes`), renamed or
    /// not. Takes the end key out and returns the two end columns' names.
    pub(crate) fn take_window_keys(
        &mut self,
        (left, right): (&DFSchema, &DFSchema),
        windows: (Option<WindowColumns>, Option<WindowColumns>),
    ) -> Option<(String, String)> {
        let (Some(lw), Some(rw)) = windows else {
            return None;
        };
        let at = |schema: &DFSchema, e: &Expr| match e {
            Expr::Column(c) => schema.index_of_column(c).ok(),
            _ => None,
        };
        let is = |(l, r): &(Expr, Expr), li: usize, ri: usize| {
            at(left, l) == Some(li) && at(right, r) == Some(ri)
        };
        let end = self.keys.iter().position(|k| is(k, lw.end, rw.end))?;
        // window_start stays a key (windows of different kinds can share an end).
        if !self.keys.iter().any(|k| is(k, lw.start, rw.start)) {
            return None;
        }
        let (l, r) = match &self.keys[end] {
            (Expr::Column(l), Expr::Column(r)) => (l.name.clone(), r.name.clone()),
            _ => return None,
        };
        self.keys.remove(end);
        Some((l, r))
    }

    /// Records `a op b` if it bounds the left time against the right time.
    fn bound(
        &mut self,
        a: &Expr,
        op: Operator,
        b: &Expr,
        left: &DFSchema,
        right: &DFSchema,
    ) -> bool {
        let (Some((ca, oa)), Some((cb, ob))) = (time_term(a), time_term(b)) else {
            return false;
        };
        // Only event times bound an interval join; other comparisons are residual conditions.
        let is_time = |c: &Column| {
            [left, right].iter().any(|schema| {
                schema.qualified_field_from_column(c).is_ok_and(|(_, f)| {
                    matches!(
                        f.data_type(),
                        streams_core::arrow::datatypes::DataType::Timestamp(_, _)
                    )
                })
            })
        };
        if !is_time(ca) || !is_time(cb) {
            return false;
        }
        let (sa, sb) = (
            side_of(&Expr::Column(ca.clone()), left, right),
            side_of(&Expr::Column(cb.clone()), left, right),
        );
        // Normalise to `l.ts + x  op  r.ts + y`, i.e. `l.ts - r.ts  op  y - x`.
        let (l, r, op, diff) = match (sa, sb) {
            (Some(Side::Left), Some(Side::Right)) => (ca, cb, op, ob - oa),
            (Some(Side::Right), Some(Side::Left)) => match op.swap() {
                Some(swapped) => (cb, ca, swapped, oa - ob),
                None => return false,
            },
            _ => return false,
        };
        let (lower, upper) = match op {
            Operator::GtEq => (Some(diff), None),
            Operator::Gt => (Some(diff + 1), None),
            Operator::LtEq => (None, Some(diff)),
            Operator::Lt => (None, Some(diff - 1)),
            _ => return false,
        };
        if self.left_time.as_ref().is_some_and(|n| n != &l.name)
            || self.right_time.as_ref().is_some_and(|n| n != &r.name)
        {
            return false;
        }
        self.left_time = Some(l.name.clone());
        self.right_time = Some(r.name.clone());
        if let Some(v) = lower {
            self.lower = Some(self.lower.map_or(v, |x| x.max(v)));
        }
        if let Some(v) = upper {
            self.upper = Some(self.upper.map_or(v, |x| x.min(v)));
        }
        true
    }

    /// Sorts the conjuncts of `condition` into keys, time bounds and the rest.
    /// With `bounds` false (a window join), comparisons stay in the residual condition.
    pub(crate) fn of(condition: &Expr, left: &DFSchema, right: &DFSchema, bounds: bool) -> Split {
        let mut s = Split::default();
        for c in split_conjunction(condition) {
            let used = match c {
                Expr::BinaryExpr(BinaryExpr {
                    left: a,
                    op: Operator::Eq,
                    right: b,
                }) => match (side_of(a, left, right), side_of(b, left, right)) {
                    (Some(Side::Left), Some(Side::Right)) => {
                        s.keys.push(((**a).clone(), (**b).clone()));
                        true
                    }
                    (Some(Side::Right), Some(Side::Left)) => {
                        s.keys.push(((**b).clone(), (**a).clone()));
                        true
                    }
                    _ => false,
                },
                Expr::BinaryExpr(BinaryExpr {
                    left: a,
                    op,
                    right: b,
                }) if bounds => s.bound(a, *op, b, left, right),
                Expr::Between(Between {
                    expr,
                    negated: false,
                    low,
                    high,
                }) if bounds => {
                    // Both halves must be time bounds, or neither is used.
                    let mut probe = Split {
                        left_time: s.left_time.clone(),
                        right_time: s.right_time.clone(),
                        lower: s.lower,
                        upper: s.upper,
                        ..Split::default()
                    };
                    if probe.bound(expr, Operator::GtEq, low, left, right)
                        && probe.bound(expr, Operator::LtEq, high, left, right)
                    {
                        s.left_time = probe.left_time;
                        s.right_time = probe.right_time;
                        s.lower = probe.lower;
                        s.upper = probe.upper;
                        true
                    } else {
                        false
                    }
                }
                _ => false,
            };
            if !used {
                s.residual.push(c.clone());
            }
        }
        s
    }
}
