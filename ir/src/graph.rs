//! The op graph: nodes are ops on named values, edges carry the input slot.

use crate::DType;
use petgraph::stable_graph::{NodeIndex, StableDiGraph};
use petgraph::visit::EdgeRef;
use petgraph::Direction;
use serde::{Deserialize, Serialize};

/// A dimension: a number, or `seq`, the count of positions in the current step
/// (the whole prompt at prefill, 1 at decode).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Dim {
    Known(usize),
    Sym(Sym),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Sym {
    Seq,
}

impl Dim {
    pub const SEQ: Dim = Dim::Sym(Sym::Seq);

    /// The concrete size for a step of `seq` positions.
    pub fn eval(self, seq: usize) -> usize {
        match self {
            Dim::Known(n) => n,
            Dim::Sym(Sym::Seq) => seq,
        }
    }
}

impl std::fmt::Display for Dim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Dim::Known(n) => write!(f, "{n}"),
            Dim::Sym(Sym::Seq) => f.write_str("seq"),
        }
    }
}

/// How rope pairs the dimensions of a head.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RopeLayout {
    /// Adjacent dims (2i, 2i+1) form a pair (GGUF llama files, whose Q/K rows the
    /// converter permuted).
    Pairs,
    /// Dim i pairs with i + rot_dim/2 (HF checkpoints, GPT-NeoX).
    Halves,
}

/// Frequency scaling applied to rope's inverse frequencies.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum RopeScaling {
    None,
    /// Positions divided by `factor`.
    Linear {
        factor: f32,
    },
    /// Llama 3: long wavelengths divided by `factor`, short ones kept, a smooth ramp between.
    Llama3 {
        factor: f32,
        low_freq_factor: f32,
        high_freq_factor: f32,
        original_context: f32,
    },
    /// Gemma 4's "proportional" rope: only the first `pairs` frequencies turn (exponents
    /// still over the whole rotated width), the rest stay still; all divided by `factor`.
    Proportional {
        pairs: usize,
        factor: f32,
    },
}

/// The parameters of a rotary embedding (see [`Op::Rope`]).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct RopeParams {
    pub head_dim: usize,
    pub rot_dim: usize,
    pub base: f32,
    pub layout: RopeLayout,
    pub scaling: RopeScaling,
}

/// One instruction of a fused elementwise program ([`Op::Elementwise`]). Operands
/// index a register file that starts with the node's inputs; each instruction
/// appends one register; the last register is the result.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "ew", rename_all = "snake_case")]
pub enum Ew {
    Add { a: usize, b: usize },
    Mul { a: usize, b: usize },
    Scale { a: usize, factor: f32 },
    Silu { a: usize },
    Gelu { a: usize },
    Softcap { a: usize, cap: f32 },
}

impl Ew {
    pub fn operands(&self) -> Vec<usize> {
        match *self {
            Ew::Add { a, b } | Ew::Mul { a, b } => vec![a, b],
            Ew::Scale { a, .. } | Ew::Silu { a } | Ew::Gelu { a } | Ew::Softcap { a, .. } => {
                vec![a]
            }
        }
    }
}

/// Activation of a gated linear unit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GluAct {
    Silu,
    Gelu,
}

