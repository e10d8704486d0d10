//! The runtime: a [`JobGraph`] (topology plus what each node runs) launched on tokio as one task
//! per (chain, subtask), joined by bounded channels so that a slow consumer slows its producers
//! instead of buffering without bound.

mod chain;
mod coordinator;
mod exchange;
mod task;

use std::sync::Arc;
use std::time::Duration;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::physical_expr::PhysicalExpr;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use chain::{Chain, Member, Routing, Work};
use exchange::{EdgeOut, Route};
use task::{ChainTask, InputChannel, SourceTask};

use crate::checkpoint::CheckpointPolicy;
use crate::message::Message;
use crate::metrics::{Entry, JobMetrics, OperatorMetrics};
use crate::operator::{OperatorContext, OperatorFactory};
use crate::partition::DEFAULT_MAX_PARALLELISM;
use crate::sink::SinkFactory;
use crate::source::{SourceContext, SourceFactory};
use crate::state::{CheckpointInfo, CheckpointStorage};
use crate::topology::{NodeId, NodeKind, Partitioning, Topology};
use crate::{Error, Result};
use coordinator::{Coordinator, StopRequest, TaskCheckpointing};

/// How a source generates watermarks, per split (Flink's `WATERMARK FOR col AS col - delay`).
#[derive(Clone, Debug)]
pub struct WatermarkSpec {
    /// Event time over the source's batches (a column, or a computed column's expression);
    /// `None`: the source has no event time (no watermarks until the end of a bounded input).
    pub time: Option<Arc<dyn PhysicalExpr>>,
    /// How far out of order rows may arrive and still be on time.
    pub out_of_orderness: Duration,
    /// A split without rows for this long stops holding the watermark back. Default: never.
    pub idle_timeout: Option<Duration>,
    /// How often watermarks are emitted (Flink's `pipeline.auto-watermark-interval`, default
    /// 200 ms); zero emits after every batch.
    pub interval: Duration,
}

impl Default for WatermarkSpec {
    fn default() -> Self {
        WatermarkSpec {
            time: None,
            out_of_orderness: Duration::ZERO,
            idle_timeout: None,
            interval: Duration::from_millis(200),
        }
    }
}

/// What a node runs.
#[derive(Debug, Clone)]
pub enum NodeSpec {
    /// A source with its watermark generation.
    Source {
        /// Makes the subtasks.
        factory: Arc<dyn SourceFactory>,
        /// Watermarks per split.
        watermark: WatermarkSpec,
    },
    /// An operator.
    Operator(Arc<dyn OperatorFactory>),
    /// A sink, receiving rows of `schema`.
    Sink {
        /// Makes the subtasks.
        factory: Arc<dyn SinkFactory>,
        /// Schema of its input.
        schema: SchemaRef,
    },
}

/// How rows cross an edge, with the key expressions of hash edges.
#[derive(Debug, Clone)]
pub enum Exchange {
    /// Subtask i to subtask i.
    Forward,
    /// By a hash of these expressions over the upstream's output.
    Hash(Vec<Arc<dyn PhysicalExpr>>),
    /// To every subtask.
    Broadcast,
    /// Round robin over the downstream subtasks (between different parallelisms).
    Rebalance,
}

/// A runnable job: the topology and, for each node and edge, what it runs.
#[derive(Debug, Default, Clone)]
pub struct JobGraph {
    topology: Topology,
    nodes: Vec<NodeSpec>,
    exchanges: Vec<Exchange>,
}

impl JobGraph {
    /// An empty graph.
    pub fn new() -> Self {
        JobGraph::default()
    }

    /// Adds a source.
    pub fn add_source(
        &mut self,
        name: &str,
        detail: &str,
        factory: Arc<dyn SourceFactory>,
        watermark: WatermarkSpec,
        parallelism: usize,
    ) -> NodeId {
        self.nodes.push(NodeSpec::Source { factory, watermark });
        self.topology
            .add(name, detail, NodeKind::Source, parallelism)
    }

