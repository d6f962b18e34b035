// R Q4_K rows' dots with x quantised to 8 bits per 32 values (matvec_rows.wgsl with
// activations int8; x holds the k/4 words of packed values, then the k/32 block scales,
// read four words a load).
// Four lanes a super-block: lane s = L % 4 takes qs words 1 + 2s and 2 + 2s, the whole of
// sub-blocks 2s (low nibbles) and 2s + 1 (high), so it decodes their scales once for 64
// values (with 8 lanes a super-block, half a sub-block pair a lane, the scale decoding
// was done twice over and 8B decode ran 10% slower on an H200). Each four nibbles meet
// four values of x in one dot4I8Packed. A sub-block is one block of x:
// Σ(dl·q − ml)·dx·qx = dl·dx·Σq·qx − ml·dx·Σqx.
fn rows_dot(rows: array<u32, R>, k: u32, x0: u32, lane: u32) -> array<f32, R> {
    let s = lane % 4u;
    let m = 0x0f0f0f0fu;
    let ones = 0x01010101u;
    var acc: array<f32, R>;
    for (var sb = lane / 4u; sb < k / 256u; sb += LANES / 4u) {
        // Sub-block 2s starts at element e: its values are x words e / 4 .. e / 4 + 8
        // (vec4s e / 16 and the next), sub-block 2s + 1's the two vec4s after.
        let e = sb * 256u + 64u * s;
        let xl = array<vec4<u32>, 2>(x[e / 16u], x[e / 16u + 1u]);
        let xh = array<vec4<u32>, 2>(x[e / 16u + 2u], x[e / 16u + 3u]);
        var il1 = 0;
        var ih1 = 0;
        for (var u = 0u; u < 2u; u++) {
            il1 += dot4I8Packed(xl[u].x, ones) + dot4I8Packed(xl[u].y, ones)
                + dot4I8Packed(xl[u].z, ones) + dot4I8Packed(xl[u].w, ones);
            ih1 += dot4I8Packed(xh[u].x, ones) + dot4I8Packed(xh[u].y, ones)
                + dot4I8Packed(xh[u].z, ones) + dot4I8Packed(xh[u].w, ones);
        }
        // The scales of blocks e / 32 (even) and the next, in one vec4 (k / 4 is a
        // multiple of 64).
        let ds = x[(k / 4u + e / 32u) / 4u];
        let dxy = select(ds.zw, ds.xy, (e / 32u) % 4u == 0u);
        let dxl = bitcast<f32>(dxy.x);
        let dxh = bitcast<f32>(dxy.y);
        let sl = dxl * f32(il1);
        let sh = dxh * f32(ih1);
        // Every row's words loaded before any is used.
        var hs: array<vec4<u32>, R>;
        var qs: array<array<vec4<u32>, 2>, R>;
        for (var i = 0u; i < R; i++) {
            let b = rows[i] + sb * 9u;
            hs[i] = w[b];
            qs[i] = array<vec4<u32>, 2>(w[b + 1u + 2u * s], w[b + 2u + 2u * s]);
        }
        for (var i = 0u; i < R; i++) {
            let dm = unpack2x16float(hs[i].x);
            let sm = q4k_scales_mins(hs[i], s);
            var il = 0;
            var ih = 0;
            for (var u = 0u; u < 2u; u++) {
                let q = qs[i][u];
                il += dot4I8Packed(q.x & m, xl[u].x) + dot4I8Packed(q.y & m, xl[u].y)
                    + dot4I8Packed(q.z & m, xl[u].z) + dot4I8Packed(q.w & m, xl[u].w);
                ih += dot4I8Packed((q.x >> 4u) & m, xh[u].x)
                    + dot4I8Packed((q.y >> 4u) & m, xh[u].y)
                    + dot4I8Packed((q.z >> 4u) & m, xh[u].z)
                    + dot4I8Packed((q.w >> 4u) & m, xh[u].w);
            }
            acc[i] += dm.x * (sm.x * dxl * f32(il) + sm.z * dxh * f32(ih))
                - dm.y * (sm.y * sl + sm.w * sh);
        }
    }
    return acc;
}
