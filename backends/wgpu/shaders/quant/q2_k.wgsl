// Q2_K: super-blocks of 256 as {u8 scales[16]; u8 qs[64]; f16 d; f16 dmin} (84 bytes).
// Sub-block j = 4h + s (32 elements): element l is bits 2s..2s+2 of qs[32h + l]; each
// half of 16 has a scales byte (min << 4 | scale), scales[2j] and scales[2j + 1].
// x = (d·sc)·q − dmin·m; d·sc·q is exact (11 + 4 + 2 bits), so only the subtraction
// rounds, with or without an FMA, as in the reference.
fn decode_chunk(row: u32, c: u32, k: u32) -> array<f32, 32> {
    let b = row + (c / 8u) * 84u;
    let j = c % 8u;
    let d = wf16(b + 80u);
    let dmin = wf16(b + 82u);
    let sm = wu16(b + 2u * j);
    let dl = array<f32, 2>(d * f32(sm & 0xfu), d * f32((sm >> 8u) & 0xfu));
    let ml = array<f32, 2>(dmin * f32((sm >> 4u) & 0xfu), dmin * f32(sm >> 12u));
    let qs = b + 16u + 32u * (j / 4u);
    let shift = 2u * (j % 4u);
    var v: array<f32, 32>;
    for (var i = 0u; i < 8u; i++) {
        let q4 = wu32(qs + 4u * i) >> shift;
        let half = i / 4u;
        for (var t = 0u; t < 4u; t++) {
            v[4u * i + t] = dl[half] * f32((q4 >> (8u * t)) & 3u) - ml[half];
        }
    }
    return v;
}
