// Q5_K: super-blocks of 256 as {f16 d; f16 dmin; u8 scales[12]; u8 qh[32]; u8 qs[128]}
// (176 bytes): Q4_K (same scales and nibbles) with a fifth bit, bit j of qh[l], for
// element l of sub-block j. x = (d·sc)·q − dmin·m; d·sc·q is exact (11 + 6 + 5 bits),
// so only the subtraction rounds, with or without an FMA, as in the reference.
fn decode_chunk(row: u32, c: u32, k: u32) -> array<f32, 32> {
    let b = row + (c / 8u) * 176u;
    let j = c % 8u;
    let d = wf16(b);
    let dmin = wf16(b + 2u);
    let sm = k_scale_min(b + 4u, j);
    let dl = d * f32(sm.x);
    let ml = dmin * f32(sm.y);
    let qs = b + 48u + 32u * (j / 2u);
    let shift = 4u * (j % 2u);
    var v: array<f32, 32>;
    for (var i = 0u; i < 8u; i++) {
        let q4 = wu32(qs + 4u * i) >> shift;
        let h4 = wu32(b + 16u + 4u * i) >> j;
        for (var t = 0u; t < 4u; t++) {
            let q = ((q4 >> (8u * t)) & 0xfu) | (((h4 >> (8u * t)) & 1u) << 4u);
            v[4u * i + t] = dl * f32(q) - ml;
        }
    }
    return v;
}
