//! The interval join: a left row `l` and a right row `r` with equal keys join when
//! `r.ts + lower <= l.ts <= r.ts + upper` (SQL: `l.ts BETWEEN r.ts + lower AND r.ts + upper`).
//! Results are emitted as soon as the second row of a pair arrives; the watermark decides when
//! a row can meet no future partner and is dropped (a left row without any partner is then
//! emitted padded with nulls, for a left join). Rows older than the watermark on arrival are
//! late: counted, and routed if configured.

use std::sync::Arc;

use datafusion::arrow::array::{
    Array, AsArray, BooleanArray, RecordBatch, TimestampMillisecondArray,
};
use datafusion::arrow::compute::{concat_batches, filter_record_batch};
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::arrow::row::RowConverter;

use super::{
    Indexed, JoinSpec, JoinType, Pairs, SIDES, assemble, converter, key_rows, pad_left,
    restored_column, restored_rows,
};
use crate::message::Barrier;
use crate::metrics::OperatorMetrics;
use crate::operator::{Operator, OperatorContext, OperatorFactory, Output};
use crate::ops::window::{LATE_PORT, event_times};
use crate::state::{OperatorState, columns_batch};
use crate::{Error, Result};

/// An interval join, as the planner builds it.
#[derive(Clone, Debug)]
pub struct IntervalJoinConfig {
    /// Keys, residual condition, join type, joined schema (also the output schema).
    pub join: JoinSpec,
    /// Event-time column of the left input.
    pub left_time: usize,
    /// Event-time column of the right input.
    pub right_time: usize,
    /// Schemas of the two inputs.
    pub input_schemas: [SchemaRef; 2],
    /// Smallest `l.ts - r.ts` that joins, ms.
    pub lower: i64,
    /// Largest `l.ts - r.ts` that joins, ms.
    pub upper: i64,
    /// Whether late rows go to side outputs: left rows to port [`LATE_PORT`], right rows to
    /// the port after it.
    pub late_output: bool,
}

impl OperatorFactory for IntervalJoinConfig {
    fn create(&self, _subtask: usize, _parallelism: usize) -> Result<Box<dyn Operator>> {
        Ok(Box::new(IntervalJoin::new(self.clone())?))
    }
}

/// Buffered rows of one side, with their times and (left side) whether they found a partner.
#[derive(Debug, Default)]
struct Side {
    rows: Indexed,
    times: Vec<TimestampMillisecondArray>,
    matched: Vec<Vec<bool>>,
}

/// One subtask of an interval join.
pub struct IntervalJoin {
    config: IntervalJoinConfig,
    converter: RowConverter,
    sides: [Side; 2],
    watermark: Option<i64>,
    metrics: Option<Arc<OperatorMetrics>>,
}

impl std::fmt::Debug for IntervalJoin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IntervalJoin")
            .field("lower", &self.config.lower)
            .field("upper", &self.config.upper)
            .finish_non_exhaustive()
    }
}

impl IntervalJoin {
    /// A subtask with no rows yet.
    pub fn new(config: IntervalJoinConfig) -> Result<Self> {
        if config.lower > config.upper {
            return Err(Error::plan(format!(
                "interval join bounds are empty: lower {} ms > upper {} ms",
                config.lower, config.upper
            )));
        }
        let converter = converter(&config.join.left_keys, &config.input_schemas[0])?;
        Ok(IntervalJoin {
            config,
            converter,
            sides: [Side::default(), Side::default()],
            watermark: None,
            metrics: None,
        })
    }

