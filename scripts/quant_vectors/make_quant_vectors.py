#!/usr/bin/env python3
"""Reference vectors for weft's quant decoders (tests/fixtures/quant).

Quantises a few rows of seeded random f32 to each type with gguf-py and writes,
per type, the stored bytes (<type>.bin), the reference dequantisation as raw
little-endian f32 (<type>.f32), and index.json listing type, rows and cols.

Pinned: gguf==0.19.0, numpy. Run from anywhere:
    python3 -m venv <venv> && <venv>/bin/pip install gguf==0.19.0 numpy
    <venv>/bin/python scripts/quant_vectors/make_quant_vectors.py
"""

import json
from importlib.metadata import version
from pathlib import Path

import numpy as np
from gguf import GGMLQuantizationType as T
from gguf.quants import dequantize, quantize


SEED = 20240601
ROWS, COLS = 8, 256
TYPES = ["F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_1"]
OUT = Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "quant"


def make_rows(rng: np.random.Generator) -> np.ndarray:
    r = np.zeros((ROWS, COLS), dtype=np.float32)
    # row 0: all zeros (zero scales)
    r[1] = rng.standard_normal(COLS)
    r[2] = rng.standard_normal(COLS)
    hot = rng.choice(COLS, 8, replace=False)
    r[2, hot] *= 100.0  # outliers dominating their blocks
    r[3] = rng.standard_normal(COLS) * 1e-4  # scales in f16 subnormal range
    r[4] = np.clip(rng.standard_normal(COLS) * 2e4, -60000, 60000)  # near the f16 limit
    r[5] = rng.uniform(0.0, 1.0, COLS)  # all positive: Q4_1 min > 0
    r[6] = 0.75  # a constant block: Q4_1 d = 0
    r[6, 32::7] = -0.75  # first block stays constant
    r[7] = rng.laplace(0.0, 1.0, COLS)
    return r.astype(np.float32)


def main() -> None:
    assert version("gguf") == "0.19.0", "pin: gguf==0.19.0"
    rng = np.random.default_rng(SEED)
    data = make_rows(rng)
    OUT.mkdir(parents=True, exist_ok=True)
    index = []
    for name in TYPES:
        q = np.ascontiguousarray(quantize(data, T[name]))
        stored = q.view(np.uint8).reshape(ROWS, -1)
        deq = np.asarray(dequantize(stored, T[name]), dtype=np.float32).reshape(ROWS, COLS)
        assert not np.isnan(deq).any(), name
        stem = name.lower()
        (OUT / f"{stem}.bin").write_bytes(stored.tobytes())
        (OUT / f"{stem}.f32").write_bytes(deq.astype("<f4").tobytes())
        index.append({"type": name, "rows": ROWS, "cols": COLS, "bin": f"{stem}.bin", "f32": f"{stem}.f32"})
    # one entry per line so the Rust test can read it without a JSON parser
    text = "[\n" + ",\n".join("  " + json.dumps(e) for e in index) + "\n]\n"
    (OUT / "index.json").write_text(text)


if __name__ == "__main__":
    main()
