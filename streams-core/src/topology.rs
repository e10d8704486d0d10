//! The physical shape of a job: operator nodes with a parallelism each, edges that say how
//! rows move between them, and the chaining of neighbours into one task. `render` gives the text
//! that `EXPLAIN` prints.
//!
//! Chaining (as Flink does): a node joins its upstream's task when the edge between them is
//! `Forward`, both have the same parallelism, the upstream feeds only it, it reads only from the
//! upstream, and it is stateless. A chain runs as one task per subtask, passing batches by
//! function call instead of through a channel.

use std::fmt::Write as _;

/// Index of a node in its topology.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeId(pub usize);

/// What a node does, for chaining and display.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeKind {
    /// Reads from outside (a queue topic, files, a generator).
    Source,
    /// Keeps no state between batches (filter, projection, union).
    Stateless,
    /// Keeps state (window aggregate, join, deduplication).
    Stateful,
    /// Writes outside.
    Sink,
}

/// How rows cross an edge.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Partitioning {
    /// Subtask i sends to subtask i (equal parallelism).
    Forward,
    /// By a hash of these key columns, so equal keys meet in one subtask.
    Hash(Vec<String>),
    /// Every row to every subtask.
    Broadcast,
    /// Batches spread round robin (between nodes of different parallelism).
    Rebalance,
}

/// An operator node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node {
    /// Short name, e.g. `filter`.
    pub name: String,
    /// What it computes, e.g. `price > 100`.
    pub detail: String,
    /// Kind, for chaining.
    pub kind: NodeKind,
    /// Number of subtasks.
    pub parallelism: usize,
}

/// An edge between two nodes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Edge {
    /// Upstream node.
    pub from: NodeId,
    /// Downstream node.
    pub to: NodeId,
    /// How rows are distributed.
    pub partitioning: Partitioning,
    /// Which output of `from` feeds the edge: 0 is the main output, higher numbers are side
    /// outputs (a window's late rows).
    pub port: usize,
}

/// Why a topology cannot run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvalidTopology(pub String);

impl std::fmt::Display for InvalidTopology {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for InvalidTopology {}

/// A job's nodes and edges, in the order they were added (upstream before downstream).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Topology {
    nodes: Vec<Node>,
    edges: Vec<Edge>,
}

impl Topology {
    /// An empty topology.
    pub fn new() -> Self {
        Topology::default()
    }

    /// Adds a node; returns its id.
    pub fn add(&mut self, name: &str, detail: &str, kind: NodeKind, parallelism: usize) -> NodeId {
        self.nodes.push(Node {
            name: name.to_string(),
            detail: detail.to_string(),
            kind,
            parallelism,
        });
        NodeId(self.nodes.len() - 1)
    }

    /// Connects `from` to `to`.
    pub fn connect(&mut self, from: NodeId, to: NodeId, partitioning: Partitioning) {
        self.connect_port(from, 0, to, partitioning);
    }

    /// Connects output `port` of `from` (a side output when `port > 0`) to `to`.
    pub fn connect_port(
        &mut self,
        from: NodeId,
        port: usize,
        to: NodeId,
        partitioning: Partitioning,
    ) {
        self.edges.push(Edge {
            from,
            to,
            partitioning,
            port,
        });
    }

    /// The edges into `n`, in the order they were added (their order is the input numbering).
    pub fn inputs_of(&self, n: NodeId) -> Vec<&Edge> {
        self.inputs(n).collect()
    }

    /// The edges out of `n`.
    pub fn outputs_of(&self, n: NodeId) -> Vec<&Edge> {
        self.outputs(n).collect()
    }

    /// The nodes, by id.
    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    /// The edges.
    pub fn edges(&self) -> &[Edge] {
        &self.edges
    }

    fn inputs(&self, n: NodeId) -> impl Iterator<Item = &Edge> {
        self.edges.iter().filter(move |e| e.to == n)
    }

    fn outputs(&self, n: NodeId) -> impl Iterator<Item = &Edge> {
        self.edges.iter().filter(move |e| e.from == n)
    }

