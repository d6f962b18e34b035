//! Hyperparameters and family flags, read from the file's own keys (GGUF
//! `<arch>.*` keys or HF `config.json` keys), never from a template.

use super::rope::{self, Scaling};
use crate::CuratedError;
use weft_formats::{ModelSource, SourceKind};
use weft_ir::{Expect, MetaValue};

/// The families the curated decoder knows; each is a set of flags below.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Family {
    Llama,
    Qwen2,
    Qwen3,
    Qwen3Moe,
    Gemma2,
    Gemma3,
    /// Per-layer head sizes, per-layer input embeddings, V = K on full layers.
    Gemma4,
    Phi3,
    Phi2,
    Starcoder2,
    /// HF GPT-2 stores its Conv1D matrices [in, out] under `transformer.h.{i}`.
    Gpt2,
}

const HANDLED: &str = "llama, mistral, qwen2, qwen3, qwen3moe (HF qwen3_moe), gemma2, \
                       gemma3 (HF gemma3_text), gemma4 (HF gemma4_text), phi3, phi2 (HF phi), \
                       starcoder2, gpt2";

impl Family {
    fn of(arch: &str) -> Option<Family> {
        Some(match arch {
            "llama" | "mistral" => Family::Llama,
            "qwen2" => Family::Qwen2,
            "qwen3" => Family::Qwen3,
            "qwen3moe" | "qwen3_moe" => Family::Qwen3Moe,
            "gemma2" => Family::Gemma2,
            "gemma3" | "gemma3_text" => Family::Gemma3,
            "gemma4" | "gemma4_text" => Family::Gemma4,
            "phi3" => Family::Phi3,
            "phi2" | "phi" => Family::Phi2,
            "starcoder2" => Family::Starcoder2,
            "gpt2" => Family::Gpt2,
            _ => return None,
        })
    }

    pub(super) fn gemma(self) -> bool {
        matches!(self, Family::Gemma2 | Family::Gemma3 | Family::Gemma4)
    }
}

/// Per layer: attention span, head geometry and rope frequencies.
#[derive(Clone, Debug)]
pub(super) struct LayerKind {
    pub window: Option<usize>,
    pub head_dim: usize,
    pub n_kv: usize,
    /// One inverse frequency per rotated pair: the rope covers the first
    /// `2 * inv_freq.len()` dims of each head.
    pub inv_freq: Vec<f64>,
    /// Gemma 4 `attention_k_eq_v`: no V projection; V is the K projection's
    /// output (before k_norm and rope).
    pub v_from_k: bool,
}

#[derive(Clone, Debug)]
pub(super) struct Spec {
    pub family: Family,
    pub gguf: bool,
    pub hidden: usize,
    pub n_layers: usize,
    pub n_heads: usize,
    pub ffn: usize,
    pub eps: f32,
    /// gpt2: learned absolute positions (`position_embd`), no rope.
    pub learned_positions: bool,
    /// Only GGUF llama files rotate adjacent pairs (the converter permutes Q/K
    /// rows); every other family rotates halves in both sources.
    pub adjacent_pairs: bool,
    pub layers: Vec<LayerKind>,
    pub attn_scale: f32,
    pub attn_softcap: Option<f32>,
    pub final_softcap: Option<f32>,
    /// Gemma multiplies embeddings by sqrt(hidden).
    pub embed_scale: Option<f32>,
    /// HF gemma2/3 norms compute x·(1+w); their GGUF files store w+1 already.
    /// Gemma 4 norms are plain x·w in both.
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
    /// Gemma 4: a weight-free RMSNorm on each head of V.
    pub v_norm: bool,
    /// Gemma 4 per-layer input embeddings: values per layer (0: none).
    pub per_layer_input: usize,
    pub experts: usize,
    pub experts_used: usize,
    pub expert_ffn: usize,
    pub norm_topk: bool,
    pub tie_embeddings: bool,
    /// The context the model was trained for, when the file states it.
    pub context: Option<usize>,
    /// The vocabulary, when the file states it (the embedding must have its rows).
    pub vocab: Option<usize>,
}

