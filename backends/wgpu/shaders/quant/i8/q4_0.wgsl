// Q4_0 for the integer-dot GEMM: q − 8 as packed signed bytes, low nibbles elements
// 0..16, high ones 16..32, x = d·(q − 8) (see quant/q4_0.wgsl).
fn decode_i8(row: u32, c: u32) -> I8Chunk {
    let b = row + c * 18u;
    var o: I8Chunk;
    for (var i = 0u; i < 4u; i++) {
        let q = wu32(b + 2u + 4u * i);
        o.q[i] = (((q & 0x0f0f0f0fu) | 0x80808080u) - 0x08080808u) ^ 0x80808080u;
        o.q[i + 4u] = ((((q >> 4u) & 0x0f0f0f0fu) | 0x80808080u) - 0x08080808u) ^ 0x80808080u;
    }
    let d = wf16(b);
    o.d = vec2<f32>(d, d);
    o.m = 0.0;
    return o;
}
