#!/usr/bin/env python3
"""Shape-true stand-ins: published config.json values with seeded random weights.

No real checkpoint can be fetched where weft's tests run, so a named model is stood in
for by its published config.json (tests/fixtures/standins/<name>/config.json, sources in
tests/fixtures/standins/SOURCES.md) and weights drawn by the generator below. The two
small ones (qwen3-0.6b, qwen2.5-coder-1.5b) are cut to 2 layers with their real widths
(vocab 151936, Qwen3's head_dim 128 where hidden/heads is 64) and run in transformers;
this script commits, per small stand-in, to tests/fixtures/standins/<name>/:

  reference.json   generator spec version, seed, pinned versions, the cut config, the
                   input ids, 16 greedy tokens, top1-top2 gaps, max|logit|, the tensor
                   list [name, shape] in file order, sha256 of each tensor's raw bytes
  last_logits.f32  raw little-endian f32 logits at the last prompt position

The weights themselves are not committed: weft's test (tests/standins.rs) regenerates
them with the Rust twin of this generator (runtime/src/synth.rs) and first checks the
per-tensor sha256 against reference.json, so the two implementations must agree bit for
bit. The HF directory this script builds lives outside the repo, in
$WEFT_HOME/standins/<name>/ (WEFT_HOME defaults to ~/.cache/weft).

Generator spec (SPEC_VERSION = "weft-synth-1"; runtime/src/synth.rs documents the same):
  key(name, seed) = fnv1a64(utf-8 bytes of the tensor name) XOR seed        (u64)
  element j, row-major over the HF shape ([out, in] for matrices), j = 0, 1, ...:
    z = key + (j + 1) * 0x9E3779B97F4A7C15                                  (wrapping u64)
    z ^= z >> 30; z *= 0xBF58476D1CE4E5B9; z ^= z >> 27; z *= 0x94D049BB133111EB;
    z ^= z >> 31                                                            (splitmix64)
    u = (z >> 40) as f32 / 2^24     exact, in [0, 1)
    r = 2u - 1                      exact in f32, in [-1, 1)
  value, in f32 with one rounding per operation, in this order:
    1-D tensor whose name contains "norm":  v = (r * 0.1f32) + 1.0f32
    other 1-D tensors (biases):             v = r * 0.1f32
    2-D tensor [rows, cols]:                v = r * s,  s = (f32) sqrt(3.0 / cols)
                                            (3/cols and sqrt in f64, cast to f32 once)
    any other rank: an error
  (2-D values are uniform with variance 1/cols, so activations keep unit scale.)
  stored as BF16: bits = f32 bits; bf16 = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16
  (round to nearest even), or as F32.
  safetensors file: 8-byte little-endian header length, then the header
    {"__metadata__":{"format":"pt"},"<name>":{"dtype":"BF16","shape":[..],
     "data_offsets":[s,e]},...}
  (no spaces, tensors in file order = sorted by name, padded with spaces to a multiple
  of 8 bytes), then the tensors' bytes in the same order. Both implementations write the
  same header, so whole files are identical too.

Pinned (scripts/fixtures/requirements.txt): torch==2.15.0, transformers==5.24.0,
numpy==2.4.6. Runs in the fixture venv (scripts/fixtures/setup_env.sh):

    ~/.cache/weft/fixture-venv/bin/python scripts/standins/make_standins.py [--only NAME]
    ~/.cache/weft/fixture-venv/bin/python scripts/standins/make_standins.py --check-configs
    ~/.cache/weft/fixture-venv/bin/python scripts/standins/make_standins.py --print-vectors

--check-configs instantiates every stand-in config (the 14B and 31B included) on the meta
device and prints its parameter count; --print-vectors prints the generator values that
runtime/src/synth.rs's unit tests check. Deterministic (fixed seeds, f32, 1 thread).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fixtures"))
import common as fx  # noqa: E402  (JSON, greedy and path helpers)

SCRIPT = "scripts/standins/make_standins.py"
SPEC_VERSION = "weft-synth-1"
PINNED = {"torch": "2.15.0", "transformers": "5.24.0", "numpy": "2.4.6"}
STANDINS = fx.FIXTURES / "standins"
N_GEN = 16
N_INPUT = 12
CUT_LAYERS = 2
CHUNK = 1 << 23  # elements generated at once (bounded memory)

# The runnable stand-ins: name -> first seed tried. A seed is rejected when some greedy
# step's top1-top2 gap is below 1e-3 * max|logit| (such a step may flip under f32 noise);
# the next one is tried and the rejected ones are recorded.
SMALL = {
    "qwen3-0.6b": 6001,
    "qwen2.5-coder-1.5b": 1501,
}
ALL = ["qwen3-0.6b", "qwen2.5-coder-1.5b", "qwen2.5-coder-14b", "gemma-4-31b"]

M64 = (1 << 64) - 1
GOLDEN = np.uint64(0x9E3779B97F4A7C15)
MIX1 = np.uint64(0xBF58476D1CE4E5B9)
MIX2 = np.uint64(0x94D049BB133111EB)


# ----------------------------------------------------------------------------- generator


def fnv1a64(data: bytes) -> int:
    h = 0xCBF29CE484222325
    for b in data:
        h ^= b
        h = (h * 0x100000001B3) & M64
    return h


def tensor_key(name: str, seed: int) -> int:
    return fnv1a64(name.encode("utf-8")) ^ (seed & M64)


def matrix_scale(cols: int) -> np.float32:
    return np.float32(math.sqrt(3.0 / cols))


def values(name: str, shape: list[int], seed: int, start: int, count: int) -> np.ndarray:
    """Elements start .. start+count of the tensor, as f32."""
    if len(shape) not in (1, 2):
        raise ValueError(f"{name}: cannot synthesise a tensor of shape {shape} (1-D and 2-D only)")
    key = np.uint64(tensor_key(name, seed))
    with np.errstate(over="ignore"):
        j = np.arange(start + 1, start + count + 1, dtype=np.uint64)
        z = key + j * GOLDEN
        z ^= z >> np.uint64(30)
        z *= MIX1
        z ^= z >> np.uint64(27)
        z *= MIX2
        z ^= z >> np.uint64(31)
    u = (z >> np.uint64(40)).astype(np.float32) / np.float32(16777216.0)
    r = u * np.float32(2.0) - np.float32(1.0)
    if len(shape) == 2:
        return r * matrix_scale(shape[1])
    if "norm" in name:
        return r * np.float32(0.1) + np.float32(1.0)
    return r * np.float32(0.1)


def to_bf16_bits(v: np.ndarray) -> np.ndarray:
    bits = v.astype(np.float32).view(np.uint32)
    with np.errstate(over="ignore"):
        return ((bits + np.uint32(0x7FFF) + ((bits >> np.uint32(16)) & np.uint32(1))) >> np.uint32(16)).astype("<u2")


def bf16_to_f32(bits: np.ndarray) -> np.ndarray:
    return (bits.astype(np.uint32) << np.uint32(16)).view(np.float32)


def encode(name: str, shape: list[int], seed: int, start: int, count: int, dtype: str) -> bytes:
    v = values(name, shape, seed, start, count)
    if dtype == "BF16":
        return to_bf16_bits(v).tobytes()
    if dtype == "F32":
        return v.astype("<f4").tobytes()
    raise ValueError(f"unsupported dtype {dtype}")


def numel(shape: list[int]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def header_bytes(tensors: list[tuple[str, list[int]]], dtype: str) -> bytes:
    width = {"BF16": 2, "F32": 4}[dtype]
    parts = ['"__metadata__":{"format":"pt"}']
    off = 0
    for name, shape in tensors:
        n = numel(shape) * width
        parts.append(f'{json.dumps(name)}:{{"dtype":"{dtype}","shape":[{",".join(map(str, shape))}],'
                     f'"data_offsets":[{off},{off + n}]}}')
        off += n
    text = ("{" + ",".join(parts) + "}").encode("utf-8")
    text += b" " * (-len(text) % 8)
    return len(text).to_bytes(8, "little") + text


def write_safetensors(path: Path, tensors: list[tuple[str, list[int]]], seed: int,
                      dtype: str = "BF16") -> dict[str, str]:
    """Writes the file (tmp + rename); returns the sha256 of each tensor's bytes."""
    tmp = path.with_name(path.name + f".tmp.{os.getpid()}")
    digests = {}
    with open(tmp, "wb") as f:
        f.write(header_bytes(tensors, dtype))
        for name, shape in tensors:
            h = hashlib.sha256()
            n = numel(shape)
            for start in range(0, n, CHUNK):
                b = encode(name, shape, seed, start, min(CHUNK, n - start), dtype)
                h.update(b)
                f.write(b)
            digests[name] = h.hexdigest()
    os.replace(tmp, path)
    return digests