fn err(msg: String) -> CuratedError {
    CuratedError::Model(msg)
}

/// Reads keys of either source: `gk` is a GGUF key without the `<arch>.` prefix.
/// (The loader lays a multimodal config's `text_config` over the top level.)
/// Numbers are checked by the rule the family templates use ([`Expect`]): a key that
/// holds a string, a NaN or a zero where a size belongs is an error naming it.
pub(super) struct Keys<'a> {
    pub src: &'a ModelSource,
    pub gguf: bool,
}

impl<'a> Keys<'a> {
    /// An HF key, or GPT-2's own spelling of it (transformers maps these names too),
    /// with the name it was found under.
    fn hf_entry(&self, key: &str) -> Option<(String, &'a MetaValue)> {
        let gpt2 = match key {
            "hidden_size" => "n_embd",
            "num_hidden_layers" => "n_layer",
            "num_attention_heads" => "n_head",
            "intermediate_size" => "n_inner",
            "layer_norm_eps" => "layer_norm_epsilon",
            other => other,
        };
        let src: &'a ModelSource = self.src;
        [key, gpt2]
            .into_iter()
            .find_map(|k| src.meta(k).map(|v| (k.to_string(), v)))
    }

    pub(super) fn hf(&self, key: &str) -> Option<&'a MetaValue> {
        self.hf_entry(key).map(|(_, v)| v)
    }

    /// The key present: GGUF `<arch>.gk`, or the first of the HF keys `hk`.
    fn raw(&self, gk: &str, hk: &[&str]) -> Option<(String, &'a MetaValue)> {
        if self.gguf {
            let src: &'a ModelSource = self.src;
            let key = format!("{}.{gk}", src.architecture);
            src.meta(&key).map(|v| (key, v))
        } else {
            hk.iter().find_map(|k| self.hf_entry(k))
        }
    }

    /// A key's number, checked against `expect`; `None` when absent.
    pub(super) fn num(
        &self,
        gk: &str,
        hk: &[&str],
        expect: Expect,
    ) -> Result<Option<f64>, CuratedError> {
        self.checked(self.raw(gk, hk), expect)
    }

    /// The first of several HF keys present, checked likewise.
    pub(super) fn hf_num(
        &self,
        keys: &[&str],
        expect: Expect,
    ) -> Result<Option<f64>, CuratedError> {
        self.checked(keys.iter().find_map(|k| self.hf_entry(k)), expect)
    }

    /// An HF flag; false when absent.
    pub(super) fn hf_flag(&self, key: &str) -> Result<bool, CuratedError> {
        Ok(self.hf_num(&[key], Expect::Flag)? == Some(1.0))
    }

    fn checked(
        &self,
        entry: Option<(String, &MetaValue)>,
        expect: Expect,
    ) -> Result<Option<f64>, CuratedError> {
        entry
            .map(|(key, v)| v.number(expect).map_err(|e| self.bad_key(&key, &e)))
            .transpose()
    }

    pub(super) fn bad_key(&self, key: &str, what: &str) -> CuratedError {
        err(format!("{}: key '{key}': {what}", self.src.path.display()))
    }

    /// HF keys `<prefix><rest>`, as (rest, value).
    fn hf_under(&self, prefix: &str) -> Vec<(&'a str, &'a MetaValue)> {
        let src: &'a ModelSource = self.src;
        src.metadata
            .iter()
            .filter_map(|(k, v)| k.strip_prefix(prefix).map(|rest| (rest, v)))
            .collect()
    }

    fn name(&self, gk: &str, hk: &str) -> String {
        if self.gguf {
            format!("{}.{gk}", self.src.architecture)
        } else {
            hk.to_string()
        }
    }

    fn need(&self, gk: &str, hk: &str, expect: Expect) -> Result<f64, CuratedError> {
        self.num(gk, &[hk], expect)?.ok_or_else(|| {
            err(format!(
                "{}: missing key '{}'",
                self.src.path.display(),
                self.name(gk, hk)
            ))
        })
    }

    /// One size per layer, from a single number or (GGUF) an array of one per
    /// layer; `None` when the key is absent.
    fn per_layer(&self, gk: &str, hk: &str, n: usize) -> Result<Option<Vec<usize>>, CuratedError> {
        let Some((key, v)) = self.raw(gk, &[hk]) else {
            return Ok(None);
        };
        v.check(Expect::Size).map_err(|e| self.bad_key(&key, &e))?;
        let size = |v: Option<MetaValue>| v.and_then(|v| v.as_u64()).unwrap_or(0) as usize;
        match v.array_len() {
            Some(len) if len != n => {
                Err(self.bad_key(&key, &format!("{len} entries for {n} layers")))
            }
            Some(_) => Ok(Some((0..n).map(|i| size(v.array_get(i))).collect())),
            None => Ok(Some(vec![size(Some(v.clone())); n])),
        }
    }
}

