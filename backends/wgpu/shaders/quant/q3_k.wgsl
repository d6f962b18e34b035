// Q3_K: super-blocks of 256 as {u8 hmask[32]; u8 qs[64]; u8 scales[12]; f16 d}
// (110 bytes). Sub-block j = 4h + s (32 elements): element l has low 2 bits from bits
// 2s..2s+2 of qs[32h + l] and, when bit j of hmask[l] is clear, −4. Each half of 16
// (index u = 2j, 2j + 1) has a 6-bit scale biased by 32: low 4 bits nibble u / 8 of
// scales[u % 8], high 2 bits bits 2·(u / 4).. of scales[8 + u % 4].
// x = (d·(sc − 32))·q, exact (11 + 6 + 3 bits).
fn q3k_scale(sb: u32, u: u32) -> i32 {
    let lo = (wbyte(sb + u % 8u) >> (4u * (u / 8u))) & 0xfu;
    let hi = (wbyte(sb + 8u + u % 4u) >> (2u * (u / 4u))) & 3u;
    return i32(lo | (hi << 4u)) - 32;
}

fn decode_chunk(row: u32, c: u32, k: u32) -> array<f32, 32> {
    let b = row + (c / 8u) * 110u;
    let j = c % 8u;
    let d = wf16(b + 108u);
    let d0 = d * f32(q3k_scale(b + 96u, 2u * j));
    let d1 = d * f32(q3k_scale(b + 96u, 2u * j + 1u));
    let dl = array<f32, 2>(d0, d1);
    let qs = b + 32u + 32u * (j / 4u);
    let shift = 2u * (j % 4u);
    var v: array<f32, 32>;
    for (var i = 0u; i < 8u; i++) {
        let q4 = wu32(qs + 4u * i) >> shift;
        let h4 = wu32(b + 4u * i) >> j;
        let half = i / 4u;
        for (var t = 0u; t < 4u; t++) {
            let q = i32((q4 >> (8u * t)) & 3u) - 4 * i32(1u - ((h4 >> (8u * t)) & 1u));
            v[4u * i + t] = dl[half] * f32(q);
        }
    }
    return v;
}
