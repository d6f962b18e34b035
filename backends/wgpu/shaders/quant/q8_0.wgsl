// Q8_0: blocks of 32 as {f16 d; i8 q[32]} (34 bytes): x = d·q.
fn decode_chunk(row: u32, c: u32, k: u32) -> array<f32, 32> {
    let b = row + c * 34u;
    let d = wf16(b);
    var v: array<f32, 32>;
    for (var e = 0u; e < 32u; e++) {
        let q = i32(wbyte(b + 2u + e) << 24u) >> 24u;
        v[e] = d * f32(q);
    }
    return v;
}
