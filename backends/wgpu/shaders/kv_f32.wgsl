// The KV cache in f32, a value a word (kc and vc are array<f32>).
fn k_at(i: u32) -> f32 {
    return kc[i];
}

fn v_at(i: u32) -> f32 {
    return vc[i];
}

// Values i..i + 4 (i a multiple of 4) of the key and the value caches.
fn k_at4(i: u32) -> vec4<f32> {
    return vec4<f32>(kc[i], kc[i + 1u], kc[i + 2u], kc[i + 3u]);
}

fn v_at4(i: u32) -> vec4<f32> {
    return vec4<f32>(vc[i], vc[i + 1u], vc[i + 2u], vc[i + 3u]);
}

// Values i and i + 1 (i even) of the key and the value caches.
fn kv_put2(i: u32, k: vec2<f32>, v: vec2<f32>) {
    kc[i] = k.x;
    kc[i + 1u] = k.y;
    vc[i] = v.x;
    vc[i + 1u] = v.y;
}
