//! The curated decoder: a hand-written llama-family forward pass, reading the same
//! bytes as the graph executor but nothing of the templates, the graph or the passes.
//! It exists to check the graph path; agreement of the two is the parity test.
//!
//! Written for plainness, one token at a time; it shares only the per-block dot
//! products and row decoders with the CPU backend (those are checked bit-exact
//! against the format's reference on their own).

use crate::load::{ModelSource, SourceKind};
use crate::RuntimeError;
use rayon::prelude::*;
use weft_cpu::quant::kernel_for;
use weft_ir::{MetaValue, WeightView};

struct Layer {
    attn_norm: Vec<f32>,
    wq: WeightView,
    wk: WeightView,
    wv: WeightView,
    wo: WeightView,
    ffn_norm: Vec<f32>,
    gate: WeightView,
    up: WeightView,
    down: WeightView,
}

/// Hyperparameters, read straight from the file's own keys.
#[derive(Clone, Debug)]
struct Config {
    hidden: usize,
    n_heads: usize,
    n_kv: usize,
    head_dim: usize,
    rope_dim: usize,
    eps: f32,
    inv_freq: Vec<f64>,
    /// GGUF llama files rotate adjacent pairs; HF checkpoints rotate halves.
    adjacent_pairs: bool,
    window: Option<usize>,
}

pub struct Curated {
    cfg: Config,
    embed: WeightView,
    layers: Vec<Layer>,
    out_norm: Vec<f32>,
    head: WeightView,
    keys: Vec<Vec<f32>>,
    values: Vec<Vec<f32>>,
    pos: usize,
    max_ctx: usize,
    logits: Vec<f32>,
}

fn num(src: &ModelSource, keys: &[&str]) -> Option<f64> {
    keys.iter()
        .find_map(|k| src.meta(k))
        .and_then(MetaValue::as_f64)
}

fn decode_all(w: &WeightView) -> Vec<f32> {
    let mut out = vec![0.0; w.numel()];
    for (r, o) in out.chunks_exact_mut(w.cols()).enumerate() {
        kernel_for(w.dtype).decode_row(w.row(r), o);
    }
    out
}

