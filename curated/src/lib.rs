//! The curated decoder: a hand-written forward pass, reading the same bytes as
//! the graph executor but nothing of the templates, the graph or the passes.
//! It exists to check the graph path; agreement of the two is the parity test.
//!
//! One forward for several families (llama, mistral, qwen2, qwen3, qwen3moe,
//! gemma2, gemma3, gemma4, phi3, phi2, starcoder2, gpt2), switched by flags that
//! [`spec`] reads from the file's own keys and tensor names. Written for
//! plainness, one token at a time; it shares only the scalar per-block dot products
//! and row decoders of the neutral quant crate (checked bit-exact against the
//! format's reference on their own), and no code of any backend or template.

mod rope;
mod spec;
mod weights;

use rayon::prelude::*;
use spec::{LayerKind, Spec};
use weft_formats::ModelSource;
use weft_ir::alloc::{try_zeros, TooBig};
use weft_ir::WeightView;
use weft_quant::kernel_for;
use weights::{Ffn, Layer, Loader, Mlp, Norm, PerLayerInputs};

/// What the curated decoder reports: the model's file, or what of it it cannot run.
#[derive(Debug, thiserror::Error)]
pub enum CuratedError {
    #[error(transparent)]
    Load(#[from] weft_formats::LoadError),
    #[error("curated decoder: {0}")]
    Model(String),
    #[error("the prompt is empty")]
    EmptyPrompt,
    #[error("out of memory: the curated decoder's {what} {need}")]
    Alloc { what: String, need: TooBig },
}

pub struct Curated {
    spec: Spec,
    embed: WeightView,
    /// gpt2: learned absolute position rows, added to the token embedding.
    positions: Option<WeightView>,
    /// Gemma 4: the tables that make each layer's per-layer input.
    per_layer_inputs: Option<PerLayerInputs>,
    layers: Vec<Layer>,
    out_norm: Norm,
    head: WeightView,
    head_bias: Option<Vec<f32>>,
    /// Per layer, `max_ctx` rows of that layer's key/value width.
    keys: Vec<Vec<f32>>,
    values: Vec<Vec<f32>>,
    pos: usize,
    max_ctx: usize,
    logits: Vec<f32>,
}

impl Curated {
    pub fn new(src: &ModelSource, max_ctx: usize) -> Result<Curated, CuratedError> {
        let spec = Spec::read(src)?;
        if let Some(trained) = spec.context.filter(|&c| max_ctx > c) {
            return Err(CuratedError::Model(format!(
                "{}: {max_ctx} positions are more than the {trained} the model was trained for \
                 (its context length)",
                src.path.display()
            )));
        }
        let gguf = spec.gguf;
        let hf_gpt2 = !gguf && spec.family == spec::Family::Gpt2;
        let embed = src.view(&match (gguf, hf_gpt2) {
            (true, _) => "token_embd.weight".to_string(),
            (false, true) => "transformer.wte.weight".to_string(),
            (false, false) => "model.embed_tokens.weight".to_string(),
        })?;
        if embed.cols() != spec.hidden {
            return Err(CuratedError::Model(format!(
                "{}: embedding rows have {} values, hidden size is {}",
                src.path.display(),
                embed.cols(),
                spec.hidden
            )));
        }
        if let Some(vocab) = spec.vocab.filter(|&v| v != embed.rows()) {
            return Err(CuratedError::Model(format!(
                "{}: '{}' has {} rows, the vocabulary size is {vocab}",
                src.path.display(),
                embed.name,
                embed.rows()
            )));
        }
        let positions = if spec.learned_positions {
            let p = src.view(match gguf {
                true => "position_embd.weight",
                false => "transformer.wpe.weight",
            })?;
            if p.cols() != spec.hidden {
                return Err(CuratedError::Model(format!(
                    "{}: position rows have {} values, hidden size is {}",
                    src.path.display(),
                    p.cols(),
                    spec.hidden
                )));
            }
            Some(p)
        } else {
            None
        };
        let head_name = if gguf {
            "output.weight"
        } else {
            "lm_head.weight"
        };
        let head = if spec.tie_embeddings || src.tensor(head_name).is_none() {
            embed.clone()
        } else {
            src.view(head_name)?
        };
        let loader = Loader { src, spec: &spec };
        let layers = (0..spec.n_layers)
            .map(|i| loader.layer(i))
            .collect::<Result<Vec<_>, _>>()?;
        let per_layer_inputs = loader.per_layer_inputs()?;
        let out_norm = loader.norm_named(
            &match (gguf, spec.family) {
                (true, _) => "output_norm".to_string(),
                (false, spec::Family::Gpt2) => "transformer.ln_f".to_string(),
                (false, spec::Family::Phi2) => "model.final_layernorm".to_string(),
                (false, _) => "model.norm".to_string(),
            },
            spec.hidden,
        )?;
        let head_bias_name = format!("{}.bias", head_name.trim_end_matches(".weight"));
        let head_bias = match src.tensor(&head_bias_name) {
            Some(_) => Some(loader.vector(&head_bias_name, head.rows(), false)?),
            None => None,
        };
        // Sized by a flag and the file: allocated fallibly.
        let cache = |what: &str| -> Result<Vec<Vec<f32>>, CuratedError> {
            spec.layers
                .iter()
                .enumerate()
                .map(|(i, l)| {
                    try_zeros(&[max_ctx, l.n_kv * l.head_dim]).map_err(|need| CuratedError::Alloc {
                        what: format!(
                            "{what} cache of layer {i} ({max_ctx} positions × {})",
                            l.n_kv * l.head_dim
                        ),
                        need,
                    })
                })
                .collect()
        };
        Ok(Curated {
            keys: cache("key")?,
            values: cache("value")?,
            spec,
            embed,
            positions,
            per_layer_inputs,
            out_norm,
            head,
            head_bias,
            layers,
            pos: 0,
            max_ctx,
            logits: Vec::new(),
        })
    }