/// One operation. Activations are `[seq, width]` row-major f32 matrices.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Op {
    /// The token ids of the step: `[seq]`.
    Tokens,
    /// A weight tensor, by its name in the model file, in its stored type. `transposed`:
    /// the file stores the transpose of `shape` (HF Conv1D, `[in, out]`).
    Weight {
        tensor: String,
        dtype: DType,
        shape: Vec<usize>,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        transposed: bool,
    },
    /// Rows of the table (input 0) picked by the token ids (input 1).
    TokenEmbed,
    /// Rows of a learned position table (input 0) for the step's positions.
    PositionEmbed,
    /// `(x − mean) / sqrt(var + eps) · w + b` over each row; inputs x, w, b.
    LayerNorm {
        eps: f32,
    },
    /// `x · [w₁; w₂; …]ᵀ`: x `[seq, k]` (input 0) against one or more weights `[n_i, k]`
    /// of any stored type (inputs 1..=n), outputs side by side `[seq, Σ n_i]`: several
    /// weights over one input are one pass over it (fused q/k/v, gate/up). Epilogue:
    /// with `bias`, inputs n+1..=2n are each weight's bias; then `softcap` if set.
    /// Which kernels read the weights is the backend's choice, made at lowering.
    MatMul {
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        bias: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        softcap: Option<f32>,
    },
    /// Columns `start..start + len` of the input.
    Slice {
        start: usize,
        len: usize,
    },
    /// Residual add and RMSNorm in one pass: inputs a, b, w → `[seq, 2d]`: `a + b`
    /// in the first `d` columns, its norm in the last `d`.
    AddRmsNorm {
        eps: f32,
        weight_offset: f32,
        group: usize,
    },
    /// Gated linear unit over `[seq, 2f]` (gate | up) → `act(gate) · up`, `[seq, f]`.
    Glu {
        act: GluAct,
    },
    /// A fused chain of elementwise ops over inputs of one shape.
    Elementwise {
        code: Vec<Ew>,
    },
    Add,
    Mul,
    /// `x + b` with the vector b (input 1) added to every row.
    Bias,
    /// `x · factor`, times the one value of an optional input 1 (a learned scalar weight).
    Scale {
        factor: f32,
    },
    /// Each group of `group` values becomes `x / rms(x) · (w + weight_offset)`; w (optional
    /// input 1) has `group` values; without it the norm has no scale (Gemma 4's v norm).
    RmsNorm {
        eps: f32,
        weight_offset: f32,
        group: usize,
    },
    Silu,
    /// GELU, tanh approximation.
    Gelu,
    /// `cap · tanh(x / cap)`.
    Softcap {
        cap: f32,
    },
    /// Rotary embedding of the first `rot_dim` dims of every `head_dim`-wide head at the
    /// step's absolute positions. Optional input 1: per-frequency divisors (GGUF `rope_freqs`).
    Rope {
        head_dim: usize,
        rot_dim: usize,
        base: f32,
        layout: RopeLayout,
        scaling: RopeScaling,
    },
    /// Causal attention of q (input 0) over the KV cache of `layer`, after appending this
    /// step's k and v (inputs 1, 2). Grouped-query when `n_kv_heads < n_heads`.
    Attention {
        layer: usize,
        n_heads: usize,
        n_kv_heads: usize,
        head_dim: usize,
        scale: f32,
        window: Option<usize>,
        softcap: Option<f32>,
        /// Rope applied to q and k inside attention (the rope-into-attention fusion);
        /// an optional input 3 holds its frequency divisors.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        rope: Option<RopeParams>,
    },
    /// Mixture of experts: a router (input 1, `[n_experts, d]`) scores each row of x
    /// (input 0), the `top_k` best experts (softmax weights, renormalised over the k
    /// when `norm_topk`) each run `down · (act(gate · x) ⊙ (up · x))`, summed by weight.
    /// Experts' gate, up and down weights follow: three `[n_experts, rows, cols]`
    /// tensors when `stacked`, else `n_experts` gates, then ups, then downs.
    Moe {
        n_experts: usize,
        top_k: usize,
        norm_topk: bool,
        act: GluAct,
        stacked: bool,
    },
    /// Keeps the last position: `[seq, n]` → `[1, n]`.
    LastPosition,
    /// A result of the graph (the logits).
    Output,
}

impl Op {
    /// A plain matmul: one weight, no epilogue.
    pub fn matmul() -> Op {
        Op::MatMul {
            bias: false,
            softcap: None,
        }
    }

    /// The rotation a rope step applies, or a rope-fused attention applies to q and k.
    pub fn rope_params(&self) -> Option<RopeParams> {
        match *self {
            Op::Rope {
                head_dim,
                rot_dim,
                base,
                layout,
                scaling,
            } => Some(RopeParams {
                head_dim,
                rot_dim,
                base,
                layout,
                scaling,
            }),
            Op::Attention { rope, .. } => rope,
            _ => None,
        }
    }