def print_vectors() -> None:
    """Values runtime/src/synth.rs's unit tests check against."""
    cases = [
        ("model.layers.0.input_layernorm.weight", [1024], 6001, [0, 1, 2, 1023]),
        ("model.layers.1.self_attn.q_proj.bias", [1536], 1501, [0, 1, 1535]),
        ("model.layers.0.self_attn.q_proj.weight", [2048, 1024], 6001, [0, 1, 1024, 2048 * 1024 - 1]),
        ("model.embed_tokens.weight", [151936, 1536], 1501, [0, 7, 151936 * 1536 - 1]),
        ("", [3, 5], 0, [0, 14]),
    ]
    for name, shape, seed, idx in cases:
        key = tensor_key(name, seed)
        print(f"name {name!r} shape {shape} seed {seed}: fnv1a64 {fnv1a64(name.encode()):#018x} key {key:#018x}")
        for j in idx:
            v = values(name, shape, seed, j, 1)
            f32 = int(v.view(np.uint32)[0])
            bf = int(to_bf16_bits(v)[0])
            print(f"  j {j}: f32 bits {f32:#010x} ({float(v[0])!r}) bf16 {bf:#06x}")
    for x in [1.0, 1.00390625, 1.005859375, 1.0068359375, -2.5e-3, 3.0e38]:
        b = int(np.array([x], dtype=np.float32).view(np.uint32)[0])
        print(f"  bf16({x!r}) [{b:#010x}] = {int(to_bf16_bits(np.array([x], dtype=np.float32))[0]):#06x}")