    /// The token embedding: its tensor name and rows (the vocabulary it can embed).
    pub fn embedding(&self) -> (&str, usize) {
        (&self.embed.name, self.embed.rows())
    }

    /// RMSNorm, or LayerNorm (mean removed, then bias) for phi2/starcoder2/gpt2.
    fn norm(&self, x: &[f32], n: &Norm) -> Vec<f32> {
        let len = x.len() as f32;
        let mean = if self.spec.layer_norm {
            x.iter().sum::<f32>() / len
        } else {
            0.0
        };
        let var: f32 = x.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / len;
        let inv = 1.0 / (var + self.spec.eps).sqrt();
        let mut y: Vec<f32> = x
            .iter()
            .zip(&n.w)
            .map(|(v, g)| (v - mean) * inv * g)
            .collect();
        if let Some(b) = &n.b {
            y.iter_mut().zip(b).for_each(|(y, b)| *y += b);
        }
        y
    }

    /// The norm of each head of `v` on its own (qwen3, gemma3/4 q/k norm, gemma4 v norm).
    fn norm_heads(&self, v: &mut [f32], n: &Norm) {
        for head in v.chunks_exact_mut(n.w.len()) {
            let y = self.norm(head, n);
            head.copy_from_slice(&y);
        }
    }

    fn rotate(&self, v: &mut [f32], pos: usize, kind: &LayerKind) {
        let half = kind.inv_freq.len();
        for head in v.chunks_exact_mut(kind.head_dim) {
            for (i, f) in kind.inv_freq.iter().enumerate() {
                let angle = (pos as f32) * (*f as f32);
                let (sin, cos) = angle.sin_cos();
                let (a, b) = if self.spec.adjacent_pairs {
                    (2 * i, 2 * i + 1)
                } else {
                    (i, i + half)
                };
                let (x, y) = (head[a], head[b]);
                head[a] = x * cos - y * sin;
                head[b] = y * cos + x * sin;
            }
        }
    }

    fn gelu_tanh(x: f32) -> f32 {
        let c = (2.0 / std::f32::consts::PI).sqrt();
        0.5 * x * (1.0 + (c * (x + 0.044715 * x * x * x)).tanh())
    }

    /// Gemma 4: every layer's per-layer input for this token, `n_layers * width`
    /// values: (norm(proj(x)/√hidden) per layer + token row·√width) / √2, where x
    /// is the scaled embedding.
    fn per_layer_inputs(&self, p: &PerLayerInputs, token: u32, x: &[f32]) -> Vec<f32> {
        let width = self.spec.per_layer_input;
        let mut tok = vec![0.0; p.table.cols()];
        kernel_for(p.table.dtype).decode_row(p.table.row(token as usize), &mut tok);
        let tok_scale = (width as f32).sqrt();
        let ctx_scale = 1.0 / (self.spec.hidden as f32).sqrt();
        let ctx = p.proj.apply(x);
        let mut out = Vec::with_capacity(tok.len());
        for (c, t) in ctx.chunks_exact(width).zip(tok.chunks_exact(width)) {
            let c: Vec<f32> = c.iter().map(|v| v * ctx_scale).collect();
            let c = self.norm(&c, &p.norm);
            out.extend(
                c.iter()
                    .zip(t)
                    .map(|(c, t)| (c + t * tok_scale) * std::f32::consts::FRAC_1_SQRT_2),
            );
        }
        out
    }

