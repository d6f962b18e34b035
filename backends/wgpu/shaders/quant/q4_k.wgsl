// Q4_K: super-blocks of 256 as {f16 d; f16 dmin; u8 scales[12]; u8 qs[128]} (144 bytes).
// Sub-block j (32 elements) has a 6-bit scale and min packed in `scales`: for j < 4 the
// low 6 bits of bytes j and j + 4; for j >= 4 the nibbles of byte j + 4 with the top 2
// bits of bytes j − 4 and j. Its element l is nibble j % 2 of qs[32·(j / 2) + l].
// x = (d·sc)·q − dmin·m; d·sc·q is exact (11 + 6 + 4 bits), so only the subtraction
// rounds, with or without an FMA, as in the reference.
fn decode_chunk(row: u32, c: u32, k: u32) -> array<f32, 32> {
    let b = row + (c / 8u) * 144u;
    let j = c % 8u;
    let d = wf16(b);
    let dmin = wf16(b + 2u);
    let sm = k_scale_min(b + 4u, j);
    let dl = d * f32(sm.x);
    let ml = dmin * f32(sm.y);
    let qs = b + 16u + 32u * (j / 2u);
    let shift = 4u * (j % 2u);
    var v: array<f32, 32>;
    for (var i = 0u; i < 8u; i++) {
        let q4 = wu32(qs + 4u * i) >> shift;
        for (var t = 0u; t < 4u; t++) {
            v[4u * i + t] = dl * f32((q4 >> (8u * t)) & 0xfu) - ml;
        }
    }
    return v;
}
