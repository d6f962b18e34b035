// Q4_K for the integer-dot GEMM: sub-block c's nibbles as packed unsigned bytes and
// x = (d·sc)·q − dmin·m (see quant/q4_k.wgsl).
fn decode_i8(row: u32, c: u32) -> I8Chunk {
    let b = row + (c / 8u) * 144u;
    let j = c % 8u;
    let sm = k_scale_min(b + 4u, j);
    let dl = wf16(b) * f32(sm.x);
    let qs = b + 16u + 32u * (j / 2u);
    let shift = 4u * (j % 2u);
    var o: I8Chunk;
    for (var i = 0u; i < 8u; i++) {
        o.q[i] = (wu32(qs + 4u * i) >> shift) & 0x0f0f0f0fu;
    }
    o.d = vec2<f32>(dl, dl);
    o.m = wf16(b + 2u) * f32(sm.y);
    return o;
}
