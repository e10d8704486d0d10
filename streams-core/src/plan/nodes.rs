//! The streaming extension nodes of the logical plan. Everything else (filter, projection,
//! union) is DataFusion's own `LogicalPlan`.

use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use datafusion::common::DFSchemaRef;
use datafusion::error::Result as DfResult;
use datafusion::logical_expr::{Expr, LogicalPlan, UserDefinedLogicalNodeCore};

use crate::sink::SinkFactory;
use crate::source::SourceFactory;
use crate::window::WindowSpec;

/// A source factory compared by identity, so plan nodes can be `Eq` and `Hash`.
#[derive(Clone, Debug)]
pub struct SourceRef(pub Arc<dyn SourceFactory>);

/// A sink factory compared by identity.
#[derive(Clone, Debug)]
pub struct SinkRef(pub Arc<dyn SinkFactory>);

macro_rules! by_identity {
    ($t:ty) => {
        impl PartialEq for $t {
            fn eq(&self, other: &Self) -> bool {
                Arc::ptr_eq(&self.0, &other.0)
            }
        }
        impl Eq for $t {}
        impl Hash for $t {
            fn hash<H: Hasher>(&self, state: &mut H) {
                self.0.name().hash(state);
                (Arc::as_ptr(&self.0) as *const () as usize).hash(state);
            }
        }
        impl PartialOrd for $t {
            fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
                Some(self.0.name().cmp(other.0.name()))
            }
        }
    };
}
by_identity!(SourceRef);
by_identity!(SinkRef);

/// Reads a source table (a leaf).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct StreamScan {
    /// Table name.
    pub name: String,
    /// The source.
    pub source: SourceRef,
    /// Its schema.
    pub schema: DFSchemaRef,
    /// The columns of the table the source was narrowed to (indices into the table's
    /// columns), when the job reads only those; `None`: every column.
    pub projection: Option<Vec<usize>>,
}

/// Declares the event-time column of a source and how watermarks are generated:
/// `WATERMARK FOR column AS column - out_of_orderness`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd)]
pub struct WatermarkNode {
    /// The scan it applies to.
    pub input: LogicalPlan,
    /// Event-time column.
    pub column: String,
    /// Allowed disorder.
    pub out_of_orderness: Duration,
    /// A split without rows for this long stops holding the watermark back.
    pub idle_timeout: Option<Duration>,
}

/// Options of a window aggregate.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd)]
pub struct WindowOptions {
    /// Extra time to wait for late rows after a window's end.
    pub allowed_lateness: Duration,
    /// Emit the current values of open windows this often (TUMBLE, HOP, CUMULATE).
    pub early_fire: Option<Duration>,
    /// Where rows too late for every window go (as input rows); `None`: counted only.
    pub late_sink: Option<SinkRef>,
}

/// `GROUP BY window_start, window_end, keys` over a window table function.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct WindowAggregateNode {
    /// Input.
    pub input: LogicalPlan,
    /// The windows.
    pub window: WindowSpec,
    /// Event-time column of the input (the `DESCRIPTOR`).
    pub time_column: String,
    /// Group keys.
    pub group_expr: Vec<Expr>,
    /// Aggregates.
    pub aggr_expr: Vec<Expr>,
    /// Lateness, early firing, late rows.
    pub options: WindowOptions,
    /// `window_start, window_end, window_time`, keys, aggregates.
    pub schema: DFSchemaRef,
}

/// Writes its input to a sink table (the root of an `INSERT INTO`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd)]
pub struct SinkNode {
    /// Input.
    pub input: LogicalPlan,
    /// Sink table name.
    pub name: String,
    /// The sink.
    pub sink: SinkRef,
}

// Schemas follow from the other fields, and DataFusion's schemas are not ordered.
impl PartialOrd for StreamScan {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        (&self.name, &self.source).partial_cmp(&(&other.name, &other.source))
    }
}

impl PartialOrd for WindowAggregateNode {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        let key = |n: &Self| {
            (
                n.input.clone(),
                n.window,
                n.time_column.clone(),
                n.group_expr.clone(),
                n.aggr_expr.clone(),
                n.options.clone(),
            )
        };
        key(self).partial_cmp(&key(other))
    }
}

/// The input columns `exprs` read (plus `time_column`), for projection pruning.
pub(super) fn columns_read(
    input: &LogicalPlan,
    exprs: &[&Expr],
    time_column: Option<&str>,
) -> Option<Vec<Vec<usize>>> {
    let schema = input.schema();
    let mut needed: Vec<usize> = exprs
        .iter()
        .flat_map(|e| e.column_refs())
        .filter_map(|c| schema.index_of_column(c).ok())
        .collect();
    if let Some(t) = time_column {
        needed.push(schema.index_of_column_by_name(None, t)?);
    }
    needed.sort_unstable();
    needed.dedup();
    Some(vec![needed])
}