# ----------------------------------------------------------------------------- models


def check_pins() -> None:
    import torch
    import transformers

    got = {"torch": torch.__version__.split("+")[0], "transformers": transformers.__version__,
           "numpy": np.__version__}
    bad = {k: (got[k], v) for k, v in PINNED.items() if got[k] != v}
    if bad:
        raise SystemExit(f"pinned versions differ (got, want): {bad}; use the fixture venv")


def published_config(name: str) -> dict:
    return json.loads((STANDINS / name / "config.json").read_text())


def cut_config(cfg: dict) -> dict:
    c = dict(cfg)
    c["num_hidden_layers"] = CUT_LAYERS
    if "max_window_layers" in c:
        c["max_window_layers"] = min(c["max_window_layers"], CUT_LAYERS)
    if isinstance(c.get("layer_types"), list):
        c["layer_types"] = c["layer_types"][:CUT_LAYERS]
    return c


def meta_model(cfg_dir: Path):
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(str(cfg_dir))
    with torch.device("meta"):
        return AutoModelForCausalLM.from_config(config)


def tensor_list(cfg_dir: Path, tie: bool) -> list[tuple[str, list[int]]]:
    """The tensors of transformers' state_dict (sorted by name), the tied head left out."""
    sd = meta_model(cfg_dir).state_dict()
    out = [(k, list(v.shape)) for k, v in sd.items() if not (tie and k == "lm_head.weight")]
    return sorted(out)