    /// The op's name in text dumps.
    pub fn kind(&self) -> &'static str {
        match self {
            Op::Tokens => "tokens",
            Op::Weight { .. } => "weight",
            Op::TokenEmbed => "token_embed",
            Op::PositionEmbed => "position_embed",
            Op::LayerNorm { .. } => "layer_norm",
            Op::MatMul { .. } => "matmul",
            Op::Slice { .. } => "slice",
            Op::AddRmsNorm { .. } => "add_rms_norm",
            Op::Glu { .. } => "glu",
            Op::Elementwise { .. } => "elementwise",
            Op::Add => "add",
            Op::Mul => "mul",
            Op::Bias => "bias",
            Op::Scale { .. } => "scale",
            Op::RmsNorm { .. } => "rms_norm",
            Op::Silu => "silu",
            Op::Gelu => "gelu",
            Op::Softcap { .. } => "softcap",
            Op::Rope { .. } => "rope",
            Op::Attention { .. } => "attention",
            Op::Moe { .. } => "moe",
            Op::LastPosition => "last_position",
            Op::Output => "output",
        }
    }

    /// The op's parameters, for text dumps.
    pub fn params(&self) -> String {
        match self {
            Op::Weight {
                tensor,
                dtype,
                shape,
                transposed,
            } => {
                let t = if *transposed { " transposed" } else { "" };
                format!("{tensor:?} {dtype} {shape:?}{t}")
            }
            Op::Scale { factor } => format!("factor={factor}"),
            Op::RmsNorm { eps, weight_offset, group } | Op::AddRmsNorm { eps, weight_offset, group } => {
                format!("eps={eps:e} offset={weight_offset} group={group}")
            }
            Op::MatMul { bias, softcap } => {
                let mut p = Vec::new();
                if *bias {
                    p.push("bias".into());
                }
                if let Some(c) = softcap {
                    p.push(format!("softcap={c}"));
                }
                p.join(" ")
            }
            Op::Slice { start, len } => format!("start={start} len={len}"),
            Op::LayerNorm { eps } => format!("eps={eps:e}"),
            Op::Glu { act } => format!("act={act:?}"),
            Op::Moe { n_experts, top_k, norm_topk, act, stacked } => {
                format!("experts={n_experts} top_k={top_k} norm_topk={norm_topk} act={act:?} stacked={stacked}")
            }
            Op::Elementwise { code } => code
                .iter()
                .map(|e| format!("{e:?}"))
                .collect::<Vec<_>>()
                .join("; "),
            Op::Softcap { cap } => format!("cap={cap}"),
            Op::Rope { head_dim, rot_dim, base, layout, scaling } => format!(
                "head_dim={head_dim} rot_dim={rot_dim} base={base} layout={layout:?} scaling={scaling:?}"
            ),
            Op::Attention { layer, n_heads, n_kv_heads, head_dim, scale, window, softcap, rope } => {
                let mut s = format!(
                    "layer={layer} heads={n_heads} kv_heads={n_kv_heads} head_dim={head_dim} scale={scale}"
                );
                if let Some(w) = window {
                    s += &format!(" window={w}");
                }
                if let Some(c) = softcap {
                    s += &format!(" softcap={c}");
                }
                if let Some(r) = rope {
                    s += &format!(" rope(rot_dim={} base={} layout={:?} scaling={:?})", r.rot_dim, r.base, r.layout, r.scaling);
                }
                s
            }
            _ => String::new(),
        }
    }
}

/// A node: its op, the name of the value it makes, its shape once inferred, and the
/// template line it came from (for error messages).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Node {
    pub op: Op,
    pub name: String,
    #[serde(default)]
    pub shape: Vec<Dim>,
    #[serde(default)]
    pub origin: String,
}

pub type NodeId = NodeIndex;

/// The graph of one model: expanded from a template, rewritten by passes.
#[derive(Clone, Debug, Default)]
pub struct Graph {
    pub inner: StableDiGraph<Node, usize>,
    /// The nodes whose values leave the graph, in order (the logits first).
    pub outputs: Vec<NodeId>,
}

impl Graph {
    pub fn new() -> Self {
        Graph::default()
    }