impl Curated {
    pub fn new(src: &ModelSource, max_ctx: usize) -> Result<Curated, RuntimeError> {
        let arch = src.architecture.clone();
        let gguf = src.kind == SourceKind::Gguf;
        if !matches!(arch.as_str(), "llama" | "mistral") {
            return Err(RuntimeError::Curated(format!(
                "the curated decoder does not handle architecture '{arch}' yet"
            )));
        }
        let need = |gk: &str, hk: &str| -> Result<f64, RuntimeError> {
            let key = if gguf {
                format!("{arch}.{gk}")
            } else {
                hk.to_string()
            };
            num(src, &[&key]).ok_or_else(|| {
                RuntimeError::Curated(format!("{}: missing key '{key}'", src.path.display()))
            })
        };
        let opt = |gk: &str, hk: &[&str]| -> Option<f64> {
            if gguf {
                num(src, &[&format!("{arch}.{gk}")])
            } else {
                num(src, hk)
            }
        };
        let hidden = need("embedding_length", "hidden_size")? as usize;
        let n_layers = need("block_count", "num_hidden_layers")? as usize;
        let n_heads = need("attention.head_count", "num_attention_heads")? as usize;
        let n_kv = opt("attention.head_count_kv", &["num_key_value_heads"])
            .map_or(n_heads, |v| v as usize);
        let head_dim =
            opt("attention.key_length", &["head_dim"]).map_or(hidden / n_heads, |v| v as usize);
        let rope_dim = opt("rope.dimension_count", &[]).map_or(head_dim, |v| v as usize);
        let eps = opt("attention.layer_norm_rms_epsilon", &["rms_norm_eps"]).unwrap_or(1e-6) as f32;
        let theta = opt(
            "rope.freq_base",
            &["rope_theta", "rope_parameters.rope_theta"],
        )
        .unwrap_or(10000.0);
        let window = opt("attention.sliding_window", &["sliding_window"])
            .filter(|w| *w > 0.0)
            .map(|w| w as usize);

        let t = |g: String, h: String| -> Result<WeightView, RuntimeError> {
            Ok(src.view(if gguf { &g } else { &h })?)
        };
        let embed = t(
            "token_embd.weight".into(),
            "model.embed_tokens.weight".into(),
        )?;
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

        // Inverse frequencies, with the file's scaling.
        let mut inv_freq: Vec<f64> = (0..rope_dim / 2)
            .map(|i| theta.powf(-((2 * i) as f64) / rope_dim as f64))
            .collect();
        if gguf {
            if src.tensor("rope_freqs.weight").is_some() {
                let f = decode_all(&src.view("rope_freqs.weight")?);
                for (v, d) in inv_freq.iter_mut().zip(f) {
                    *v /= d as f64;
                }
            }
            if src
                .meta(&format!("{arch}.rope.scaling.type"))
                .and_then(MetaValue::as_str)
                == Some("linear")
            {
                let factor = opt("rope.scaling.factor", &[]).unwrap_or(1.0);
                inv_freq.iter_mut().for_each(|v| *v /= factor);
            }
        } else {
            let kind = [
                "rope_scaling.rope_type",
                "rope_scaling.type",
                "rope_parameters.rope_type",
            ]
            .iter()
            .find_map(|k| src.meta(k))
            .and_then(MetaValue::as_str);
            let factor =
                num(src, &["rope_scaling.factor", "rope_parameters.factor"]).unwrap_or(1.0);
            match kind {
                Some("linear") => inv_freq.iter_mut().for_each(|v| *v /= factor),
                Some("llama3") => {
                    let lo = num(
                        src,
                        &[
                            "rope_scaling.low_freq_factor",
                            "rope_parameters.low_freq_factor",
                        ],
                    )
                    .unwrap_or(1.0);
                    let hi = num(
                        src,
                        &[
                            "rope_scaling.high_freq_factor",
                            "rope_parameters.high_freq_factor",
                        ],
                    )
                    .unwrap_or(4.0);
                    let old = num(
                        src,
                        &[
                            "rope_scaling.original_max_position_embeddings",
                            "rope_parameters.original_max_position_embeddings",
                        ],
                    )
                    .unwrap_or(8192.0);
                    for v in inv_freq.iter_mut() {
                        let wavelen = std::f64::consts::TAU / *v;
                        let scaled = *v / factor;
                        *v = if wavelen < old / hi {
                            *v
                        } else if wavelen > old / lo {
                            scaled
                        } else {
                            let s = (old / wavelen - lo) / (hi - lo);
                            (1.0 - s) * scaled + s * *v
                        };
                    }
                }
                None | Some("default") => {}
                Some(other) => {
                    return Err(RuntimeError::Curated(format!(
                        "rope scaling '{other}' is not handled"
                    )))
                }
            }
        }

        let mut layers = Vec::with_capacity(n_layers);
        for i in 0..n_layers {
            let l = |g: &str, h: &str| {
                t(
                    format!("blk.{i}.{g}.weight"),
                    format!("model.layers.{i}.{h}.weight"),
                )
            };
            layers.push(Layer {
                attn_norm: decode_all(&l("attn_norm", "input_layernorm")?),
                wq: l("attn_q", "self_attn.q_proj")?,
                wk: l("attn_k", "self_attn.k_proj")?,
                wv: l("attn_v", "self_attn.v_proj")?,
                wo: l("attn_output", "self_attn.o_proj")?,
                ffn_norm: decode_all(&l("ffn_norm", "post_attention_layernorm")?),
                gate: l("ffn_gate", "mlp.gate_proj")?,
                up: l("ffn_up", "mlp.up_proj")?,
                down: l("ffn_down", "mlp.down_proj")?,
            });
        }
        let out_norm = decode_all(&t("output_norm.weight".into(), "model.norm.weight".into())?);
        let kv_width = n_kv * head_dim;
        let cfg = Config {
            hidden,
            n_heads,
            n_kv,
            head_dim,
            rope_dim,
            eps,
            inv_freq,
            adjacent_pairs: gguf,
            window,
        };
        Ok(Curated {
            cfg,
            embed,
            out_norm,
            head,
            keys: (0..n_layers)
                .map(|_| vec![0.0; max_ctx * kv_width])
                .collect(),
            values: (0..n_layers)
                .map(|_| vec![0.0; max_ctx * kv_width])
                .collect(),
            layers,
            pos: 0,
            max_ctx,
            logits: Vec::new(),
        })
    }

