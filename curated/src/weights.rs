//! The tensors of one layer, by their names in each source, with shape checks.

use super::spec::{Family, Spec};
use crate::CuratedError;
use rayon::prelude::*;
use weft_formats::ModelSource;
use weft_ir::WeightView;
use weft_quant::kernel_for;

/// A matrix, or a run of rows of a stored matrix (fused qkv / gate-up, one
/// expert of a 3-D expert tensor): the rows are read in place, never copied.
pub(super) struct Proj {
    w: WeightView,
    first: usize,
    rows: usize,
    bias: Option<Vec<f32>>,
}

impl Proj {
    pub(super) fn apply(&self, x: &[f32]) -> Vec<f32> {
        let k = kernel_for(self.w.dtype);
        let mut y: Vec<f32> = (self.first..self.first + self.rows)
            .into_par_iter()
            .map(|r| k.dot(self.w.row(r), x))
            .collect();
        if let Some(b) = &self.bias {
            y.iter_mut().zip(b).for_each(|(y, b)| *y += b);
        }
        y
    }
}

/// A gated FFN: down(act(gate·x) * up·x).
pub(super) struct Mlp {
    pub gate: Proj,
    pub up: Proj,
    pub down: Proj,
}

pub(super) enum Ffn {
    Dense(Box<Mlp>),
    /// down(act(up·x)): starcoder2, phi2, gpt2.
    Plain {
        up: Proj,
        down: Proj,
    },
    Moe {
        router: Proj,
        experts: Vec<Mlp>,
    },
}

/// Norm weights (and a bias for LayerNorm families), decoded once.
pub(super) struct Norm {
    pub w: Vec<f32>,
    pub b: Option<Vec<f32>>,
}

/// Gemma 4 per-layer input, added after the FFN: x += norm(proj(gelu(gate·x) * input)).
pub(super) struct PerLayer {
    pub gate: Proj,
    pub proj: Proj,
    pub norm: Norm,
}

/// Gemma 4: what makes each layer's per-layer input from the token and its
/// scaled embedding (one row of `n_layers * width` values each).
pub(super) struct PerLayerInputs {
    /// Token rows of `n_layers * width` values.
    pub table: WeightView,
    /// The scaled embedding projected to `n_layers * width` values.
    pub proj: Proj,
    /// RMSNorm of each layer's `width` projected values.
    pub norm: Norm,
}

pub(super) struct Layer {
    pub attn_norm: Norm,
    pub q: Proj,
    pub k: Proj,
    /// None: V is K's projection (Gemma 4 attention_k_eq_v).
    pub v: Option<Proj>,
    pub q_norm: Option<Norm>,
    pub k_norm: Option<Norm>,
    /// Gemma 4: a weight-free RMSNorm of each V head (unit weights here).
    pub v_norm: Option<Norm>,
    pub o: Proj,
    pub post_attn_norm: Option<Norm>,
    /// None where the FFN reads the attention's input norm (phi2).
    pub ffn_norm: Option<Norm>,
    pub ffn: Ffn,
    pub post_ffn_norm: Option<Norm>,
    pub per_layer: Option<PerLayer>,
    /// Gemma 4 `layer_scalar`: the layer's output is multiplied by it.
    pub out_scale: Option<f32>,
}

/// Decodes a small 1-D tensor (norm weights, biases) once.
pub(super) fn decode_all(w: &WeightView) -> Vec<f32> {
    let mut out = vec![0.0; w.numel()];
    kernel_for(w.dtype).decode_row(w.bytes(), &mut out);
    out
}

pub(super) struct Loader<'a> {
    pub src: &'a ModelSource,
    pub spec: &'a Spec,
}