    /// Adds a sink for rows of `schema`.
    pub fn add_sink(
        &mut self,
        name: &str,
        detail: &str,
        factory: Arc<dyn SinkFactory>,
        schema: SchemaRef,
        parallelism: usize,
    ) -> NodeId {
        self.nodes.push(NodeSpec::Sink { factory, schema });
        self.topology.add(name, detail, NodeKind::Sink, parallelism)
    }

    /// Adds a stateless operator (it may be chained to its upstream).
    pub fn add_stateless(
        &mut self,
        name: &str,
        detail: &str,
        factory: Arc<dyn OperatorFactory>,
        parallelism: usize,
    ) -> NodeId {
        self.nodes.push(NodeSpec::Operator(factory));
        self.topology
            .add(name, detail, NodeKind::Stateless, parallelism)
    }

    /// Adds a stateful operator (it starts a task of its own).
    pub fn add_stateful(
        &mut self,
        name: &str,
        detail: &str,
        factory: Arc<dyn OperatorFactory>,
        parallelism: usize,
    ) -> NodeId {
        self.nodes.push(NodeSpec::Operator(factory));
        self.topology
            .add(name, detail, NodeKind::Stateful, parallelism)
    }

    /// Connects output `port` of `from` to `to`.
    pub fn connect(&mut self, from: NodeId, port: usize, to: NodeId, exchange: Exchange) {
        let partitioning = match &exchange {
            Exchange::Forward => Partitioning::Forward,
            Exchange::Hash(keys) => {
                Partitioning::Hash(keys.iter().map(|k| k.to_string()).collect())
            }
            Exchange::Broadcast => Partitioning::Broadcast,
            Exchange::Rebalance => Partitioning::Rebalance,
        };
        self.topology.connect_port(from, port, to, partitioning);
        self.exchanges.push(exchange);
    }

    /// The topology.
    pub fn topology(&self) -> &Topology {
        &self.topology
    }

    /// Parallelism of a node.
    pub fn parallelism(&self, node: NodeId) -> usize {
        self.topology.nodes()[node.0].parallelism
    }
}

/// How a job checkpoints (`execution.checkpointing.*` in SQL, `Pipeline::checkpointing` in
/// the DSL).
#[derive(Clone, Debug)]
pub struct CheckpointConfig {
    /// Start a checkpoint this often; `None`: only the final checkpoint when every source has
    /// ended, and the savepoint of a stop.
    pub interval: Option<Duration>,
    /// At least this long between the end of a checkpoint and the start of the next.
    pub min_pause: Duration,
    /// Abort a checkpoint still running after this long (a savepoint that times out fails the
    /// job). Default 10 minutes.
    pub timeout: Duration,
    /// Where checkpoints are written, and which one the job resumes from.
    pub storage: Arc<dyn CheckpointStorage>,
}

impl CheckpointConfig {
    /// Checkpoints every `interval` into `storage`.
    pub fn new(interval: Option<Duration>, storage: Arc<dyn CheckpointStorage>) -> Self {
        CheckpointConfig {
            interval,
            min_pause: Duration::ZERO,
            timeout: Duration::from_secs(600),
            storage,
        }
    }

    fn policy(&self) -> Option<CheckpointPolicy> {
        let ms = |d: Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        self.interval.map(|i| CheckpointPolicy {
            interval: ms(i).max(1),
            min_pause: ms(self.min_pause),
            timeout: ms(self.timeout).max(1),
        })
    }
}

/// Runtime settings of a job.
#[derive(Clone, Debug)]
pub struct RuntimeConfig {
    /// Batches each channel holds before its sender waits (backpressure). Default 8.
    pub channel_capacity: usize,
    /// Number of key groups (the most subtasks a keyed operator can ever have). Default 128.
    pub max_parallelism: u32,
    /// Checkpoints; `None` (the default): none, and a crash loses what was in flight.
    pub checkpointing: Option<CheckpointConfig>,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            channel_capacity: 8,
            max_parallelism: DEFAULT_MAX_PARALLELISM,
            checkpointing: None,
        }
    }
}

