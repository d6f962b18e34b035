// R Q4_1 rows' dots with x quantised to 8 bits per 32 values (matvec_rows.wgsl with
// activations int8; x holds the k/4 words of packed values, then the k/32 block scales,
// read four words a load). A lane a block: lane L takes blocks L, L + LANES, …. Word i of
// a block's qs holds elements 4i..4i + 4 in its low nibbles and 16 + 4i.. in its high
// ones, which meet x words i and 4 + i. One block of x a block:
// Σ(d·q + m)·dx·qx = d·dx·Σq·qx + m·dx·Σqx.
fn rows_dot(rows: array<u32, R>, k: u32, x0: u32, lane: u32) -> array<f32, R> {
    let mk = 0x0f0f0f0fu;
    let ones = 0x01010101u;
    var acc: array<f32, R>;
    for (var c = lane; c < k / 32u; c += LANES) {
        let xl = x[2u * c];
        let xh = x[2u * c + 1u];
        // k / 4 is a multiple of 8, so block c's scale is component c % 4 of a vec4.
        let dx = bitcast<f32>(x[(k / 4u + c) / 4u][c % 4u]);
        let sx = dot4I8Packed(xl.x, ones) + dot4I8Packed(xl.y, ones) + dot4I8Packed(xl.z, ones)
            + dot4I8Packed(xl.w, ones) + dot4I8Packed(xh.x, ones) + dot4I8Packed(xh.y, ones)
            + dot4I8Packed(xh.z, ones) + dot4I8Packed(xh.w, ones);
        // Every row's words loaded before any is used.
        var hs: array<u32, R>;
        var qs: array<vec4<u32>, R>;
        for (var i = 0u; i < R; i++) {
            let b = rows[i] + 5u * c;
            hs[i] = w[b];
            qs[i] = vec4<u32>(w[b + 1u], w[b + 2u], w[b + 3u], w[b + 4u]);
        }
        for (var i = 0u; i < R; i++) {
            let dm = unpack2x16float(hs[i]);
            let q = qs[i];
            let s = dot4I8Packed(q.x & mk, xl.x) + dot4I8Packed(q.y & mk, xl.y)
                + dot4I8Packed(q.z & mk, xl.z) + dot4I8Packed(q.w & mk, xl.w)
                + dot4I8Packed((q.x >> 4u) & mk, xh.x) + dot4I8Packed((q.y >> 4u) & mk, xh.y)
                + dot4I8Packed((q.z >> 4u) & mk, xh.z) + dot4I8Packed((q.w >> 4u) & mk, xh.w);
            acc[i] += dx * (dm.x * f32(s) + dm.y * f32(sx));
        }
    }
    return acc;
}
