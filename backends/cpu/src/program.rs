//! Lowering a plan onto the CPU: bind weights, then run the steps in order for each
//! forward call, keeping the KV cache between calls.

use crate::ops::{self, AttnShape};
use crate::{matmul, quant};
use weft_ir::{Dim, Op, Plan, WeightProvider, WeightView};

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
    values: Vec<Vec<f32>>,
    caches: Vec<Cache>,
    max_ctx: usize,
    pos: usize,
}

impl CpuProgram {
    /// Binds every weight step to the provider's tensor (checking dtype and shape) and
    /// sizes the KV cache for `max_ctx` positions.
    pub fn new(plan: Plan, weights: &dyn WeightProvider, max_ctx: usize) -> Result<Self, CpuError> {
        let mut small_use = vec![false; plan.steps.len()];
        for st in &plan.steps {
            match st.node.op {
                Op::RmsNorm { .. } => small_use[st.inputs[1]] = true,
                Op::Rope { .. } if st.inputs.len() > 1 => small_use[st.inputs[1]] = true,
                _ => {}
            }
        }
        let mut bound = Vec::with_capacity(plan.steps.len());
        for (i, st) in plan.steps.iter().enumerate() {
            bound.push(match &st.node.op {
                Op::Weight {
                    tensor,
                    dtype,
                    shape,
                } => {
                    let w = weights
                        .weight(tensor)
                        .ok_or_else(|| CpuError::MissingWeight(tensor.clone()))?;
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
        let values = vec![Vec::new(); plan.steps.len()];
        Ok(CpuProgram {
            plan,
            bound,
            values,
            caches,
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
        Ok((&self.values[o], rows))
    }

    fn run_step(&mut self, i: usize, tokens: &[u32], pos0: usize) -> Result<(), CpuError> {
        let seq = tokens.len();
        let step = &self.plan.steps[i];
        let shape: Vec<usize> = step.node.shape.iter().map(|d: &Dim| d.eval(seq)).collect();
        let len: usize = shape.iter().product();
        let mut out = std::mem::take(&mut self.values[i]);
        out.resize(len, 0.0);
        let input = |k: usize| -> &[f32] { &self.values[step.inputs[k]] };
        let weight = |k: usize| -> Result<&WeightView, CpuError> {
            match &self.bound[step.inputs[k]] {
                Bound::Weight(w) => Ok(w),
                _ => Err(CpuError::BadPlan {
                    step: i,
                    name: step.node.name.clone(),
                    message: "expected a weight input".into(),
                }),
            }
        };
        let small = |k: usize| -> Result<&[f32], CpuError> {
            match &self.bound[step.inputs[k]] {
                Bound::Small(w) => Ok(w),
                _ => Err(CpuError::BadPlan {
                    step: i,
                    name: step.node.name.clone(),
                    message: "expected a decoded weight".into(),
                }),
            }
        };
        match &step.node.op {
            Op::Tokens | Op::Weight { .. } => {}
            Op::TokenEmbed => matmul::gather_rows(weight(0)?, tokens, &mut out)?,
            Op::MatMul => {
                let rows = shape[0];
                matmul::matmul(input(0), rows, weight(1)?, &mut out);
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
            Op::Scale { factor } => {
                for (o, a) in out.iter_mut().zip(input(0)) {
                    *o = a * factor;
                }
            }
            Op::RmsNorm {
                eps, weight_offset, ..
            } => ops::rms_norm(input(0), small(1)?, *eps, *weight_offset, &mut out),
            Op::Silu => ops::silu(input(0), &mut out),
            Op::Gelu => ops::gelu(input(0), &mut out),
            Op::Softcap { cap } => ops::softcap(input(0), *cap, &mut out),
            Op::Rope {
                head_dim,
                rot_dim,
                base,
                layout,
                scaling,
            } => {
                let divisors = if step.inputs.len() > 1 {
                    Some(small(1)?)
                } else {
                    None
                };
                let f = ops::rope_inv_freqs(*rot_dim, *base, *scaling, divisors);
                out.copy_from_slice(input(0));
                ops::rope(&mut out, shape[1], *head_dim, &f, *layout, pos0);
            }
            Op::Attention {
                layer,
                n_heads,
                n_kv_heads,
                head_dim,
                scale,
                window,
                softcap,
            } => {
                let c = &mut self.caches[*layer];
                let w = c.width;
                c.k[pos0 * w..(pos0 + seq) * w].copy_from_slice(&self.values[step.inputs[1]]);
                c.v[pos0 * w..(pos0 + seq) * w].copy_from_slice(&self.values[step.inputs[2]]);
                let s = AttnShape {
                    n_heads: *n_heads,
                    n_kv_heads: *n_kv_heads,
                    head_dim: *head_dim,
                    scale: *scale,
                    window: *window,
                    softcap: *softcap,
                };
                let c = &self.caches[*layer];
                let end = (pos0 + seq) * w;
                ops::attention(
                    &self.values[step.inputs[0]],
                    &c.k[..end],
                    &c.v[..end],
                    s,
                    pos0,
                    &mut out,
                );
            }
            Op::LastPosition => {
                let src = input(0);
                out.copy_from_slice(&src[src.len() - len..]);
            }
            Op::Output => out.copy_from_slice(input(0)),
        }
        self.values[i] = out;
        Ok(())
    }
}