impl Spec {
    pub(super) fn read(src: &ModelSource) -> Result<Spec, CuratedError> {
        let arch = src.architecture.as_str();
        let gguf = src.kind == SourceKind::Gguf;
        let path = src.path.display();
        let family = Family::of(arch).ok_or_else(|| {
            err(format!(
                "{path}: the curated decoder does not handle architecture '{arch}' ({:?} source); \
                 it handles {HANDLED}",
                src.kind
            ))
        })?;
        let k = Keys { src, gguf };
        if family == Family::Gemma4 {
            gemma4_unhandled(&k)?;
        }
        let hidden = k.need("embedding_length", "hidden_size", Expect::Size)? as usize;
        let n_layers = k.need("block_count", "num_hidden_layers", Expect::Size)? as usize;
        // Each layer has tensors of its own: a count beyond the file's tensors is corrupt
        // (and would be allocated per layer below).
        if n_layers > src.tensors.len() {
            return Err(err(format!(
                "{path}: key '{}' says {n_layers} layers, but the file holds {} tensors",
                k.name("block_count", "num_hidden_layers"),
                src.tensors.len()
            )));
        }
        let n_heads = match k.per_layer("attention.head_count", "num_attention_heads", n_layers)? {
            Some(h) if h.windows(2).all(|w| w[0] == w[1]) => h.first().copied().unwrap_or(0),
            Some(_) => {
                return Err(err(format!(
                    "{path}: query head counts that differ per layer are not handled"
                )))
            }
            None => k.need("attention.head_count", "num_attention_heads", Expect::Size)? as usize,
        };
        // Head size of the full-attention layers (GGUF `key_length`), and of the
        // layers that nothing overrides (HF `head_dim`).
        let head_dim = k
            .num("attention.key_length", &["head_dim"], Expect::Size)?
            .map_or(hidden / n_heads, |v| v as usize);
        let learned_positions = family == Family::Gpt2;
        // GPT-2's n_inner may be null: 4 × hidden.
        let ffn = match family {
            Family::Gpt2 => k
                .num("feed_forward_length", &["intermediate_size"], Expect::Size)?
                .map_or(4 * hidden, |v| v as usize),
            _ => k.need("feed_forward_length", "intermediate_size", Expect::Size)? as usize,
        };
        let eps = match k.num(
            "attention.layer_norm_rms_epsilon",
            &["rms_norm_eps", "norm_epsilon", "layer_norm_eps"],
            Expect::Positive,
        )? {
            Some(e) => Some(e),
            None => k.num("attention.layer_norm_epsilon", &[], Expect::Positive)?,
        }
        .unwrap_or(1e-6) as f32;

        let sliding = sliding_layers(&k, family, n_layers)?;
        let window = k
            .num(
                "attention.sliding_window",
                &["sliding_window"],
                Expect::Count,
            )?
            .filter(|w| *w > 0.0)
            .map(|w| w as usize);
        let (head_dims, kv_heads) = geometry(&k, family, &sliding, n_heads, head_dim)?;
        // Rope tables are sized by the head: a head larger than every tensor dimension
        // is corrupt, and is refused before any table is made.
        let largest = src
            .tensors
            .iter()
            .flat_map(|t| t.shape.iter().copied())
            .max();
        if let Some(hd) = head_dims.iter().find(|&&hd| Some(hd) > largest) {
            return Err(err(format!(
                "{path}: head size {hd} is larger than any tensor dimension of the file"
            )));
        }

        // Rope: one table, or for gemma3/4 a global one (full layers) and a local
        // one (sliding layers), each over its own layers' head size.
        let full_hd = (0..n_layers)
            .find(|&i| !sliding[i])
            .map_or(head_dim, |i| head_dims[i]);
        let local_hd = (0..n_layers)
            .find(|&i| sliding[i])
            .map_or(full_hd, |i| head_dims[i]);
        let two_tables = matches!(family, Family::Gemma3 | Family::Gemma4);
        for (i, (&hd, &s)) in head_dims.iter().zip(&sliding).enumerate() {
            let want = if s && two_tables { local_hd } else { full_hd };
            if hd != want {
                return Err(err(format!(
                    "{path}: layer {i} has head size {hd}, other layers of its kind {want}; \
                     one rope table per kind needs one head size"
                )));
            }
        }
        // HF partial rope (phi-style): the first fraction of each head rotates.
        let partial = k
            .hf_num(
                &[
                    "partial_rotary_factor",
                    "rope_parameters.partial_rotary_factor",
                ],
                Expect::Fraction,
            )?
            .unwrap_or(1.0);
        let hf_dim = |hd: usize, s: &Scaling| match s {
            // Proportional rope keeps a frequency per pair of the whole head.
            Scaling::Proportional { .. } => hd,
            _ => (hd as f64 * partial) as usize,
        };
        let check = |dim: usize, hd: usize| {
            if dim > hd || !dim.is_multiple_of(2) {
                Err(err(format!("{path}: rope over {dim} of {hd} head dims")))
            } else {
                Ok(())
            }
        };
        let theta = k
            .num(
                "rope.freq_base",
                &[
                    "rope_theta",
                    "rope_parameters.rope_theta",
                    "rope_parameters.full_attention.rope_theta",
                ],
                Expect::Positive,
            )?
            .unwrap_or(10000.0);
        let (global, global_dim) = if learned_positions {
            (Vec::new(), 0)
        } else if gguf {
            let dim = k
                .num("rope.dimension_count", &[], Expect::Size)?
                .map_or(full_hd, |v| v as usize);
            check(dim, full_hd)?;
            let mut f = rope::inv_freq(theta, dim, &rope::gguf_scaling(&k)?);
            // llama3-scaled files, and Gemma 4's proportional rope (divisors
            // 1e30 freeze the unrotated pairs), carry per-frequency divisors.
            rope::apply_freq_factors(src, &mut f)?;
            (f, dim)
        } else {
            let scaling = rope::hf_scaling(
                &k,
                &[
                    "rope_scaling",
                    "rope_parameters",
                    "rope_parameters.full_attention",
                ],
            )?;
            let dim = hf_dim(full_hd, &scaling);
            check(dim, full_hd)?;
            (rope::inv_freq(theta, dim, &scaling), dim)
        };
        let local = if two_tables {
            // llama.cpp defaults the local base to 1e4 when the key is absent
            // (the real Gemma 3 270M GGUF has no freq_base_swa), never scales
            // local layers, and gives them the global rope dims by default.
            let theta = k
                .num(
                    "rope.freq_base_swa",
                    &[
                        "rope_local_base_freq",
                        "rope_parameters.sliding_attention.rope_theta",
                    ],
                    Expect::Positive,
                )?
                .unwrap_or(10000.0);
            let (scaling, dim) = if gguf {
                let dim = k
                    .num("rope.dimension_count_swa", &[], Expect::Size)?
                    .map_or(global_dim, |v| v as usize);
                (Scaling::None, dim)
            } else {
                let s = rope::hf_scaling(&k, &["rope_parameters.sliding_attention"])?;
                let dim = hf_dim(local_hd, &s);
                (s, dim)
            };
            check(dim, local_hd)?;
            Some(rope::inv_freq(theta, dim, &scaling))
        } else {
            None
        };

        // HF: full layers of an attention_k_eq_v model have no v_proj. GGUF:
        // llama.cpp uses K wherever a gemma4 layer has no attn_v.
        let k_eq_v = family == Family::Gemma4 && k.hf_flag("attention_k_eq_v")?;
        let layers = (0..n_layers)
            .map(|i| LayerKind {
                window: if sliding[i] { window } else { None },
                head_dim: head_dims[i],
                n_kv: kv_heads[i],
                inv_freq: match &local {
                    Some(l) if sliding[i] => l.clone(),
                    _ => global.clone(),
                },
                v_from_k: if gguf {
                    family == Family::Gemma4
                        && src.tensor(&format!("blk.{i}.attn_v.weight")).is_none()
                } else {
                    k_eq_v && !sliding[i]
                },
            })
            .collect();

        let attn_scale = match family {
            // q_norm/k_norm set the scale: transformers and llama.cpp use 1.
            Family::Gemma4 => 1.0,
            f if f.gemma() => {
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
                    let s = k.need("", "query_pre_attn_scalar", Expect::Positive)?;
                    (1.0 / s.sqrt()) as f32
                }
            }
            _ => 1.0 / (head_dim as f32).sqrt(),
        };
        // A softcap of 0 (or none stated) is off.
        let cap = |key: &str| -> Result<Option<f32>, CuratedError> {
            let v = k.num(key, &[key], Expect::NonNegative)?;
            Ok(v.filter(|v| *v > 0.0).map(|v| v as f32))
        };
        let moe = family == Family::Qwen3Moe;
        let (experts, experts_used, expert_ffn) = if moe {
            let n = match k.num(
                "expert_count",
                &["num_experts", "num_local_experts"],
                Expect::Size,
            )? {
                Some(n) => n as usize,
                None => k.need("expert_count", "num_experts", Expect::Size)? as usize,
            };
            let used = k.need("expert_used_count", "num_experts_per_tok", Expect::Size)? as usize;
            if used == 0 || used > n {
                return Err(err(format!("{path}: {used} experts per token out of {n}")));
            }
            let f = k.need(
                "expert_feed_forward_length",
                "moe_intermediate_size",
                Expect::Size,
            )? as usize;
            (n, used, f)
        } else {
            (0, 0, 0)
        };
        let per_layer_input = if family == Family::Gemma4 {
            // transformers' default when config.json omits the key is 256.
            let default = if gguf { 0.0 } else { 256.0 };
            k.num(
                "embedding_length_per_layer_input",
                &["hidden_size_per_layer_input"],
                Expect::Count,
            )?
            .unwrap_or(default) as usize
        } else {
            0
        };
        Ok(Spec {
            family,
            gguf,
            hidden,
            n_layers,
            n_heads,
            ffn,
            eps,
            learned_positions,
            adjacent_pairs: gguf && family == Family::Llama,
            layers,
            attn_scale,
            attn_softcap: cap("attn_logit_softcapping")?,
            final_softcap: cap("final_logit_softcapping")?,
            embed_scale: family.gemma().then(|| (hidden as f32).sqrt()),
            norm_plus_one: matches!(family, Family::Gemma2 | Family::Gemma3) && !gguf,
            gelu: !matches!(
                family,
                Family::Llama | Family::Qwen2 | Family::Qwen3 | Family::Qwen3Moe | Family::Phi3
            ),
            layer_norm: matches!(family, Family::Phi2 | Family::Starcoder2 | Family::Gpt2),
            gated: !matches!(family, Family::Phi2 | Family::Starcoder2 | Family::Gpt2),
            parallel: family == Family::Phi2,
            sandwich: family.gemma(),
            qk_norm: matches!(
                family,
                Family::Qwen3 | Family::Qwen3Moe | Family::Gemma3 | Family::Gemma4
            ),
            v_norm: family == Family::Gemma4,
            per_layer_input,
            experts,
            experts_used,
            expert_ffn,
            // llama.cpp always renormalises the top-k weights for qwen3moe.
            norm_topk: moe && (gguf || k.hf_flag("norm_topk_prob")?),
            // GGUF ties by leaving out output.weight; HF says so in config.json.
            tie_embeddings: !gguf && k.hf_flag("tie_word_embeddings")?,
            context: k
                .num(
                    "context_length",
                    &["max_position_embeddings", "n_positions"],
                    Expect::Size,
                )?
                .map(|c| c as usize),
            vocab: k
                .num("vocab_size", &["vocab_size"], Expect::Size)?
                .map(|v| v as usize),
        })
    }
}