    fn norm(x: &[f32], w: &[f32], eps: f32) -> Vec<f32> {
        let ms: f32 = x.iter().map(|v| v * v).sum::<f32>() / x.len() as f32;
        let inv = 1.0 / (ms + eps).sqrt();
        x.iter().zip(w).map(|(v, g)| v * inv * g).collect()
    }

    fn matvec(w: &WeightView, x: &[f32]) -> Vec<f32> {
        let k = kernel_for(w.dtype);
        (0..w.rows())
            .into_par_iter()
            .map(|r| k.dot(w.row(r), x))
            .collect()
    }

    fn rotate(&self, v: &mut [f32], pos: usize) {
        let c = &self.cfg;
        let half = c.rope_dim / 2;
        for head in v.chunks_exact_mut(c.head_dim) {
            for (i, f) in c.inv_freq.iter().enumerate() {
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

    /// One token at the next position; fills `self.logits` when `want_logits`.
    fn step(&mut self, token: u32, want_logits: bool) -> Result<(), RuntimeError> {
        let c = self.cfg.clone();
        if token as usize >= self.embed.rows() {
            return Err(RuntimeError::Curated(format!(
                "token id {token} is outside the vocabulary of {}",
                self.embed.rows()
            )));
        }
        let mut x = vec![0.0; c.hidden];
        kernel_for(self.embed.dtype).decode_row(self.embed.row(token as usize), &mut x);
        let p = self.pos;
        let kvw = c.n_kv * c.head_dim;
        for (li, layer) in self.layers.iter().enumerate() {
            let h = Self::norm(&x, &layer.attn_norm, c.eps);
            let mut q = Self::matvec(&layer.wq, &h);
            let mut k = Self::matvec(&layer.wk, &h);
            let v = Self::matvec(&layer.wv, &h);
            self.rotate(&mut q, p);
            self.rotate(&mut k, p);
            self.keys[li][p * kvw..(p + 1) * kvw].copy_from_slice(&k);
            self.values[li][p * kvw..(p + 1) * kvw].copy_from_slice(&v);
            let first = c.window.map_or(0, |w| (p + 1).saturating_sub(w));
            let per_kv = c.n_heads / c.n_kv;
            let mut att = vec![0.0; c.n_heads * c.head_dim];
            for hq in 0..c.n_heads {
                let kvh = hq / per_kv;
                let qh = &q[hq * c.head_dim..(hq + 1) * c.head_dim];
                let scale = 1.0 / (c.head_dim as f32).sqrt();
                let scores: Vec<f32> = (first..=p)
                    .map(|j| {
                        let kj = &self.keys[li][j * kvw + kvh * c.head_dim..][..c.head_dim];
                        qh.iter().zip(kj).map(|(a, b)| a * b).sum::<f32>() * scale
                    })
                    .collect();
                let max = scores.iter().fold(f32::MIN, |m, &s| m.max(s));
                let exps: Vec<f32> = scores.iter().map(|s| (s - max).exp()).collect();
                let z: f32 = exps.iter().sum();
                let out = &mut att[hq * c.head_dim..(hq + 1) * c.head_dim];
                for (j, e) in (first..=p).zip(&exps) {
                    let vj = &self.values[li][j * kvw + kvh * c.head_dim..][..c.head_dim];
                    for d in 0..c.head_dim {
                        out[d] += e / z * vj[d];
                    }
                }
            }
            let o = Self::matvec(&layer.wo, &att);
            x.iter_mut().zip(&o).for_each(|(a, b)| *a += b);
            let h = Self::norm(&x, &layer.ffn_norm, c.eps);
            let g = Self::matvec(&layer.gate, &h);
            let u = Self::matvec(&layer.up, &h);
            let act: Vec<f32> = g
                .iter()
                .zip(&u)
                .map(|(g, u)| g / (1.0 + (-g).exp()) * u)
                .collect();
            let d = Self::matvec(&layer.down, &act);
            x.iter_mut().zip(&d).for_each(|(a, b)| *a += b);
        }
        self.pos += 1;
        if want_logits {
            let h = Self::norm(&x, &self.out_norm, c.eps);
            self.logits = Self::matvec(&self.head, &h);
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
