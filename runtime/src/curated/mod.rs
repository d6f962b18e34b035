//! The curated decoder: a hand-written forward pass, reading the same bytes as
//! the graph executor but nothing of the templates, the graph or the passes.
//! It exists to check the graph path; agreement of the two is the parity test.
//!
//! One forward for several families (llama, mistral, qwen2, qwen3, qwen3moe,
//! gemma2, gemma3, phi3, phi2, starcoder2, gpt2), switched by flags that [`spec`] reads from the file's
//! own keys and tensor names. Written for plainness, one token at a time; it
//! shares only the per-block dot products and row decoders with the CPU backend
//! (those are checked bit-exact against the format's reference on their own).

mod rope;
mod spec;
mod weights;

use crate::load::ModelSource;
use crate::RuntimeError;
use rayon::prelude::*;
use spec::Spec;
use weft_cpu::quant::kernel_for;
use weft_ir::{MetaValue, WeightView};
use weights::{Ffn, Layer, Loader, Mlp, Norm};

pub struct Curated {
    spec: Spec,
    embed: WeightView,
    /// gpt2: learned absolute position rows, added to the token embedding.
    positions: Option<WeightView>,
    layers: Vec<Layer>,
    out_norm: Norm,
    head: WeightView,
    head_bias: Option<Vec<f32>>,
    keys: Vec<Vec<f32>>,
    values: Vec<Vec<f32>>,
    pos: usize,
    max_ctx: usize,
    logits: Vec<f32>,
}

impl Curated {
    pub fn new(src: &ModelSource, max_ctx: usize) -> Result<Curated, RuntimeError> {
        let spec = Spec::read(src)?;
        let gguf = spec.gguf;
        let embed = src.view(if gguf {
            "token_embd.weight"
        } else {
            "model.embed_tokens.weight"
        })?;
        if embed.cols() != spec.hidden {
            return Err(RuntimeError::Curated(format!(
                "{}: embedding rows have {} values, hidden size is {}",
                src.path.display(),
                embed.cols(),
                spec.hidden
            )));
        }
        let positions = if spec.learned_positions {
            let p = src.view("position_embd.weight")?;
            if p.cols() != spec.hidden {
                return Err(RuntimeError::Curated(format!(
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
        let tied_hf = !gguf
            && src
                .meta("tie_word_embeddings")
                .and_then(MetaValue::as_bool)
                .unwrap_or(false);
        let head_name = if gguf {
            "output.weight"
        } else {
            "lm_head.weight"
        };
        let head = if tied_hf || src.tensor(head_name).is_none() {
            embed.clone()
        } else {
            src.view(head_name)?
        };
        let loader = Loader { src, spec: &spec };
        let layers = (0..spec.n_layers)
            .map(|i| loader.layer(i))
            .collect::<Result<Vec<_>, _>>()?;
        let out_norm = loader.norm_named(
            match (gguf, spec.family) {
                (true, _) => "output_norm",
                (false, spec::Family::Phi2) => "model.final_layernorm",
                (false, _) => "model.norm",
            },
            spec.hidden,
        )?;
        let head_bias_name = format!("{}.bias", head_name.trim_end_matches(".weight"));
        let head_bias = match src.tensor(&head_bias_name) {
            Some(_) => Some(loader.vector(&head_bias_name, head.rows(), false)?),
            None => None,
        };
        let kv_width = spec.n_kv * spec.head_dim;
        Ok(Curated {
            keys: (0..spec.n_layers)
                .map(|_| vec![0.0; max_ctx * kv_width])
                .collect(),
            values: (0..spec.n_layers)
                .map(|_| vec![0.0; max_ctx * kv_width])
                .collect(),
            spec,
            embed,
            positions,
            out_norm,
            head,
            head_bias,
            layers,
            pos: 0,
            max_ctx,
            logits: Vec::new(),
        })
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

    /// The norm of each head of `v` on its own (qwen3, gemma3 q/k norm).
    fn norm_heads(&self, v: &mut [f32], n: &Norm) {
        for head in v.chunks_exact_mut(n.w.len()) {
            let y = self.norm(head, n);
            head.copy_from_slice(&y);
        }
    }

    fn rotate(&self, v: &mut [f32], pos: usize, table: usize) {
        let c = &self.spec;
        let half = c.rope_dim / 2;
        for head in v.chunks_exact_mut(c.head_dim) {
            for (i, f) in c.inv_freq[table].iter().enumerate() {
                let angle = (pos as f32) * (*f as f32);
                let (sin, cos) = angle.sin_cos();
                let (a, b) = if c.adjacent_pairs {
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
    fn step(&mut self, token: u32, want_logits: bool) -> Result<(), RuntimeError> {
        let c = &self.spec;
        if token as usize >= self.embed.rows() {
            return Err(RuntimeError::Curated(format!(
                "token id {token} is outside the vocabulary of {}",
                self.embed.rows()
            )));
        }
        let mut x = vec![0.0; c.hidden];
        kernel_for(self.embed.dtype).decode_row(self.embed.row(token as usize), &mut x);
        if let Some(s) = c.embed_scale {
            x.iter_mut().for_each(|v| *v *= s);
        }
        let p = self.pos;
        if let Some(pe) = &self.positions {
            let mut row = vec![0.0; c.hidden];
            kernel_for(pe.dtype).decode_row(pe.row(p), &mut row);
            x.iter_mut().zip(&row).for_each(|(a, b)| *a += b);
        }
        let hd = c.head_dim;
        let kvw = c.n_kv * hd;
        let per_kv = c.n_heads / c.n_kv;
        for (li, layer) in self.layers.iter().enumerate() {
            let kind = &c.layers[li];
            let h = self.norm(&x, &layer.attn_norm);
            let mut q = layer.q.apply(&h);
            let mut k = layer.k.apply(&h);
            let v = layer.v.apply(&h);
            if let (Some(qn), Some(kn)) = (&layer.q_norm, &layer.k_norm) {
                self.norm_heads(&mut q, qn);
                self.norm_heads(&mut k, kn);
            }
            self.rotate(&mut q, p, kind.rope);
            self.rotate(&mut k, p, kind.rope);
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

impl crate::Forward for Curated {
    fn forward(&mut self, tokens: &[u32]) -> Result<&[f32], RuntimeError> {
        if tokens.is_empty() {
            return Err(RuntimeError::EmptyPrompt);
        }
        if self.pos + tokens.len() > self.max_ctx {
            return Err(RuntimeError::Curated(format!(
                "context full: {} positions, room for {}",
                self.pos + tokens.len(),
                self.max_ctx
            )));
        }
        if let Some(pe) = &self.positions {
            if self.pos + tokens.len() > pe.rows() {
                return Err(RuntimeError::Curated(format!(
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

    fn reset(&mut self) {
        self.pos = 0;
    }

    fn position(&self) -> usize {
        self.pos
    }
}
