#!/usr/bin/env python3
"""Writes the fuzzers' seed models: one tiny llama (1 layer, hidden 8, vocab 16) as a
GGUF file (with a GPT-2 BPE tokenizer in its metadata) and as an HF directory
(config.json + model.safetensors). Deterministic; small enough to commit."""
import json, random, struct, sys
from pathlib import Path

out = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).parent)
rng = random.Random(12)
H, FF, V, HEADS, KV = 8, 16, 16, 2, 1
HD = H // HEADS
shapes = {  # canonical (GGUF) name -> shape, outermost first
    "token_embd.weight": [V, H],
    "output_norm.weight": [H],
    "blk.0.attn_norm.weight": [H],
    "blk.0.attn_q.weight": [HEADS * HD, H],
    "blk.0.attn_k.weight": [KV * HD, H],
    "blk.0.attn_v.weight": [KV * HD, H],
    "blk.0.attn_output.weight": [H, HEADS * HD],
    "blk.0.ffn_norm.weight": [H],
    "blk.0.ffn_gate.weight": [FF, H],
    "blk.0.ffn_up.weight": [FF, H],
    "blk.0.ffn_down.weight": [H, FF],
}
hf_names = {
    "token_embd.weight": "model.embed_tokens.weight",
    "output_norm.weight": "model.norm.weight",
    "blk.0.attn_norm.weight": "model.layers.0.input_layernorm.weight",
    "blk.0.attn_q.weight": "model.layers.0.self_attn.q_proj.weight",
    "blk.0.attn_k.weight": "model.layers.0.self_attn.k_proj.weight",
    "blk.0.attn_v.weight": "model.layers.0.self_attn.v_proj.weight",
    "blk.0.attn_output.weight": "model.layers.0.self_attn.o_proj.weight",
    "blk.0.ffn_norm.weight": "model.layers.0.post_attention_layernorm.weight",
    "blk.0.ffn_gate.weight": "model.layers.0.mlp.gate_proj.weight",
    "blk.0.ffn_up.weight": "model.layers.0.mlp.up_proj.weight",
    "blk.0.ffn_down.weight": "model.layers.0.mlp.down_proj.weight",
}


def numel(s):
    n = 1
    for d in s:
        n *= d
    return n


data = {
    k: [1.0 + rng.uniform(-0.1, 0.1) if len(s) == 1 else rng.uniform(-0.5, 0.5) for _ in range(numel(s))]
    for k, s in shapes.items()
}
tokens = ["<s>", "</s>"] + list("abcdefgh ") + ["ab", "cd", "abcd", "Ġa", "Ġb"]
assert len(tokens) == V


def gstr(s):
    b = s.encode()
    return struct.pack("<Q", len(b)) + b


def gval(v):
    if isinstance(v, bool):
        return struct.pack("<I", 7) + bytes([v])
    if isinstance(v, int):
        return struct.pack("<II", 4, v)
    if isinstance(v, float):
        return struct.pack("<If", 6, v)
    if isinstance(v, str):
        return struct.pack("<I", 8) + gstr(v)
    ty, items = v  # ("str" | "i32", list)
    if ty == "str":
        return struct.pack("<IIQ", 9, 8, len(items)) + b"".join(gstr(x) for x in items)
    return struct.pack("<IIQ", 9, 5, len(items)) + b"".join(struct.pack("<i", x) for x in items)


meta = {
    "general.architecture": "llama",
    "llama.block_count": 1,
    "llama.context_length": 32,
    "llama.embedding_length": H,
    "llama.feed_forward_length": FF,
    "llama.attention.head_count": HEADS,
    "llama.attention.head_count_kv": KV,
    "llama.attention.layer_norm_rms_epsilon": 1e-5,
    "llama.rope.freq_base": 10000.0,
    "tokenizer.ggml.model": "gpt2",
    "tokenizer.ggml.pre": "gpt-2",
    "tokenizer.ggml.tokens": ("str", tokens),
    "tokenizer.ggml.token_type": ("i32", [3, 3] + [1] * (V - 2)),
    "tokenizer.ggml.merges": ("str", ["a b", "c d", "ab cd"]),
    "tokenizer.ggml.bos_token_id": 0,
    "tokenizer.ggml.eos_token_id": 1,
}
g = b"GGUF" + struct.pack("<IQQ", 3, len(shapes), len(meta))
for k, v in meta.items():
    g += gstr(k) + gval(v)
offset, blobs = 0, []
for k, s in shapes.items():
    g += gstr(k) + struct.pack("<I", len(s)) + b"".join(struct.pack("<Q", d) for d in reversed(s))
    g += struct.pack("<IQ", 0, offset)
    blob = struct.pack(f"<{numel(s)}f", *data[k])
    blobs.append((offset, blob))
    offset = (offset + len(blob) + 31) // 32 * 32
g += b"\0" * (-len(g) % 32)
start = len(g)
for off, blob in blobs:
    g += b"\0" * (start + off - len(g)) + blob
(out / "tiny.gguf").write_bytes(g)

header, body = {}, b""
for k, s in shapes.items():
    blob = struct.pack(f"<{numel(s)}f", *data[k])
    header[hf_names[k]] = {"dtype": "F32", "shape": s, "data_offsets": [len(body), len(body) + len(blob)]}
    body += blob
h = json.dumps(header, separators=(",", ":")).encode()
h += b" " * (-len(h) % 8)
hf = out / "tiny-hf"
hf.mkdir(exist_ok=True)
(hf / "model.safetensors").write_bytes(struct.pack("<Q", len(h)) + h + body)
config = {
    "model_type": "llama", "vocab_size": V, "hidden_size": H, "intermediate_size": FF,
    "num_hidden_layers": 1, "num_attention_heads": HEADS, "num_key_value_heads": KV,
    "max_position_embeddings": 32, "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
    "tie_word_embeddings": True,
}
(hf / "config.json").write_text(json.dumps(config, indent=1) + "\n")