impl Loader<'_> {
    fn name(&self, i: usize, g: &str, h: &str) -> String {
        if self.spec.gguf {
            format!("blk.{i}.{g}")
        } else if self.spec.family == Family::Gpt2 {
            // HF GPT-2 names its layer tensors its own way; map from the GGUF names.
            let (base, rest) = g.split_at(g.find('.').unwrap_or(g.len()));
            let hf = match base {
                "attn_norm" => "ln_1",
                "attn_qkv" => "attn.c_attn",
                "attn_output" => "attn.c_proj",
                "ffn_norm" => "ln_2",
                "ffn_up" => "mlp.c_fc",
                "ffn_down" => "mlp.c_proj",
                other => other,
            };
            format!("transformer.h.{i}.{hf}{rest}")
        } else {
            // A multimodal checkpoint's `model.language_model.*` answers to these (the loader).
            format!("model.layers.{i}.{h}")
        }
    }

    fn bad(&self, name: &str, what: String) -> CuratedError {
        CuratedError::Model(format!(
            "{}: tensor '{name}': {what}",
            self.src.path.display()
        ))
    }

    pub(super) fn has(&self, i: usize, g: &str, h: &str) -> bool {
        self.src.tensor(&self.name(i, g, h)).is_some()
    }

    /// A 1-D tensor of `len` values; HF gemma norms get their +1 here.
    pub(super) fn vector(
        &self,
        name: &str,
        len: usize,
        norm: bool,
    ) -> Result<Vec<f32>, CuratedError> {
        let w = self.src.view(name)?;
        if w.numel() != len {
            return Err(self.bad(
                name,
                format!("expected {len} values, found shape {:?}", w.shape),
            ));
        }
        let mut v = decode_all(&w);
        if norm && self.spec.norm_plus_one {
            v.iter_mut().for_each(|x| *x += 1.0);
        }
        Ok(v)
    }

    /// `<base>.weight`, and `<base>.bias` when the file has one.
    pub(super) fn norm_named(&self, base: &str, len: usize) -> Result<Norm, CuratedError> {
        let bias = format!("{base}.bias");
        Ok(Norm {
            w: self.vector(&format!("{base}.weight"), len, true)?,
            b: match self.src.tensor(&bias) {
                Some(_) => Some(self.vector(&bias, len, false)?),
                None => None,
            },
        })
    }

    pub(super) fn norm(
        &self,
        i: usize,
        g: &str,
        h: &str,
        len: usize,
    ) -> Result<Norm, CuratedError> {
        self.norm_named(&self.name(i, g, h), len)
    }

    /// Rows `first..first + rows` of a matrix with `cols` columns, plus its bias
    /// (sliced alike) when the file has one.
    pub(super) fn proj_rows(
        &self,
        name: &str,
        first: usize,
        rows: usize,
        cols: usize,
        total_rows: usize,
    ) -> Result<Proj, CuratedError> {
        let mut w = self.src.view(&format!("{name}.weight"))?;
        // HF GPT-2's Conv1D stores [in, out]: read a transposed copy.
        if self.spec.family == Family::Gpt2 && !self.spec.gguf {
            w = w
                .transposed()
                .ok_or_else(|| self.bad(&w.name, "cannot transpose a Conv1D matrix".into()))?;
        }
        if w.cols() != cols || w.rows() != total_rows {
            return Err(self.bad(
                &w.name,
                format!(
                    "expected {total_rows} rows of {cols}, found shape {:?}",
                    w.shape
                ),
            ));
        }
        let bias_name = format!("{name}.bias");
        let bias = if self.src.tensor(&bias_name).is_some() {
            let b = self.vector(&bias_name, total_rows, false)?;
            Some(b[first..first + rows].to_vec())
        } else {
            None
        };
        Ok(Proj {
            w,
            first,
            rows,
            bias,
        })
    }

    pub(super) fn proj(&self, name: &str, rows: usize, cols: usize) -> Result<Proj, CuratedError> {
        self.proj_rows(name, 0, rows, cols, rows)
    }

    pub(super) fn layer(&self, i: usize) -> Result<Layer, CuratedError> {
        let s = self.spec;
        let kind = &s.layers[i];
        let (hd, h) = (kind.head_dim, s.hidden);
        let (qw, kvw) = (s.n_heads * hd, kind.n_kv * hd);
        let n = |g: &str, hf: &str| self.name(i, g, hf);

        let (q, k, v) = if self.has(i, "attn_qkv.weight", "self_attn.qkv_proj.weight") {
            // phi3, gpt2: one stored matrix, q rows then k rows then v rows.
            let f = n("attn_qkv", "self_attn.qkv_proj");
            let total = qw + 2 * kvw;
            (
                self.proj_rows(&f, 0, qw, h, total)?,
                self.proj_rows(&f, qw, kvw, h, total)?,
                Some(self.proj_rows(&f, qw + kvw, kvw, h, total)?),
            )
        } else {
            (
                self.proj(&n("attn_q", "self_attn.q_proj"), qw, h)?,
                self.proj(&n("attn_k", "self_attn.k_proj"), kvw, h)?,
                if kind.v_from_k {
                    None
                } else {
                    Some(self.proj(&n("attn_v", "self_attn.v_proj"), kvw, h)?)
                },
            )
        };
        let (q_norm, k_norm) = if s.qk_norm {
            (
                Some(self.norm(i, "attn_q_norm", "self_attn.q_norm", hd)?),
                Some(self.norm(i, "attn_k_norm", "self_attn.k_norm", hd)?),
            )
        } else {
            (None, None)
        };
        let o_hf = if s.family == Family::Phi2 {
            "self_attn.dense"
        } else {
            "self_attn.o_proj"
        };
        let o = self.proj(&n("attn_output", o_hf), h, qw)?;
        let v_norm = s.v_norm.then(|| Norm {
            w: vec![1.0; hd],
            b: None,
        });
        let per_layer = if s.per_layer_input > 0 {
            let p = s.per_layer_input;
            Some(PerLayer {
                gate: self.proj(&n("inp_gate", "per_layer_input_gate"), p, h)?,
                proj: self.proj(&n("proj", "per_layer_projection"), h, p)?,
                norm: self.norm(i, "post_norm", "post_per_layer_input_norm", h)?,
            })
        } else {
            None
        };
        // GGUF gives the buffer a `.weight` suffix; llama.cpp treats it as optional.
        let scale = n("layer_output_scale.weight", "layer_scalar");
        let out_scale = match self.src.tensor(&scale) {
            Some(_) => Some(self.vector(&scale, 1, false)?[0]),
            None => None,
        };

        // HF gemma names its post-attention norm like llama's pre-FFN norm.
        let (ffn_norm_hf, post_attn_norm, post_ffn_norm) = if s.sandwich {
            (
                "pre_feedforward_layernorm",
                Some(self.norm(i, "post_attention_norm", "post_attention_layernorm", h)?),
                Some(self.norm(i, "post_ffw_norm", "post_feedforward_layernorm", h)?),
            )
        } else {
            ("post_attention_layernorm", None, None)
        };

        let ffn = if s.family == Family::Qwen3Moe
            && self.has(i, "ffn_gate_inp.weight", "mlp.gate.weight")
        {
            self.moe(i)?
        } else if !s.gated {
            let (up, down) = match s.family {
                Family::Phi2 => ("mlp.fc1", "mlp.fc2"),
                _ => ("mlp.c_fc", "mlp.c_proj"),
            };
            Ffn::Plain {
                up: self.proj(&n("ffn_up", up), s.ffn, h)?,
                down: self.proj(&n("ffn_down", down), h, s.ffn)?,
            }
        } else if self.has(i, "ffn_gate.weight", "mlp.gate_proj.weight") {
            Ffn::Dense(Box::new(Mlp {
                gate: self.proj(&n("ffn_gate", "mlp.gate_proj"), s.ffn, h)?,
                up: self.proj(&n("ffn_up", "mlp.up_proj"), s.ffn, h)?,
                down: self.proj(&n("ffn_down", "mlp.down_proj"), h, s.ffn)?,
            }))
        } else {
            // phi3: gate rows then up rows in one matrix (GGUF calls it ffn_up).
            let f = n("ffn_up", "mlp.gate_up_proj");
            Ffn::Dense(Box::new(Mlp {
                gate: self.proj_rows(&f, 0, s.ffn, h, 2 * s.ffn)?,
                up: self.proj_rows(&f, s.ffn, s.ffn, h, 2 * s.ffn)?,
                down: self.proj(&n("ffn_down", "mlp.down_proj"), h, s.ffn)?,
            }))
        };
        Ok(Layer {
            attn_norm: self.norm(i, "attn_norm", "input_layernorm", h)?,
            q,
            k,
            v,
            q_norm,
            k_norm,
            o,
            post_attn_norm,
            ffn_norm: if s.parallel {
                None
            } else {
                Some(self.norm(i, "ffn_norm", ffn_norm_hf, h)?)
            },
            ffn,
            post_ffn_norm,
            per_layer,
            out_scale,
            v_norm,
        })
    }

    /// Gemma 4's per-layer input tables, when the model has them.
    pub(super) fn per_layer_inputs(&self) -> Result<Option<PerLayerInputs>, CuratedError> {
        let s = self.spec;
        let p = s.per_layer_input;
        if p == 0 {
            return Ok(None);
        }
        let width = s.n_layers * p;
        let name = |g: &str, h: &str| {
            if s.gguf {
                g.to_string()
            } else {
                format!("model.{h}")
            }
        };
        let table = self.src.view(&name(
            "per_layer_token_embd.weight",
            "embed_tokens_per_layer.weight",
        ))?;
        if table.cols() != width {
            return Err(self.bad(
                &table.name,
                format!(
                    "expected rows of {width} values ({} layers × {p}), found shape {:?}",
                    s.n_layers, table.shape
                ),
            ));
        }
        Ok(Some(PerLayerInputs {
            table,
            proj: self.proj(
                &name("per_layer_model_proj", "per_layer_model_projection"),
                width,
                s.hidden,
            )?,
            norm: self.norm_named(&name("per_layer_proj_norm", "per_layer_projection_norm"), p)?,
        }))
    }

    fn moe(&self, i: usize) -> Result<Ffn, CuratedError> {
        let s = self.spec;
        let (h, e, f) = (s.hidden, s.experts, s.expert_ffn);
        let router = self.proj(&self.name(i, "ffn_gate_inp", "mlp.gate"), e, h)?;
        let mut experts = Vec::with_capacity(e);
        for x in 0..e {
            experts.push(if s.gguf {
                // 3-D tensors [expert, rows, cols]: expert x owns a run of rows.
                let t = |g: &str, rows, cols| {
                    self.proj_rows(&format!("blk.{i}.{g}"), x * rows, rows, cols, e * rows)
                };
                Mlp {
                    gate: t("ffn_gate_exps", f, h)?,
                    up: t("ffn_up_exps", f, h)?,
                    down: t("ffn_down_exps", h, f)?,
                }
            } else {
                let t = |p: &str, rows, cols| {
                    self.proj(&format!("model.layers.{i}.mlp.experts.{x}.{p}"), rows, cols)
                };
                Mlp {
                    gate: t("gate_proj", f, h)?,
                    up: t("up_proj", f, h)?,
                    down: t("down_proj", h, f)?,
                }
            });
        }
        Ok(Ffn::Moe { router, experts })
    }
}
