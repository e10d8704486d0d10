//! From a logical plan to a runnable job graph: each plan node becomes a topology node with a
//! parallelism, each edge a forward, hash or rebalance exchange; expressions and aggregates
//! become DataFusion physical expressions bound to their input schemas.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use datafusion::arrow::datatypes::Schema;
use datafusion::common::Column;
use datafusion::common::config::ConfigOptions;
use datafusion::execution::context::ExecutionProps;
use datafusion::logical_expr::physical_planning_context::PhysicalPlanningContext;
use datafusion::logical_expr::{Expr, LogicalPlan, Projection, UserDefinedLogicalNodeCore};
use datafusion::optimizer::common_subexpr_eliminate::CommonSubexprEliminate;
use datafusion::optimizer::optimize_projections::OptimizeProjections;
use datafusion::optimizer::simplify_expressions::SimplifyExpressions;
use datafusion::optimizer::{Analyzer, Optimizer, OptimizerContext, OptimizerRule};
use datafusion::physical_expr::aggregate::LoweredAggregateBuilder;
use datafusion::physical_expr::{PhysicalExpr, create_physical_expr};

use super::nodes::{SinkNode, StreamScan, WatermarkNode, WindowAggregateNode};
use super::nodes_more::{StreamJoinNode, TopNNode, UpdateAggregateNode, WindowAssignNode};
use crate::ops::window::{
    AggregateSpec, LATE_PORT, WindowAggregateConfig, WindowAggregateFactory, WindowAssign,
};
use crate::ops::{Cloning, Filter, Projection as ProjectionOp, Union};
use crate::runtime::{Exchange, JobGraph, RuntimeConfig, WatermarkSpec};
use crate::topology::NodeId;
use crate::{Error, Result};

/// Settings of a job (SQL `SET`, DSL options).
#[derive(Clone, Debug)]
pub struct JobConfig {
    /// Subtasks per keyed operator; sources run at most one subtask per split. Default 1.
    pub parallelism: usize,
    /// How often sources emit watermarks; zero: after every batch. Default 200 ms.
    pub watermark_interval: Duration,
    /// Forget unbounded state (regular joins, unbounded aggregates) not updated for this long
    /// (processing time; SQL `SET 'table.exec.state.ttl'`). Default: never.
    pub state_ttl: Option<Duration>,
    /// Keys of unbounded state (aggregate groups, join keys per side) each operator subtask
    /// keeps in memory; colder ones spill to its state store (SQL `SET 'state.cache.keys'`).
    /// Default: all in memory.
    pub state_cache: Option<usize>,
    /// Channels, key groups and checkpoints.
    pub runtime: RuntimeConfig,
}

impl Default for JobConfig {
    fn default() -> Self {
        JobConfig {
            parallelism: 1,
            watermark_interval: Duration::from_millis(200),
            state_ttl: None,
            state_cache: None,
            runtime: RuntimeConfig::default(),
        }
    }
}

/// A compiled piece of the plan: the node producing it and what is known about it.
pub(super) struct Stream {
    pub(super) node: NodeId,
    pub(super) parallelism: usize,
    pub(super) watermarked: bool,
}

/// The plan as it will run: DataFusion's type coercion, then the rewrites that cannot change a
/// streaming plan's meaning (constant folding, merging and pruning projections, computing
/// common expressions once).
pub fn optimize(plan: &LogicalPlan) -> Result<LogicalPlan> {
    // Type coercion, then constant folding and simplification (casts of literals, `x AND
    // true`, ...): rewrites that cannot change a streaming plan's meaning.
    let plan =
        Analyzer::new().execute_and_check(plan.clone(), &ConfigOptions::default(), |_, _| {})?;
    let rules: Vec<Arc<dyn OptimizerRule + Send + Sync>> = vec![
        Arc::new(SimplifyExpressions::new()),
        // Merges the projections SQL planning stacks up and prunes columns nobody reads
        // (extension nodes say what they need through `necessary_children_exprs`).
        Arc::new(OptimizeProjections::new()),
        Arc::new(super::prune::PruneStatefulInputs),
        Arc::new(super::prune::NarrowJoinInputs),
        // An expression is computed once per row where it can be: across a filter and the
        // projection above it, then within each node (`CASE WHEN lower(c) = 'a' ... WHEN
        // lower(c) = 'b'`).
        Arc::new(super::share::ShareFilterExprs),
        Arc::new(CommonSubexprEliminate::new()),
        Arc::new(OptimizeProjections::new()),
    ];
    let plan = Optimizer::with_rules(rules).optimize(plan, &OptimizerContext::new(), |_, _| {})?;
    Ok(plan)
}