/// A running job.
#[derive(Debug)]
pub struct JobHandle {
    tasks: JoinSet<Result<()>>,
    cancel: CancellationToken,
    metrics: Arc<JobMetrics>,
    stops: Option<mpsc::UnboundedSender<StopRequest>>,
}

impl JobHandle {
    /// Live metrics of every operator subtask.
    pub fn metrics(&self) -> Arc<JobMetrics> {
        Arc::clone(&self.metrics)
    }

    /// Asks every task to stop; `wait` then returns [`Error::Cancelled`].
    pub fn cancel(&self) {
        self.cancel.cancel();
    }

    /// Stops the job and waits for its tasks to end; a stop asked for is not an error. With
    /// checkpoints, the job first takes a savepoint (returned) and ends after it, so that a
    /// restart goes on exactly from there; without, what was in flight is dropped.
    pub async fn stop(mut self) -> Result<Option<CheckpointInfo>> {
        let savepoint = match self.stops.take() {
            Some(stops) => {
                let (tx, rx) = oneshot::channel();
                // A coordinator that is gone has ended with the job: nothing to save.
                match stops.send(tx) {
                    Ok(()) => rx.await.ok(),
                    Err(_) => None,
                }
            }
            None => None,
        };
        match savepoint {
            Some(Ok(info)) => {
                self.wait().await?;
                Ok(Some(info))
            }
            Some(Err(e)) => {
                self.cancel();
                let _ = self.wait().await;
                Err(e)
            }
            None => {
                self.cancel();
                match self.wait().await {
                    Err(Error::Cancelled) | Ok(()) => Ok(None),
                    Err(e) => Err(e),
                }
            }
        }
    }

    /// Waits until every task has finished. Returns the first error; on an error every other
    /// task is cancelled.
    pub async fn wait(mut self) -> Result<()> {
        self.join().await
    }

    /// [`JobHandle::wait`] without giving up the handle, so that it can be raced against a
    /// timer and the job cancelled (then joined again) when the timer wins.
    pub async fn join(&mut self) -> Result<()> {
        let mut first: Option<Error> = None;
        while let Some(joined) = self.tasks.join_next().await {
            let err = match joined {
                Ok(Ok(())) => continue,
                Ok(Err(e)) => e,
                Err(e) if e.is_panic() => Error::Internal(format!("a task panicked: {e}")),
                Err(_) => Error::Cancelled,
            };
            self.cancel.cancel();
            // The cause, not the cancellations it set off in other tasks.
            let replace = match &first {
                None => true,
                Some(Error::Cancelled) => !matches!(err, Error::Cancelled),
                Some(_) => false,
            };
            if replace {
                first = Some(err);
            }
        }
        match first {
            Some(e) => Err(e),
            None if self.cancel.is_cancelled() => Err(Error::Cancelled),
            None => Ok(()),
        }
    }
}

