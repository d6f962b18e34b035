// Q4_1 for the integer-dot GEMM: low nibbles are elements 0..16, high ones 16..32,
// x = d·q + m (see quant/q4_1.wgsl).
fn decode_i8(row: u32, c: u32) -> I8Chunk {
    let b = row + c * 20u;
    var o: I8Chunk;
    for (var i = 0u; i < 4u; i++) {
        let q = wu32(b + 4u + 4u * i);
        o.q[i] = q & 0x0f0f0f0fu;
        o.q[i + 4u] = (q >> 4u) & 0x0f0f0f0fu;
    }
    let d = wf16(b);
    o.d = vec2<f32>(d, d);
    o.m = -wf16(b + 2u);
    return o;
}
