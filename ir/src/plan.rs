//! The plan: a graph in execution order, serialisable, with what it was compiled
//! from. This is what `weft compile` writes and `weft exec` runs.

use crate::{Dim, Graph, MetaValue, Node, NodeId, Op};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};

/// Bumped whenever the serialised form changes meaning (2: kernel routes and the memory
/// plan left the plan for the backend stage).
pub const PLAN_FORMAT_VERSION: u32 = 2;

/// Which weights a plan was compiled against.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelStamp {
    /// Path or short name the model was compiled from.
    pub source: String,
    /// Total bytes of the weight files.
    pub file_bytes: u64,
    /// Hash of the tensor table (names, dtypes, shapes), hex.
    pub tensor_table_hash: String,
}

/// One step of a plan: a node whose inputs are indices of earlier steps.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Step {
    #[serde(flatten)]
    pub node: Node,
    pub inputs: Vec<usize>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    pub format_version: u32,
    pub family: String,
    pub model: ModelStamp,
    /// Hyperparameters the template read, for reference.
    pub hparams: BTreeMap<String, MetaValue>,
    pub steps: Vec<Step>,
    pub outputs: Vec<usize>,
    /// What each pass changed, in order.
    pub pass_log: Vec<String>,
}

/// One attention layer's KV cache: its KV heads and head width, and the window of a
/// sliding-window layer (the positions its queries read).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KvLayer {
    pub layer: usize,
    pub n_kv_heads: usize,
    pub head_dim: usize,
    pub window: Option<usize>,
}

impl Plan {
    /// Linearises a graph (topological order, stable).
    pub fn from_graph(
        graph: &Graph,
        family: &str,
        model: ModelStamp,
        hparams: BTreeMap<String, MetaValue>,
        pass_log: Vec<String>,
    ) -> Plan {
        let order = graph.topo_order();
        let index: HashMap<NodeId, usize> =
            order.iter().enumerate().map(|(i, &n)| (n, i)).collect();
        let steps = order
            .iter()
            .map(|&n| Step {
                node: graph.node(n).clone(),
                inputs: graph.inputs(n).iter().map(|i| index[i]).collect(),
            })
            .collect();
        Plan {
            format_version: PLAN_FORMAT_VERSION,
            family: family.to_string(),
            model,
            hparams,
            steps,
            outputs: graph.outputs.iter().map(|o| index[o]).collect(),
            pass_log,
        }
    }

    /// Elements of each step's value at `seq` positions (0 for weights and token ids);
    /// saturates rather than wraps for absurd sizes.
    pub fn value_sizes(&self, seq: usize) -> Vec<usize> {
        self.steps
            .iter()
            .map(|s| match s.node.op {
                Op::Weight { .. } | Op::Tokens => 0,
                _ => s
                    .node
                    .shape
                    .iter()
                    .fold(1usize, |a, d| a.saturating_mul(d.eval(seq))),
            })
            .collect()
    }

    /// The plan as a graph again (for passes run on a written plan).
    pub fn to_graph(&self) -> Graph {
        let mut g = Graph::new();
        let mut ids = Vec::with_capacity(self.steps.len());
        for st in &self.steps {
            let inputs: Vec<NodeId> = st.inputs.iter().map(|&i| ids[i]).collect();
            let n = g.add(
                st.node.op.clone(),
                st.node.name.clone(),
                st.node.origin.clone(),
                &inputs,
            );
            g.node_mut(n).shape = st.node.shape.clone();
            ids.push(n);
        }
        g.outputs = self.outputs.iter().map(|&o| ids[o]).collect();
        g
    }

    /// The graph text: one line per step.
    pub fn to_text(&self) -> String {
        let mut s = String::new();
        for i in 0..self.steps.len() {
            s += &self.step_text(i);
            s.push('\n');
        }
        s
    }

    /// One step as a line of text (`%7 = matmul(%5, %6) : [seq, 576]  ; blk.0.q`).
    pub fn step_text(&self, i: usize) -> String {
        let st = &self.steps[i];
        step_line(i, &st.node, &st.inputs)
    }

    /// Graphviz DOT.
    pub fn to_dot(&self) -> String {
        let mut s = String::from("digraph weft {\n  node [shape=box, fontname=monospace];\n");
        for (i, st) in self.steps.iter().enumerate() {
            let label = match &st.node.op {
                Op::Weight { tensor, dtype, .. } => format!("{tensor}\\n{dtype}"),
                op => format!("{}\\n{}", op.kind(), st.node.name),
            };
            let style = if matches!(st.node.op, Op::Weight { .. }) {
                ", style=dashed"
            } else {
                ""
            };
            s += &format!("  n{i} [label=\"{label}\"{style}];\n");
            for &j in &st.inputs {
                s += &format!("  n{j} -> n{i};\n");
            }
        }
        s += "}\n";
        s
    }

    /// The attention layers' KV shapes, by layer.
    pub fn kv_layout(&self) -> Vec<KvLayer> {
        let mut kv: Vec<_> = self
            .steps
            .iter()
            .filter_map(|s| match s.node.op {
                Op::Attention {
                    layer,
                    n_kv_heads,
                    head_dim,
                    window,
                    ..
                } => Some(KvLayer {
                    layer,
                    n_kv_heads,
                    head_dim,
                    window,
                }),
                _ => None,
            })
            .collect();
        kv.sort_unstable_by_key(|l| l.layer);
        kv
    }
}

fn shape_text(shape: &[Dim]) -> String {
    format!(
        "[{}]",
        shape
            .iter()
            .map(|d| d.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    )
}

/// One line of a text dump: `%7 = matmul(%5, %6) : [seq, 576]  ; blk.0.q`.
pub(crate) fn step_line(i: usize, node: &Node, inputs: &[usize]) -> String {
    let args = inputs
        .iter()
        .map(|j| format!("%{j}"))
        .collect::<Vec<_>>()
        .join(", ");
    let params = node.op.params();
    let mut line = format!("%{i} = {}({args})", node.op.kind());
    if !params.is_empty() {
        line += &format!(" {{{params}}}");
    }
    if !node.shape.is_empty() && !matches!(node.op, Op::Weight { .. }) {
        line += &format!(" : {}", shape_text(&node.shape));
    }
    if !node.name.is_empty() && !matches!(node.op, Op::Weight { .. }) {
        line += &format!("  ; {}", node.name);
    }
    line
}

impl Graph {
    /// The graph as text, in the order a plan would run it.
    pub fn to_text(&self) -> String {
        let order = self.topo_order();
        let index: HashMap<NodeId, usize> =
            order.iter().enumerate().map(|(i, &n)| (n, i)).collect();
        let mut s = String::new();
        for (i, &n) in order.iter().enumerate() {
            let inputs: Vec<usize> = self.inputs(n).iter().map(|x| index[x]).collect();
            s += &step_line(i, self.node(n), &inputs);
            s.push('\n');
        }
        s
    }
}
