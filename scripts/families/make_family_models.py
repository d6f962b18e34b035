#!/usr/bin/env python3
"""Tiny random-weight models of each supported family (HF dirs + GGUF conversions + references).

Same approach and reference.json format as scripts/fixtures/make_tiny_llama.py (the
tokenizer, JSON, greedy and conversion helpers of both are in scripts/fixtures/common.py),
one directory per model under tests/fixtures/families/<name>/:

  config.json            written by the family's own transformers config class
  model.safetensors      f32 weights (written by save_pretrained: hub tensor names)
  tokenizer.json         toy byte-level BPE, vocab size == config vocab_size
  tokenizer_config.json
  reference.json         transformers (eager attention, f32): input_ids, last_logits,
                         greedy (32), gaps, min_gap, ..., plus "config": the values that matter
  model-f32.gguf         llama.cpp convert_hf_to_gguf.py --outtype f32   (when the converter
  model-f16.gguf         ... --outtype f16                                supports the arch)
  reference-f16.json     same format, weights = model-f16.gguf
  llamacpp.json          llama.cpp (llama-cpp-python) run on both GGUFs with the same input ids:
                         last-position logit diff vs the transformers references, greedy ids,
                         first mismatch.  Informational: where the converter drops a config
                         value (see "gguf_lossy" in reference.json) llama.cpp disagrees.
and tests/fixtures/families/GGUF_METADATA.md: per model, the GGUF metadata keys and tensor
names (with shapes and types) the converter wrote.

Pinned: as make_tiny_llama.py (torch==2.15.0, transformers==5.24.0, gguf==0.19.0,
llama-cpp-python==0.3.36 whose sdist vendors convert_hf_to_gguf.py).  Runs in the fixture
venv (scripts/fixtures/setup_env.sh).  Deterministic (fixed seeds, f32, 1 thread) and
idempotent.

    python scripts/families/make_family_models.py [--only NAME ...] [--no-llamacpp]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
import transformers

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fixtures"))
import common as fx  # noqa: E402  (tokenizer, JSON, greedy and converter helpers)

SCRIPT = "scripts/families/make_family_models.py"
OUT_ROOT = fx.FIXTURES / "families"
WEIGHT_STD = 0.2
NORM_STD = 0.1
BIAS_STD = 0.1
WINDOW = 4  # sliding window, shorter than the 12 input ids + 32 generated

# ----------------------------------------------------------------------------- families
#
# Each entry: name, seed, arch (HF class), cfg (kwargs for the transformers config class),
# norm_center (1.0 for w-norms, 0.0 for Gemma's (1+w) norms), gguf (converter supports it),
# gguf_lossy (config values the converter does not write, so a GGUF reader cannot see them),
# vocab_patch (the converter wants a sentencepiece tokenizer.model for this arch; ours is a
# byte-level BPE, so its set_vocab is replaced by the GPT-2 one: the tokenizer only).

FAMILIES: list[dict] = [
    {
        "name": "qwen2",
        "seed": 211,
        "arch": "Qwen2ForCausalLM",
        "config_class": "Qwen2Config",
        "cfg": dict(
            vocab_size=290, hidden_size=48, intermediate_size=96, num_hidden_layers=2,
            num_attention_heads=6, num_key_value_heads=2,  # GQA 3, head_dim 8
            max_position_embeddings=4096, rms_norm_eps=1e-6,
            rope_parameters={"rope_type": "default", "rope_theta": 1000000.0},
            tie_word_embeddings=True, use_sliding_window=False,
        ),
        "notes": "q/k/v projections carry biases (o_proj none); tied embeddings (no lm_head.weight)",
    },
    {
        "name": "qwen3",
        "seed": 712,
        "arch": "Qwen3ForCausalLM",
        "config_class": "Qwen3Config",
        "cfg": dict(
            vocab_size=301, hidden_size=40, intermediate_size=80, num_hidden_layers=2,
            num_attention_heads=5, num_key_value_heads=1,  # GQA 5
            head_dim=16,  # != hidden/heads = 8
            max_position_embeddings=4096, rms_norm_eps=1e-6,
            rope_parameters={"rope_type": "default", "rope_theta": 1000000.0},
            tie_word_embeddings=False, attention_bias=False, use_sliding_window=False,
        ),
        "notes": "RMSNorm over each head of q and k (weight [head_dim]) before rope; untied",
    },
    {
        "name": "gemma3",
        "seed": 613,
        "arch": "Gemma3ForCausalLM",
        "config_class": "Gemma3TextConfig",
        "cfg": dict(
            vocab_size=288, hidden_size=36, intermediate_size=64, num_hidden_layers=4,
            num_attention_heads=6, num_key_value_heads=2,  # GQA 3
            head_dim=16,  # != hidden/heads = 6
            query_pre_attn_scalar=24,  # != head_dim: scale = 24**-0.5
            layer_types=["sliding_attention", "sliding_attention", "full_attention", "sliding_attention"],
            sliding_window=WINDOW,
            rope_parameters={
                "sliding_attention": {"rope_type": "default", "rope_theta": 10000.0},
                "full_attention": {"rope_type": "default", "rope_theta": 1000000.0},
            },
            max_position_embeddings=32768, rms_norm_eps=1e-6,
            hidden_activation="gelu_pytorch_tanh",
            final_logit_softcapping=None, attn_logit_softcapping=None,
            tie_word_embeddings=True, bos_token_id=0, eos_token_id=1, pad_token_id=1,
        ),
        "norm_center": 0.0,
        # Gemma scales embeddings by sqrt(hidden); with tied weights and std 0.2 the token's
        # own embedding dominates the residual and greedy repeats the last token forever.
        "embed_std": 0.05,
        "gguf_lossy": {
            "query_pre_attn_scalar": "not written; llama.cpp scales by 1/sqrt(head_dim) "
                                     "(1/sqrt(hidden/heads) only for its 62-layer 27B)",
            "layer_types": "not written (no gemma3.attention.sliding_window_pattern); "
                           "llama.cpp assumes pattern 6: layer i is global iff (i+1) % 6 == 0",
        },
        "notes": "pattern 3 (S S F S), window 4, local rope base 1e4 / global 1e6, q/k RMSNorm, "
                 "sandwich norms, (1+w) RMSNorm weights, embeddings * sqrt(hidden), tied",
    },
    {
        "name": "gemma3-p6",
        "seed": 914,
        "arch": "Gemma3ForCausalLM",
        "config_class": "Gemma3TextConfig",
        "cfg": dict(
            vocab_size=283, hidden_size=32, intermediate_size=64, num_hidden_layers=7,
            num_attention_heads=4, num_key_value_heads=1,  # GQA 4
            head_dim=16,  # != hidden/heads = 8
            query_pre_attn_scalar=16,  # == head_dim: what llama.cpp assumes
            layer_types=["sliding_attention"] * 5 + ["full_attention", "sliding_attention"],
            sliding_window=WINDOW,
            rope_parameters={
                "sliding_attention": {"rope_type": "default", "rope_theta": 10000.0},
                "full_attention": {"rope_type": "default", "rope_theta": 1000000.0},
            },
            max_position_embeddings=32768, rms_norm_eps=1e-6,
            hidden_activation="gelu_pytorch_tanh",
            tie_word_embeddings=True, bos_token_id=0, eos_token_id=1, pad_token_id=1,
        ),
        "norm_center": 0.0,
        # Gemma scales embeddings by sqrt(hidden); with tied weights and std 0.2 the token's
        # own embedding dominates the residual and greedy repeats the last token forever.
        "embed_std": 0.05,
        "notes": "the GGUF-faithful Gemma 3: pattern 6 (5 sliding, 1 global, then sliding), "
                 "query_pre_attn_scalar == head_dim, so llama.cpp must agree with transformers",
    },
    {
        "name": "gemma2",
        "seed": 1015,
        "arch": "Gemma2ForCausalLM",
        "config_class": "Gemma2Config",
        "cfg": dict(
            vocab_size=296, hidden_size=48, intermediate_size=96, num_hidden_layers=3,
            num_attention_heads=4, num_key_value_heads=2,  # GQA 2
            head_dim=16,  # != hidden/heads = 12
            query_pre_attn_scalar=16,
            layer_types=["sliding_attention", "full_attention", "sliding_attention"],
            sliding_window=WINDOW,
            attn_logit_softcapping=1.5, final_logit_softcapping=1.0,
            rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
            max_position_embeddings=8192, rms_norm_eps=1e-6,
            hidden_activation="gelu_pytorch_tanh",
            tie_word_embeddings=True, bos_token_id=0, eos_token_id=1, pad_token_id=1,
        ),
        "norm_center": 0.0,
        # Gemma scales embeddings by sqrt(hidden); with tied weights and std 0.2 the token's
        # own embedding dominates the residual and greedy repeats the last token forever.
        "embed_std": 0.05,
        "vocab_patch": True,
        "notes": "softcaps chosen small (attn 1.5, final 1.0) so tanh is far from linear; "
                 "alternating sliding/global starting with sliding; sandwich norms; (1+w) norms",
    },
    {
        "name": "phi3",
        "seed": 416,
        "arch": "Phi3ForCausalLM",
        "config_class": "Phi3Config",
        "cfg": dict(
            vocab_size=291, hidden_size=48, intermediate_size=80, num_hidden_layers=2,
            num_attention_heads=6, num_key_value_heads=2,  # GQA 3 (fused qkv: 48+16+16 rows)
            max_position_embeddings=4096, original_max_position_embeddings=4096,
            rms_norm_eps=1e-5, rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
            tie_word_embeddings=False, sliding_window=None, pad_token_id=1,
            bos_token_id=0, eos_token_id=1,
        ),
        "vocab_patch": True,
        "notes": "fused qkv_proj [(H+2*KV)*hd, hidden] and gate_up_proj [2*inter, hidden] "
                 "(gate first, up second); untied",
    },
    {
        "name": "phi3-partial-rope",
        "seed": 817,
        "arch": "Phi3ForCausalLM",
        "config_class": "Phi3Config",
        "cfg": dict(
            vocab_size=285, hidden_size=40, intermediate_size=72, num_hidden_layers=2,
            num_attention_heads=5, num_key_value_heads=1,  # GQA 5, head_dim 8
            partial_rotary_factor=0.5,  # rope on the first 4 of 8 dims
            max_position_embeddings=4096, original_max_position_embeddings=4096,
            rms_norm_eps=1e-5, rope_parameters={"rope_type": "default", "rope_theta": 10000.0,
                                                "partial_rotary_factor": 0.5},
            tie_word_embeddings=False, sliding_window=None, pad_token_id=1,
            bos_token_id=0, eos_token_id=1,
        ),
        "vocab_patch": True,
        "notes": "partial_rotary_factor 0.5: NeoX-style rope over the first half of each head",
    },
    {
        "name": "qwen3moe",
        "seed": 618,
        "arch": "Qwen3MoeForCausalLM",
        "config_class": "Qwen3MoeConfig",
        "cfg": dict(
            vocab_size=293, hidden_size=32, intermediate_size=64, moe_intermediate_size=24,
            num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
            head_dim=16,  # != hidden/heads = 8
            num_experts=4, num_experts_per_tok=2, norm_topk_prob=True,
            decoder_sparse_step=1, mlp_only_layers=[], router_aux_loss_coef=0.0,
            max_position_embeddings=4096, rms_norm_eps=1e-6,
            rope_parameters={"rope_type": "default", "rope_theta": 1000000.0},
            tie_word_embeddings=False, use_sliding_window=False,
        ),
        "notes": "4 experts, top-2 by softmax over router logits, top-k weights renormalised "
                 "(norm_topk_prob); q/k norm; every layer sparse",
    },
    {
        "name": "gemma4",
        "seed": 419,
        "arch": "Gemma4ForCausalLM",
        "config_class": "Gemma4TextConfig",
        "cfg": dict(
            vocab_size=290, hidden_size=32, intermediate_size=48, num_hidden_layers=5,
            num_attention_heads=4,
            num_key_value_heads=2, head_dim=16,  # sliding layers: GQA 2, head_dim 16 (hidden/heads = 8)
            global_head_dim=32, num_global_key_value_heads=1,  # full layers: GQA 4, head_dim 32
            attention_k_eq_v=True,  # full layers: no v_proj, V = raw K (then v_norm)
            layer_types=["sliding_attention", "sliding_attention", "full_attention",
                         "sliding_attention", "full_attention"],
            sliding_window=WINDOW, final_logit_softcapping=5.0,
            hidden_size_per_layer_input=8, vocab_size_per_layer_input=290,  # per-layer embeddings
            num_kv_shared_layers=0,
            rope_parameters={
                "sliding_attention": {"rope_type": "default", "rope_theta": 10000.0},
                "full_attention": {"rope_type": "proportional", "partial_rotary_factor": 0.25,
                                   "rope_theta": 1000000.0},
            },
            max_position_embeddings=32768, rms_norm_eps=1e-6,
            hidden_activation="gelu_pytorch_tanh",
            tie_word_embeddings=True, bos_token_id=0, eos_token_id=1, pad_token_id=1,
        ),
        "vocab_patch": True,
        "notes": "per-layer-kind head_dim (16 sliding / 32 full) and kv heads (2 / 1); "
                 "attention_k_eq_v on full layers; attention scale 1.0 (q/k RMSNorm instead); "
                 "v RMSNorm without weight; plain w RMSNorm (no +1); per-layer input embeddings "
                 "(PLE, 8 per layer); proportional rope on full layers (rotates the first "
                 "0.25*head_dim/2 pairs of each half); per-layer layer_scalar; final softcap 5.0",
    },
    {
        "name": "gpt2",
        "seed": 420,
        "arch": "GPT2LMHeadModel",
        "config_class": "GPT2Config",
        "cfg": dict(
            vocab_size=287, n_embd=48, n_layer=2, n_head=4, n_positions=64, n_inner=None,
            activation_function="gelu_new", layer_norm_epsilon=1e-5, tie_word_embeddings=True,
            bos_token_id=0, eos_token_id=1,
        ),
        # transformers 5 no longer writes n_ctx; convert_hf_to_gguf.py's GPT2Model reads it.
        "config_extra": {"n_ctx": 64},
        "notes": "learned absolute positions (wpe, n_positions 64), LayerNorm with bias, Conv1D "
                 "weights stored [in, out] in safetensors, fused c_attn (q|k|v), gelu_new, tied",
    },
    {
        "name": "phi2",
        "seed": 421,
        "arch": "PhiForCausalLM",
        "config_class": "PhiConfig",
        "cfg": dict(
            vocab_size=289, hidden_size=48, intermediate_size=192, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=4,  # head_dim 12
            # intermediate = 4 * hidden: the converter writes phi2.feed_forward_length = 4 * n_embd
            partial_rotary_factor=0.5, hidden_act="gelu_new", layer_norm_eps=1e-5,
            rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "partial_rotary_factor": 0.5},
            max_position_embeddings=2048, qk_layernorm=False, tie_word_embeddings=False,
            bos_token_id=0, eos_token_id=1,
        ),
        "notes": "parallel attention + MLP off one LayerNorm (with bias); q/k/v/dense/fc1/fc2 and "
                 "lm_head all have biases; partial rotary 0.5 (NeoX halves over the first 6 dims)",
    },
    {
        "name": "starcoder2",
        "seed": 222,
        "arch": "Starcoder2ForCausalLM",
        "config_class": "Starcoder2Config",
        "cfg": dict(
            vocab_size=297, hidden_size=40, intermediate_size=80, num_hidden_layers=2,
            num_attention_heads=5, num_key_value_heads=1,  # GQA 5, head_dim 8
            sliding_window=WINDOW, use_bias=True, norm_epsilon=1e-5, hidden_act="gelu_pytorch_tanh",
            rope_parameters={"rope_type": "default", "rope_theta": 100000.0},
            max_position_embeddings=4096, tie_word_embeddings=True,
            bos_token_id=0, eos_token_id=1,
        ),
        "gguf_lossy": {
            "sliding_window": "not written; llama.cpp's starcoder2 attends to the whole context",
        },
        "notes": "LayerNorm with bias, biases on every linear, plain (non-gated) MLP c_fc/c_proj, "
                 "sliding window 4 on every layer, tied",
    },
]


# ----------------------------------------------------------------------------- helpers


def make_config(f: dict):
    cls = getattr(transformers, f["config_class"])
    cfg = cls(**f["cfg"])
    cfg.architectures = [f["arch"]]
    cfg.dtype = "float32"
    return cfg


def model_class(f: dict):
    return getattr(transformers, f["arch"])


def random_init(model: torch.nn.Module, seed: int, norm_center: float, embed_std: float = WEIGHT_STD) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in sorted(model.named_parameters(), key=lambda kv: kv[0]):
            leaf = name.rsplit(".", 1)
            is_norm = any(s in name for s in ("norm", "ln_")) or name.endswith("layernorm.weight")
            if is_norm and name.endswith("weight") and p.dim() == 1:
                t = norm_center + NORM_STD * torch.randn(p.shape, generator=g)
            elif name.endswith("bias") or (p.dim() == 1 and leaf[-1] != "weight"):
                t = BIAS_STD * torch.randn(p.shape, generator=g)
            elif name.endswith("embed_tokens.weight"):
                t = embed_std * torch.randn(p.shape, generator=g)
            else:
                t = WEIGHT_STD * torch.randn(p.shape, generator=g)
            p.copy_(t.to(p.dtype))
        for name, b in sorted(model.named_buffers(), key=lambda kv: kv[0]):
            if name.endswith("layer_scalar"):  # Gemma 4: persistent per-layer output scale
                b.copy_(1.0 + 0.3 * torch.randn(b.shape, generator=g))


def load_hf(d: Path, f: dict):
    m = model_class(f).from_pretrained(str(d), dtype=torch.float32, attn_implementation="eager")
    m.eval()
    return m


def build(f: dict, d: Path) -> None:
    torch.manual_seed(f["seed"])
    cfg = make_config(f)
    cfg._attn_implementation = "eager"
    model = model_class(f)(cfg).to(torch.float32)
    random_init(model, f["seed"], f.get("norm_center", 1.0), f.get("embed_std", WEIGHT_STD))
    model.save_pretrained(str(d), safe_serialization=True)
    for extra in ("generation_config.json",):
        (d / extra).unlink(missing_ok=True)
    cj = json.loads((d / "config.json").read_text())
    cj.pop("_attn_implementation", None)
    cj.update(f.get("config_extra", {}))
    (d / "config.json").write_text(json.dumps(cj, indent=2, sort_keys=False) + "\n")
    os.chmod(d / "model.safetensors", 0o644)


CONFIG_KEYS = [
    "model_type", "vocab_size", "hidden_size", "intermediate_size", "moe_intermediate_size",
    "num_hidden_layers", "num_attention_heads", "num_key_value_heads", "head_dim",
    "hidden_act", "hidden_activation", "rms_norm_eps", "layer_norm_eps", "layer_norm_epsilon",
    "rope_parameters", "partial_rotary_factor", "tie_word_embeddings", "attention_bias",
    "query_pre_attn_scalar", "sliding_window", "layer_types", "attn_logit_softcapping",
    "final_logit_softcapping", "num_experts", "num_experts_per_tok", "norm_topk_prob",
    "decoder_sparse_step", "mlp_only_layers", "use_sliding_window",
]


def config_summary(model, f: dict) -> dict:
    c = model.config
    out = {}
    for k in CONFIG_KEYS:
        try:
            v = getattr(c, k)
        except Exception:  # AttributeError, or Gemma 4's per-layer attributes
            v = f["cfg"].get(k)
            if v is None:
                continue
        if v is not None or k in f["cfg"]:
            out[k] = v
    for k in ("global_head_dim", "num_global_key_value_heads", "attention_k_eq_v",
              "hidden_size_per_layer_input", "vocab_size_per_layer_input", "num_kv_shared_layers"):
        if k in f["cfg"]:
            out[k] = f["cfg"][k]
    if hasattr(c, "per_layer_config") and f["config_class"] == "Gemma4TextConfig":
        out["per_layer"] = [{"head_dim": a.self_attn.head_dim,
                             "num_key_value_heads": a.self_attn.config.num_attention_heads
                             // a.self_attn.num_key_value_groups,
                             "sliding_window": a.self_attn.sliding_window,
                             "has_v_proj": getattr(a.self_attn, "v_proj", None) is not None}
                            for a in model.model.layers]
    attn = _first_attn(model)
    if attn is not None:
        out["effective_head_dim"] = getattr(attn, "head_dim", None)
        if hasattr(attn, "scaling"):
            out["effective_attn_scale"] = float(attn.scaling)
    return json.loads(json.dumps(out, default=str))


def _first_attn(model):
    for mod in model.modules():
        if type(mod).__name__.endswith("Attention"):
            return mod
    return None


def check_roundtrip(model, f: dict) -> None:
    """The config values this fixture is about really are in effect in the HF model."""
    c, want = model.config, f["cfg"]
    for k in ("vocab_size", "num_key_value_heads", "head_dim", "query_pre_attn_scalar",
              "sliding_window", "layer_types", "num_experts", "num_experts_per_tok",
              "attn_logit_softcapping", "final_logit_softcapping"):
        if k in want and want[k] is not None and f["config_class"] != "Gemma4TextConfig":
            assert getattr(c, k) == want[k], (k, getattr(c, k), want[k])
    attn = _first_attn(model)
    if "head_dim" in want and f["config_class"] == "Gemma4TextConfig":
        hds = [layer.self_attn.head_dim for layer in model.model.layers]
        want_hd = [want["global_head_dim"] if t == "full_attention" else want["head_dim"]
                   for t in want["layer_types"]]
        assert hds == want_hd, (hds, want_hd)
    elif "head_dim" in want:
        assert attn.head_dim == want["head_dim"], (attn.head_dim, want["head_dim"])
    if "query_pre_attn_scalar" in want:
        assert abs(attn.scaling - want["query_pre_attn_scalar"] ** -0.5) < 1e-12, attn.scaling
    if want.get("tie_word_embeddings"):
        emb = model.get_input_embeddings().weight
        assert model.get_output_embeddings().weight.data_ptr() == emb.data_ptr(), "not tied"
    assert c._attn_implementation == "eager", c._attn_implementation


def sliding_window_probe(model, f: dict, input_ids: list[int]) -> dict | None:
    """Proof that the window bites: the last logits change when the window is lifted."""
    c = model.config
    if not getattr(c, "sliding_window", None) or "sliding_window" not in f["cfg"]:
        return None
    ids = torch.tensor([input_ids])
    with torch.no_grad():
        a = model(input_ids=ids).logits[0, -1]
        old = c.sliding_window
        c.sliding_window = 10_000
        try:
            for mod in model.modules():
                if hasattr(mod, "sliding_window") and mod.sliding_window is not None:
                    mod.sliding_window = 10_000
            b = model(input_ids=ids).logits[0, -1]
        finally:
            c.sliding_window = old
            for mod in model.modules():
                if hasattr(mod, "sliding_window") and mod.sliding_window is not None:
                    mod.sliding_window = old
        a2 = model(input_ids=ids).logits[0, -1]
    assert torch.equal(a, a2)
    return {"max_abs_last_logit_change_without_window": float((a - b).abs().max())}


# ----------------------------------------------------------------------------- GGUF

def convert(d: Path, f: dict, outtype: str) -> Path:
    return fx.convert(d, outtype, arch=f["arch"], vocab_patch=bool(f.get("vocab_patch")),
                      plain_autotokenizer=True,
                      # general.name defaults to the directory name; llama.cpp keys per-token
                      # attributes on it (a name containing "phi3" demands <unk> and
                      # <|endoftext|> tokens).
                      model_name=f"weft-fixture-{f['seed']}")


def gguf_summary(path: Path) -> dict:
    sys.path.insert(0, str(fx.llama_cpp_src() / "gguf-py"))
    import gguf  # the converter's own gguf-py

    r = gguf.GGUFReader(str(path))
    meta = {}
    for k, fld in r.fields.items():
        if k.startswith("tokenizer.ggml.") and k not in ("tokenizer.ggml.model", "tokenizer.ggml.pre",
                                                           "tokenizer.ggml.bos_token_id",
                                                           "tokenizer.ggml.eos_token_id",
                                                           "tokenizer.ggml.add_bos_token"):
            meta[k] = f"[{len(fld.data)} items]"
            continue
        if k.startswith("GGUF."):
            continue
        try:
            v = fld.contents()
        except Exception:  # pragma: no cover
            v = "?"
        if isinstance(v, list) and len(v) > 16:
            v = f"[{len(v)} items]"
        meta[k] = v
    tensors = [(t.name, [int(x) for x in t.shape], t.tensor_type.name) for t in r.tensors]
    return {"metadata": meta, "tensors": tensors}


def load_gguf_model(d: Path, f: dict, gguf_name: str):
    # Config from config.json (the GGUF drops some values, see gguf_lossy); tensors from the GGUF.
    return fx.load_gguf_model(model_class(f), d, gguf_name, attn_implementation="eager")


def keeps_f32(name: str) -> bool:
    """2-D tensors that convert_hf_to_gguf.py --outtype f16 leaves in f32 (MoE routers)."""
    return name.endswith("mlp.gate.weight") or ".router." in name


def f16_rounded_copy(model, f: dict, d: Path):
    """Fallback when transformers cannot read this arch's GGUF: the HF model with every
    tensor of >= 2 dims rounded to f16 (the converter's rule for --outtype f16)."""
    m = load_hf(d, f)
    with torch.no_grad():
        for n, p in m.named_parameters():
            if p.dim() >= 2 and not keeps_f32(n):
                p.copy_(p.to(torch.float16).to(torch.float32))
    return m


def llamacpp_check(d: Path) -> dict:
    """Runs in a subprocess (a llama.cpp abort must not kill the generator)."""
    res = {}
    for gguf, refname in (("model-f32.gguf", "reference.json"), ("model-f16.gguf", "reference-f16.json")):
        ref = json.loads((d / refname).read_text())
        r = subprocess.run([sys.executable, __file__, "--llamacpp-one", str(d / gguf), refname],
                           capture_output=True, text=True)
        if r.returncode != 0:
            errs = [ln for ln in r.stderr.splitlines() if "error" in ln.lower() or "Error" in ln]
            res[gguf] = {"error": " | ".join(errs[-3:])[:600] or r.stderr[-300:]}
            continue
        logits = np.frombuffer(bytes.fromhex(r.stdout.split()[0]), dtype="<f4")
        toks = json.loads(r.stdout.split(None, 1)[1])
        diff = float(np.abs(logits - np.array(ref["last_logits"], dtype=np.float32)).max())
        first_bad = next((i for i, (a, b) in enumerate(zip(toks, ref["greedy"])) if a != b), None)
        res[gguf] = {
            "compared_with": refname,
            "max_abs_last_logit_diff": diff,
            "max_abs_last_logit_diff_over_max_abs_logit": diff / ref["max_abs_logit"],
            "greedy": toks,
            "greedy_matches": toks == ref["greedy"],
            "first_mismatch": first_bad,
        }
    return res


def _llamacpp_one(gguf: str, refname: str) -> int:
    ref = json.loads((Path(gguf).parent / refname).read_text())
    logits, toks = fx.llamacpp_greedy(Path(gguf), ref["input_ids"], len(ref["greedy"]),
                                      verbose=os.environ.get("WEFT_LLAMACPP_VERBOSE") == "1")
    print(logits.astype("<f4").tobytes().hex(), json.dumps(toks))
    return 0


# ----------------------------------------------------------------------------- main


def make_one(f: dict, run_llamacpp: bool, summaries: dict) -> dict:
    name = f["name"]
    d = OUT_ROOT / name
    if d.exists():
        shutil.rmtree(d)
    d.mkdir(parents=True)
    vocab = f["cfg"]["vocab_size"]
    tok = fx.make_tokenizer(vocab)
    fx.write_tokenizer(tok, d)
    build(f, d)
    model = load_hf(d, f)
    check_roundtrip(model, f)

    input_ids = fx.make_input_ids(tok, vocab)
    ref = fx.hf_reference(model, input_ids)
    ratio = fx.check_greedy_gap(name, ref)
    if len(set(ref["greedy"])) < 8:
        raise SystemExit(f"{name}: greedy output degenerate ({len(set(ref['greedy']))} distinct ids); change seed")
    common = {
        "generator": fx.generator_info(SCRIPT),
        "model": name,
        "architecture": f["arch"],
        "seed": f["seed"],
        "init": f"N(0, {WEIGHT_STD}) weights, N(0, {f.get('embed_std', WEIGHT_STD)}) token embeddings, "
                f"N(0, {BIAS_STD}) biases, "
                f"{f.get('norm_center', 1.0)} + N(0, {NORM_STD}) norm weights",
        "attn_implementation": "eager",
        "input_text": fx.INPUT_TEXT,
        "input_note": fx.INPUT_NOTE,
        "notes": f["notes"],
        "config": config_summary(model, f),
    }
    if f.get("gguf_lossy"):
        common["gguf_lossy"] = f["gguf_lossy"]
    probe = sliding_window_probe(model, f, input_ids + ref["greedy"][:20])
    if probe:
        common["sliding_window_check"] = {
            **probe,
            "semantics": "query at position i sees key positions j with i - window < j <= i "
                         "(window counts the query itself) on sliding layers",
            "probe_input": "input_ids + first 20 greedy ids, full-sequence forward",
        }
    fx.write_json(d / "reference.json", {
        **common,
        "weights": "model.safetensors (f32)",
        **ref,
        "tokenizer_checks": fx.tokenizer_checks(tok),
    })
    row = {"name": name, "greedy8": ref["greedy"][:8], "min_gap": ref["min_gap"], "ratio": ratio,
           "max_abs_logit": ref["max_abs_logit"]}

    if not f.get("gguf", True):
        row["gguf"] = "converter does not support this arch"
        return row
    try:
        f32 = convert(d, f, "f32")
        f16 = convert(d, f, "f16")
    except RuntimeError as e:
        for p in d.glob("model-f*.gguf"):
            p.unlink()
        row["gguf"] = f"conversion failed: {str(e).strip().splitlines()[-1][:300]}"
        print(str(e), file=sys.stderr)
        return row
    summaries[name] = gguf_summary(f32)
    summaries[name]["f16_types"] = sorted({t[2] for t in gguf_summary(f16)["tensors"]})
    method = "model-f16.gguf, loaded by transformers (f16 tensors widened to f32, compute in f32)"
    try:
        g32 = load_gguf_model(d, f, f32.name)
        diff32 = fx.compare_weights(model, g32, f16=False)
        g16 = load_gguf_model(d, f, f16.name)
        diff16 = fx.compare_weights(model, g16, f16=True)
        # Gemma 2/3 GGUFs store norm weights as 1+w; transformers subtracts 1 again, which
        # may round the last bit of w (|diff| <= ~6e-8 for |w| < 0.5).
        tol = 1e-6 if f.get("norm_center", 1.0) == 0.0 else 0.0
        if diff32 > tol or diff16 > tol:
            raise RuntimeError(f"GGUF tensors read back by transformers differ ({diff32}, {diff16})")
        row["tf_gguf_max_abs_weight_diff"] = max(diff32, diff16)
        ref32 = fx.hf_reference(g32, input_ids)
        assert ref32["greedy"] == ref["greedy"] and np.allclose(ref32["last_logits"], ref["last_logits"], atol=1e-5)
        row["tf_gguf"] = "transformers reads the GGUF back bit-exactly"
    except Exception as e:  # transformers cannot read this arch's GGUF
        row["tf_gguf"] = f"transformers GGUF load failed ({type(e).__name__}: {str(e)[:200]}); f16 reference by rounding"
        print(f"{name}: {row['tf_gguf']}", file=sys.stderr)
        g16 = f16_rounded_copy(model, f, d)
        method = ("HF model with every >=2-D tensor rounded to f16 (the converter's f16 rule); "
                  "transformers could not load this arch's GGUF")
    ref16 = fx.hf_reference(g16, input_ids)
    fx.write_json(d / "reference-f16.json", {
        **common,
        "weights": method,
        **ref16,
        "greedy_matches_f32": ref16["greedy"] == ref["greedy"],
        "max_abs_weight_diff_vs_f16_rounded_hf": row.get("tf_gguf_max_abs_weight_diff"),
        "max_abs_last_logit_diff_vs_f32": float(np.abs(np.array(ref16["last_logits"]) - np.array(ref["last_logits"])).max()),
    })
    row["f16_greedy_same"] = ref16["greedy"] == ref["greedy"]
    if run_llamacpp:
        lc = llamacpp_check(d)
        fx.write_json(d / "llamacpp.json", {
            "generator": {"script": SCRIPT, "llama_cpp_python": fx.LLAMA_CPP_PYTHON},
            "settings": {"n_ctx": 128, "n_threads": 1, "kv_cache_type": "f16",
                         "input": "input_ids of reference.json, one llama_decode for the prompt, "
                                  "then one token per decode; greedy = argmax"},
            "note": "informational: llama.cpp vs the transformers references; values listed in "
                    "reference.json gguf_lossy are invisible to llama.cpp",
            **lc,
        })
        row["llamacpp"] = {k: (v.get("greedy_matches"), v.get("first_mismatch"),
                               v.get("max_abs_last_logit_diff_over_max_abs_logit"), v.get("error"))
                           for k, v in lc.items()}
    sizes = sum(p.stat().st_size for p in d.iterdir())
    row["dir_bytes"] = sizes
    return row


def write_metadata_md(summaries: dict) -> None:
    path = OUT_ROOT / "GGUF_METADATA.md"
    old = {}
    jpath = OUT_ROOT / "gguf_metadata.json"
    if jpath.exists():
        old = json.loads(jpath.read_text())
        for s in old.values():  # tuples, as gguf_summary makes them: one line each in the JSON
            s["tensors"] = [tuple(t) for t in s["tensors"]]
    old.update(summaries)
    order = [f["name"] for f in FAMILIES if f["name"] in old]
    fx.write_json(jpath, {k: old[k] for k in order})
    lines = ["# GGUF metadata written by convert_hf_to_gguf.py for the family fixtures", "",
             f"Generated by {SCRIPT} from each model-f32.gguf "
             "(tokenizer arrays elided).  Tensor shapes are GGUF order (ne0 first).", ""]
    for k in order:
        s = old[k]
        lines += [f"## {k}", "", "| key | value |", "| --- | --- |"]
        for mk, mv in s["metadata"].items():
            lines.append(f"| `{mk}` | `{json.dumps(mv, ensure_ascii=False)}` |")
        lines += ["", f"f16 file tensor types: {', '.join(s['f16_types'])}", "",
                  "| tensor | shape | type (f32 file) |", "| --- | --- | --- |"]
        for tn, shp, ty in s["tensors"]:
            if tn.startswith("blk.") and not tn.startswith("blk.0."):
                continue
            lines.append(f"| `{tn}` | {shp} | {ty} |")
        lines.append("")
    lines.append("(Only block 0 of each model is listed; other blocks have the same names with their index.)")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", nargs="*")
    ap.add_argument("--no-llamacpp", action="store_true")
    ap.add_argument("--metadata-only", action="store_true",
                    help="only rewrite GGUF_METADATA.md / gguf_metadata.json from the existing GGUFs")
    ap.add_argument("--llamacpp-one", nargs=2, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.llamacpp_one:
        return _llamacpp_one(*a.llamacpp_one)
    if a.metadata_only:
        summaries = {}
        for f in FAMILIES:
            d = OUT_ROOT / f["name"]
            if (d / "model-f32.gguf").exists() and (not a.only or f["name"] in a.only):
                summaries[f["name"]] = gguf_summary(d / "model-f32.gguf")
                summaries[f["name"]]["f16_types"] = sorted({t[2] for t in gguf_summary(d / "model-f16.gguf")["tensors"]})
        write_metadata_md(summaries)
        return 0
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    OUT_ROOT.mkdir(parents=True, exist_ok=True)
    rows, summaries = [], {}
    for f in FAMILIES:
        if a.only and f["name"] not in a.only:
            continue
        rows.append(make_one(f, not a.no_llamacpp, summaries))
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    if summaries:
        write_metadata_md(summaries)
    return 0


if __name__ == "__main__":
    sys.exit(main())