impl Drop for JobHandle {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// Starts `graph` on the current tokio runtime.
pub fn launch(graph: JobGraph, config: &RuntimeConfig) -> Result<JobHandle> {
    let topo = &graph.topology;
    topo.validate().map_err(|e| Error::plan(e.0))?;
    let capacity = config.channel_capacity.max(1);
    let cancel = CancellationToken::new();
    let edges = topo.edges();
    // senders[e][i][j]: edge e, upstream subtask i, downstream subtask j.
    let mut senders: Vec<Vec<Vec<Option<mpsc::Sender<Message>>>>> = Vec::new();
    // receivers[node][j]: the input channels of downstream subtask j.
    let mut receivers: Vec<Vec<Vec<InputChannel>>> = topo
        .nodes()
        .iter()
        .map(|n| (0..n.parallelism).map(|_| Vec::new()).collect())
        .collect();
    let chains = topo.chains();
    let mut chained = vec![false; edges.len()];
    for chain in &chains {
        for pair in chain.windows(2) {
            if let Some(e) = edges
                .iter()
                .position(|e| e.from == pair[0] && e.to == pair[1])
            {
                chained[e] = true;
            }
        }
    }
    for (e, edge) in edges.iter().enumerate() {
        let up = topo.nodes()[edge.from.0].parallelism;
        let down = topo.nodes()[edge.to.0].parallelism;
        let mut per_up = vec![vec![None; down]; up];
        if !chained[e] {
            let input = edges[..e].iter().filter(|x| x.to == edge.to).count();
            for (i, row) in per_up.iter_mut().enumerate() {
                for (j, slot) in row.iter_mut().enumerate() {
                    if matches!(graph.exchanges[e], Exchange::Forward) && i != j {
                        continue;
                    }
                    let (tx, rx) = mpsc::channel(capacity);
                    *slot = Some(tx);
                    receivers[edge.to.0][j].push(InputChannel { input, rx });
                }
            }
        }
        senders.push(per_up);
    }
    let mut metrics = JobMetrics::default();
    let mut tasks = JoinSet::new();
    // Checkpointing: what the tasks share with the coordinator, and where sources resume.
    let mut task_ck: Option<TaskCheckpointing> = None;
    let mut events_rx = None;
    let mut completed_tx = None;
    let mut positions = std::collections::BTreeMap::new();
    let mut source_commands = Vec::new();
    let topology_text = topo.render();
    if let Some(ck) = &config.checkpointing {
        let restored = ck.storage.restored();
        if let Some((id, meta)) = &restored {
            positions = coordinator::check_restored(*id, meta, &topology_text)?;
            tracing::info!(checkpoint = id, "resuming from checkpoint");
        }
        let restored = restored.map(|(id, _)| id);
        let (events, rx) = mpsc::unbounded_channel();
        let (done_tx, done_rx) = watch::channel(restored.unwrap_or(0));
        events_rx = Some(rx);
        completed_tx = Some(done_tx);
        task_ck = Some(TaskCheckpointing {
            storage: Arc::clone(&ck.storage),
            events,
            completed: done_rx,
            restored,
        });
    }
    let mut task_count = 0usize;
    for chain in &chains {
        let head = chain[0];
        for subtask in 0..topo.nodes()[head.0].parallelism {
            let mut members = Vec::with_capacity(chain.len());
            let mut routing = Vec::with_capacity(chain.len());
            for (pos, node) in chain.iter().enumerate() {
                let n = &topo.nodes()[node.0];
                let op_metrics = Arc::new(OperatorMetrics::default());
                let mut outs = Vec::new();
                for (e, edge) in edges.iter().enumerate() {
                    if edge.from != *node || chained[e] {
                        continue;
                    }
                    let txs: Vec<mpsc::Sender<Message>> =
                        senders[e][subtask].iter().flatten().cloned().collect();
                    let route = match &graph.exchanges[e] {
                        Exchange::Forward => match txs.into_iter().next() {
                            Some(tx) => Route::Forward(tx),
                            None => {
                                return Err(Error::Internal("forward edge without channel".into()));
                            }
                        },
                        Exchange::Hash(keys) => Route::Hash {
                            keys: keys.clone(),
                            senders: txs,
                            max_parallelism: config.max_parallelism,
                        },
                        Exchange::Broadcast => Route::Broadcast(txs),
                        Exchange::Rebalance => Route::Rebalance {
                            senders: txs,
                            next: std::sync::atomic::AtomicUsize::new(subtask),
                        },
                    };
                    outs.push(EdgeOut {
                        port: edge.port,
                        route,
                    });
                }
                metrics.entries.push(Entry {
                    node: node.0,
                    name: n.name.clone(),
                    subtask,
                    metrics: Arc::clone(&op_metrics),
                    inputs: Vec::new(),
                });
                let (work, sink_schema) = match &graph.nodes[node.0] {
                    NodeSpec::Source { .. } => (Work::Pass, None),
                    NodeSpec::Operator(f) => {
                        (Work::Operator(f.create(subtask, n.parallelism)?), None)
                    }
                    NodeSpec::Sink { factory, schema } => (
                        Work::Sink(factory.create(subtask, n.parallelism)?),
                        Some(Arc::clone(schema)),
                    ),
                };
                routing.push(Routing {
                    outs,
                    chained_next: pos + 1 < chain.len(),
                    metrics: Arc::clone(&op_metrics),
                });
                members.push(Member {
                    work,
                    context: OperatorContext {
                        node: node.0,
                        name: n.name.clone(),
                        subtask,
                        parallelism: n.parallelism,
                        metrics: op_metrics,
                        storage: config
                            .checkpointing
                            .as_ref()
                            .map(|c| Arc::clone(&c.storage)),
                    },
                    sink_schema,
                });
            }
            let chain_run = Chain {
                members,
                routing,
                cancel: cancel.clone(),
                checkpointing: task_ck.clone(),
                stored: Vec::new(),
            };
            task_count += 1;
            match &graph.nodes[head.0] {
                NodeSpec::Source { factory, watermark } => {
                    let parallelism = topo.nodes()[head.0].parallelism;
                    let commands = task_ck.as_ref().map(|_| {
                        let (tx, rx) = mpsc::unbounded_channel();
                        source_commands.push(tx);
                        rx
                    });
                    let position = task_ck.as_ref().and_then(|c| c.restored).map(|_| {
                        positions
                            .remove(&crate::state::TaskKey {
                                node: head.0,
                                subtask,
                            })
                            .unwrap_or_default()
                    });
                    let metrics = Arc::clone(&chain_run.routing[0].metrics);
                    let task = SourceTask {
                        source: factory.create(subtask, parallelism)?,
                        context: SourceContext {
                            node: head.0,
                            subtask,
                            parallelism,
                            metrics,
                        },
                        watermark: watermark.clone(),
                        chain: chain_run,
                        commands,
                        position,
                    };
                    tasks.spawn(task.run());
                }
                _ => {
                    let inputs = std::mem::take(&mut receivers[head.0][subtask]);
                    // Queue fill is read from the sending side of the task's input channels.
                    let weak = senders
                        .iter()
                        .enumerate()
                        .filter(|(e, _)| edges[*e].to == head)
                        .flat_map(|(_, per_up)| {
                            per_up.iter().filter_map(|row| row[subtask].as_ref())
                        })
                        .map(mpsc::Sender::downgrade)
                        .collect();
                    if let Some(entry) = metrics
                        .entries
                        .iter_mut()
                        .find(|x| x.node == head.0 && x.subtask == subtask)
                    {
                        entry.inputs = weak;
                    }
                    tasks.spawn(
                        ChainTask {
                            inputs,
                            chain: chain_run,
                        }
                        .run(),
                    );
                }
            }
        }
    }
    let mut stops = None;
    if let (Some(ck), Some(events), Some(completed)) =
        (&config.checkpointing, events_rx, completed_tx)
    {
        // Only the tasks hold event senders now: the coordinator ends once they all have.
        drop(task_ck);
        let (stop_tx, stop_rx) = mpsc::unbounded_channel();
        stops = Some(stop_tx);
        let first_id = (*completed.borrow()).max(ck.storage.highest_id());
        let coordinator = Coordinator {
            policy: ck.policy(),
            storage: Arc::clone(&ck.storage),
            topology: topology_text,
            tasks: task_count,
            sources: source_commands,
            events,
            stops: stop_rx,
            completed,
            stats: Arc::clone(&metrics.checkpoints),
            cancel: cancel.clone(),
            first_id,
        };
        tasks.spawn(coordinator.run());
    }
    Ok(JobHandle {
        tasks,
        cancel,
        metrics: Arc::new(metrics),
        stops,
    })
}
