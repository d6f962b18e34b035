//! Hyperparameters and family flags, read from the file's own keys (GGUF
//! `<arch>.*` keys or HF `config.json` keys), never from a template.

use super::rope::{self, Scaling};
use crate::load::{ModelSource, SourceKind};
use crate::RuntimeError;
use weft_ir::MetaValue;

/// The families the curated decoder knows; each is a set of flags below.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Family {
    Llama,
    Qwen2,
    Qwen3,
    Qwen3Moe,
    Gemma2,
    Gemma3,
    Phi3,
    Phi2,
    Starcoder2,
    /// GGUF only: HF GPT-2 stores Conv1D weights transposed ([in, out]).
    Gpt2,
}

const HANDLED: &str = "llama, mistral, qwen2, qwen3, qwen3moe (HF qwen3_moe), gemma2, \
                       gemma3 (HF gemma3_text), phi3, phi2 (HF phi), starcoder2, \
                       gpt2 (GGUF only)";

impl Family {
    fn of(arch: &str, gguf: bool) -> Option<Family> {
        Some(match arch {
            "llama" | "mistral" => Family::Llama,
            "qwen2" => Family::Qwen2,
            "qwen3" => Family::Qwen3,
            "qwen3moe" | "qwen3_moe" => Family::Qwen3Moe,
            "gemma2" => Family::Gemma2,
            "gemma3" | "gemma3_text" => Family::Gemma3,
            "phi3" => Family::Phi3,
            "phi2" | "phi" => Family::Phi2,
            "starcoder2" => Family::Starcoder2,
            "gpt2" if gguf => Family::Gpt2,
            _ => return None,
        })
    }

    pub(super) fn gemma(self) -> bool {
        matches!(self, Family::Gemma2 | Family::Gemma3)
    }
}

/// Per layer: attention span and which rope table it uses.
#[derive(Clone, Debug)]
pub(super) struct LayerKind {
    pub window: Option<usize>,
    /// Index into `Spec::inv_freq` (0 global, 1 local).
    pub rope: usize,
}

#[derive(Clone, Debug)]
pub(super) struct Spec {
    pub family: Family,
    pub gguf: bool,
    pub hidden: usize,
    pub n_layers: usize,
    pub n_heads: usize,
    pub n_kv: usize,
    pub head_dim: usize,
    pub rope_dim: usize,
    pub ffn: usize,
    pub eps: f32,
    /// gpt2: learned absolute positions (`position_embd`), no rope.
    pub learned_positions: bool,
    /// Rope inverse frequencies: [global] or [global, local].
    pub inv_freq: Vec<Vec<f64>>,
    /// Only GGUF llama files rotate adjacent pairs (the converter permutes Q/K
    /// rows); every other family rotates halves in both sources.
    pub adjacent_pairs: bool,
    pub layers: Vec<LayerKind>,
    pub attn_scale: f32,
    pub attn_softcap: Option<f32>,
    pub final_softcap: Option<f32>,
    /// Gemma multiplies embeddings by sqrt(hidden).
    pub embed_scale: Option<f32>,
    /// HF gemma norms compute x·(1+w); GGUF gemma files store w+1 already.
    pub norm_plus_one: bool,
    pub gelu: bool,
    /// LayerNorm (mean removed, optional bias) instead of RMSNorm.
    pub layer_norm: bool,
    /// down(act(gate)·up) rather than down(act(up)).
    pub gated: bool,
    /// phi2: attention and FFN both read the one input norm, both add to x.
    pub parallel: bool,
    /// Gemma: a norm after attention and after the FFN, before each residual add.
    pub sandwich: bool,
    pub qk_norm: bool,
    pub experts: usize,
    pub experts_used: usize,
    pub expert_ffn: usize,
    pub norm_topk: bool,
}

fn num(src: &ModelSource, keys: &[&str]) -> Option<f64> {
    keys.iter()
        .find_map(|k| src.meta(k))
        .and_then(MetaValue::as_f64)
}

fn err(msg: String) -> RuntimeError {
    RuntimeError::Curated(msg)
}

/// Reads keys of either source: `gk` is a GGUF key without the `<arch>.` prefix.
struct Keys<'a> {
    src: &'a ModelSource,
    gguf: bool,
}

impl Keys<'_> {
    fn opt(&self, gk: &str, hk: &[&str]) -> Option<f64> {
        if self.gguf {
            num(self.src, &[&format!("{}.{gk}", self.src.architecture)])
        } else {
            num(self.src, hk)
        }
    }
    fn need(&self, gk: &str, hk: &str) -> Result<f64, RuntimeError> {
        self.opt(gk, &[hk]).ok_or_else(|| {
            let key = if self.gguf {
                format!("{}.{gk}", self.src.architecture)
            } else {
                hk.to_string()
            };
            err(format!("{}: missing key '{key}'", self.src.path.display()))
        })
    }
}

