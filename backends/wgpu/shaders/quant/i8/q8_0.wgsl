// Q8_0 for the integer-dot GEMM: the block's bytes as they are, x = d·q.
fn decode_i8(row: u32, c: u32) -> I8Chunk {
    let b = row + c * 34u;
    var o: I8Chunk;
    for (var i = 0u; i < 8u; i++) {
        o.q[i] = wu32(b + 2u + 4u * i);
    }
    let d = wf16(b);
    o.d = vec2<f32>(d, d);
    o.m = 0.0;
    return o;
}
