#!/usr/bin/env python3
"""Tensor-type census of the requantised SmolLM2 files (see make_models.sh).

Pinned: gguf==0.19.0 (its GGUFReader).  No torch.

    census.py --dir QM [--write types.json] [--check references.json] [TYPE ...]

For each TYPE (default: every smollm2-135m-<TYPE>.gguf in QM) prints
{ggml_type_name: tensor_count} and the file's sha256.
--write  writes {TYPE: {ggml_type_name: count}} (sorted) to the given path.
--check  compares tensor types, byte size and sha256 with the "models" entries of
         references.json (make_references.py); exit status 1 on any difference.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from collections import Counter
from pathlib import Path

from gguf import GGUFReader

PREFIX = "smollm2-135m-"


def census(path: Path) -> dict[str, int]:
    reader = GGUFReader(str(path))
    counts = Counter(t.tensor_type.name for t in reader.tensors)
    return dict(sorted(counts.items()))


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", required=True, type=Path)
    ap.add_argument("--write", type=Path)
    ap.add_argument("--check", type=Path)
    ap.add_argument("types", nargs="*")
    a = ap.parse_args()

    types = a.types or sorted(
        p.name[len(PREFIX):-len(".gguf")] for p in a.dir.glob(PREFIX + "*.gguf")
    )
    result: dict[str, dict[str, int]] = {}
    hashes: dict[str, str] = {}
    sizes: dict[str, int] = {}
    for t in types:
        p = a.dir / f"{PREFIX}{t}.gguf"
        result[t] = census(p)
        hashes[t] = sha256(p)
        sizes[t] = p.stat().st_size
        print(f"{t:8} {sizes[t]:>10} B  {hashes[t][:16]}  "
              + ", ".join(f"{k}:{v}" for k, v in result[t].items()), file=sys.stderr)

    if a.write:
        tmp = a.write.with_suffix(".tmp")
        tmp.write_text(json.dumps(result, indent=1, sort_keys=False) + "\n", encoding="utf-8")
        os.replace(tmp, a.write)

    if a.check:
        if not a.check.exists():
            print(f"no {a.check.name} to check against", file=sys.stderr)
            return 1
        models = json.loads(a.check.read_text(encoding="utf-8"))["models"]
        bad = 0
        for t in types:
            ref = models.get(t)
            if ref is None:
                print(f"{t}: not in {a.check.name}", file=sys.stderr)
                bad += 1
                continue
            for key, got, want in (
                ("tensor_types", result[t], ref.get("tensor_types")),
                ("bytes", sizes[t], ref.get("bytes")),
                ("sha256", hashes[t], ref.get("sha256")),
            ):
                if got != want:
                    print(f"{t}: {key} differs: file {got}, references {want}", file=sys.stderr)
                    bad += 1
        if bad:
            return 1
        print(f"all {len(types)} files match {a.check.name}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
