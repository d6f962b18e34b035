// R Q6_K rows' dots with x quantised to 8 bits per 32 values (matvec_rows.wgsl with
// activations int8; x holds the k/4 words of packed values, then the k/32 block scales,
// as vec4s).
// Eight lanes a super-block: lane s = L % 8 takes the 32 elements 128n + l + {0, 32, 64,
// 96} + 0..7 (n = s / 4, l = 8·(s % 4)): the low 4 bits are the nibbles of ql bytes
// 64n + l.. (elements +0, +64) and 64n + 32 + l.. (+32, +96), the top 2 bits bit pairs of
// qh bytes 128 + 32n + l.., the scales bytes l / 16 + {0, 2, 4, 6} of the eight at
// 192 + 8n. Eight bytes at an even offset are two words from three loads (q6k_pair: a
// row of an odd super-block is 2 bytes past a word), so a lane's loads are few and its
// values many. Each four 6-bit values meet four of x in one dot4I8Packed; the lane's four groups
// lie in four consecutive blocks of x: a sub-block adds d·sc·dx·(Σq·qx − 32·Σqx).

fn rows_dot(rows: array<u32, R>, k: u32, x0: u32, lane: u32) -> array<f32, R> {
    let s = lane % 8u;
    let n = s / 4u;
    let l = 8u * (s % 4u);
    // Byte shift of this lane's scales within their words.
    let sh = 8u * (l / 16u);
    let ones = 0x01010101u;
    let m = 0x0f0f0f0fu;
    let t = 0x03030303u;
    var acc: array<f32, R>;
    for (var sb = lane / 8u; sb < k / 256u; sb += LANES / 8u) {
        // Group g's eight x values are words e / 4 + 8g and the next: half of vec4
        // e / 16 + 2g (e / 4 is even).
        let e = sb * 256u + 128u * n + l;
        let hx = (e / 4u) % 4u == 0u;
        var xg: array<vec2<u32>, 4>;
        var sx: vec4<i32>;
        for (var g = 0u; g < 4u; g++) {
            let v = x[e / 16u + 2u * g];
            xg[g] = select(v.zw, v.xy, hx);
            sx[g] = dot4I8Packed(xg[g].x, ones) + dot4I8Packed(xg[g].y, ones);
        }
        sx *= 32;
        // The four blocks' scales in one vec4 (k / 4 and e / 32 are multiples of 4).
        let dx = bitcast<vec4<f32>>(x[(k / 4u + e / 32u) / 4u]);
        // Every row's words loaded before any is used.
        var qa: array<vec2<u32>, R>;
        var qb: array<vec2<u32>, R>;
        var qh: array<vec2<u32>, R>;
        var sc: array<vec2<u32>, R>;
        var dw: array<u32, R>;
        for (var i = 0u; i < R; i++) {
            let b = rows[i] * 4u + sb * 210u;
            qa[i] = q6k_pair(b + 64u * n + l);
            qb[i] = q6k_pair(b + 64u * n + 32u + l);
            qh[i] = q6k_pair(b + 128u + 32u * n + l);
            sc[i] = q6k_pair(b + 192u + 8u * n);
            dw[i] = w[(b + 208u) / 4u] >> (8u * ((b + 208u) & 2u));
        }
        for (var i = 0u; i < R; i++) {
            var p = -sx;
            for (var u = 0u; u < 2u; u++) {
                let a = qa[i][u];
                let b = qb[i][u];
                let h = qh[i][u];
                p += vec4<i32>(
                    dot4I8Packed((a & m) | ((h & t) << 4u), xg[0][u]),
                    dot4I8Packed((b & m) | (((h >> 2u) & t) << 4u), xg[1][u]),
                    dot4I8Packed(((a >> 4u) & m) | (((h >> 4u) & t) << 4u), xg[2][u]),
                    dot4I8Packed(((b >> 4u) & m) | (((h >> 6u) & t) << 4u), xg[3][u]),
                );
            }
            acc[i] += dot(q6k_scales(sc[i].x, sc[i].y, dw[i], sh), vec4<f32>(p) * dx);
        }
    }
    return acc;
}