/// `keys=[a, b], aggr=[count(*)]`.
pub(super) fn fmt_keys_aggs(f: &mut fmt::Formatter, keys: &[Expr], aggs: &[Expr]) -> fmt::Result {
    let list = |v: &[Expr]| {
        v.iter()
            .map(|e| e.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    write!(f, "keys=[{}], aggr=[{}]", list(keys), list(aggs))
}

pub(super) fn exact_inputs(name: &str, mut inputs: Vec<LogicalPlan>) -> DfResult<LogicalPlan> {
    match (inputs.pop(), inputs.is_empty()) {
        (Some(p), true) => Ok(p),
        _ => datafusion::common::internal_err!("{name} takes exactly one input"),
    }
}

impl UserDefinedLogicalNodeCore for StreamScan {
    fn name(&self) -> &str {
        "StreamScan"
    }
    fn inputs(&self) -> Vec<&LogicalPlan> {
        Vec::new()
    }
    fn schema(&self) -> &DFSchemaRef {
        &self.schema
    }
    fn expressions(&self) -> Vec<Expr> {
        Vec::new()
    }
    fn fmt_for_explain(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "StreamScan: {} ({})", self.name, self.source.0.name())?;
        if self.projection.is_some() {
            let names: Vec<&str> = self
                .schema
                .fields()
                .iter()
                .map(|f| f.name().as_str())
                .collect();
            write!(f, " columns=[{}]", names.join(", "))?;
        }
        Ok(())
    }
    fn with_exprs_and_inputs(
        &self,
        _exprs: Vec<Expr>,
        _inputs: Vec<LogicalPlan>,
    ) -> DfResult<Self> {
        Ok(self.clone())
    }
}

impl UserDefinedLogicalNodeCore for WatermarkNode {
    fn name(&self) -> &str {
        "Watermark"
    }
    fn inputs(&self) -> Vec<&LogicalPlan> {
        vec![&self.input]
    }
    fn schema(&self) -> &DFSchemaRef {
        self.input.schema()
    }
    fn expressions(&self) -> Vec<Expr> {
        Vec::new()
    }
    fn fmt_for_explain(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "Watermark: {} - {:?}",
            self.column, self.out_of_orderness
        )
    }
    fn with_exprs_and_inputs(&self, _exprs: Vec<Expr>, inputs: Vec<LogicalPlan>) -> DfResult<Self> {
        Ok(WatermarkNode {
            input: exact_inputs("Watermark", inputs)?,
            ..self.clone()
        })
    }
}

impl UserDefinedLogicalNodeCore for WindowAggregateNode {
    fn name(&self) -> &str {
        "WindowAggregate"
    }
    fn inputs(&self) -> Vec<&LogicalPlan> {
        vec![&self.input]
    }
    fn schema(&self) -> &DFSchemaRef {
        &self.schema
    }
    fn expressions(&self) -> Vec<Expr> {
        self.group_expr
            .iter()
            .chain(&self.aggr_expr)
            .cloned()
            .collect()
    }
    fn fmt_for_explain(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "WindowAggregate: {}", describe_window(&self.window))?;
        write!(f, " on {}, ", self.time_column)?;
        fmt_keys_aggs(f, &self.group_expr, &self.aggr_expr)
    }

    /// Only the columns its keys, aggregates and time column read are needed below it, so
    /// projection pruning can drop the rest before the exchange.
    fn necessary_children_exprs(&self, _output_columns: &[usize]) -> Option<Vec<Vec<usize>>> {
        let exprs: Vec<&Expr> = self.group_expr.iter().chain(&self.aggr_expr).collect();
        columns_read(&self.input, &exprs, Some(&self.time_column))
    }

    fn with_exprs_and_inputs(
        &self,
        mut exprs: Vec<Expr>,
        inputs: Vec<LogicalPlan>,
    ) -> DfResult<Self> {
        let aggr_expr = exprs.split_off(self.group_expr.len());
        Ok(WindowAggregateNode {
            input: exact_inputs("WindowAggregate", inputs)?,
            group_expr: exprs,
            aggr_expr,
            ..self.clone()
        })
    }
}

impl UserDefinedLogicalNodeCore for SinkNode {
    fn name(&self) -> &str {
        "Sink"
    }
    fn inputs(&self) -> Vec<&LogicalPlan> {
        vec![&self.input]
    }
    fn schema(&self) -> &DFSchemaRef {
        self.input.schema()
    }
    fn expressions(&self) -> Vec<Expr> {
        Vec::new()
    }
    fn fmt_for_explain(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "Sink: {} ({})", self.name, self.sink.0.name())
    }
    fn with_exprs_and_inputs(&self, _exprs: Vec<Expr>, inputs: Vec<LogicalPlan>) -> DfResult<Self> {
        Ok(SinkNode {
            input: exact_inputs("Sink", inputs)?,
            ..self.clone()
        })
    }
}

/// `TUMBLE(10s)`, `HOP(slide 2s, size 10s)`, ... as `EXPLAIN` shows them.
pub fn describe_window(w: &WindowSpec) -> String {
    let d = |ms: i64| humanize(ms);
    match *w {
        WindowSpec::Tumble { size, offset: 0 } => format!("TUMBLE({})", d(size)),
        WindowSpec::Tumble { size, offset } => format!("TUMBLE({}, offset {})", d(size), d(offset)),
        WindowSpec::Hop { size, slide } => format!("HOP(slide {}, size {})", d(slide), d(size)),
        WindowSpec::Cumulate { step, max } => format!("CUMULATE(step {}, max {})", d(step), d(max)),
        WindowSpec::Session { gap } => format!("SESSION(gap {})", d(gap)),
    }
}

fn humanize(ms: i64) -> String {
    match ms {
        m if m % 3_600_000 == 0 => format!("{}h", m / 3_600_000),
        m if m % 60_000 == 0 => format!("{}min", m / 60_000),
        m if m % 1000 == 0 => format!("{}s", m / 1000),
        m => format!("{m}ms"),
    }
}