/// One job's plans as they will run: each optimized, then the sources they share narrowed
/// to the columns the plans read.
fn optimize_job(plans: &[LogicalPlan]) -> Result<Vec<LogicalPlan>> {
    let optimized = plans.iter().map(optimize).collect::<Result<Vec<_>>>()?;
    super::scan_columns::narrow_scans(optimized)
}

/// What `EXPLAIN` prints (SQL's and the DSL's alike): each optimized plan, then the topology.
pub fn explain_job(plans: &[LogicalPlan], config: &JobConfig) -> Result<String> {
    let graph = compile(plans, config)?;
    let optimized: Vec<String> = optimize_job(plans)?
        .iter()
        .map(|p| p.display_indent().to_string())
        .collect();
    Ok(format!(
        "logical plan:\n{}\ntopology:\n{}",
        optimized.join("\n"),
        graph.topology().render()
    ))
}

/// Compiles job plans (each ending in a sink) into one graph.
pub fn compile(plans: &[LogicalPlan], config: &JobConfig) -> Result<JobGraph> {
    let mut graph = JobGraph::new();
    let mut sources = HashMap::new();
    for plan in optimize_job(plans)? {
        if downcast::<SinkNode>(&plan).is_none() {
            return Err(Error::plan(
                "a job must end in a sink (INSERT INTO a table, or a collecting sink)",
            ));
        }
        Compiler {
            graph: &mut graph,
            config,
            sources: &mut sources,
        }
        .node(&plan)?;
    }
    Ok(graph)
}

pub(super) fn downcast<T: 'static>(plan: &LogicalPlan) -> Option<&T> {
    match plan {
        LogicalPlan::Extension(e) => e.node.as_any().downcast_ref::<T>(),
        _ => None,
    }
}

pub(super) fn physical(expr: &Expr, input: &LogicalPlan) -> Result<Arc<dyn PhysicalExpr>> {
    let expr = create_physical_expr(
        expr,
        input.schema(),
        &ExecutionProps::new(),
        &PhysicalPlanningContext::default(),
    )?;
    Ok(super::case::whole_cases(expr, input.schema().as_arrow())?)
}

/// A node's line in the topology. Columns of single-input nodes are shown without their
/// qualifiers, which say where a plan came from (a SQL alias, a DSL source name) rather than
/// what runs; joins keep them to tell the sides apart.
pub(super) fn explain<T: UserDefinedLogicalNodeCore>(node: &T) -> String {
    struct Show<'a, T>(&'a T);
    impl<T: UserDefinedLogicalNodeCore> std::fmt::Display for Show<'_, T> {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            self.0.fmt_for_explain(f)
        }
    }
    if node.inputs().len() == 1 {
        let exprs = node.expressions().iter().map(unqualified).collect();
        let inputs = node.inputs().into_iter().cloned().collect();
        if let Ok(plain) = node.with_exprs_and_inputs(exprs, inputs) {
            return Show(&plain).to_string();
        }
    }
    Show(node).to_string()
}

/// `e` with every column unqualified, for display.
pub(super) fn unqualified(e: &Expr) -> Expr {
    datafusion::logical_expr::expr_rewriter::unnormalize_col(e.clone())
}

/// Aggregate expressions as DataFusion aggregate functions bound to `input`'s schema.
pub(super) fn lower_aggregates(
    aggr_expr: &[Expr],
    input: &LogicalPlan,
) -> Result<Vec<AggregateSpec>> {
    let in_schema = input.schema();
    let arrow_in = in_schema.as_arrow();
    let props = ExecutionProps::new();
    let ctx = PhysicalPlanningContext::default();
    let mut aggregates = Vec::with_capacity(aggr_expr.len());
    for e in aggr_expr {
        let lowered = LoweredAggregateBuilder::new(e, in_schema, arrow_in, &props, &ctx).build()?;
        // WITHIN GROUP (ORDER BY x) of a percentile is an argument, not an input order.
        let agg = &lowered.aggregate;
        let within_group = agg.fun().supports_within_group_clause();
        if !lowered.order_bys.is_empty()
            && !within_group
            && !agg.order_sensitivity().is_insensitive()
        {
            return Err(Error::plan(format!(
                "ORDER BY inside the aggregate {e} is not supported yet"
            )));
        }
        aggregates.push(AggregateSpec {
            expr: lowered.aggregate,
            filter: lowered.filter,
        });
    }
    Ok(aggregates)
}

