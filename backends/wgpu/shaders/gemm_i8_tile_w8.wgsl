// gemm_i8.wgsl's weight tile from blocks decoded once a call (decode_i8_rows.wgsl):
// TN rows × KB blocks of words and scales, consecutive threads a row's blocks.
@group(0) @binding(2) var<storage, read> w8: array<vec4<u32>>;
@group(0) @binding(5) var<storage, read> w8s: array<vec4<f32>>;

fn load_w_tile(li: u32, c0: u32, n0: u32, n: u32, nb: u32, k: u32) {
    for (var e = li; e < TN * KB * 2u; e += THREADS) {
        let j = e / (KB * 2u);
        let v = e % (KB * 2u);
        let b = v / 2u;
        var a = vec4<u32>(0u);
        if n0 + j < n && c0 + b < nb {
            a = w8[(n0 + j) * (k / 16u) + 2u * c0 + v];
        }
        let q = 4u * (v % 2u);
        for (var t = 0u; t < 4u; t++) {
            ws[(8u * b + q + t) * (TN / 4u) + j / 4u][j % 4u] = a[t];
        }
    }
    for (var e = li; e < TN * KB; e += THREADS) {
        let j = e / KB;
        let b = e % KB;
        var s = vec4<f32>(0.0);
        if n0 + j < n && c0 + b < nb {
            s = w8s[(n0 + j) * nb + c0 + b];
        }
        wsc[b * TN + j] = s;
    }
}