/// Gemma 4 variants this decoder would run wrongly: refuse them by name.
fn gemma4_unhandled(k: &Keys) -> Result<(), CuratedError> {
    let path = k.src.path.display();
    let shared = k
        .num(
            "attention.shared_kv_layers",
            &["num_kv_shared_layers"],
            Expect::Count,
        )?
        .unwrap_or(0.0);
    if shared > 0.0 {
        return Err(err(format!(
            "{path}: {shared} layers reuse an earlier layer's keys and values \
             (Gemma 4 KV sharing); the curated decoder does not handle that"
        )));
    }
    let moe = if k.gguf {
        k.num("expert_count", &[], Expect::Count)?.unwrap_or(0.0) > 0.0
    } else {
        k.hf_flag("enable_moe_block")?
    };
    if moe {
        return Err(err(format!(
            "{path}: Gemma 4 mixture-of-experts blocks are not handled by the curated decoder"
        )));
    }
    let bidirectional = k
        .hf("use_bidirectional_attention")
        .and_then(MetaValue::as_str);
    if !k.gguf && bidirectional == Some("all") {
        return Err(err(format!(
            "{path}: use_bidirectional_attention = \"all\" (not causal) is not handled"
        )));
    }
    Ok(())
}

/// Head size and key/value head count of each layer.
fn geometry(
    k: &Keys,
    family: Family,
    sliding: &[bool],
    n_heads: usize,
    head_dim: usize,
) -> Result<(Vec<usize>, Vec<usize>), CuratedError> {
    let n = sliding.len();
    let path = k.src.path.display();
    let mut kv = k
        .per_layer("attention.head_count_kv", "num_key_value_heads", n)?
        .unwrap_or_else(|| vec![n_heads; n]);
    let mut dims = vec![head_dim; n];
    let overrides = if k.gguf {
        Vec::new()
    } else {
        k.hf_under("per_layer_config.")
    };
    if k.gguf {
        // llama.cpp: sliding layers have their own head size when the file says so.
        let swa = k
            .num("attention.key_length_swa", &[], Expect::Size)?
            .map(|v| v as usize);
        for (d, _) in dims.iter_mut().zip(sliding).filter(|(_, s)| **s) {
            *d = swa.unwrap_or(*d);
        }
        for (key, want) in [
            ("attention.value_length", Some(head_dim)),
            ("attention.value_length_swa", swa.or(Some(head_dim))),
        ] {
            if let (Some(vl), Some(want)) = (k.num(key, &[], Expect::Size)?, want) {
                if vl as usize != want {
                    return Err(err(format!(
                        "{path}: '{}' {vl} differs from the key length {want}",
                        k.name(key, "")
                    )));
                }
            }
        }
    } else if !overrides.is_empty() {
        // transformers' per_layer_config: {"<layer>": {"head_dim": .., "num_key_value_heads": ..}}.
        for (rest, v) in overrides {
            let parsed = rest.split_once('.').and_then(|(i, field)| {
                let i: usize = i.parse().ok().filter(|&i| i < n)?;
                Some((i, field, v.number(Expect::Size).ok()? as usize))
            });
            match parsed {
                Some((i, "head_dim", v)) => dims[i] = v,
                Some((i, "num_key_value_heads", v)) => kv[i] = v,
                _ => {
                    return Err(err(format!(
                        "{path}: per_layer_config.{rest}: only head_dim and \
                         num_key_value_heads of a layer below {n} are handled"
                    )))
                }
            }
        }
    } else if family == Family::Gemma4 {
        // Google's configs: full layers take global_head_dim (transformers'
        // default 512) and, only with attention_k_eq_v, num_global_key_value_heads.
        let g_dim = k
            .hf_num(&["global_head_dim"], Expect::Size)?
            .unwrap_or(512.0) as usize;
        let k_eq_v = k.hf_flag("attention_k_eq_v")?;
        let g_kv = k
            .hf_num(&["num_global_key_value_heads"], Expect::Size)?
            .filter(|_| k_eq_v)
            .map(|v| v as usize);
        for i in (0..n).filter(|&i| !sliding[i]) {
            dims[i] = g_dim;
            kv[i] = g_kv.unwrap_or(kv[i]);
        }
    }
    for i in 0..n {
        if dims[i] == 0 || kv[i] == 0 || !n_heads.is_multiple_of(kv[i]) {
            return Err(err(format!(
                "{path}: layer {i}: {n_heads} query heads of size {} cannot share {} \
                 key/value heads",
                dims[i], kv[i]
            )));
        }
    }
    Ok((dims, kv))
}