/// Refuses to feed an update stream to an operator that only takes appends.
pub(super) fn appends_only(input: &LogicalPlan, what: &str) -> Result<()> {
    if crate::changelog::is_update_stream(input.schema().as_arrow()) {
        return Err(Error::plan(format!(
            "{what} over an update stream (the result of an unbounded GROUP BY) is not supported"
        )));
    }
    Ok(())
}

/// What a user wrote that the engine cannot run yet, named as they wrote it.
fn unsupported(plan: &LogicalPlan) -> String {
    match plan {
        LogicalPlan::Aggregate(_) => "GROUP BY without a window (an unbounded aggregate, whose \
             results are updated as rows arrive) is not supported yet; group by window_start, \
             window_end of a window function"
            .to_string(),
        LogicalPlan::Join(_) => "a join without time bounds (a regular join, which keeps both \
             streams forever) is not supported yet; bound the times (interval join) or join \
             windows"
            .to_string(),
        LogicalPlan::Sort(_) => "ORDER BY over an unbounded stream is not supported".to_string(),
        LogicalPlan::Limit(_) => "LIMIT over an unbounded stream is not supported".to_string(),
        LogicalPlan::Window(_) => "OVER (...) window functions (ROW_NUMBER for Top-N and \
             deduplication included) are not supported yet"
            .to_string(),
        LogicalPlan::Distinct(_) => {
            "SELECT DISTINCT over a stream is not supported yet".to_string()
        }
        LogicalPlan::Values(_) | LogicalPlan::EmptyRelation(_) => {
            "a query without a stream table (VALUES, or no FROM) is not a streaming job".to_string()
        }
        LogicalPlan::Subquery(_) => "subqueries in expressions are not supported yet".to_string(),
        other => format!(
            "{} is not supported in a streaming job yet",
            other.display()
        ),
    }
}

pub(super) struct Compiler<'a> {
    pub(super) graph: &'a mut JobGraph,
    pub(super) config: &'a JobConfig,
    /// Source nodes by what they read (table, columns, watermark): a table read twice, in one
    /// query or by the plans of a statement set, is read once and its rows go to both
    /// readers, so that they see the same rows at every checkpoint (and it costs one read).
    pub(super) sources: &'a mut HashMap<String, (NodeId, usize, bool)>,
}

