#!/usr/bin/env python3
"""Chat-template fixtures: what transformers' apply_chat_template renders.

For each model below, the template weft would pick (the model file's own, else its
family's default from families/<family>.toml) is rendered by transformers'
`render_jinja_template` (the function behind `apply_chat_template`) for a fixed set of
conversations; tests/fixtures/chat/<name>.json records the template's text, the special
tokens given to it, and each rendering (or that it raised). tests/chat.rs renders the
same conversations through weft and requires identical text.

Pinned: transformers==5.24.0, gguf==0.19.0 (no torch needed). Run:

    python3 -m venv VENV && VENV/bin/pip install transformers==5.24.0 gguf==0.19.0
    VENV/bin/python scripts/chat/make_chat_fixtures.py

Deterministic and idempotent. The SmolLM2 file comes from $WEFT_HOME/models (fetch it
with scripts/fetch_model.py).
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import tomllib
from pathlib import Path

import gguf
import transformers
from transformers.utils.chat_template_utils import render_jinja_template

assert transformers.__version__ == "5.24.0", transformers.__version__
assert importlib.metadata.version("gguf") == "0.19.0"

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "tests" / "fixtures" / "chat"
HOME = Path(os.environ.get("WEFT_HOME") or Path.home() / ".cache" / "weft")

CONVERSATIONS = [
    ([{"role": "user", "content": "Why is the sky blue?"}], True),
    ([{"role": "user", "content": "Why is the sky blue?"}], False),
    (
        [
            {"role": "system", "content": "You answer in one sentence."},
            {"role": "user", "content": "Hi there!"},
            {"role": "assistant", "content": "  Hello! How can I help?  "},
            {"role": "user", "content": "Name three fruits.\nJust the names."},
        ],
        True,
    ),
    (
        [
            {"role": "user", "content": "2 + 2?"},
            {"role": "assistant", "content": "4"},
            {"role": "user", "content": "And 3 + 3?"},
        ],
        True,
    ),
    # Roles out of order: templates that check alternation raise.
    ([{"role": "assistant", "content": "I speak first."}], True),
]


def family_template(toml_name: str) -> str:
    """A family's default template, following `extends` as weft does."""
    t = tomllib.loads((ROOT / "families" / toml_name).read_text())
    fam = t["family"]
    if "chat_template" in fam:
        return fam["chat_template"]
    return family_template(fam["extends"])


def hf_tokens(directory: Path) -> tuple[str, str]:
    cfg = json.loads((directory / "tokenizer_config.json").read_text())

    def tok(key: str) -> str:
        v = cfg.get(key) or ""
        return v["content"] if isinstance(v, dict) else v

    return tok("bos_token"), tok("eos_token")


def gguf_template(path: Path) -> tuple[str, str, str]:
    r = gguf.GGUFReader(path)

    def field(key: str):
        f = r.fields[key]
        return f.contents()

    tokens = field("tokenizer.ggml.tokens")
    return (
        field("tokenizer.chat_template"),
        tokens[field("tokenizer.ggml.bos_token_id")],
        tokens[field("tokenizer.ggml.eos_token_id")],
    )


def render_all(template: str, bos: str, eos: str) -> list[dict]:
    out = []
    for messages, gen in CONVERSATIONS:
        case = {"messages": messages, "add_generation_prompt": gen}
        try:
            rendered, _ = render_jinja_template(
                conversations=[messages],
                chat_template=template,
                add_generation_prompt=gen,
                bos_token=bos,
                eos_token=eos,
            )
            case["rendered"] = rendered[0]
        except Exception as e:  # the template raised: weft must refuse too
            case["error"] = str(e)
        out.append(case)
    return out


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    models = []
    smol = HOME / "models" / "smollm2-135m.gguf"
    template, bos, eos = gguf_template(smol)
    models.append(("smollm2-135m", "smollm2-135m", template, bos, eos))
    fams = ROOT / "tests" / "fixtures" / "families"
    for name, toml_name in [
        ("gemma2", "gemma2.toml"),
        ("gemma3", "gemma3.toml"),
        ("qwen2", "qwen2.toml"),
        ("qwen3", "qwen3.toml"),
        ("qwen3moe", "qwen3moe.toml"),
        ("phi3", "phi3.toml"),
    ]:
        bos, eos = hf_tokens(fams / name)
        models.append((name, f"families/{name}", family_template(toml_name), bos, eos))
    for name, model, template, bos, eos in models:
        doc = {
            "model": model,
            "template": template,
            "bos_token": bos,
            "eos_token": eos,
            "cases": render_all(template, bos, eos),
        }
        path = OUT / f"{name}.json"
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(doc, indent=1, ensure_ascii=False) + "\n")
        tmp.replace(path)
        print(f"{path.relative_to(ROOT)}: {sum('rendered' in c for c in doc['cases'])} rendered")


if __name__ == "__main__":
    main()