    fn ffn(&self, ffn: &Ffn, h: &[f32]) -> Vec<f32> {
        let act = |g: f32| {
            if self.spec.gelu {
                Self::gelu_tanh(g)
            } else {
                g / (1.0 + (-g).exp())
            }
        };
        let dense = |m: &Mlp| {
            let g = m.gate.apply(h);
            let u = m.up.apply(h);
            let a: Vec<f32> = g.iter().zip(&u).map(|(g, u)| act(*g) * u).collect();
            m.down.apply(&a)
        };
        match ffn {
            Ffn::Dense(m) => dense(m),
            Ffn::Plain { up, down } => {
                let a: Vec<f32> = up.apply(h).into_iter().map(act).collect();
                down.apply(&a)
            }
            Ffn::Moe { router, experts } => {
                // Softmax over all experts, keep the top k (ties to the lower index).
                let logits = router.apply(h);
                let max = logits.iter().fold(f32::MIN, |m, &v| m.max(v));
                let e: Vec<f32> = logits.iter().map(|v| (v - max).exp()).collect();
                let z: f32 = e.iter().sum();
                let mut order: Vec<usize> = (0..e.len()).collect();
                order.sort_by(|&a, &b| e[b].total_cmp(&e[a]).then(a.cmp(&b)));
                let top = &order[..self.spec.experts_used];
                let mut w: Vec<f32> = top.iter().map(|&i| e[i] / z).collect();
                if self.spec.norm_topk {
                    let s: f32 = w.iter().sum();
                    w.iter_mut().for_each(|v| *v /= s);
                }
                let mut out = vec![0.0; self.spec.hidden];
                for (&i, wi) in top.iter().zip(&w) {
                    let y = dense(&experts[i]);
                    out.iter_mut().zip(&y).for_each(|(o, y)| *o += wi * y);
                }
                out
            }
        }
    }