/// Which layers are sliding-window (true) and which attend to everything.
fn sliding_layers(k: &Keys, family: Family, n_layers: usize) -> Result<Vec<bool>, CuratedError> {
    let src = k.src;
    let bad = |what: String| err(format!("{}: {what}", src.path.display()));
    // Some(pattern p): layer i is global iff i % p == p - 1 (llama.cpp's rule).
    let every = |p: usize| -> Vec<bool> { (0..n_layers).map(|i| i % p != p - 1).collect() };
    // A per-layer array (a GGUF array may be stored packed).
    let each = |key: &str, v: &MetaValue, f: &dyn Fn(MetaValue) -> Result<bool, CuratedError>| {
        let len = v.array_len().unwrap_or(0);
        if len != n_layers {
            return Err(bad(format!(
                "'{key}' has {len} entries for {n_layers} layers"
            )));
        }
        (0..n_layers)
            .map(|i| f(v.array_get(i).unwrap_or(MetaValue::Bool(false))))
            .collect::<Result<Vec<bool>, _>>()
    };
    if k.gguf {
        let key = format!("{}.attention.sliding_window_pattern", src.architecture);
        return match src.meta(&key) {
            Some(v) if v.array_len().is_some() => each(&key, v, &|b| {
                let on = b.number(Expect::Flag).map_err(|e| k.bad_key(&key, &e))?;
                Ok(on == 1.0)
            }),
            Some(v) => match v.as_u64() {
                Some(p) if p > 0 => Ok(every(p as usize)),
                _ => Err(bad(format!(
                    "'{key}': expected a layer count or a bool per layer"
                ))),
            },
            // llama.cpp hard-codes the patterns of these two families (and
            // requires the key of gemma4).
            None => match family {
                Family::Gemma2 => Ok(every(2)),
                Family::Gemma3 => Ok(every(6)),
                Family::Gemma4 => Err(bad(format!("missing key '{key}'"))),
                _ => Ok(vec![true; n_layers]),
            },
        };
    }
    if let Some(v) = k.hf("layer_types").filter(|v| v.array_len().is_some()) {
        return each("layer_types", v, &|t| match t.as_str() {
            Some("sliding_attention") => Ok(true),
            Some("full_attention") => Ok(false),
            other => Err(bad(format!("layer_types: unknown layer type {other:?}"))),
        });
    }
    Ok(match family {
        Family::Gemma2 => every(2),
        Family::Gemma3 | Family::Gemma4 => {
            let p = k
                .hf_num(
                    &["sliding_window_pattern", "_sliding_window_pattern"],
                    Expect::Size,
                )?
                .unwrap_or(6.0) as usize;
            every(p)
        }
        Family::Qwen2 | Family::Qwen3 | Family::Qwen3Moe => {
            vec![k.hf_flag("use_sliding_window")?; n_layers]
        }
        _ => vec![true; n_layers],
    })
}
