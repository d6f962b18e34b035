// IQ4_NL: blocks of 32 as {f16 d; u8 qs[16]} (18 bytes), nibbles in Q4_0 order; a
// nibble indexes 16 fixed non-uniform levels: x = d·level[q].
const IQ4NL_LEVELS = array<f32, 16>(
    -127.0, -104.0, -83.0, -65.0, -49.0, -35.0, -22.0, -10.0,
    1.0, 13.0, 25.0, 38.0, 53.0, 69.0, 89.0, 113.0,
);

fn decode_chunk(row: u32, c: u32, k: u32) -> array<f32, 32> {
    let b = row + c * 18u;
    let d = wf16(b);
    let levels = IQ4NL_LEVELS;
    var v: array<f32, 32>;
    for (var i = 0u; i < 4u; i++) {
        let q4 = wu32(b + 2u + 4u * i);
        for (var t = 0u; t < 4u; t++) {
            let q = q4 >> (8u * t);
            v[4u * i + t] = d * levels[q & 0xfu];
            v[4u * i + t + 16u] = d * levels[(q >> 4u) & 0xfu];
        }
    }
    return v;
}
