// TQ2_0: super-blocks of 256 as {u8 qs[64]; f16 d} (66 bytes). Sub-block j = 4h + s
// (32 elements): element l is bits 2s..2s+2 of qs[32h + l]. x = d·(q − 1).
fn decode_chunk(row: u32, c: u32, k: u32) -> array<f32, 32> {
    let b = row + (c / 8u) * 66u;
    let j = c % 8u;
    let d = wf16(b + 64u);
    let qs = b + 32u * (j / 4u);
    let shift = 2u * (j % 4u);
    var v: array<f32, 32>;
    for (var i = 0u; i < 8u; i++) {
        let q4 = wu32(qs + 4u * i) >> shift;
        for (var t = 0u; t < 4u; t++) {
            v[4u * i + t] = d * f32(i32((q4 >> (8u * t)) & 3u) - 1);
        }
    }
    return v;
}
