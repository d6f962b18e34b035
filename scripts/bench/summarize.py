#!/usr/bin/env python3
"""Tables of weft vs llama.cpp from the runs bench_vs_llamacpp.sh collected.

Usage:
    python3 scripts/bench/summarize.py WORKDIR --threads T [--json-out FILE]

WORKDIR holds one folder per model (named by its order: 1, 2, ...) with
    label            the model's name as shown
    budget.json      `weft inspect MODEL --budget --json` (weight_bytes)
    llama-<R>.json   `llama-bench ... -o json` of round R
    weft-<R>.json    `weft bench ... --json` of round R
    tests            the expected test names, one a line (pp128, tg128, ...)

Each round's figure is that run's median over its repetitions (llama-bench's
samples_ts; weft bench reports the median itself); a model's figure is the median
over rounds, with the min and max over rounds beside it.  Decode GB/s is the bytes
of weights a decode step reads (the plan's weight_bytes) times tg tokens/s.

stdout: the tables.  Exit status 1 with an `error:` line when a run's output is
missing or lacks a test.  Standard library only.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Dict, List


class SummaryError(Exception):
    pass


def load(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise SummaryError(f"{path.name} of {path.parent.name}: {e}") from e


def llama_figures(runs) -> Dict[str, float]:
    """Test name -> median tokens/s of one llama-bench JSON output."""
    out = {}
    if not isinstance(runs, list):
        raise SummaryError("llama-bench output is not a JSON list")
    for r in runs:
        p, n = r.get("n_prompt", 0), r.get("n_gen", 0)
        if p > 0 and n == 0:
            name = f"pp{p}"
        elif n > 0 and p == 0:
            name = f"tg{n}"
        else:
            name = f"pp{p}+tg{n}"
        samples = r.get("samples_ts") or [r["avg_ts"]]
        out[name] = statistics.median(samples)
    return out


def summarize_model(folder: Path, threads: int) -> dict:
    label = (folder / "label").read_text().strip()
    tests = [t for t in (folder / "tests").read_text().split() if t]
    weight_bytes = int(load(folder / "budget.json")["weight_bytes"])
    rounds = sorted(
        int(p.stem.split("-")[1]) for p in folder.glob("weft-*.json")
    )
    if not rounds:
        raise SummaryError(f"{label}: no runs")
    llama: Dict[str, List[float]] = {t: [] for t in tests}
    weft: Dict[str, List[float]] = {t: [] for t in tests}
    rss: List[int] = []
    info = {}
    for r in rounds:
        lr = load(folder / f"llama-{r}.json")
        lf = llama_figures(lr)
        wr = load(folder / f"weft-{r}.json")
        wf = wr.get("results", {})
        for t in tests:
            if t not in lf:
                raise SummaryError(f"{label}: llama-bench round {r} has no {t}")
            if t not in wf:
                raise SummaryError(f"{label}: weft bench round {r} has no {t}")
            llama[t].append(float(lf[t]))
            weft[t].append(float(wf[t]))
        if wr.get("peak_rss_bytes") is not None:
            rss.append(int(wr["peak_rss_bytes"]))
        if lr:
            info = {k: lr[0].get(k) for k in ("build_commit", "model_type", "cpu_info", "n_threads")}
        if wr.get("threads") != threads:
            raise SummaryError(f"{label}: weft ran with {wr.get('threads')} threads, not {threads}")
        if info.get("n_threads") != threads:
            raise SummaryError(f"{label}: llama-bench ran with {info.get('n_threads')} threads, not {threads}")

    def stat(v: List[float]) -> dict:
        return {"median": statistics.median(v), "min": min(v), "max": max(v), "rounds": v}

    out = {
        "model": label,
        "weight_bytes": weight_bytes,
        "weft_peak_rss_bytes": max(rss) if rss else None,
        "llama_cpp": info,
        "tests": {},
    }
    for t in tests:
        lt, wt = stat(llama[t]), stat(weft[t])
        row = {"llama_cpp": lt, "weft": wt, "ratio": wt["median"] / lt["median"]}
        if t.startswith("tg"):
            row["decode_gb_per_s"] = {
                "llama_cpp": weight_bytes * lt["median"] / 1e9,
                "weft": weight_bytes * wt["median"] / 1e9,
            }
        out["tests"][t] = row
    return out


def table(rows: List[List[str]], right: List[bool]) -> str:
    width = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = []
    for k, r in enumerate(rows):
        cells = [c.rjust(w) if rt else c.ljust(w) for c, w, rt in zip(r, width, right)]
        lines.append("| " + " | ".join(cells) + " |")
        if k == 0:
            rule = [("-" * (w - 1) + ":") if rt else "-" * w for w, rt in zip(width, right)]
            lines.append("| " + " | ".join(rule) + " |")
    return "\n".join(lines)


def render(m: dict, threads: int, n_rounds: int) -> str:
    def fig(s: dict) -> str:
        return f"{s['median']:.2f} ({s['min']:.2f}-{s['max']:.2f})"

    rows = [["test", "llama.cpp tok/s", "weft tok/s", "weft/llama.cpp", "decode GB/s llama.cpp", "decode GB/s weft"]]
    for t, r in m["tests"].items():
        gb = r.get("decode_gb_per_s")
        rows.append([
            t,
            fig(r["llama_cpp"]),
            fig(r["weft"]),
            f"{r['ratio']:.2f}x",
            f"{gb['llama_cpp']:.2f}" if gb else "",
            f"{gb['weft']:.2f}" if gb else "",
        ])
    info = m["llama_cpp"]
    rss = m["weft_peak_rss_bytes"]
    head = (
        f"## {m['model']} ({info.get('model_type')}): {threads} threads, {n_rounds} rounds; "
        f"weights read per token {m['weight_bytes'] / 1e6:.1f} MB"
    )
    tail = "weft peak RSS: " + (f"{rss / 2**20:.1f} MiB ({rss} bytes)" if rss is not None else "not reported")
    return "\n".join([head, "", table(rows, [False, True, True, True, True, True]), "", tail])


def write_atomic(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=str(path.parent) or ".", prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("workdir", type=Path)
    ap.add_argument("--threads", type=int, required=True)
    ap.add_argument("--json-out", type=Path, help="also write the summary as JSON (atomically)")
    args = ap.parse_args(argv)
    try:
        folders = sorted(
            (p for p in args.workdir.iterdir() if p.is_dir() and p.name.isdigit()),
            key=lambda p: int(p.name),
        )
        if not folders:
            raise SummaryError(f"no model runs in {args.workdir}")
        models = [summarize_model(f, args.threads) for f in folders]
    except (SummaryError, OSError, KeyError, ValueError, TypeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    info = models[0]["llama_cpp"]
    parts = [
        f"# weft vs llama.cpp (llama-bench {info.get('build_commit')}, CPU {info.get('cpu_info')})",
        "tok/s: median over rounds of each run's median over its repetitions (min-max over rounds);",
        "decode GB/s: weights read per token x tg tok/s.",
    ]
    for m in models:
        n_rounds = len(next(iter(m["tests"].values()))["weft"]["rounds"])
        parts += ["", render(m, args.threads, n_rounds)]
    print("\n".join(parts))
    if args.json_out:
        write_atomic(args.json_out, json.dumps({"threads": args.threads, "models": models}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
