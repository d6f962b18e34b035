// gemm_i8.wgsl's weight tile decoded in the tile from the stored blocks (the type's
// decode_i8, quant/i8/, follows): TN rows × KB blocks, consecutive threads a row's
// blocks.
@group(0) @binding(2) var<storage, read> w: array<u32>;

struct I8Chunk {
    q: array<u32, 8>,
    d: vec2<f32>,
    m: f32,
}

fn load_w_tile(li: u32, c0: u32, n0: u32, n: u32, nb: u32, k: u32) {
    for (var e = li; e < TN * KB; e += THREADS) {
        let j = e / KB;
        let b = e % KB;
        var ch: I8Chunk;
        if n0 + j < n && c0 + b < nb {
            ch = decode_i8(pu(6) + (n0 + j) * pu(5), c0 + b);
        }
        for (var q = 0u; q < 8u; q++) {
            ws[(8u * b + q) * (TN / 4u) + j / 4u][j % 4u] = ch.q[q];
        }
        wsc[b * TN + j] = vec4<f32>(ch.d, ch.m, 0.0);
    }
}
