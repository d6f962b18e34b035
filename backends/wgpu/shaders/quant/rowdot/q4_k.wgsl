// A Q4_K row's dot with x, 32 lanes to a super-block: lane L reads qs word L (one
// coalesced load a super-block for the 32 lanes), which holds elements l..l + 3 of
// sub-blocks 2·(L / 8) (low nibbles) and 2·(L / 8) + 1 (high nibbles), l = 4·(L % 8).
// Σ(dl·q − ml)·x = dl·Σq·x − ml·Σx per sub-block. Returns this lane's part of the sum.
fn row_dot(row: u32, k: u32, x0: u32, lane: u32) -> f32 {
    let j2 = lane / 8u;
    let l = 4u * (lane % 8u);
    var acc = 0.0;
    for (var sb = 0u; sb < k / 256u; sb++) {
        let b = row + sb * 144u;
        let dm = unpack2x16float(wu32(b));
        let lo = k_scale_min(b + 4u, 2u * j2);
        let hi = k_scale_min(b + 4u, 2u * j2 + 1u);
        let q = wu32(b + 16u + 4u * lane);
        let xb = (x0 + sb * 256u + 64u * j2 + l) / 4u;
        let xl = x[xb];
        let xh = x[xb + 8u];
        let ql = vec4<f32>(unpack4xU8(q & 0x0f0f0f0fu));
        let qh = vec4<f32>(unpack4xU8((q >> 4u) & 0x0f0f0f0fu));
        let one = vec4<f32>(1.0);
        acc += dm.x * (f32(lo.x) * dot(ql, xl) + f32(hi.x) * dot(qh, xh));
        acc -= dm.y * (f32(lo.y) * dot(one, xl) + f32(hi.y) * dot(one, xh));
    }
    return acc;
}
