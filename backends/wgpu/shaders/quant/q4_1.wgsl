// Q4_1: blocks of 32 as {f16 d; f16 m; u8 qs[16]} (20 bytes), nibbles in Q4_0 order:
// x = d·q + m. d·q is exact (11-bit × 4-bit), so whether the compiler fuses it with
// + m into an FMA or not, the one rounding is the reference's.
fn decode_chunk(row: u32, c: u32, k: u32) -> array<f32, 32> {
    let b = row + c * 20u;
    let d = wf16(b);
    let m = wf16(b + 2u);
    var v: array<f32, 32>;
    for (var i = 0u; i < 4u; i++) {
        let q4 = wu32(b + 4u + 4u * i);
        for (var t = 0u; t < 4u; t++) {
            let q = q4 >> (8u * t);
            v[4u * i + t] = d * f32(q & 0xfu) + m;
            v[4u * i + t + 16u] = d * f32((q >> 4u) & 0xfu) + m;
        }
    }
    return v;
}
