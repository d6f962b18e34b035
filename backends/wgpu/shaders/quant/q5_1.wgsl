// Q5_1: blocks of 32 as {f16 d; f16 m; u32 qh; u8 qs[16]} (24 bytes), bits as in Q5_0:
// x = d·q + m. d·q is exact (11-bit × 5-bit), so an FMA rounds the same as the
// reference's separate multiply and add.
fn decode_chunk(row: u32, c: u32, k: u32) -> array<f32, 32> {
    let b = row + c * 24u;
    let d = wf16(b);
    let m = wf16(b + 2u);
    let qh = wu32(b + 4u);
    var v: array<f32, 32>;
    for (var i = 0u; i < 4u; i++) {
        let q4 = wu32(b + 8u + 4u * i);
        for (var t = 0u; t < 4u; t++) {
            let l = 4u * i + t;
            let q = q4 >> (8u * t);
            let lo = (q & 0xfu) | (((qh >> l) & 1u) << 4u);
            let hi = ((q >> 4u) & 0xfu) | (((qh >> (l + 16u)) & 1u) << 4u);
            v[l] = d * f32(lo) + m;
            v[l + 16u] = d * f32(hi) + m;
        }
    }
    return v;
}