    /// Adds a node reading `inputs` in order.
    pub fn add(
        &mut self,
        op: Op,
        name: impl Into<String>,
        origin: impl Into<String>,
        inputs: &[NodeId],
    ) -> NodeId {
        let id = self.inner.add_node(Node {
            op,
            name: name.into(),
            shape: vec![],
            origin: origin.into(),
        });
        for (slot, &i) in inputs.iter().enumerate() {
            self.inner.add_edge(i, id, slot);
        }
        id
    }

    pub fn node(&self, id: NodeId) -> &Node {
        &self.inner[id]
    }

    pub fn node_mut(&mut self, id: NodeId) -> &mut Node {
        &mut self.inner[id]
    }

    pub fn len(&self) -> usize {
        self.inner.node_count()
    }

    pub fn is_empty(&self) -> bool {
        self.inner.node_count() == 0
    }

    /// The inputs of a node, in slot order.
    pub fn inputs(&self, id: NodeId) -> Vec<NodeId> {
        let mut e: Vec<(usize, NodeId)> = self
            .inner
            .edges_directed(id, Direction::Incoming)
            .map(|e| (*e.weight(), e.source()))
            .collect();
        e.sort_unstable();
        e.into_iter().map(|(_, n)| n).collect()
    }

    /// The nodes that read `id`.
    pub fn users(&self, id: NodeId) -> Vec<NodeId> {
        let mut u: Vec<NodeId> = self
            .inner
            .neighbors_directed(id, Direction::Outgoing)
            .collect();
        u.sort_unstable();
        u.dedup();
        u
    }

    /// Makes every reader of `old` read `new` instead (outputs included).
    pub fn replace_uses(&mut self, old: NodeId, new: NodeId) {
        let uses: Vec<(NodeId, usize, petgraph::stable_graph::EdgeIndex)> = self
            .inner
            .edges_directed(old, Direction::Outgoing)
            .map(|e| (e.target(), *e.weight(), e.id()))
            .collect();
        for (target, slot, edge) in uses {
            self.inner.remove_edge(edge);
            self.inner.add_edge(new, target, slot);
        }
        for o in &mut self.outputs {
            if *o == old {
                *o = new;
            }
        }
    }

    pub fn remove(&mut self, id: NodeId) -> Option<Node> {
        self.inner.remove_node(id)
    }

    pub fn node_ids(&self) -> Vec<NodeId> {
        self.inner.node_indices().collect()
    }

    /// Nodes in an order where every input comes before its readers. Ready nodes go
    /// in insertion order, and leaves (weights, token ids) right before their first
    /// reader, so dumps read top to bottom and stay stable.
    pub fn topo_order(&self) -> Vec<NodeId> {
        let is_leaf = |n: NodeId| {
            self.inner
                .edges_directed(n, Direction::Incoming)
                .next()
                .is_none()
        };
        let mut indeg: std::collections::HashMap<NodeId, usize> = self
            .inner
            .node_indices()
            .map(|n| {
                (
                    n,
                    self.inner
                        .edges_directed(n, Direction::Incoming)
                        .filter(|e| !is_leaf(e.source()))
                        .count(),
                )
            })
            .collect();
        let mut ready: std::collections::BTreeSet<NodeId> = indeg
            .iter()
            .filter(|(&n, &d)| d == 0 && !is_leaf(n))
            .map(|(&n, _)| n)
            .collect();
        let mut placed = std::collections::HashSet::new();
        let mut order = Vec::with_capacity(self.len());
        while let Some(n) = ready.pop_first() {
            for i in self.inputs(n) {
                if is_leaf(i) && placed.insert(i) {
                    order.push(i);
                }
            }
            order.push(n);
            for e in self.inner.edges_directed(n, Direction::Outgoing) {
                let d = indeg.get_mut(&e.target()).expect("edge to a live node");
                *d -= 1;
                if *d == 0 {
                    ready.insert(e.target());
                }
            }
        }
        // Leaves nobody reads still belong to the graph.
        order.extend(
            self.inner
                .node_indices()
                .filter(|&n| is_leaf(n) && !placed.contains(&n)),
        );
        order
    }
}