    /// One token at the next position; fills `self.logits` when `want_logits`.
    fn step(&mut self, token: u32, want_logits: bool) -> Result<(), CuratedError> {
        let c = &self.spec;
        if token as usize >= self.embed.rows() {
            return Err(CuratedError::Model(format!(
                "token id {token} is outside the vocabulary of {}",
                self.embed.rows()
            )));
        }
        let mut x = vec![0.0; c.hidden];
        kernel_for(self.embed.dtype).decode_row(self.embed.row(token as usize), &mut x);
        if let Some(s) = c.embed_scale {
            x.iter_mut().for_each(|v| *v *= s);
        }
        let per_layer_inputs = match &self.per_layer_inputs {
            Some(p) if token as usize >= p.table.rows() => {
                return Err(CuratedError::Model(format!(
                    "token id {token} is outside the per-layer input vocabulary of {}",
                    p.table.rows()
                )))
            }
            Some(p) => self.per_layer_inputs(p, token, &x),
            None => Vec::new(),
        };
        let p = self.pos;
        if let Some(pe) = &self.positions {
            let mut row = vec![0.0; c.hidden];
            kernel_for(pe.dtype).decode_row(pe.row(p), &mut row);
            x.iter_mut().zip(&row).for_each(|(a, b)| *a += b);
        }
        for (li, layer) in self.layers.iter().enumerate() {
            let kind = &c.layers[li];
            let hd = kind.head_dim;
            let kvw = kind.n_kv * hd;
            let per_kv = c.n_heads / kind.n_kv;
            let h = self.norm(&x, &layer.attn_norm);
            let mut q = layer.q.apply(&h);
            let mut k = layer.k.apply(&h);
            let mut v = match &layer.v {
                Some(v) => v.apply(&h),
                None => k.clone(),
            };
            if let (Some(qn), Some(kn)) = (&layer.q_norm, &layer.k_norm) {
                self.norm_heads(&mut q, qn);
                self.norm_heads(&mut k, kn);
            }
            if let Some(vn) = &layer.v_norm {
                self.norm_heads(&mut v, vn);
            }
            self.rotate(&mut q, p, kind);
            self.rotate(&mut k, p, kind);
            self.keys[li][p * kvw..(p + 1) * kvw].copy_from_slice(&k);
            self.values[li][p * kvw..(p + 1) * kvw].copy_from_slice(&v);
            // HF sliding window: query p sees keys j with p - j < window.
            let first = kind.window.map_or(0, |w| (p + 1).saturating_sub(w));
            let mut att = vec![0.0; c.n_heads * hd];
            for hq in 0..c.n_heads {
                let kvh = hq / per_kv;
                let qh = &q[hq * hd..(hq + 1) * hd];
                let scores: Vec<f32> = (first..=p)
                    .map(|j| {
                        let kj = &self.keys[li][j * kvw + kvh * hd..][..hd];
                        let s = qh.iter().zip(kj).map(|(a, b)| a * b).sum::<f32>() * c.attn_scale;
                        match c.attn_softcap {
                            Some(cap) => (s / cap).tanh() * cap,
                            None => s,
                        }
                    })
                    .collect();
                let max = scores.iter().fold(f32::MIN, |m, &s| m.max(s));
                let exps: Vec<f32> = scores.iter().map(|s| (s - max).exp()).collect();
                let z: f32 = exps.iter().sum();
                let out = &mut att[hq * hd..(hq + 1) * hd];
                for (j, e) in (first..=p).zip(&exps) {
                    let vj = &self.values[li][j * kvw + kvh * hd..][..hd];
                    for d in 0..hd {
                        out[d] += e / z * vj[d];
                    }
                }
            }
            let mut o = layer.o.apply(&att);
            if let Some(n) = &layer.post_attn_norm {
                o = self.norm(&o, n);
            }
            x.iter_mut().zip(&o).for_each(|(a, b)| *a += b);
            // phi2 (no FFN norm): the FFN reads the same normed input as attention.
            let h = match &layer.ffn_norm {
                Some(n) => self.norm(&x, n),
                None => h,
            };
            let mut f = self.ffn(&layer.ffn, &h);
            if let Some(n) = &layer.post_ffn_norm {
                f = self.norm(&f, n);
            }
            x.iter_mut().zip(&f).for_each(|(a, b)| *a += b);
            if let Some(pl) = &layer.per_layer {
                let width = c.per_layer_input;
                let input = &per_layer_inputs[li * width..(li + 1) * width];
                let g: Vec<f32> = pl
                    .gate
                    .apply(&x)
                    .iter()
                    .zip(input)
                    .map(|(g, e)| Self::gelu_tanh(*g) * e)
                    .collect();
                let y = self.norm(&pl.proj.apply(&g), &pl.norm);
                x.iter_mut().zip(&y).for_each(|(a, b)| *a += b);
            }
            if let Some(s) = layer.out_scale {
                x.iter_mut().for_each(|v| *v *= s);
            }
        }
        self.pos += 1;
        if want_logits {
            let h = self.norm(&x, &self.out_norm);
            let k = kernel_for(self.head.dtype);
            let head = &self.head;
            let mut logits: Vec<f32> = (0..head.rows())
                .into_par_iter()
                .map(|r| k.dot(head.row(r), &h))
                .collect();
            if let Some(b) = &self.head_bias {
                logits.iter_mut().zip(b).for_each(|(l, b)| *l += b);
            }
            if let Some(cap) = c.final_softcap {
                logits.iter_mut().for_each(|v| *v = (*v / cap).tanh() * cap);
            }
            self.logits = logits;
        }
        Ok(())
    }
}

impl Curated {
    /// Runs `tokens` at the next positions, one at a time; the last one's logits.
    pub fn forward(&mut self, tokens: &[u32]) -> Result<&[f32], CuratedError> {
        if tokens.is_empty() {
            return Err(CuratedError::EmptyPrompt);
        }
        if self.pos + tokens.len() > self.max_ctx {
            return Err(CuratedError::Model(format!(
                "context full: {} positions, room for {}",
                self.pos + tokens.len(),
                self.max_ctx
            )));
        }
        if let Some(pe) = &self.positions {
            if self.pos + tokens.len() > pe.rows() {
                return Err(CuratedError::Model(format!(
                    "{} positions, the model learned {}",
                    self.pos + tokens.len(),
                    pe.rows()
                )));
            }
        }
        for (i, &t) in tokens.iter().enumerate() {
            self.step(t, i + 1 == tokens.len())?;
        }
        Ok(&self.logits)
    }

    /// Starts a new sequence at position 0.
    pub fn reset(&mut self) {
        self.pos = 0;
    }

    /// Rewinds to the first `pos` positions; false when it holds fewer.
    pub fn truncate(&mut self, pos: usize) -> bool {
        let ok = pos <= self.pos;
        if ok {
            self.pos = pos;
        }
        ok
    }

    /// Positions held in the KV cache.
    pub fn position(&self) -> usize {
        self.pos
    }
}
