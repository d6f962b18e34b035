// Q6_K for the integer-dot GEMM: sub-block c's q − 32 as packed signed bytes, the first
// 16 scaled by d·scales[..], the second by the next (see quant/q6_k.wgsl).
fn decode_i8(row: u32, c: u32) -> I8Chunk {
    let b = row + (c / 8u) * 210u;
    let j = c % 8u;
    let n = j / 4u;
    let s = j % 4u;
    let d = wf16(b + 208u);
    let sb = b + 192u + 8u * n + 2u * s;
    let ql = b + 64u * n + 32u * (s % 2u);
    let qh = b + 128u + 32u * n;
    let lshift = 4u * (s / 2u);
    let hshift = 2u * s;
    var o: I8Chunk;
    for (var i = 0u; i < 8u; i++) {
        let v = ((wu32(ql + 4u * i) >> lshift) & 0x0f0f0f0fu)
            | (((wu32(qh + 4u * i) >> hshift) & 0x03030303u) << 4u);
        // Each byte minus 32 (bytes are 0..63: no borrow crosses a byte with bit 7 set).
        o.q[i] = ((v | 0x80808080u) - 0x20202020u) ^ 0x80808080u;
    }
    o.d = vec2<f32>(d * f32(i32(wbyte(sb) << 24u) >> 24u), d * f32(i32(wbyte(sb + 1u) << 24u) >> 24u));
    o.m = 0.0;
    return o;
}
