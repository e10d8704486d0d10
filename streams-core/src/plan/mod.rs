//! The logical plan: DataFusion's `LogicalPlan` plus streaming extension nodes
//! ([`StreamScan`], [`WatermarkNode`], [`WindowAggregateNode`], [`StreamJoinNode`],
//! [`SinkNode`]). SQL and the DSL
//! both produce it; [`StreamPlanBuilder`] builds it from Rust; [`compile`] turns it into a
//! runnable [`crate::runtime::JobGraph`].

mod builder;
mod case;
mod compile;
mod compile_keyed;
mod custom;
mod nodes;
mod nodes_more;
mod prune;
mod retract;
mod scan_columns;
mod share;

pub use builder::StreamPlanBuilder;
pub use compile::{JobConfig, compile, explain_job, optimize};
pub use custom::{OperatorNode, OperatorRef};
pub use nodes::{
    SinkNode, SinkRef, SourceRef, StreamScan, WatermarkNode, WindowAggregateNode, WindowOptions,
    describe_window,
};
pub use nodes_more::{
    StreamJoinKind, StreamJoinNode, TopNNode, UpdateAggregateNode, WindowAssignNode,
};