impl Spec {
    pub(super) fn read(src: &ModelSource) -> Result<Spec, RuntimeError> {
        let arch = src.architecture.as_str();
        let gguf = src.kind == SourceKind::Gguf;
        let family = Family::of(arch, gguf).ok_or_else(|| {
            err(format!(
                "{}: the curated decoder does not handle architecture '{arch}' ({:?} source); \
                 it handles {HANDLED}",
                src.path.display(),
                src.kind
            ))
        })?;
        let k = Keys { src, gguf };
        let hidden = k.need("embedding_length", "hidden_size")? as usize;
        let n_layers = k.need("block_count", "num_hidden_layers")? as usize;
        let n_heads = k.need("attention.head_count", "num_attention_heads")? as usize;
        let n_kv = k
            .opt("attention.head_count_kv", &["num_key_value_heads"])
            .map_or(n_heads, |v| v as usize);
        if n_heads == 0 || n_kv == 0 || !n_heads.is_multiple_of(n_kv) {
            return Err(err(format!(
                "{}: {n_heads} query heads cannot share {n_kv} key/value heads",
                src.path.display()
            )));
        }
        let head_dim = k
            .opt("attention.key_length", &["head_dim"])
            .map_or(hidden / n_heads, |v| v as usize);
        if let Some(vl) = k.opt("attention.value_length", &[]) {
            if vl as usize != head_dim {
                return Err(err(format!(
                    "{}: value length {vl} differs from key length {head_dim}",
                    src.path.display()
                )));
            }
        }
        let learned_positions = family == Family::Gpt2;
        let rope_dim = if learned_positions {
            0
        } else if gguf {
            k.opt("rope.dimension_count", &[])
                .map_or(head_dim, |v| v as usize)
        } else {
            let f = num(
                src,
                &[
                    "partial_rotary_factor",
                    "rope_parameters.partial_rotary_factor",
                ],
            )
            .unwrap_or(1.0);
            (head_dim as f64 * f) as usize
        };
        if rope_dim > head_dim || !rope_dim.is_multiple_of(2) {
            return Err(err(format!(
                "{}: rope over {rope_dim} of {head_dim} head dims",
                src.path.display()
            )));
        }
        let ffn = k.need("feed_forward_length", "intermediate_size")? as usize;
        let eps = k
            .opt(
                "attention.layer_norm_rms_epsilon",
                &["rms_norm_eps", "norm_epsilon", "layer_norm_eps"],
            )
            .or_else(|| k.opt("attention.layer_norm_epsilon", &[]))
            .unwrap_or(1e-6) as f32;

        // Rope bases: one table, or for gemma3 a global and a local one.
        let theta = k
            .opt(
                "rope.freq_base",
                &[
                    "rope_theta",
                    "rope_parameters.rope_theta",
                    "rope_parameters.full_attention.rope_theta",
                ],
            )
            .unwrap_or(10000.0);
        let global_scaling = if gguf {
            rope::gguf_scaling(src)?
        } else {
            rope::hf_scaling(
                src,
                &[
                    "rope_scaling",
                    "rope_parameters",
                    "rope_parameters.full_attention",
                ],
            )?
        };
        let mut global = rope::inv_freq(theta, rope_dim, &global_scaling);
        if gguf {
            rope::apply_freq_factors(src, &mut global)?;
        }
        let mut inv_freq = vec![global];
        if family == Family::Gemma3 {
            // llama.cpp defaults the local base to 1e4 when the key is absent
            // (the real Gemma 3 270M GGUF has no freq_base_swa), and never
            // scales local layers.
            let local_theta = k
                .opt(
                    "rope.freq_base_swa",
                    &[
                        "rope_local_base_freq",
                        "rope_parameters.sliding_attention.rope_theta",
                    ],
                )
                .unwrap_or(10000.0);
            let local_scaling = if gguf {
                Scaling::None
            } else {
                rope::hf_scaling(src, &["rope_parameters.sliding_attention"])?
            };
            inv_freq.push(rope::inv_freq(local_theta, rope_dim, &local_scaling));
        }

        let layers = layer_kinds(src, &k, family, n_layers)?;

        let attn_scale = if family.gemma() {
            if gguf {
                // GGUF has no query_pre_attn_scalar; llama.cpp uses head_dim,
                // except hidden/heads for the 27B models (46 / 62 layers).
                let big = matches!(
                    (family, n_layers),
                    (Family::Gemma2, 46) | (Family::Gemma3, 62)
                );
                let d = if big { hidden / n_heads } else { head_dim };
                1.0 / (d as f32).sqrt()
            } else {
                let s = k.need("", "query_pre_attn_scalar")?;
                (1.0 / s.sqrt()) as f32
            }
        } else {
            1.0 / (head_dim as f32).sqrt()
        };
        let cap = |gk: &str, hk: &str| k.opt(gk, &[hk]).filter(|v| *v > 0.0).map(|v| v as f32);
        let moe = family == Family::Qwen3Moe;
        let (experts, experts_used, expert_ffn) = if moe {
            let n = k
                .need("expert_count", "num_experts")
                .or_else(|_| k.need("expert_count", "num_local_experts"))?
                as usize;
            let used = k.need("expert_used_count", "num_experts_per_tok")? as usize;
            if used == 0 || used > n {
                return Err(err(format!(
                    "{}: {used} experts per token out of {n}",
                    src.path.display()
                )));
            }
            let f = k.need("expert_feed_forward_length", "moe_intermediate_size")? as usize;
            (n, used, f)
        } else {
            (0, 0, 0)
        };
        Ok(Spec {
            family,
            gguf,
            hidden,
            n_layers,
            n_heads,
            n_kv,
            head_dim,
            rope_dim,
            ffn,
            eps,
            learned_positions,
            inv_freq,
            adjacent_pairs: gguf && family == Family::Llama,
            layers,
            attn_scale,
            attn_softcap: cap("attn_logit_softcapping", "attn_logit_softcapping"),
            final_softcap: cap("final_logit_softcapping", "final_logit_softcapping"),
            embed_scale: family.gemma().then(|| (hidden as f32).sqrt()),
            norm_plus_one: family.gemma() && !gguf,
            gelu: !matches!(
                family,
                Family::Llama | Family::Qwen2 | Family::Qwen3 | Family::Qwen3Moe | Family::Phi3
            ),
            layer_norm: matches!(family, Family::Phi2 | Family::Starcoder2 | Family::Gpt2),
            gated: !matches!(family, Family::Phi2 | Family::Starcoder2 | Family::Gpt2),
            parallel: family == Family::Phi2,
            sandwich: family.gemma(),
            qk_norm: matches!(family, Family::Qwen3 | Family::Qwen3Moe | Family::Gemma3),
            experts,
            experts_used,
            expert_ffn,
            // llama.cpp always renormalises the top-k weights for qwen3moe.
            norm_topk: moe
                && (gguf
                    || src
                        .meta("norm_topk_prob")
                        .and_then(MetaValue::as_bool)
                        .unwrap_or(false)),
        })
    }
}