impl Compiler<'_> {
    pub(super) fn forward(&mut self, from: &Stream, to: NodeId) {
        self.graph.connect(from.node, 0, to, Exchange::Forward);
    }

    /// Subtasks of a keyed operator: the job's parallelism, or one without keys.
    pub(super) fn keyed_parallelism(&self, keys: &[Arc<dyn PhysicalExpr>]) -> usize {
        if keys.is_empty() {
            1
        } else {
            self.config.parallelism.max(1)
        }
    }

    /// Adds a keyed operator fed by `input` through a hash exchange on `keys`.
    pub(super) fn keyed(
        &mut self,
        name: &str,
        detail: &str,
        factory: Arc<dyn crate::operator::OperatorFactory>,
        input: &Stream,
        keys: Vec<Arc<dyn PhysicalExpr>>,
    ) -> Stream {
        let parallelism = self.keyed_parallelism(&keys);
        let node = self.graph.add_stateful(name, detail, factory, parallelism);
        self.graph
            .connect(input.node, 0, node, Exchange::Hash(keys));
        Stream {
            node,
            parallelism,
            watermarked: input.watermarked,
        }
    }

    pub(super) fn node(&mut self, plan: &LogicalPlan) -> Result<Stream> {
        if let Some(scan) = downcast::<StreamScan>(plan) {
            return Ok(self.scan(scan, None));
        }
        if let Some(wm) = downcast::<WatermarkNode>(plan) {
            // The event time over the source's own columns: the column itself, or, when a
            // projection computes it, that computed column's expression.
            let (scan, projection) = match &wm.input {
                LogicalPlan::Projection(p) => (downcast::<StreamScan>(&p.input), Some(p)),
                other => (downcast::<StreamScan>(other), None),
            };
            let Some(scan) = scan else {
                return Err(Error::plan(format!(
                    "the watermark on `{}` must be declared on a source table (its column or a \
                     computed column)",
                    wm.column
                )));
            };
            let time = match projection {
                None => physical(
                    &Expr::Column(Column::new_unqualified(&wm.column)),
                    &wm.input,
                )?,
                Some(p) => {
                    let i = p
                        .schema
                        .fields()
                        .iter()
                        .position(|f| f.name() == &wm.column)
                        .ok_or_else(|| {
                            Error::plan(format!(
                                "watermark column `{}` is not a column of the table",
                                wm.column
                            ))
                        })?;
                    physical(&p.expr[i].clone().unalias_nested().data, &p.input)?
                }
            };
            let source = self.scan(scan, Some((wm, time)));
            return match projection {
                None => Ok(source),
                Some(p) => self.projection(p, source),
            };
        }
        if let Some(w) = downcast::<WindowAggregateNode>(plan) {
            return self.window(w);
        }
        if let Some(j) = downcast::<StreamJoinNode>(plan) {
            return self.join(j);
        }
        if let Some(a) = downcast::<UpdateAggregateNode>(plan) {
            return self.update_aggregate(a);
        }
        if let Some(t) = downcast::<TopNNode>(plan) {
            return self.top_n(t);
        }
        if let Some(o) = downcast::<super::custom::OperatorNode>(plan) {
            let input = self.node(&o.input)?;
            let node = self.graph.add_stateless(
                &o.kind,
                &o.detail,
                Arc::clone(&o.factory.0),
                input.parallelism,
            );
            self.forward(&input, node);
            return Ok(Stream { node, ..input });
        }
        if let Some(a) = downcast::<WindowAssignNode>(plan) {
            let input = self.node(&a.input)?;
            let time = a
                .input
                .schema()
                .index_of_column_by_name(None, &a.time_column)
                .ok_or_else(|| {
                    Error::plan(format!(
                        "window time column `{}` is not a column of the input",
                        a.time_column
                    ))
                })?;
            let op = WindowAssign::new(a.window, time, Arc::new(a.schema.as_arrow().clone()))?;
            let node = self.graph.add_stateless(
                "window assign",
                explain(a).trim_start_matches("WindowAssign: "),
                Arc::new(Cloning(op)),
                input.parallelism,
            );
            self.forward(&input, node);
            return Ok(Stream { node, ..input });
        }
        if let Some(s) = downcast::<SinkNode>(plan) {
            if crate::changelog::is_update_stream(s.input.schema().as_arrow())
                && !s.sink.0.accepts_updates()
            {
                return Err(Error::plan(format!(
                    "sink `{}` ({}) only appends rows, but the query produces updates (an \
                     unbounded GROUP BY); write to a sink that takes updates, or aggregate \
                     over windows",
                    s.name,
                    s.sink.0.name()
                )));
            }
            let input = self.node(&s.input)?;
            let schema = Arc::new(s.input.schema().as_arrow().clone());
            let node = self.graph.add_sink(
                "sink",
                &s.name,
                Arc::clone(&s.sink.0),
                schema,
                input.parallelism,
            );
            self.forward(&input, node);
            return Ok(Stream { node, ..input });
        }
        match plan {
            LogicalPlan::Filter(f) => {
                let input = self.node(&f.input)?;
                let predicate = physical(&f.predicate, &f.input)?;
                let node = self.graph.add_stateless(
                    "filter",
                    &unqualified(&f.predicate).unalias_nested().data.to_string(),
                    Arc::new(Cloning(Filter::new(predicate))),
                    input.parallelism,
                );
                self.forward(&input, node);
                Ok(Stream { node, ..input })
            }
            LogicalPlan::Projection(p) => {
                let input = self.node(&p.input)?;
                self.projection(p, input)
            }
            LogicalPlan::Union(u) => {
                let inputs = u
                    .inputs
                    .iter()
                    .map(|i| self.node(i))
                    .collect::<Result<Vec<_>>>()?;
                let parallelism = inputs.iter().map(|i| i.parallelism).max().unwrap_or(1);
                let schema = Arc::new(u.schema.as_arrow().clone());
                let node = self.graph.add_stateless(
                    "union",
                    &format!("{} inputs", inputs.len()),
                    Arc::new(Cloning(Union::new(schema))),
                    parallelism,
                );
                for i in &inputs {
                    let exchange = if i.parallelism == parallelism {
                        Exchange::Forward
                    } else {
                        Exchange::Rebalance
                    };
                    self.graph.connect(i.node, 0, node, exchange);
                }
                Ok(Stream {
                    node,
                    parallelism,
                    watermarked: inputs.iter().all(|i| i.watermarked),
                })
            }
            LogicalPlan::SubqueryAlias(a) => self.node(&a.input),
            other => Err(Error::plan(unsupported(other))),
        }
    }

    fn projection(&mut self, p: &Projection, input: Stream) -> Result<Stream> {
        let exprs = p
            .expr
            .iter()
            .map(|e| physical(e, &p.input))
            .collect::<Result<Vec<_>>>()?;
        let detail = p
            .expr
            .iter()
            .map(|e| match unqualified(e) {
                // `c AS c` only re-qualifies a column.
                Expr::Alias(a) if matches!(a.expr.as_ref(), Expr::Column(c) if c.name == a.name) => {
                    a.expr.to_string()
                }
                other => other.to_string(),
            })
            .collect::<Vec<_>>()
            .join(", ");
        let schema = Arc::new(p.schema.as_arrow().clone());
        let node = self.graph.add_stateless(
            "project",
            &detail,
            Arc::new(Cloning(ProjectionOp::new(exprs, schema))),
            input.parallelism,
        );
        self.forward(&input, node);
        Ok(Stream { node, ..input })
    }

    fn scan(
        &mut self,
        scan: &StreamScan,
        wm: Option<(&WatermarkNode, Arc<dyn PhysicalExpr>)>,
    ) -> Stream {
        let source = &scan.source.0;
        // The same source factory (SQL makes one per table and statement), the same columns
        // and event time: the same rows.
        let key = format!(
            "{:p}|{:?}|{}",
            Arc::as_ptr(source) as *const (),
            scan.schema.as_arrow().fields(),
            wm.as_ref().map_or(String::new(), |(w, time)| format!(
                "{time}|{:?}|{:?}",
                w.out_of_orderness, w.idle_timeout
            ))
        );
        if let Some((node, parallelism, watermarked)) = self.sources.get(&key) {
            return Stream {
                node: *node,
                parallelism: *parallelism,
                watermarked: *watermarked,
            };
        }
        let parallelism = self.config.parallelism.min(source.splits()).max(1);
        let mut spec = WatermarkSpec {
            interval: self.config.watermark_interval,
            ..WatermarkSpec::default()
        };
        // The table the source reads (the scan's own name may be a query's alias for it).
        let table = source.name().to_string();
        let mut detail = table.clone();
        let watermarked = wm.is_some();
        if let Some((wm, time)) = wm {
            spec.time = Some(time);
            spec.out_of_orderness = wm.out_of_orderness;
            spec.idle_timeout = wm.idle_timeout;
            detail = format!(
                "{table} (watermark {} - {:?})",
                wm.column, wm.out_of_orderness
            );
        }
        let node = self
            .graph
            .add_source("source", &detail, Arc::clone(source), spec, parallelism);
        self.sources.insert(key, (node, parallelism, watermarked));
        Stream {
            node,
            parallelism,
            watermarked,
        }
    }

    fn window(&mut self, w: &WindowAggregateNode) -> Result<Stream> {
        appends_only(&w.input, "a window aggregate")?;
        let input = self.node(&w.input)?;
        if !input.watermarked {
            return Err(Error::plan(format!(
                "the window on `{}` needs event time: declare a watermark on the source \
                 (WATERMARK FOR {} AS ...)",
                w.time_column, w.time_column
            )));
        }
        let in_schema = w.input.schema();
        let time_column = in_schema
            .index_of_column_by_name(None, &w.time_column)
            .ok_or_else(|| {
                Error::plan(format!(
                    "window time column `{}` is not a column of the input",
                    w.time_column
                ))
            })?;
        let keys = w
            .group_expr
            .iter()
            .map(|k| physical(k, &w.input))
            .collect::<Result<Vec<_>>>()?;
        let arrow_in = in_schema.as_arrow();
        let aggregates = lower_aggregates(&w.aggr_expr, &w.input)?;
        let out = Arc::new(w.schema.as_arrow().clone());
        let key_fields = out.fields()[3..3 + keys.len()].to_vec();
        let parallelism = self.keyed_parallelism(&keys);
        let late_output = w.options.late_sink.is_some();
        let config = WindowAggregateConfig {
            spec: w.window,
            time_column,
            keys: keys.clone(),
            key_schema: Arc::new(Schema::new(key_fields)),
            aggregates,
            output_schema: out,
            allowed_lateness: w.options.allowed_lateness.as_millis() as i64,
            late_output,
            early_fire: w.options.early_fire,
        };
        let detail = explain(w)
            .trim_start_matches("WindowAggregate: ")
            .to_string();
        let node = self.graph.add_stateful(
            "window aggregate",
            &detail,
            Arc::new(WindowAggregateFactory(config)),
            parallelism,
        );
        self.graph
            .connect(input.node, 0, node, Exchange::Hash(keys));
        if let Some(sink) = &w.options.late_sink {
            let late = self.graph.add_sink(
                "sink",
                &format!("late rows of [{}]", node.0),
                Arc::clone(&sink.0),
                Arc::new(arrow_in.clone()),
                parallelism,
            );
            self.graph.connect(node, LATE_PORT, late, Exchange::Forward);
        }
        Ok(Stream {
            node,
            parallelism,
            watermarked: true,
        })
    }
}
