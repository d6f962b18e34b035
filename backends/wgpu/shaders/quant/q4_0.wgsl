// Q4_0: blocks of 32 as {f16 d; u8 qs[16]} (18 bytes). Element l is the low nibble of
// qs[l], element l + 16 its high nibble: x = d·(q − 8).
fn decode_chunk(row: u32, c: u32, k: u32) -> array<f32, 32> {
    let b = row + c * 18u;
    let d = wf16(b);
    var v: array<f32, 32>;
    for (var i = 0u; i < 4u; i++) {
        let q4 = wu32(b + 2u + 4u * i);
        for (var t = 0u; t < 4u; t++) {
            let q = q4 >> (8u * t);
            v[4u * i + t] = d * f32(i32(q & 0xfu) - 8);
            v[4u * i + t + 16u] = d * f32(i32((q >> 4u) & 0xfu) - 8);
        }
    }
    return v;
}
