// R Q4_K rows' dots with x quantised to 8 bits per 32 values (matvec_rows.wgsl with
// activations int8; x holds the k/4 words of packed values, then the k/32 block scales,
// read four words a load).
// The lanes take the words rows/q4_k.wgsl gives them; each four nibbles meet four values
// of x in one dot4I8Packed. A sub-block is one block of x:
// Σ(dl·q − ml)·dx·qx = dl·dx·Σq·qx − ml·dx·Σqx.
fn rows_dot(rows: array<u32, R>, k: u32, x0: u32, lane: u32) -> array<f32, R> {
    let s = lane % 8u;
    let j = 2u * (s / 2u);
    let l = 16u * (s % 2u);
    let m = 0x0f0f0f0fu;
    let ones = 0x01010101u;
    var acc: array<f32, R>;
    for (var sb = lane / 8u; sb < k / 256u; sb += LANES / 8u) {
        let e = sb * 256u + 32u * j + l;
        let xl = x[e / 16u];
        let xh = x[e / 16u + 2u];
        // The scales of blocks e / 32 (even) and the next, in one vec4 (k / 4 is a
        // multiple of 64).
        let ds = x[(k / 4u + e / 32u) / 4u];
        let dxy = select(ds.zw, ds.xy, (e / 32u) % 4u == 0u);
        let dxl = bitcast<f32>(dxy.x);
        let dxh = bitcast<f32>(dxy.y);
        let sl = dxl * f32(dot4I8Packed(xl.x, ones) + dot4I8Packed(xl.y, ones)
            + dot4I8Packed(xl.z, ones) + dot4I8Packed(xl.w, ones));
        let sh = dxh * f32(dot4I8Packed(xh.x, ones) + dot4I8Packed(xh.y, ones)
            + dot4I8Packed(xh.z, ones) + dot4I8Packed(xh.w, ones));
        let ws = q4k_words(rows, sb, s);
        let hs = ws.h;
        let qs = ws.q;
        for (var i = 0u; i < R; i++) {
            let q = qs[i];
            let dm = unpack2x16float(hs[i].x);
            let lo = q4k_scale_min(hs[i], j);
            let hi = q4k_scale_min(hs[i], j + 1u);
            let il = dot4I8Packed(q.x & m, xl.x) + dot4I8Packed(q.y & m, xl.y)
                + dot4I8Packed(q.z & m, xl.z) + dot4I8Packed(q.w & m, xl.w);
            let ih = dot4I8Packed((q.x >> 4u) & m, xh.x) + dot4I8Packed((q.y >> 4u) & m, xh.y)
                + dot4I8Packed((q.z >> 4u) & m, xh.z) + dot4I8Packed((q.w >> 4u) & m, xh.w);
            acc[i] += dm.x * (lo.x * dxl * f32(il) + hi.x * dxh * f32(ih))
                - dm.y * (lo.y * sl + hi.y * sh);
        }
    }
    return acc;
}