    /// Probes the other side with `batch` from `side`, emits the pairs, then buffers `batch`.
    fn probe_and_store(
        &mut self,
        side: usize,
        batch: RecordBatch,
        ts: TimestampMillisecondArray,
        out: &mut Output,
    ) -> Result<()> {
        let spec = &self.config.join;
        let keys = if side == 0 {
            &spec.left_keys
        } else {
            &spec.right_keys
        };
        let rows = key_rows(&self.converter, keys, &batch)?;
        let other = &mut self.sides[1 - side];
        let (lower, upper) = (i128::from(self.config.lower), i128::from(self.config.upper));
        let mut pairs = Pairs::default();
        let times = &other.times;
        other.rows.probe(&rows, |i, (b, r)| {
            let t = i128::from(ts.value(i));
            let o = i128::from(times[b as usize].value(r as usize));
            let diff = if side == 0 { t - o } else { o - t };
            if lower <= diff && diff <= upper {
                pairs.push(i, (b, r));
            }
        });
        let other = &self.sides[1 - side];
        let mut matched_here = vec![false; batch.num_rows()];
        if !pairs.probe.is_empty() {
            let (joined, kept) = assemble(spec, &batch, &other.rows, &pairs, side == 0)?;
            out.emit(joined);
            for k in kept {
                if side == 0 {
                    matched_here[pairs.probe[k] as usize] = true;
                } else {
                    let (b, r) = pairs.build[k];
                    self.sides[0].matched[b][r] = true;
                }
            }
        }
        let own = &mut self.sides[side];
        own.rows.insert(batch, rows);
        own.times.push(ts);
        own.matched.push(matched_here);
        Ok(())
    }

    /// Drops rows no future row can join: left rows older than `wm + lower`, right rows older
    /// than `wm - upper`. Unmatched left rows of a left join are emitted padded.
    fn evict(&mut self, wm: i64, out: &mut Output) -> Result<()> {
        let thresholds = [
            wm.saturating_add(self.config.lower),
            wm.saturating_sub(self.config.upper),
        ];
        for (side, threshold) in thresholds.into_iter().enumerate() {
            // Most watermarks expire nothing: skip the rebuild unless some row is older.
            let expires = self.sides[side].times.iter().any(|t| {
                t.null_count() > 0
                    || datafusion::arrow::compute::min(t).is_some_and(|m| m < threshold)
            });
            if !expires {
                continue;
            }
            let s = std::mem::take(&mut self.sides[side]);
            let mut kept = Side::default();
            let key_exprs = if side == 0 {
                &self.config.join.left_keys
            } else {
                &self.config.join.right_keys
            };
            for (((batch, keys), times), matched) in s.rows.into_parts().zip(s.times).zip(s.matched)
            {
                let keep: BooleanArray = times
                    .iter()
                    .map(|t| Some(t.is_some_and(|t| t >= threshold)))
                    .collect();
                if side == 0 && self.config.join.join_type == JoinType::Left {
                    let lonely: Vec<u32> = (0..batch.num_rows() as u32)
                        .filter(|&i| !keep.value(i as usize) && !matched[i as usize])
                        .collect();
                    if !lonely.is_empty() {
                        out.emit(pad_left(&self.config.join, &batch, &lonely)?);
                    }
                }
                match keep.true_count() {
                    0 => continue,
                    n if n == batch.num_rows() => {
                        kept.rows.insert(batch, keys);
                        kept.times.push(times);
                        kept.matched.push(matched);
                    }
                    _ => {
                        let batch = filter_record_batch(&batch, &keep)?;
                        let times = datafusion::arrow::compute::filter(&times, &keep)?;
                        let times = TimestampMillisecondArray::from(times.to_data());
                        let matched = matched
                            .iter()
                            .zip(keep.values().iter())
                            .filter_map(|(m, k)| k.then_some(*m))
                            .collect();
                        let keys = key_rows(&self.converter, key_exprs, &batch)?;
                        kept.rows.insert(batch, keys);
                        kept.times.push(times);
                        kept.matched.push(matched);
                    }
                }
            }
            self.sides[side] = kept;
        }
        Ok(())
    }
}

impl Operator for IntervalJoin {
    fn start(&mut self, ctx: &OperatorContext) -> Result<()> {
        self.metrics = Some(Arc::clone(&ctx.metrics));
        Ok(())
    }

