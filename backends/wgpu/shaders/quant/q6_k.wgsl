// Q6_K: super-blocks of 256 as {u8 ql[128]; u8 qh[64]; i8 scales[16]; f16 d} (210 bytes).
// Sub-block j = 4n + s (32 elements): element l has low 4 bits from nibble s / 2 of
// ql[64n + 32·(s % 2) + l] and high 2 bits from bits 2s..2s+2 of qh[32n + l]; its scale
// is scales[8n + 2s + l / 16]. x = (d·sc)·(q − 32), exact (11 + 8 + 6 bits).
fn decode_chunk(row: u32, c: u32, k: u32) -> array<f32, 32> {
    let b = row + (c / 8u) * 210u;
    let j = c % 8u;
    let n = j / 4u;
    let s = j % 4u;
    let d = wf16(b + 208u);
    let sb = b + 192u + 8u * n + 2u * s;
    let d0 = d * f32(i32(wbyte(sb) << 24u) >> 24u);
    let d1 = d * f32(i32(wbyte(sb + 1u) << 24u) >> 24u);
    let ql = b + 64u * n + 32u * (s % 2u);
    let qh = b + 128u + 32u * n;
    let lshift = 4u * (s / 2u);
    let hshift = 2u * s;
    var v: array<f32, 32>;
    for (var i = 0u; i < 8u; i++) {
        let l4 = wu32(ql + 4u * i) >> lshift;
        let h4 = wu32(qh + 4u * i) >> hshift;
        // Elements 0..16 use the first scale, 16..32 the second.
        var dl = d0;
        if i >= 4u {
            dl = d1;
        }
        for (var t = 0u; t < 4u; t++) {
            let q = ((l4 >> (8u * t)) & 0xfu) | (((h4 >> (8u * t)) & 3u) << 4u);
            v[4u * i + t] = dl * f32(i32(q) - 32);
        }
    }
    return v;
}
