#!/usr/bin/env python3
"""Reference vectors for weft's quant decoders (tests/fixtures/quant).

Quantises a few rows of seeded random f32 to each type with gguf-py and writes,
per type, the stored bytes (<type>.bin), the reference dequantisation as raw
little-endian f32 (<type>.f32), and index.json listing type, rows and cols.

gguf-py cannot quantise the k-quants and IQ4 types; for those the stored bytes
are seeded random blocks (every byte pattern is a valid block once the f16
scale fields are finite) and gguf-py's dequantisation is still the reference.

Pinned: gguf==0.19.0, numpy (2.4.6 made the committed files). Run from anywhere:
    python3 -m venv <venv> && <venv>/bin/pip install gguf==0.19.0 numpy
    <venv>/bin/python scripts/quant_vectors/make_quant_vectors.py
"""

import json
from importlib.metadata import version
from pathlib import Path

import numpy as np
from gguf import GGMLQuantizationType as T
from gguf.constants import GGML_QUANT_SIZES
from gguf.quants import dequantize, quantize


SEED = 20240601
ROWS, COLS = 8, 256
# Types gguf-py quantises.
TYPES = ["F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "TQ1_0", "TQ2_0"]
# Random stored blocks: (byte offsets of the f16 fields in one block, cols).
# First the types gguf-py only dequantises, then extra fixtures (<type>_raw) for
# new types whose quantiser reaches few codes (ternary rounding of a Gaussian
# row is mostly zeros) or never sets some bit patterns.
RAW_TYPES = {
    "Q2_K": ([80, 82], 512),
    "Q3_K": ([108], 512),
    "Q4_K": ([0, 2], 512),
    "Q5_K": ([0, 2], 512),
    "Q6_K": ([208], 512),
    "IQ4_NL": ([0], 512),
    "IQ4_XS": ([0], 512),
    "Q5_0": ([0], 256),
    "Q5_1": ([0, 2], 256),
    "TQ1_0": ([52], 256),
    "TQ2_0": ([64], 256),
}
RAW_ROWS = 8
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


def finite_f16(rng: np.random.Generator, n: int, lo: float, hi: float) -> np.ndarray:
    """n f16 of random sign with magnitude log-uniform in [lo, hi]."""
    mag = np.exp(rng.uniform(np.log(lo), np.log(hi), n))
    return (mag * rng.choice([-1.0, 1.0], n)).astype(np.float16)


def raw_blocks(rng: np.random.Generator, name: str) -> np.ndarray:
    """RAW_ROWS rows of random stored blocks, one kind of scale per row."""
    bs, ts = GGML_QUANT_SIZES[T[name]]
    offsets, cols = RAW_TYPES[name]
    nb = cols // bs
    b = rng.integers(0, 256, (RAW_ROWS, nb, ts), dtype=np.uint8)
    # row 0: all-zero blocks
    b[0] = 0
    for r in range(1, RAW_ROWS):
        for off in offsets:
            if r == 1:
                f = finite_f16(rng, nb, 1e-3, 1.0)  # typical weights
            elif r == 2:
                f = finite_f16(rng, nb, 2.0**-24, 2.0**-14)  # subnormal scales
            elif r == 3:
                f = finite_f16(rng, nb, 1e4, 65504.0)  # near the f16 limit
            elif r in (4, 5):
                f = finite_f16(rng, nb, 1e-2, 1e2)
            else:
                # any finite f16 bit pattern, zero and the extremes included
                bits = rng.integers(0, 0x10000, nb, dtype=np.uint32)
                bits = np.where((bits >> 10) & 0x1F == 0x1F, bits & 0x83FF, bits)
                f = bits.astype(np.uint16).view(np.float16)
            b[r, :, off:off + 2] = f.reshape(nb, 1).view(np.uint8).reshape(nb, 2)
    # rows 4 and 5: every non-scale byte at its max, then min code
    scale_bytes = [i for off in offsets for i in (off, off + 1)]
    payload = [i for i in range(ts) if i not in scale_bytes]
    b[4][:, payload] = 0xFF
    b[5][:, payload] = 0x00
    return b.reshape(RAW_ROWS, nb * ts)


def write(name: str, stem: str, stored: np.ndarray, rows: int, cols: int, index: list) -> None:
    deq = np.asarray(dequantize(stored, T[name]), dtype=np.float32).reshape(rows, cols)
    assert not np.isnan(deq).any(), name
    (OUT / f"{stem}.bin").write_bytes(stored.tobytes())
    (OUT / f"{stem}.f32").write_bytes(deq.astype("<f4").tobytes())
    index.append({"type": name, "rows": rows, "cols": cols, "bin": f"{stem}.bin", "f32": f"{stem}.f32"})


def main() -> None:
    assert version("gguf") == "0.19.0", "pin: gguf==0.19.0"
    rng = np.random.default_rng(SEED)
    data = make_rows(rng)
    OUT.mkdir(parents=True, exist_ok=True)
    index = []
    for name in TYPES:
        q = np.ascontiguousarray(quantize(data, T[name]))
        write(name, name.lower(), q.view(np.uint8).reshape(ROWS, -1), ROWS, COLS, index)
    for name, (_, cols) in RAW_TYPES.items():
        stem = name.lower() + ("_raw" if name in TYPES else "")
        write(name, stem, raw_blocks(rng, name), RAW_ROWS, cols, index)
    # one entry per line so the Rust test can read it without a JSON parser
    text = "[\n" + ",\n".join("  " + json.dumps(e) for e in index) + "\n]\n"
    (OUT / "index.json").write_text(text)


if __name__ == "__main__":
    main()