    /// Checks that the topology can run: edges point forward in insertion order (so it is a
    /// DAG), parallelism is positive, forward edges join equal parallelism, sources have no
    /// inputs and sinks no outputs, and every other node has both.
    pub fn validate(&self) -> Result<(), InvalidTopology> {
        let bad = |m: String| Err(InvalidTopology(m));
        for (i, n) in self.nodes.iter().enumerate() {
            let id = NodeId(i);
            if n.parallelism == 0 {
                return bad(format!("node [{i}] {} has parallelism 0", n.name));
            }
            let (ins, outs) = (self.inputs(id).count(), self.outputs(id).count());
            match n.kind {
                NodeKind::Source if ins > 0 => {
                    return bad(format!("source [{i}] {} has inputs", n.name));
                }
                NodeKind::Sink if outs > 0 => {
                    return bad(format!("sink [{i}] {} has outputs", n.name));
                }
                NodeKind::Source | NodeKind::Sink => {}
                _ if ins == 0 || outs == 0 => {
                    return bad(format!(
                        "operator [{i}] {} needs an input and an output",
                        n.name
                    ));
                }
                _ => {}
            }
        }
        for e in &self.edges {
            let (Some(from), Some(to)) = (self.nodes.get(e.from.0), self.nodes.get(e.to.0)) else {
                return bad(format!(
                    "edge [{}] -> [{}] names a missing node",
                    e.from.0, e.to.0
                ));
            };
            if e.from >= e.to {
                return bad(format!(
                    "edge [{}] -> [{}] points backwards",
                    e.from.0, e.to.0
                ));
            }
            if e.partitioning == Partitioning::Forward && from.parallelism != to.parallelism {
                return bad(format!(
                    "forward edge [{}] {} (parallelism {}) -> [{}] {} (parallelism {}) needs equal \
                     parallelism; use a hash or broadcast edge",
                    e.from.0, from.name, from.parallelism, e.to.0, to.name, to.parallelism
                ));
            }
        }
        Ok(())
    }

    /// Whether `to` runs in the same task as its single upstream.
    fn chains_to_upstream(&self, to: NodeId) -> Option<NodeId> {
        let mut ins = self.inputs(to);
        let edge = ins.next()?;
        if ins.next().is_some() || edge.partitioning != Partitioning::Forward || edge.port != 0 {
            return None;
        }
        let (up, down) = (&self.nodes[edge.from.0], &self.nodes[to.0]);
        let single_out = self.outputs(edge.from).count() == 1;
        let chainable = matches!(down.kind, NodeKind::Stateless | NodeKind::Sink);
        (single_out && up.parallelism == down.parallelism && chainable).then_some(edge.from)
    }

    /// The tasks: chains of node ids, each in upstream-to-downstream order, ordered by their
    /// first node.
    pub fn chains(&self) -> Vec<Vec<NodeId>> {
        let mut chains: Vec<Vec<NodeId>> = Vec::new();
        let mut chain_of = vec![usize::MAX; self.nodes.len()];
        for i in 0..self.nodes.len() {
            let id = NodeId(i);
            match self.chains_to_upstream(id).map(|up| chain_of[up.0]) {
                Some(c) if c != usize::MAX => {
                    chains[c].push(id);
                    chain_of[i] = c;
                }
                _ => {
                    chain_of[i] = chains.len();
                    chains.push(vec![id]);
                }
            }
        }
        chains
    }

