//! Compiling the keyed operators of two kinds of plan node: stream joins, and the
//! update-stream operators (unbounded aggregate, Top-N).

use std::sync::Arc;

use datafusion::arrow::datatypes::Schema;
use datafusion::execution::context::ExecutionProps;
use datafusion::logical_expr::physical_planning_context::PhysicalPlanningContext;
use datafusion::physical_expr::create_physical_expr;

use super::compile::{Compiler, Stream, appends_only, explain, lower_aggregates, physical};
use super::nodes_more::{StreamJoinKind, StreamJoinNode, TopNNode, UpdateAggregateNode};
use crate::changelog::is_update_stream;
use crate::ops::aggregate::UnboundedAggregateConfig;
use crate::ops::join::{IntervalJoinConfig, JoinSpec, RegularJoinConfig, WindowJoinConfig};
use crate::ops::topn::TopNConfig;
use crate::ops::window::LATE_PORT;
use crate::runtime::Exchange;
use crate::{Error, Result};

impl Compiler<'_> {
    pub(super) fn join(&mut self, j: &StreamJoinNode) -> Result<Stream> {
        if j.kind == StreamJoinKind::Regular {
            return self.regular_join(j);
        }
        appends_only(&j.left, "a window or interval join")?;
        appends_only(&j.right, "a stream join")?;
        let left = self.node(&j.left)?;
        let right = self.node(&j.right)?;
        if !left.watermarked || !right.watermarked {
            return Err(Error::plan(format!(
                "a stream join needs event time on both inputs: declare watermarks for `{}` and `{}`",
                j.left_time, j.right_time
            )));
        }
        let (ls, rs) = (j.left.schema(), j.right.schema());
        let column = |schema: &datafusion::common::DFSchema, name: &str, side: &str| {
            schema.index_of_column_by_name(None, name).ok_or_else(|| {
                Error::plan(format!(
                    "{side} time column `{name}` is not a column of the {side} input"
                ))
            })
        };
        let (left_time, right_time) = (
            column(ls, &j.left_time, "left")?,
            column(rs, &j.right_time, "right")?,
        );
        let window_columns = usize::from(matches!(j.kind, StreamJoinKind::Window(_))) * 2;
        let out = Arc::new(j.schema.as_arrow().clone());
        let spec = join_spec(j, window_columns..out.fields().len())?;
        let left_keys = spec.left_keys.clone();
        let right_keys = spec.right_keys.clone();
        let input_schemas = [
            Arc::new(ls.as_arrow().clone()),
            Arc::new(rs.as_arrow().clone()),
        ];
        let late_output = j.options.late_sink.is_some();
        let factory: Arc<dyn crate::operator::OperatorFactory> = match j.kind {
            StreamJoinKind::Window(window) => Arc::new(WindowJoinConfig {
                join: spec,
                window: Some(window),
                left_time,
                right_time,
                input_schemas,
                output_schema: out,
                allowed_lateness: j.options.allowed_lateness.as_millis() as i64,
                late_output,
            }),
            StreamJoinKind::Windowed => Arc::new(WindowJoinConfig {
                join: spec,
                window: None,
                left_time,
                right_time,
                input_schemas,
                output_schema: out,
                allowed_lateness: j.options.allowed_lateness.as_millis() as i64,
                late_output,
            }),
            StreamJoinKind::Regular => return self.regular_join(j),
            StreamJoinKind::Interval { lower, upper } => Arc::new(IntervalJoinConfig {
                join: spec,
                left_time,
                right_time,
                input_schemas,
                lower,
                upper,
                late_output,
            }),
        };
        let parallelism = self.keyed_parallelism(&left_keys);
        let detail = explain(j).trim_start_matches("StreamJoin: ").to_string();
        let node = self
            .graph
            .add_stateful("join", &detail, factory, parallelism);
        self.graph
            .connect(left.node, 0, node, Exchange::Hash(left_keys));
        self.graph
            .connect(right.node, 0, node, Exchange::Hash(right_keys));
        if let Some(sink) = &j.options.late_sink {
            // Late rows leave as they came, each side on its own port with its own schema.
            for (side, schema) in [("left", ls), ("right", rs)].into_iter().zip([0, 1]) {
                let ((name, input_schema), port) = (side, LATE_PORT + schema);
                let late = self.graph.add_sink(
                    "sink",
                    &format!("late {name} rows of [{}]", node.0),
                    Arc::clone(&sink.0),
                    Arc::new(input_schema.as_arrow().clone()),
                    parallelism,
                );
                self.graph.connect(node, port, late, Exchange::Forward);
            }
        }
        Ok(Stream {
            node,
            parallelism,
            watermarked: true,
        })
    }

    fn regular_join(&mut self, j: &StreamJoinNode) -> Result<Stream> {
        let left = self.node(&j.left)?;
        let right = self.node(&j.right)?;
        let out = Arc::new(j.schema.as_arrow().clone());
        let width = out.fields().len() - usize::from(is_update_stream(&out));
        let join = join_spec(j, 0..width)?;
        let (left_keys, right_keys) = (join.left_keys.clone(), join.right_keys.clone());
        let config = RegularJoinConfig {
            join,
            outer: j.join_type.outer(),
            input_schemas: [
                Arc::new(j.left.schema().as_arrow().clone()),
                Arc::new(j.right.schema().as_arrow().clone()),
            ],
            output_schema: out,
            ttl: self.config.state_ttl,
            cache: self.config.state_cache,
        };
        let parallelism = self.keyed_parallelism(&left_keys);
        let detail = explain(j).trim_start_matches("StreamJoin: ").to_string();
        let node = self
            .graph
            .add_stateful("join", &detail, Arc::new(config), parallelism);
        self.graph
            .connect(left.node, 0, node, Exchange::Hash(left_keys));
        self.graph
            .connect(right.node, 0, node, Exchange::Hash(right_keys));
        // Joined rows keep no event time (as in Flink): nothing after may window them.
        Ok(Stream {
            node,
            parallelism,
            watermarked: false,
        })
    }

    pub(super) fn update_aggregate(&mut self, a: &UpdateAggregateNode) -> Result<Stream> {
        let input = self.node(&a.input)?;
        let keys = a
            .group_expr
            .iter()
            .map(|k| physical(k, &a.input))
            .collect::<Result<Vec<_>>>()?;
        let aggregates = lower_aggregates(&a.aggr_expr, &a.input)?;
        let out = Arc::new(a.schema.as_arrow().clone());
        let key_fields = out.fields()[..keys.len()].to_vec();
        let config = UnboundedAggregateConfig {
            keys: keys.clone(),
            key_schema: Arc::new(Schema::new(key_fields)),
            aggregates,
            output_schema: out,
            emit_interval: self
                .config
                .watermark_interval
                .max(std::time::Duration::from_millis(1)),
            counts_rows: a.retracting,
            ttl: self.config.state_ttl,
            cache: self.config.state_cache,
        };
        let detail = explain(a);
        let detail = detail.trim_start_matches("UpdateAggregate: ");
        Ok(self.keyed("aggregate", detail, Arc::new(config), &input, keys))
    }

    pub(super) fn top_n(&mut self, t: &TopNNode) -> Result<Stream> {
        appends_only(&t.input, "a Top-N")?;
        let input = self.node(&t.input)?;
        let partition_by = t
            .partition_by
            .iter()
            .map(|k| physical(k, &t.input))
            .collect::<Result<Vec<_>>>()?;
        let order_by = t
            .order_by
            .iter()
            .map(|s| {
                let options = datafusion::arrow::compute::SortOptions {
                    descending: !s.asc,
                    nulls_first: s.nulls_first,
                };
                Ok((physical(&s.expr, &t.input)?, options))
            })
            .collect::<Result<Vec<_>>>()?;
        let config = TopNConfig {
            partition_by: partition_by.clone(),
            order_by,
            limit: t.limit,
            input_schema: Arc::new(t.input.schema().as_arrow().clone()),
            output_schema: Arc::new(t.schema.as_arrow().clone()),
        };
        let detail = explain(t);
        let detail = detail.trim_start_matches("TopN: ");
        Ok(self.keyed("top-n", detail, Arc::new(config), &input, partition_by))
    }
}

