// IQ4_XS: super-blocks of 256 as {f16 d; u16 scales_h; u8 scales_l[4]; u8 qs[128]}
// (136 bytes). Sub-block j (32 elements) has a 6-bit scale biased by 32: low 4 bits
// nibble j % 2 of scales_l[j / 2], high 2 bits bits 2j..2j+2 of scales_h; its codes are
// qs[16j..16j + 16] in IQ4_NL order. x = (d·(sc − 32))·level[q], exact (11 + 6 + 8 bits).
const IQ4XS_LEVELS = array<f32, 16>(
    -127.0, -104.0, -83.0, -65.0, -49.0, -35.0, -22.0, -10.0,
    1.0, 13.0, 25.0, 38.0, 53.0, 69.0, 89.0, 113.0,
);

fn decode_chunk(row: u32, c: u32, k: u32) -> array<f32, 32> {
    let b = row + (c / 8u) * 136u;
    let j = c % 8u;
    let d = wf16(b);
    let lo = (wbyte(b + 4u + j / 2u) >> (4u * (j % 2u))) & 0xfu;
    let hi = (wu16(b + 2u) >> (2u * j)) & 3u;
    let dl = d * f32(i32(lo | (hi << 4u)) - 32);
    let levels = IQ4XS_LEVELS;
    let qs = b + 8u + 16u * j;
    var v: array<f32, 32>;
    for (var i = 0u; i < 4u; i++) {
        let q4 = wu32(qs + 4u * i);
        for (var t = 0u; t < 4u; t++) {
            let q = q4 >> (8u * t);
            v[4u * i + t] = dl * levels[q & 0xfu];
            v[4u * i + t + 16u] = dl * levels[(q >> 4u) & 0xfu];
        }
    }
    return v;
}