def input_ids(cfg: dict) -> tuple[list[int], str]:
    v = cfg["vocab_size"]
    ids = [cfg["bos_token_id"]] + [(2 * i + 1) * v // 23 for i in range(N_INPUT - 1)]
    return ids, "[bos_token_id] + [(2*i+1)*vocab_size//23 for i in 0..11]"


def build_and_run(name: str, seed: int) -> dict:
    import torch
    from transformers import AutoModelForCausalLM

    cfg = cut_config(published_config(name))
    d = fx.weft_home() / "standins" / name
    d.mkdir(parents=True, exist_ok=True)
    (d / "config.json").write_text(json.dumps(cfg, indent=2) + "\n")
    tensors = tensor_list(d, bool(cfg.get("tie_word_embeddings")))
    t0 = time.time()
    digests = write_safetensors(d / "model.safetensors", tensors, seed)
    t_gen = time.time() - t0

    model, info = AutoModelForCausalLM.from_pretrained(
        str(d), dtype=torch.float32, attn_implementation="eager", output_loading_info=True)
    model.eval()
    problems = {k: v for k, v in info.items() if v}
    if problems:
        raise SystemExit(f"{name}: loading reported {problems}")
    # The weights transformers holds are exactly the generator's bf16 values.
    sd = model.state_dict()
    for tname, shape in tensors:
        n = numel(shape)
        take = min(n, 1 << 16)
        want = bf16_to_f32(to_bf16_bits(values(tname, shape, seed, n - take, take)))
        got = sd[tname].detach().reshape(-1)[n - take:].numpy()
        if not np.array_equal(want, got):
            raise SystemExit(f"{name}: {tname} differs after loading")
    if cfg.get("tie_word_embeddings"):
        assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    if name.startswith("qwen3"):
        assert model.model.layers[0].self_attn.head_dim == cfg["head_dim"], "head_dim not honoured"

    ids, rule = input_ids(cfg)
    # Greedy with the KV cache, cross-checked against one full-sequence forward.
    ref = fx.hf_reference(model, ids, N_GEN)
    last = np.asarray(ref["last_logits"], dtype=np.float32)
    toks, gaps, max_abs = ref["greedy"], ref["gaps"], ref["max_abs_logit"]
    del model
    return {
        "cfg": cfg, "tensors": tensors, "digests": digests, "ids": ids, "rule": rule,
        "last": last, "toks": toks, "gaps": gaps, "max_abs": max_abs, "t_gen": t_gen,
        "file_bytes": (d / "model.safetensors").stat().st_size,
    }


def make_small(name: str) -> None:
    import safetensors
    import torch
    import transformers

    seed = SMALL[name]
    rejected = []
    while True:
        res = build_and_run(name, seed)
        ratio = min(res["gaps"]) / res["max_abs"]
        print(f"{name}: seed {seed}: greedy {res['toks']}, min gap {min(res['gaps']):.4f}, "
              f"max|logit| {res['max_abs']:.3f}, ratio {ratio:.2e}, generated in {res['t_gen']:.1f}s")
        if ratio > 1e-3:
            break
        rejected.append(seed)
        seed += 1
        if len(rejected) > 20:
            raise SystemExit(f"{name}: no seed with a clear greedy gap")

    out = STANDINS / name
    last = np.asarray(res["last"], dtype="<f4")
    (out / "last_logits.f32").write_bytes(last.tobytes())
    fx.write_json(out / "reference.json", {
        "generator": {
            "spec": SPEC_VERSION,
            "script": SCRIPT,
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "safetensors": safetensors.__version__,
            "numpy": np.__version__,
        },
        "model": name,
        "published_config": f"tests/fixtures/standins/{name}/config.json",
        "cut": f"num_hidden_layers = {CUT_LAYERS} (max_window_layers capped to it); everything else as published",
        "seed": seed,
        "seeds_rejected": rejected,
        "dtype": "BF16",
        "attn_implementation": "eager",
        "compute_dtype": "float32",
        "config": res["cfg"],
        "input_rule": res["rule"],
        "input_ids": res["ids"],
        "last_logits": "last_logits.f32",
        "max_abs_logit": res["max_abs"],
        "greedy": res["toks"],
        "gaps": res["gaps"],
        "min_gap": min(res["gaps"]),
        "min_gap_over_max_abs_logit": min(res["gaps"]) / res["max_abs"],
        "file_bytes": res["file_bytes"],
        "tensors": [[n, s] for n, s in res["tensors"]],
        "sha256": res["digests"],
    })
    print(f"{name}: wrote {out / 'reference.json'} and last_logits.f32 ({last.nbytes} bytes)")


def check_configs() -> None:
    for name in ALL:
        cfg = published_config(name)
        d = fx.weft_home() / "standins" / "configs" / name
        d.mkdir(parents=True, exist_ok=True)
        (d / "config.json").write_text(json.dumps(cfg, indent=2) + "\n")
        m = meta_model(d)
        tied = bool(cfg.get("tie_word_embeddings"))
        seen, total = set(), 0
        for p in m.parameters():
            if id(p) not in seen:
                seen.add(id(p))
                total += p.numel()
        print(f"{name}: {type(m).__name__}, {cfg['num_hidden_layers']} layers, tied {tied}, "
              f"{total:,} parameters ({total / 1e9:.2f} B)")
        if name.startswith("gemma"):
            g = m.config.per_layer_config[cfg["layer_types"].index("full_attention")]
            print(f"  transformers' view of a full_attention layer: head_dim {g.head_dim}, "
                  f"num_key_value_heads {g.num_key_value_heads}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", action="append", choices=sorted(SMALL))
    ap.add_argument("--check-configs", action="store_true")
    ap.add_argument("--print-vectors", action="store_true")
    args = ap.parse_args()
    if args.print_vectors:
        print_vectors()
        return 0
    check_pins()
    import torch

    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    if args.check_configs:
        check_configs()
        return 0
    for name in args.only or sorted(SMALL):
        make_small(name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