type KeyExprs = Vec<Arc<dyn datafusion::physical_expr::PhysicalExpr>>;

/// Keys, residual condition and joined columns of a join, whose joined row is `columns` of
/// the node's output (window columns and the change column are not part of it).
fn join_spec(j: &StreamJoinNode, columns: std::ops::Range<usize>) -> Result<JoinSpec> {
    let (left_keys, right_keys) = join_keys(j)?;
    let fields: Vec<_> = j
        .schema
        .iter()
        .skip(columns.start)
        .take(columns.len())
        .map(|(q, f)| (q.cloned(), Arc::clone(f)))
        .collect();
    let joined_schema = Arc::new(Schema::new(
        fields
            .iter()
            .map(|(_, f)| Arc::clone(f))
            .collect::<Vec<_>>(),
    ));
    let joined = datafusion::common::DFSchema::new_with_metadata(fields, Default::default())?;
    let filter = match &j.filter {
        Some(f) => Some(create_physical_expr(
            f,
            &joined,
            &ExecutionProps::new(),
            &PhysicalPlanningContext::default(),
        )?),
        None => None,
    };
    Ok(JoinSpec {
        left_keys,
        right_keys,
        filter,
        join_type: j.join_type,
        joined_schema,
    })
}

/// Physical key expressions of each side, which must have equal types.
fn join_keys(j: &StreamJoinNode) -> Result<(KeyExprs, KeyExprs)> {
    let (ls, rs) = (j.left.schema(), j.right.schema());
    let mut left_keys = Vec::with_capacity(j.on.len());
    let mut right_keys = Vec::with_capacity(j.on.len());
    for (l, r) in &j.on {
        let (pl, pr) = (physical(l, &j.left)?, physical(r, &j.right)?);
        let (tl, tr) = (pl.data_type(ls.as_arrow())?, pr.data_type(rs.as_arrow())?);
        if tl != tr {
            return Err(Error::plan(format!(
                "join keys {l} ({tl}) and {r} ({tr}) have different types; cast one of them"
            )));
        }
        left_keys.push(pl);
        right_keys.push(pr);
    }
    Ok((left_keys, right_keys))
}
