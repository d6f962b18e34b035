// Q5_0: blocks of 32 as {f16 d; u32 qh; u8 qs[16]} (22 bytes): low nibbles in Q4_0
// order, the fifth bit of element l is bit l of qh. x = d·(q − 16).
fn decode_chunk(row: u32, c: u32, k: u32) -> array<f32, 32> {
    let b = row + c * 22u;
    let d = wf16(b);
    let qh = wu32(b + 2u);
    var v: array<f32, 32>;
    for (var i = 0u; i < 4u; i++) {
        let q4 = wu32(b + 6u + 4u * i);
        for (var t = 0u; t < 4u; t++) {
            let l = 4u * i + t;
            let q = q4 >> (8u * t);
            let lo = (q & 0xfu) | (((qh >> l) & 1u) << 4u);
            let hi = ((q >> 4u) & 0xfu) | (((qh >> (l + 16u)) & 1u) << 4u);
            v[l] = d * f32(i32(lo) - 16);
            v[l + 16u] = d * f32(i32(hi) - 16);
        }
    }
    return v;
}
