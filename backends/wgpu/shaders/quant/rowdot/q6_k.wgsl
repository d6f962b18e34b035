// A Q6_K row's dot with x, 32 lanes to a super-block: lane L reads ql word L (one
// coalesced load a super-block), bytes 64n + r.. with n = L / 16, r = 4·(L % 16): the
// low 4 bits of elements l..l + 3 (l = r % 32) of sub-blocks j = 4n + r / 32 (low
// nibbles) and j + 2 (high nibbles); their top 2 bits are bits 2s.. of qh[32n + l].
// x = (d·sc)·(q − 32). Returns this lane's part of the sum.
fn row_dot(row: u32, k: u32, x0: u32, lane: u32) -> f32 {
    let n = lane / 16u;
    let r = 4u * (lane % 16u);
    let s = r / 32u;
    let l = r % 32u;
    var acc = 0.0;
    for (var sb = 0u; sb < k / 256u; sb++) {
        let b = row + sb * 210u;
        let d = wf16(b + 208u);
        let ql = wu32(b + 4u * lane);
        let qh = wu32(b + 128u + 32u * n + l);
        let sc = b + 192u + 8u * n + l / 16u;
        let sc_lo = f32(i32(wbyte(sc + 2u * s) << 24u) >> 24u);
        let sc_hi = f32(i32(wbyte(sc + 2u * (s + 2u)) << 24u) >> 24u);
        let q_lo = (ql & 0x0f0f0f0fu) | (((qh >> (2u * s)) & 0x03030303u) << 4u);
        let q_hi = ((ql >> 4u) & 0x0f0f0f0fu) | (((qh >> (2u * (s + 2u))) & 0x03030303u) << 4u);
        let xb = (x0 + sb * 256u + 32u * (4u * n + s) + l) / 4u;
        let lo = dot(vec4<f32>(unpack4xU8(q_lo)) - 32.0, x[xb]);
        let hi = dot(vec4<f32>(unpack4xU8(q_hi)) - 32.0, x[xb + 16u]);
        acc += d * (sc_lo * lo + sc_hi * hi);
    }
    return acc;
}
