#!/usr/bin/env python3
"""A bounded-time loopback load test of `weft serve` (standard library only).

C clients stream chat completions at temperature 0 for T seconds (a request begun
before the deadline runs to its end; nothing starts after). Each request is one of a few
fixed conversations sharing a system prompt; before the timed phase, each conversation's
non-streamed greedy answer is fetched once, and every streamed answer must equal it
(no lost, duplicated or reordered tokens) with the same completion-token count. Any
HTTP error, error event, or mismatch is an error. Reported: requests, errors, aggregate
completion tok/s over the timed phase, p50/p99 time to first token (request sent → first
content chunk), the prefix-cache hit rate and reused-token share, and the mean number
of decode steps per batched pass over the timed phase (from GET /health before and
after).

    weft serve smollm2-135m --port 8080 --parallel 4 &
    python3 scripts/serve/load_test.py --url http://127.0.0.1:8080 --clients 16 --seconds 60

Only loopback addresses are accepted. Exits 1 when any error was seen.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import socket
import statistics
import sys
import time
from urllib.parse import urlparse

SYSTEM = "You are a helpful assistant. Answer in one or two short sentences."
QUESTIONS = [
    "Why is the sky blue?",
    "What is the capital of France?",
    "Name three fruits.",
    "What does a compiler do?",
    "How many legs does a spider have?",
    "What is photosynthesis?",
    "Who wrote Hamlet?",
    "What is the boiling point of water?",
]


class HttpError(Exception):
    pass


async def request(host: str, port: int, path: str, body: dict | None, on_data=None):
    """One HTTP/1.1 request on its own connection. Returns (status, body bytes); with
    `on_data`, each chunk of a chunked body is passed to it as it arrives."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        payload = json.dumps(body).encode() if body is not None else b""
        method = "POST" if body is not None else "GET"
        writer.write(
            f"{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n".encode() + payload
        )
        await writer.drain()
        status_line = await reader.readline()
        parts = status_line.split()
        if len(parts) < 2:
            raise HttpError(f"bad status line {status_line!r}")
        status = int(parts[1])
        chunked = False
        length = None
        while True:
            line = await reader.readline()
            if line in (b"\r\n", b"\n", b""):
                break
            k, _, v = line.decode("latin-1").partition(":")
            k, v = k.strip().lower(), v.strip().lower()
            if k == "transfer-encoding" and "chunked" in v:
                chunked = True
            elif k == "content-length":
                length = int(v)
        out = bytearray()
        if chunked:
            while True:
                size = int((await reader.readline()).split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    await reader.readline()
                    break
                data = await reader.readexactly(size + 2)
                data = data[:size]
                if on_data:
                    on_data(data)
                out += data
        elif length is not None:
            out += await reader.readexactly(length)
        else:
            out += await reader.read()
        return status, bytes(out)
    finally:
        writer.close()


def chat_body(model: str, question: str, max_tokens: int, stream: bool) -> dict:
    body = {
        "model": model,
        "messages": [
            {"role": "system", "content": SYSTEM},
            {"role": "user", "content": question},
        ],
        "temperature": 0,
        "max_tokens": max_tokens,
        "stream": stream,
    }
    if stream:
        body["stream_options"] = {"include_usage": True}
    return body


async def reference(host, port, model, max_tokens):
    """Each conversation's non-streamed greedy answer: (text, completion_tokens)."""
    refs = []
    for q in QUESTIONS:
        status, body = await request(host, port, "/v1/chat/completions",
                                     chat_body(model, q, max_tokens, False))
        if status != 200:
            raise HttpError(f"reference request: {status} {body[:300]!r}")
        v = json.loads(body)
        refs.append((v["choices"][0]["message"]["content"], v["usage"]["completion_tokens"]))
    return refs


async def stream_once(host, port, model, q_index, max_tokens, t0_wall):
    """One streamed request: (ttft_s, text, completion_tokens, error or None)."""
    buf = bytearray()
    events: list[str] = []
    first = [None]
    start = time.perf_counter()

    def on_data(data: bytes):
        buf.extend(data)
        while b"\n\n" in buf:
            i = buf.index(b"\n\n")
            ev = buf[:i].decode()
            del buf[: i + 2]
            for line in ev.split("\n"):
                if line.startswith("data: "):
                    payload = line[6:]
                    events.append(payload)
                    if first[0] is None and payload != "[DONE]":
                        v = json.loads(payload)
                        ch = v.get("choices") or []
                        if ch and ch[0].get("delta", {}).get("content"):
                            first[0] = time.perf_counter() - start

    status, body = await request(host, port, "/v1/chat/completions",
                                 chat_body(model, QUESTIONS[q_index], max_tokens, True), on_data)
    if status != 200:
        return None, "", 0, f"HTTP {status}: {body[:200]!r}"
    if not events or events[-1] != "[DONE]":
        return None, "", 0, "the stream did not end with [DONE]"
    text, usage = [], None
    for e in events[:-1]:
        v = json.loads(e)
        if "error" in v:
            return None, "", 0, f"error event: {v['error']}"
        if v.get("usage"):
            usage = v["usage"]
        for c in v.get("choices") or []:
            text.append(c.get("delta", {}).get("content") or "")
    if usage is None:
        return None, "", 0, "no usage chunk"
    return first[0], "".join(text), usage["completion_tokens"], None


def pct(values, p):
    if not values:
        return float("nan")
    s = sorted(values)
    k = min(len(s) - 1, max(0, round(p / 100 * (len(s) - 1))))
    return s[k]


async def main_async(args) -> int:
    u = urlparse(args.url)
    host, port = u.hostname, u.port or 80
    addr = ipaddress.ip_address(socket.gethostbyname(host))
    if not addr.is_loopback:
        print(f"{host} is not a loopback address: refusing", file=sys.stderr)
        return 2
    status, h = await request(host, port, "/v1/models", None)
    model = args.model or json.loads(h)["data"][0]["id"]
    refs = await reference(host, port, model, args.max_tokens)
    print(f"model {model}: {len(refs)} reference answers, "
          f"{sum(r[1] for r in refs) / len(refs):.1f} completion tokens on average")
    _, h0 = await request(host, port, "/health", None)
    before = json.loads(h0)

    deadline = time.perf_counter() + args.seconds
    results = []  # (ttft, tokens, latency)
    errors: list[str] = []

    async def client(i: int):
        k = i
        while time.perf_counter() < deadline:
            q = k % len(QUESTIONS)
            k += 1
            t = time.perf_counter()
            try:
                ttft, text, n, err = await asyncio.wait_for(
                    stream_once(host, port, model, q, args.max_tokens, t),
                    timeout=args.request_timeout)
            except Exception as e:  # noqa: BLE001 - every failure is reported
                ttft, text, n, err = None, "", 0, f"{type(e).__name__}: {e}"
            if err is None:
                want_text, want_n = refs[q]
                if text != want_text:
                    err = f"client {i}, question {q}: streamed {text!r} != reference {want_text!r}"
                elif n != want_n:
                    err = f"client {i}, question {q}: {n} completion tokens, reference {want_n}"
            if err:
                errors.append(err)
            else:
                results.append((ttft, n, time.perf_counter() - t))

    t0 = time.perf_counter()
    await asyncio.gather(*(client(i) for i in range(args.clients)))
    wall = time.perf_counter() - t0
    _, h1 = await request(host, port, "/health", None)
    after = json.loads(h1)

    tokens = sum(n for _, n, _ in results)
    ttfts = [t for t, _, _ in results if t is not None]
    pc0, pc1 = before["prefix_cache"], after["prefix_cache"]
    reqs = after["requests"]["generations"] - before["requests"]["generations"]
    hits = pc1["hits"] - pc0["hits"]
    reused = pc1["reused_tokens"] - pc0["reused_tokens"]
    prompt = pc1["prompt_tokens"] - pc0["prompt_tokens"]
    saved = pc1["estimated_saved_secs"] - pc0["estimated_saved_secs"]
    bd0, bd1 = before["batched_decode"], after["batched_decode"]
    passes = bd1["passes"] - bd0["passes"]
    steps = bd1["steps"] - bd0["steps"]
    summary = {
        "clients": args.clients,
        "seconds": round(wall, 1),
        "slots": after["slots"]["total"],
        "requests": len(results),
        "errors": len(errors),
        "completion_tokens": tokens,
        "aggregate_tok_per_s": round(tokens / wall, 2),
        "ttft_p50_ms": round(pct(ttfts, 50) * 1e3, 1),
        "ttft_p99_ms": round(pct(ttfts, 99) * 1e3, 1),
        "latency_p50_s": round(pct([l for _, _, l in results], 50), 2),
        "prefix_cache_hit_rate": round(hits / reqs, 3) if reqs else None,
        "reused_prompt_token_share": round(reused / prompt, 3) if prompt else None,
        "estimated_prefill_saved_s": round(saved, 2),
        "mean_decode_batch": round(steps / passes, 2) if passes else None,
    }
    for e in errors[:10]:
        print("error:", e)
    print(json.dumps(summary))
    return 1 if errors else 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--url", default="http://127.0.0.1:8080", help="the server (loopback only)")
    ap.add_argument("--model", help="default: the first of /v1/models")
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--max-tokens", type=int, default=32)
    ap.add_argument("--request-timeout", type=float, default=600,
                    help="seconds one request may take (queueing included)")
    args = ap.parse_args()
    return asyncio.run(main_async(args))


if __name__ == "__main__":
    sys.exit(main())
