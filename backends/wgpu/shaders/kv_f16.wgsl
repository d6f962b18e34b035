// The KV cache in f16 (--kv f16): value i is half i % 2 of word i / 2 (kc and vc are
// array<u32>), so a pair of values is written by one thread, as one word.
fn k_at(i: u32) -> f32 {
    return unpack2x16float(kc[i >> 1u])[i & 1u];
}

fn v_at(i: u32) -> f32 {
    return unpack2x16float(vc[i >> 1u])[i & 1u];
}

// Values i..i + 4 (i a multiple of 4) of the key and the value caches.
fn k_at4(i: u32) -> vec4<f32> {
    return vec4<f32>(unpack2x16float(kc[i >> 1u]), unpack2x16float(kc[(i >> 1u) + 1u]));
}

fn v_at4(i: u32) -> vec4<f32> {
    return vec4<f32>(unpack2x16float(vc[i >> 1u]), unpack2x16float(vc[(i >> 1u) + 1u]));
}

// Values i and i + 1 (i even) of the key and the value caches.
fn kv_put2(i: u32, k: vec2<f32>, v: vec2<f32>) {
    kc[i >> 1u] = pack2x16float(k);
    vc[i >> 1u] = pack2x16float(v);
}
