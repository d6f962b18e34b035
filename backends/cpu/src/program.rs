//! Lowering a plan onto the CPU: bind weights, then run the steps in order for each
//! forward call, keeping the KV cache between calls.

use crate::ops::{self, AttnShape};
use crate::{matmul, quant};
use weft_ir::{GluAct, MatKernel, Op, Plan, WeightProvider, WeightView};

#[derive(Debug, thiserror::Error)]
pub enum CpuError {
    #[error("the plan needs tensor '{0}', which the model does not provide")]
    MissingWeight(String),
    #[error("tensor '{tensor}': the plan expects {expected}, the model has {found}")]
    WeightMismatch {
        tensor: String,
        expected: String,
        found: String,
    },
    #[error("step {step} ('{name}'): {message}")]
    BadPlan {
        step: usize,
        name: String,
        message: String,
    },
    #[error("context full: {needed} positions needed, the KV cache holds {max_ctx}")]
    ContextFull { needed: usize, max_ctx: usize },
    #[error("{0}")]
    Gather(#[from] matmul::GatherError),
    #[error("empty step: no tokens given")]
    NoTokens,
}

enum Bound {
    /// A weight in its stored form.
    Weight(WeightView),
    /// A small weight (norm, rope divisors) decoded once at load.
    Small(Vec<f32>),
    /// An activation (or nothing, for token ids and markers).
    Value,
}

struct Cache {
    k: Vec<f32>,
    v: Vec<f32>,
    width: usize,
}

/// A plan bound to weights, with its KV cache: call [`CpuProgram::execute`] once per step.
pub struct CpuProgram {
    plan: Plan,
    bound: Vec<Bound>,
    /// Rope inverse frequencies of rope steps and rope-fused attention steps.
    freqs: Vec<Option<Vec<f32>>>,
    /// Arena slot of each step's value (one per step without a memory plan).
    slot: Vec<usize>,
    slots: Vec<Vec<f32>>,
    caches: Vec<Cache>,
    scratch: Vec<f32>,
    max_ctx: usize,
    pos: usize,
}

fn bad(i: usize, plan: &Plan, message: &str) -> CpuError {
    CpuError::BadPlan {
        step: i,
        name: plan.steps[i].node.name.clone(),
        message: message.to_string(),
    }
}

impl CpuProgram {
    /// Binds every weight step to the provider's tensor (checking dtype and shape) and
    /// sizes the KV cache for `max_ctx` positions.
    pub fn new(plan: Plan, weights: &dyn WeightProvider, max_ctx: usize) -> Result<Self, CpuError> {
        let n = plan.steps.len();
        // Weights read as f32 vectors rather than matrices: norm weights, rope divisors.
        let mut small_use = vec![false; n];
        for st in &plan.steps {
            match st.node.op {
                Op::Bias => small_use[st.inputs[1]] = true,
                Op::RmsNorm { .. } | Op::Scale { .. } if st.inputs.len() > 1 => {
                    small_use[st.inputs[1]] = true
                }
                Op::LayerNorm { .. } => st.inputs[1..].iter().for_each(|&w| small_use[w] = true),
                Op::MatMul { bias: true, .. } => {
                    let n_weights = (st.inputs.len() - 1) / 2;
                    st.inputs[1 + n_weights..]
                        .iter()
                        .for_each(|&b| small_use[b] = true);
                }
                Op::AddRmsNorm { .. } => small_use[st.inputs[2]] = true,
                Op::Rope { .. } if st.inputs.len() > 1 => small_use[st.inputs[1]] = true,
                Op::Attention { .. } if st.inputs.len() > 3 => small_use[st.inputs[3]] = true,
                _ => {}
            }
        }
        let mut bound = Vec::with_capacity(n);
        for (i, st) in plan.steps.iter().enumerate() {
            bound.push(match &st.node.op {
                Op::Weight {
                    tensor,
                    dtype,
                    shape,
                    transposed,
                } => {
                    let mut w = weights
                        .weight(tensor)
                        .ok_or_else(|| CpuError::MissingWeight(tensor.clone()))?;
                    // Stored [in, out]: one transposed copy, so matmuls read rows as usual.
                    if *transposed {
                        w = w.transposed().ok_or_else(|| CpuError::WeightMismatch {
                            tensor: tensor.clone(),
                            expected: "a 2-D matrix of f32, f16 or bf16 to transpose".into(),
                            found: format!("{} {:?}", w.dtype, w.shape),
                        })?;
                    }
                    if w.dtype != *dtype || &w.shape != shape {
                        return Err(CpuError::WeightMismatch {
                            tensor: tensor.clone(),
                            expected: format!("{dtype} {shape:?}"),
                            found: format!("{} {:?}", w.dtype, w.shape),
                        });
                    }
                    if small_use[i] {
                        let mut f = vec![0.0; w.numel()];
                        for (r, out) in f.chunks_exact_mut(w.cols()).enumerate() {
                            quant::kernel_for(w.dtype).decode_row(w.row(r), out);
                        }
                        Bound::Small(f)
                    } else {
                        Bound::Weight(w)
                    }
                }
                _ => Bound::Value,
            });
        }
        let divisors = |st: &weft_ir::Step, k: usize| match st.inputs.get(k).map(|&j| &bound[j]) {
            Some(Bound::Small(d)) => Some(d.as_slice()),
            _ => None,
        };
        let freqs = plan
            .steps
            .iter()
            .map(|st| {
                // Divisors follow x for rope, q/k/v for rope-fused attention.
                let at = if matches!(st.node.op, Op::Rope { .. }) {
                    1
                } else {
                    3
                };
                let r = st.node.op.rope_params()?;
                Some(ops::rope_inv_freqs(
                    r.rot_dim,
                    r.base,
                    r.scaling,
                    divisors(st, at),
                ))
            })
            .collect();
        let caches = plan
            .kv_layout()
            .iter()
            .enumerate()
            .map(|(k, &(layer, nkv, hd))| {
                if layer != k {
                    return Err(CpuError::BadPlan {
                        step: 0,
                        name: format!("layer {layer}"),
                        message: "attention layers must be numbered 0, 1, 2… once each".into(),
                    });
                }
                Ok(Cache {
                    k: vec![0.0; max_ctx * nkv * hd],
                    v: vec![0.0; max_ctx * nkv * hd],
                    width: nkv * hd,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let (slot, n_slots) = match &plan.memory {
            Some(m) if m.slots.len() == n => (
                m.slots.iter().map(|s| s.unwrap_or(m.n_slots)).collect(),
                m.n_slots + 1,
            ),
            Some(_) => return Err(bad(0, &plan, "the memory plan does not cover every step")),
            None => ((0..n).collect(), n),
        };
        Ok(CpuProgram {
            plan,
            bound,
            freqs,
            slot,
            slots: vec![Vec::new(); n_slots],
            caches,
            scratch: Vec::new(),
            max_ctx,
            pos: 0,
        })
    }

    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    /// Positions held in the KV cache.
    pub fn position(&self) -> usize {
        self.pos
    }

    pub fn max_ctx(&self) -> usize {
        self.max_ctx
    }

    /// Forgets the KV cache (a new sequence starts at position 0).
    pub fn reset(&mut self) {
        self.pos = 0;
    }

    /// Runs `tokens` at the next positions; returns the first output (logits) as
    /// `[rows, vocab]` row-major with its row count.
    pub fn execute(&mut self, tokens: &[u32]) -> Result<(&[f32], usize), CpuError> {
        let seq = tokens.len();
        if seq == 0 {
            return Err(CpuError::NoTokens);
        }
        if self.pos + seq > self.max_ctx {
            return Err(CpuError::ContextFull {
                needed: self.pos + seq,
                max_ctx: self.max_ctx,
            });
        }
        let pos0 = self.pos;
        for i in 0..self.plan.steps.len() {
            self.run_step(i, tokens, pos0)?;
        }
        self.pos += seq;
        let o = self.plan.outputs[0];
        let rows = self.plan.steps[o].node.shape[0].eval(seq);
        Ok((&self.slots[self.slot[o]], rows))
    }

    fn run_step(&mut self, i: usize, tokens: &[u32], pos0: usize) -> Result<(), CpuError> {
        let seq = tokens.len();
        let step = &self.plan.steps[i];
        if matches!(step.node.op, Op::Tokens | Op::Weight { .. }) {
            return Ok(());
        }
        // Activations are [rows, cols] (shape inference guarantees it); no allocation per step.
        let shape = [
            step.node.shape[0].eval(seq),
            step.node.shape.get(1).map_or(1, |d| d.eval(seq)),
        ];
        let len = shape[0] * shape[1];
        let mut out = std::mem::take(&mut self.slots[self.slot[i]]);
        out.resize(len, 0.0);
        let input = |k: usize| -> &[f32] { &self.slots[self.slot[step.inputs[k]]] };
        let weight = |k: usize| -> Result<&WeightView, CpuError> {
            match &self.bound[step.inputs[k]] {
                Bound::Weight(w) => Ok(w),
                _ => Err(bad(i, &self.plan, "expected a weight input")),
            }
        };
        let small = |k: usize| -> Result<&[f32], CpuError> {
            match &self.bound[step.inputs[k]] {
                Bound::Small(w) => Ok(w),
                _ => Err(bad(i, &self.plan, "expected a decoded weight")),
            }
        };
        let auto = |rows: usize| {
            if rows == 1 {
                MatKernel::Dot
            } else {
                MatKernel::DecodeReuse
            }
        };
        match &step.node.op {
            Op::Tokens | Op::Weight { .. } => {}
            Op::TokenEmbed => matmul::gather_rows(weight(0)?, tokens, &mut out)?,
            Op::PositionEmbed => {
                let table = weight(0)?;
                let positions: Vec<u32> = (pos0..pos0 + seq).map(|p| p as u32).collect();
                matmul::gather_rows(table, &positions, &mut out)?;
            }
            Op::LayerNorm { eps } => {
                ops::layer_norm(input(0), small(1)?, small(2)?, *eps, &mut out)
            }
            Op::MatMul {
                route,
                bias,
                softcap,
            } => {
                let rows = shape[0];
                let kernel = route.map_or(auto(rows), |r| r.for_rows(rows));
                let n_weights = if *bias {
                    (step.inputs.len() - 1) / 2
                } else {
                    step.inputs.len() - 1
                };
                let ws = (1..=n_weights).map(weight).collect::<Result<Vec<_>, _>>()?;
                matmul::matmul_cat(input(0), rows, &ws, kernel, &mut out);
                if *bias {
                    let biases = (0..n_weights)
                        .map(|k| small(1 + n_weights + k))
                        .collect::<Result<Vec<_>, _>>()?;
                    for row in out.chunks_exact_mut(shape[1]) {
                        let mut at = 0;
                        for b in &biases {
                            row[at..at + b.len()]
                                .iter_mut()
                                .zip(b.iter())
                                .for_each(|(o, v)| *o += v);
                            at += b.len();
                        }
                    }
                }
                if let Some(cap) = softcap {
                    out.iter_mut().for_each(|v| *v = cap * (*v / cap).tanh());
                }
            }
            Op::Slice { start, len: width } => {
                let src = input(0);
                let d = src.len() / shape[0];
                for (o, r) in out.chunks_exact_mut(*width).zip(src.chunks_exact(d)) {
                    o.copy_from_slice(&r[*start..start + width]);
                }
            }
            Op::Add => {
                for ((o, a), b) in out.iter_mut().zip(input(0)).zip(input(1)) {
                    *o = a + b;
                }
            }
            Op::Mul => {
                for ((o, a), b) in out.iter_mut().zip(input(0)).zip(input(1)) {
                    *o = a * b;
                }
            }
            Op::Bias => {
                let b = small(1)?;
                for (o, r) in out
                    .chunks_exact_mut(b.len())
                    .zip(input(0).chunks_exact(b.len()))
                {
                    for ((o, x), y) in o.iter_mut().zip(r).zip(b) {
                        *o = x + y;
                    }
                }
            }
            Op::Scale { factor } => {
                let factor = match step.inputs.len() {
                    1 => *factor,
                    _ => factor * small(1)?[0],
                };
                for (o, a) in out.iter_mut().zip(input(0)) {
                    *o = a * factor;
                }
            }
            Op::RmsNorm {
                eps,
                weight_offset,
                group,
            } => {
                let w = match step.inputs.len() {
                    1 => None,
                    _ => Some(small(1)?),
                };
                ops::rms_norm(input(0), *group, w, *eps, *weight_offset, &mut out)
            }
            Op::AddRmsNorm {
                eps, weight_offset, ..
            } => {
                let d = shape[1] / 2;
                let (a, b, w) = (input(0), input(1), small(2)?);
                for ((o, ra), rb) in out
                    .chunks_exact_mut(2 * d)
                    .zip(a.chunks_exact(d))
                    .zip(b.chunks_exact(d))
                {
                    let (sum, normed) = o.split_at_mut(d);
                    for ((s, x), y) in sum.iter_mut().zip(ra).zip(rb) {
                        *s = x + y;
                    }
                    ops::rms_norm(sum, w.len(), Some(w), *eps, *weight_offset, normed);
                }
            }
            Op::Glu { act } => {
                let f = shape[1];
                for (o, r) in out.chunks_exact_mut(f).zip(input(0).chunks_exact(2 * f)) {
                    let (gate, up) = r.split_at(f);
                    match act {
                        GluAct::Silu => ops::silu(gate, o),
                        GluAct::Gelu => ops::gelu(gate, o),
                    }
                    for (v, u) in o.iter_mut().zip(up) {
                        *v *= u;
                    }
                }
            }
            Op::Moe {
                n_experts,
                top_k,
                norm_topk,
                act,
                stacked,
            } => {
                let (n, d) = (*n_experts, shape[1]);
                let experts = (0..n)
                    .map(|e| {
                        let (g, u, dn) = if *stacked {
                            (weight(2)?, weight(3)?, weight(4)?)
                        } else {
                            (weight(2 + e)?, weight(2 + n + e)?, weight(2 + 2 * n + e)?)
                        };
                        let ffn = g.shape[g.shape.len() - 2];
                        let (fb, db) = if *stacked { (e * ffn, e * d) } else { (0, 0) };
                        Ok(ops::Expert {
                            gate: (g, fb),
                            up: (u, fb),
                            down: (dn, db),
                            ffn,
                        })
                    })
                    .collect::<Result<Vec<_>, CpuError>>()?;
                ops::moe(
                    input(0),
                    d,
                    weight(1)?,
                    &experts,
                    *top_k,
                    *norm_topk,
                    *act,
                    &mut out,
                );
            }
            Op::Elementwise { code } => {
                let ins: Vec<&[f32]> = (0..step.inputs.len()).map(input).collect();
                ops::elementwise(&ins, code, &mut out);
            }
            Op::Silu => ops::silu(input(0), &mut out),
            Op::Gelu => ops::gelu(input(0), &mut out),
            Op::Softcap { cap } => ops::softcap(input(0), *cap, &mut out),
            Op::Rope {
                head_dim, layout, ..
            } => {
                let f = self.freqs[i]
                    .as_deref()
                    .expect("rope steps have frequencies");
                out.copy_from_slice(input(0));
                ops::rope(&mut out, shape[1], *head_dim, f, *layout, pos0);
            }
            Op::Attention {
                layer,
                n_heads,
                n_kv_heads,
                head_dim,
                scale,
                window,
                softcap,
                rope,
            } => {
                let s = AttnShape {
                    n_heads: *n_heads,
                    n_kv_heads: *n_kv_heads,
                    head_dim: *head_dim,
                    scale: *scale,
                    window: *window,
                    softcap: *softcap,
                };
                let c = &mut self.caches[*layer];
                let w = c.width;
                let rows = pos0 * w..(pos0 + seq) * w;
                c.k[rows.clone()].copy_from_slice(&self.slots[self.slot[step.inputs[1]]]);
                c.v[rows.clone()].copy_from_slice(&self.slots[self.slot[step.inputs[2]]]);
                let mut q = &self.slots[self.slot[step.inputs[0]]][..];
                if let Some(r) = rope {
                    // Rope fused into attention: rotate k as it enters the cache, q in scratch.
                    let f = self.freqs[i]
                        .as_deref()
                        .expect("rope-fused attention has frequencies");
                    ops::rope(&mut c.k[rows], w, r.head_dim, f, r.layout, pos0);
                    self.scratch.clear();
                    self.scratch.extend_from_slice(q);
                    ops::rope(
                        &mut self.scratch,
                        n_heads * head_dim,
                        r.head_dim,
                        f,
                        r.layout,
                        pos0,
                    );
                    q = &self.scratch;
                }
                let c = &self.caches[*layer];
                let end = (pos0 + seq) * w;
                ops::attention(q, &c.k[..end], &c.v[..end], s, pos0, &mut out);
            }
            Op::LastPosition => {
                let src = input(0);
                out.copy_from_slice(&src[src.len() - len..]);
            }
            Op::Output => out.copy_from_slice(input(0)),
        }
        self.slots[self.slot[i]] = out;
        Ok(())
    }
}
