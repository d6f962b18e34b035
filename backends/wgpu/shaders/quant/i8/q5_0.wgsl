// Q5_0 for the integer-dot GEMM: q − 16 as packed signed bytes, the fifth bit of
// element l bit l of qh, x = d·(q − 16) (see quant/q5_0.wgsl).
// Bits l..l + 4 of h spread to bit 4 of four bytes.
fn q5_high(h: u32, l: u32) -> u32 {
    let t = h >> l;
    return ((t & 1u) | ((t & 2u) << 7u) | ((t & 4u) << 14u) | ((t & 8u) << 21u)) << 4u;
}

fn decode_i8(row: u32, c: u32) -> I8Chunk {
    let b = row + c * 22u;
    let qh = wu32(b + 2u);
    var o: I8Chunk;
    for (var i = 0u; i < 4u; i++) {
        let q = wu32(b + 6u + 4u * i);
        let lo = (q & 0x0f0f0f0fu) | q5_high(qh, 4u * i);
        let hi = ((q >> 4u) & 0x0f0f0f0fu) | q5_high(qh, 4u * i + 16u);
        o.q[i] = ((lo | 0x80808080u) - 0x10101010u) ^ 0x80808080u;
        o.q[i + 4u] = ((hi | 0x80808080u) - 0x10101010u) ^ 0x80808080u;
    }
    let d = wf16(b);
    o.d = vec2<f32>(d, d);
    o.m = 0.0;
    return o;
}