/// Which layers are sliding-window and which rope table each uses.
fn layer_kinds(
    src: &ModelSource,
    k: &Keys,
    family: Family,
    n_layers: usize,
) -> Result<Vec<LayerKind>, RuntimeError> {
    let window = k
        .opt("attention.sliding_window", &["sliding_window"])
        .filter(|w| *w > 0.0)
        .map(|w| w as usize);
    let bad = |what: String| err(format!("{}: {what}", src.path.display()));
    // Some(pattern p): layer i is global iff i % p == p - 1 (llama.cpp's rule).
    let every = |p: usize| -> Vec<bool> { (0..n_layers).map(|i| i % p != p - 1).collect() };
    let sliding: Vec<bool> = if k.gguf {
        let key = format!("{}.attention.sliding_window_pattern", src.architecture);
        match src.meta(&key) {
            Some(MetaValue::Array(a)) => {
                if a.len() != n_layers {
                    return Err(bad(format!(
                        "'{key}' has {} entries for {n_layers} layers",
                        a.len()
                    )));
                }
                a.iter().map(|v| v.as_bool().unwrap_or(false)).collect()
            }
            Some(v) => match v.as_u64() {
                Some(p) if p > 0 => every(p as usize),
                _ => {
                    return Err(bad(format!(
                        "'{key}': expected a layer count or a bool per layer"
                    )))
                }
            },
            // llama.cpp hard-codes the patterns of these two families.
            None => match family {
                Family::Gemma2 => every(2),
                Family::Gemma3 => every(6),
                _ => vec![true; n_layers],
            },
        }
    } else if let Some(MetaValue::Array(a)) = src.meta("layer_types") {
        if a.len() != n_layers {
            return Err(bad(format!(
                "'layer_types' has {} entries for {n_layers} layers",
                a.len()
            )));
        }
        a.iter()
            .map(|v| match v.as_str() {
                Some("sliding_attention") => Ok(true),
                Some("full_attention") => Ok(false),
                other => Err(bad(format!("layer_types: unknown layer type {other:?}"))),
            })
            .collect::<Result<_, _>>()?
    } else {
        match family {
            Family::Gemma2 => every(2),
            Family::Gemma3 => {
                let p = num(src, &["sliding_window_pattern", "_sliding_window_pattern"])
                    .unwrap_or(6.0) as usize;
                every(p.max(1))
            }
            Family::Qwen2 | Family::Qwen3 | Family::Qwen3Moe => {
                let on = src
                    .meta("use_sliding_window")
                    .and_then(MetaValue::as_bool)
                    .unwrap_or(false);
                vec![on; n_layers]
            }
            _ => vec![true; n_layers],
        }
    };
    Ok(sliding
        .into_iter()
        .map(|s| LayerKind {
            window: if s { window } else { None },
            // Only gemma3 has a separate local rope table.
            rope: usize::from(s && family == Family::Gemma3),
        })
        .collect())
}
