#!/usr/bin/env python3
"""Writes a random-weight, llama-shaped GGUF file for speed runs, with numpy alone (no
gguf-py: the GPU machine has no package index). The blocks are random bytes with small
finite scales, laid out as GGML stores them, so every reader decodes them the same way;
no weight is the quantisation of anything. The vocabulary is placeholders (an SPM-style
list: <unk>, <s>, </s>, the 256 byte tokens, then t259, t260, …) so that llama.cpp loads the
file too: bench with token ids.

Shapes (--shape): smollm2 (SmolLM2-135M), llama1b (Llama 3.2 1B), llama8b (Llama 3 8B),
tiny (64 wide, for deep stacks: `--layers N` overrides any shape's layer count, e.g.
to time compilation against depth), and small (256 wide, the narrowest the K-quants
take: the GPU's Q4_K / Q6_K kernels in tests).
Types (--type): Q4_1 (every matrix), Q4_K_M (Q4_K, with Q6_K for the output and for
attn_v / ffn_down in the layers llama-quantize gives more bits).

--like HEADER writes random tensors under the metadata and tensor list of a real GGUF
file instead (its header, cut with --header-of FILE: a few MB, so a model too big to
take along can be reproduced in shape, types and tokenizer where it runs).

    python3 scripts/gpu/random_gguf.py --shape llama1b --type Q4_K_M -o /tmp/llama1b.gguf
"""

import argparse
import struct

import numpy as np

SHAPES = {
    # d, layers, heads, kv heads, ffn, vocab, context, rope base, tied
    "smollm2": (576, 30, 9, 3, 1536, 49152, 8192, 100000.0, True),
    "llama1b": (2048, 16, 32, 8, 8192, 128256, 131072, 500000.0, True),
    "llama8b": (4096, 32, 32, 8, 14336, 128256, 8192, 500000.0, False),
    "tiny": (64, 2, 4, 2, 128, 256, 2048, 10000.0, True),
    "small": (256, 2, 4, 2, 512, 509, 2048, 10000.0, True),
}

# GGML type: (id, elements a block, bytes a block, offsets of f16 scale fields, value)
TYPES = {
    "F32": (0, 1, 4, [], None),
    "Q4_1": (3, 32, 20, [0, 2], [1e-3, -8e-3]),
    "Q5_0": (6, 32, 22, [0], [1e-3]),
    "Q8_0": (8, 32, 34, [0], [1e-4]),
    "Q4_K": (12, 256, 144, [0, 2], [1e-4, 1e-4]),
    "Q6_K": (14, 256, 210, [208], [1e-5]),
}

ALIGN = 32


def s(text):
    b = text.encode()
    return struct.pack("<Q", len(b)) + b


def kv(key, value):
    if isinstance(value, str):
        return s(key) + struct.pack("<I", 8) + s(value)
    if isinstance(value, float):
        return s(key) + struct.pack("<If", 6, value)
    return s(key) + struct.pack("<II", 4, value)


def arr(key, etype, items):
    # A GGUF array of strings (8), f32 (6) or i32 (5).
    body = struct.pack("<IIQ", 9, etype, len(items))
    if etype == 8:
        body += b"".join(s(t) for t in items)
    else:
        body += np.asarray(items, dtype="<f4" if etype == 6 else "<i4").tobytes()
    return s(key) + body


def vocab_kvs(vocab):
    tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)]
    tokens += [f"t{i}" for i in range(len(tokens), vocab)]
    # Token types: 2 unknown, 3 control, 6 byte, 1 normal.
    types = [2, 3, 3] + [6] * 256 + [1] * (vocab - 259)
    return [
        arr("tokenizer.ggml.tokens", 8, tokens),
        arr("tokenizer.ggml.scores", 6, [0.0] * vocab),
        arr("tokenizer.ggml.token_type", 5, types),
    ]


def tensor_bytes(rng, dtype, rows, cols, scale=1.0):
    tid, per, size, f16s, vals = TYPES[dtype]
    if dtype == "F32":
        return np.ones(rows * cols, dtype=np.float32).tobytes()
    blocks = rows * cols // per
    data = rng.integers(0, 256, size=(blocks, size), dtype=np.uint8)
    for off, v in zip(f16s, vals):
        data[:, off : off + 2] = np.frombuffer(np.float16(v * scale).tobytes(), dtype=np.uint8)
    return data.tobytes()


def more_bits(i, n):
    # Which layers llama-quantize's Q4_K_M gives Q6_K for attn_v and ffn_down.
    return i < n // 8 or i >= 7 * n // 8 or (i - n // 8) % 3 == 2


def read_header(buf):
    """(header length up to the tensor data, alignment, [(name, type, rows, cols)])."""
    pos = 4

    def take(fmt):
        nonlocal pos
        v = struct.unpack_from(fmt, buf, pos)
        pos += struct.calcsize(fmt)
        return v if len(v) > 1 else v[0]

    def string():
        nonlocal pos
        n = take("<Q")
        pos += n
        return buf[pos - n : pos].decode()

    sizes = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}

    def skip(t):
        nonlocal pos
        if t == 8:
            string()
        elif t == 9:
            et, n = take("<IQ")
            for _ in range(n):
                skip(et)
        else:
            pos += sizes[t]

    assert buf[:4] == b"GGUF", "not a GGUF file"
    _, n_tensors, n_kv = take("<IQQ")
    align = ALIGN
    for _ in range(n_kv):
        key, t = string(), take("<I")
        if key == "general.alignment":
            align = take("<I")
        else:
            skip(t)
    ids = {v[0]: k for k, v in TYPES.items()}
    tensors = []
    for _ in range(n_tensors):
        name = string()
        dims = [take("<Q") for _ in range(take("<I"))]
        tid, off = take("<IQ")
        if tid not in ids:
            raise SystemExit(f"{name}: GGML type {tid} is not one random_gguf.py writes")
        rows = 1
        for d in dims[1:]:
            rows *= d
        # write_file lays tensors out in header order, each aligned: the header must agree.
        if off != sum(padded(t, align) for t in tensors):
            raise SystemExit(f"{name}: its data is not where header order puts it")
        tensors.append((name, ids[tid], rows, dims[0]))
    return pos, align, tensors