    fn process_batch(&mut self, input: usize, batch: RecordBatch, out: &mut Output) -> Result<()> {
        let side = input.min(1);
        let column = if side == 0 {
            self.config.left_time
        } else {
            self.config.right_time
        };
        let ts = event_times(batch.column(column))?;
        let late: BooleanArray = (0..batch.num_rows())
            .map(|i| Some(ts.is_null(i) || self.watermark.is_some_and(|w| ts.value(i) < w)))
            .collect();
        let (batch, ts) = if late.true_count() == 0 {
            (batch, ts)
        } else {
            crate::ops::route_late(
                self.metrics.as_deref(),
                self.config.late_output.then_some(LATE_PORT + side),
                late.true_count(),
                || Ok(filter_record_batch(&batch, &late)?),
                out,
            )?;
            let keep = datafusion::arrow::compute::not(&late)?;
            let kept = filter_record_batch(&batch, &keep)?;
            let ts = event_times(kept.column(column))?;
            (kept, ts)
        };
        if batch.num_rows() == 0 {
            return Ok(());
        }
        self.probe_and_store(side, batch, ts, out)
    }

    fn process_watermark(&mut self, watermark: i64, out: &mut Output) -> Result<Option<i64>> {
        // Joined rows can be older than the watermark: a left row down to `wm + lower`, a right
        // row down to `wm - upper`. Forward a watermark that none of them is behind.
        let delay = 0i64
            .max(self.config.lower.saturating_neg())
            .max(self.config.upper);
        let forward = watermark.saturating_sub(delay);
        if self.watermark.is_some_and(|w| w >= watermark) {
            return Ok(Some(forward));
        }
        self.watermark = Some(watermark);
        self.evict(watermark, out)?;
        Ok(Some(forward))
    }

    /// State: per side, the buffered rows in one batch (`left`, `right`; every one can still
    /// join, since each watermark evicts the rest), whether each found a partner
    /// (`left.matched`, `right.matched`), and the watermark (`watermark`, absent before the
    /// first). Row times and key indexes are rebuilt from the rows.
    fn checkpoint(&mut self, _barrier: &Barrier) -> Result<Option<OperatorState>> {
        let mut state = OperatorState::new();
        if let Some(wm) = self.watermark {
            state.put_value(WATERMARK, wm);
        }
        for (side, name) in SIDES.into_iter().enumerate() {
            let s = &self.sides[side];
            let rows = concat_batches(&self.config.input_schemas[side], &s.rows.batches)?;
            let matched: BooleanArray = s.matched.iter().flatten().map(|m| Some(*m)).collect();
            let n = matched.len();
            state.put_batch(name, rows);
            state.put_batch(
                format!("{name}.matched"),
                columns_batch(vec![Arc::new(matched)], n)?,
            );
        }
        Ok(Some(state))
    }

    fn restore(&mut self, state: OperatorState) -> Result<()> {
        let mut sides = [Side::default(), Side::default()];
        for (side, name) in SIDES.into_iter().enumerate() {
            let rows = restored_rows(&state, name, &self.config.input_schemas[side])?;
            let n = rows.num_rows();
            let matched =
                restored_column(&state, &format!("{name}.matched"), DataType::Boolean, n)?;
            if n == 0 {
                continue;
            }
            let (time, keys) = if side == 0 {
                (self.config.left_time, &self.config.join.left_keys)
            } else {
                (self.config.right_time, &self.config.join.right_keys)
            };
            let ts = event_times(rows.column(time))?;
            let keys = key_rows(&self.converter, keys, &rows)?;
            let s = &mut sides[side];
            s.rows.insert(rows, keys);
            s.times.push(ts);
            s.matched
                .push(matched.as_boolean().values().iter().collect());
        }
        self.sides = sides;
        self.watermark = state.value(WATERMARK);
        Ok(())
    }

    fn close(&mut self, out: &mut Output) -> Result<()> {
        self.process_watermark(i64::MAX, out).map(|_| ())
    }
}

/// State name of the watermark the join last evicted at.
const WATERMARK: &str = "watermark";
