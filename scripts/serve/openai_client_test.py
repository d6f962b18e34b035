#!/usr/bin/env python3
"""The official `openai` Python client against a running `weft serve`.

Runs one chat without streaming and the same chat streamed, at temperature 0, and
requires the same text, the same finish reason and consistent usage; then a text
completion both ways, an error status the client raises as its own exception type, and
the model list. Exits 0 when every check passes, 1 otherwise.

    weft serve smollm2-135m --port 8080 &
    python3 scripts/serve/openai_client_test.py --base-url http://127.0.0.1:8080/v1 \
        --model smollm2-135m

The client is pinned (openai==3.57.0) and installed by this script into a venv of its
own, $WEFT_HOME/openai-venv (WEFT_HOME defaults to ~/.cache/weft); the script re-runs
itself there. tests/serve.rs runs it against a server it started.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import venv
from pathlib import Path

OPENAI_VERSION = "3.57.0"
HOME = Path(os.environ.get("WEFT_HOME") or Path.home() / ".cache" / "weft")
VENV = HOME / "openai-venv"


def ensure_venv() -> None:
    """Re-runs this script in the venv with the pinned client, making it if needed."""
    python = VENV / "bin" / "python"
    if Path(sys.prefix).resolve() == VENV.resolve():
        return
    stamp = VENV / f"openai-{OPENAI_VERSION}"
    if not stamp.exists():
        print(f"== installing openai=={OPENAI_VERSION} into {VENV}", file=sys.stderr)
        venv.create(VENV, with_pip=True, clear=VENV.exists())
        subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", f"openai=={OPENAI_VERSION}"],
            check=True,
        )
        stamp.touch()
    os.execv(str(python), [str(python), __file__, *sys.argv[1:]])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base-url", required=True, help="e.g. http://127.0.0.1:8080/v1")
    ap.add_argument("--model", required=True, help="the name the server serves")
    ap.add_argument("--max-tokens", type=int, default=32)
    args = ap.parse_args()
    ensure_venv()

    import openai

    assert openai.__version__ == OPENAI_VERSION, openai.__version__
    client = openai.OpenAI(base_url=args.base_url, api_key="unused", max_retries=0, timeout=300)
    failures: list[str] = []

    def check(ok: bool, what: str) -> None:
        print(f"{'ok  ' if ok else 'FAIL'} {what}")
        if not ok:
            failures.append(what)

    models = [m.id for m in client.models.list()]
    check(args.model in models, f"models.list() names {args.model}: {models}")

    messages = [
        {"role": "system", "content": "You are a concise assistant."},
        {"role": "user", "content": "Why is the sky blue?"},
    ]
    whole = client.chat.completions.create(
        model=args.model, messages=messages, temperature=0, max_tokens=args.max_tokens, seed=1
    )
    text = whole.choices[0].message.content
    print(f"     non-streamed: {text!r} ({whole.choices[0].finish_reason}, {whole.usage})")
    check(bool(text), "the non-streamed chat has text")
    u = whole.usage
    check(u.total_tokens == u.prompt_tokens + u.completion_tokens, "usage adds up")

    stream = client.chat.completions.create(
        model=args.model,
        messages=messages,
        temperature=0,
        max_tokens=args.max_tokens,
        seed=1,
        stream=True,
        stream_options={"include_usage": True},
    )
    pieces, finish, usage = [], None, None
    for chunk in stream:
        if chunk.usage is not None:
            usage = chunk.usage
        for c in chunk.choices:
            if c.delta.content:
                pieces.append(c.delta.content)
            if c.finish_reason:
                finish = c.finish_reason
    streamed = "".join(pieces)
    print(f"     streamed:     {streamed!r} ({finish}, {len(pieces)} pieces, {usage})")
    check(streamed == text, "streamed chat text == non-streamed text")
    check(finish == whole.choices[0].finish_reason, "same finish_reason")
    check(
        usage is not None and usage.completion_tokens == u.completion_tokens,
        "same completion_tokens",
    )

    comp = client.completions.create(
        model=args.model, prompt="The capital of France is", temperature=0, max_tokens=8
    )
    comp_stream = client.completions.create(
        model=args.model, prompt="The capital of France is", temperature=0, max_tokens=8,
        stream=True,
    )
    comp_text = "".join(c.choices[0].text for c in comp_stream if c.choices)
    print(f"     completion:   {comp.choices[0].text!r} / streamed {comp_text!r}")
    check(comp.choices[0].text == comp_text, "streamed completion == non-streamed")

    try:
        client.chat.completions.create(
            model=args.model, messages=messages, temperature=0, top_p=3
        )
        check(False, "top_p=3 is refused")
    except openai.BadRequestError as e:
        check(e.status_code == 400, f"top_p=3 raises BadRequestError: {e.message}")
    try:
        client.chat.completions.create(model="no-such-model", messages=messages)
        check(False, "an unknown model is refused")
    except openai.NotFoundError as e:
        check(e.status_code == 404, f"an unknown model raises NotFoundError: {e.message}")

    print(f"{len(failures)} failed" if failures else "all passed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