def padded(tensor, align):
    _, dtype, rows, cols = tensor
    _, per, size, _, _ = TYPES[dtype]
    return (rows * cols // per * size + align - 1) // align * align


def write_file(path, header, align, tensors, seed, scale=1.0):
    """The header, then each tensor's random blocks, aligned; returns the data bytes."""
    rng = np.random.default_rng(seed)
    with open(path, "wb") as f:
        f.write(header)
        f.write(b"\0" * ((-len(header)) % align))
        for _, dtype, rows, cols in tensors:
            data = tensor_bytes(rng, dtype, rows, cols, scale)
            f.write(data)
            f.write(b"\0" * ((-len(data)) % align))
    return sum(padded(t, align) for t in tensors)


def write_like(a):
    with open(a.like, "rb") as f:
        head = f.read()
    n, align, tensors = read_header(head)
    total = write_file(a.out, head[:n], align, tensors, a.seed)
    print(f"{a.out}: like {a.like}, {len(tensors)} tensors, {total / 1e9:.2f} GB of weights")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shape", choices=SHAPES)
    ap.add_argument("--type", choices=["Q4_1", "Q4_K_M"])
    ap.add_argument("--like", metavar="HEADER", help="the header of a GGUF file to reproduce")
    ap.add_argument("--header-of", metavar="FILE", help="write FILE's header to --out")
    ap.add_argument("-o", "--out", required=True)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--layers", type=int, help="layer count (default: the shape's)")
    ap.add_argument(
        "--scale",
        type=float,
        default=1.0,
        help="multiplies every block scale (larger weights: every layer moves the logits)",
    )
    a = ap.parse_args()
    if a.header_of:
        with open(a.header_of, "rb") as f:
            head = f.read(64 << 20)
        n, _, tensors = read_header(head)
        with open(a.out, "wb") as f:
            f.write(head[:n])
        print(f"{a.out}: the header of {a.header_of} ({n} bytes, {len(tensors)} tensors)")
        return
    if a.like:
        return write_like(a)
    if not (a.shape and a.type):
        ap.error("--shape and --type (or --like, or --header-of)")
    d, n, heads, kvh, ffn, vocab, ctx, base, tied = SHAPES[a.shape]
    n = a.layers or n
    hd = d // heads
    mat = "Q4_1" if a.type == "Q4_1" else "Q4_K"
    tensors = [("token_embd.weight", mat, vocab, d)]
    for i in range(n):
        big = "Q6_K" if a.type == "Q4_K_M" and more_bits(i, n) else mat
        p = f"blk.{i}."
        tensors += [
            (p + "attn_norm.weight", "F32", 1, d),
            (p + "attn_q.weight", mat, d, d),
            (p + "attn_k.weight", mat, kvh * hd, d),
            (p + "attn_v.weight", big, kvh * hd, d),
            (p + "attn_output.weight", mat, d, d),
            (p + "ffn_norm.weight", "F32", 1, d),
            (p + "ffn_gate.weight", mat, ffn, d),
            (p + "ffn_up.weight", mat, ffn, d),
            (p + "ffn_down.weight", big, d, ffn),
        ]
    tensors.append(("output_norm.weight", "F32", 1, d))
    if not tied:
        tensors.append(("output.weight", "Q6_K" if a.type == "Q4_K_M" else mat, vocab, d))

    meta = [
        ("general.architecture", "llama"),
        ("general.name", f"random {a.shape} {a.type}"),
        ("general.alignment", ALIGN),
        ("llama.context_length", ctx),
        ("llama.embedding_length", d),
        ("llama.block_count", n),
        ("llama.feed_forward_length", ffn),
        ("llama.attention.head_count", heads),
        ("llama.attention.head_count_kv", kvh),
        ("llama.rope.freq_base", base),
        ("llama.rope.dimension_count", hd),
        ("llama.attention.layer_norm_rms_epsilon", 1e-5),
        ("llama.vocab_size", vocab),
        ("tokenizer.ggml.model", "llama"),
        ("tokenizer.ggml.bos_token_id", 1),
        ("tokenizer.ggml.eos_token_id", 2),
    ]
    vocab_meta = vocab_kvs(vocab)
    header = b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(meta) + len(vocab_meta))
    header += b"".join(kv(k, v) for k, v in meta) + b"".join(vocab_meta)
    offset = 0
    infos = []
    for t in tensors:
        name, dtype, rows, cols = t
        dims = [cols] if rows == 1 else [cols, rows]
        info = s(name) + struct.pack("<I", len(dims))
        info += b"".join(struct.pack("<Q", x) for x in dims)
        info += struct.pack("<IQ", TYPES[dtype][0], offset)
        infos.append(info)
        offset += padded(t, ALIGN)
    header += b"".join(infos)
    write_file(a.out, header, ALIGN, tensors, a.seed, a.scale)
    print(f"{a.out}: {a.shape} {a.type}, {len(tensors)} tensors, {offset / 1e9:.2f} GB of weights")


if __name__ == "__main__":
    main()