    /// The text `EXPLAIN` prints: one block per task with its chained nodes, then the edges
    /// leaving it.
    pub fn render(&self) -> String {
        let chains = self.chains();
        let mut task_of = vec![0; self.nodes.len()];
        for (t, c) in chains.iter().enumerate() {
            for n in c {
                task_of[n.0] = t;
            }
        }
        let mut out = String::new();
        let _ = writeln!(out, "{} nodes in {} tasks", self.nodes.len(), chains.len());
        for (t, chain) in chains.iter().enumerate() {
            let p = chain.first().map_or(0, |n| self.nodes[n.0].parallelism);
            let _ = writeln!(out, "task {t} (parallelism {p}):");
            for n in chain {
                let node = &self.nodes[n.0];
                let detail = if node.detail.is_empty() {
                    String::new()
                } else {
                    format!(": {}", node.detail)
                };
                let _ = writeln!(out, "  [{}] {}{detail}", n.0, node.name);
            }
            // Edges leaving the task: from any of its nodes, except the chained hand-offs.
            for n in chain {
                for e in self.outputs(*n).filter(|e| task_of[e.to.0] != t) {
                    let how = match &e.partitioning {
                        Partitioning::Forward => "forward".to_string(),
                        Partitioning::Hash(keys) => format!("hash({})", keys.join(", ")),
                        Partitioning::Broadcast => "broadcast".to_string(),
                        Partitioning::Rebalance => "rebalance".to_string(),
                    };
                    let side = if e.port > 0 {
                        format!(" side output {} of [{}]", e.port, n.0)
                    } else {
                        String::new()
                    };
                    let _ = writeln!(
                        out,
                        "  --{how}{side}--> task {} [{}]",
                        task_of[e.to.0], e.to.0
                    );
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn windowed(p: usize) -> Topology {
        let mut t = Topology::new();
        let src = t.add("source", "queue bids", NodeKind::Source, p);
        let filter = t.add("filter", "price > 100", NodeKind::Stateless, p);
        let project = t.add(
            "project",
            "auction, price, date_time",
            NodeKind::Stateless,
            p,
        );
        let window = t.add(
            "window aggregate",
            "TUMBLE(10 s): count(*)",
            NodeKind::Stateful,
            4,
        );
        let sink = t.add("sink", "print", NodeKind::Sink, 4);
        t.connect(src, filter, Partitioning::Forward);
        t.connect(filter, project, Partitioning::Forward);
        t.connect(project, window, Partitioning::Hash(vec!["auction".into()]));
        t.connect(window, sink, Partitioning::Forward);
        t
    }

    #[test]
    fn stateless_forward_neighbours_chain() {
        let t = windowed(2);
        t.validate().unwrap();
        assert_eq!(
            t.chains(),
            vec![
                vec![NodeId(0), NodeId(1), NodeId(2)],
                vec![NodeId(3), NodeId(4)]
            ]
        );
        assert_eq!(
            t.render(),
            "5 nodes in 2 tasks\n\
             task 0 (parallelism 2):\n  [0] source: queue bids\n  [1] filter: price > 100\n  \
             [2] project: auction, price, date_time\n  --hash(auction)--> task 1 [3]\n\
             task 1 (parallelism 4):\n  [3] window aggregate: TUMBLE(10 s): count(*)\n  \
             [4] sink: print\n"
        );
    }

    #[test]
    fn fan_out_and_fan_in_break_chains() {
        let mut t = Topology::new();
        let a = t.add("source", "a", NodeKind::Source, 1);
        let b = t.add("source", "b", NodeKind::Source, 1);
        let u = t.add("union", "", NodeKind::Stateless, 1);
        let f1 = t.add("filter", "x", NodeKind::Stateless, 1);
        let f2 = t.add("filter", "y", NodeKind::Stateless, 1);
        let s1 = t.add("sink", "1", NodeKind::Sink, 1);
        let s2 = t.add("sink", "2", NodeKind::Sink, 1);
        t.connect(a, u, Partitioning::Forward);
        t.connect(b, u, Partitioning::Forward);
        t.connect(u, f1, Partitioning::Forward);
        t.connect(u, f2, Partitioning::Forward);
        t.connect(f1, s1, Partitioning::Forward);
        t.connect(f2, s2, Partitioning::Forward);
        t.validate().unwrap();
        // The union has two inputs, and two outputs: nothing chains to or from it; each sink
        // joins its filter's task.
        assert_eq!(t.chains().len(), 5);
    }

    #[test]
    fn invalid_topologies_say_why() {
        let mut t = windowed(2);
        t.connect(NodeId(3), NodeId(1), Partitioning::Forward);
        assert!(t.validate().unwrap_err().0.contains("backwards"));
        let mut t = Topology::new();
        let a = t.add("source", "", NodeKind::Source, 2);
        let s = t.add("sink", "", NodeKind::Sink, 3);
        t.connect(a, s, Partitioning::Forward);
        assert!(t.validate().unwrap_err().0.contains("equal parallelism"));
        let mut t = Topology::new();
        t.add("filter", "", NodeKind::Stateless, 1);
        assert!(t.validate().unwrap_err().0.contains("needs an input"));
    }
}
