// R Q6_K rows' dots with x quantised to 8 bits per 32 values (matvec_rows.wgsl with
// activations int8; x holds the k/4 words of packed values, then the k/32 block scales,
// as vec4s).
// The lanes take the elements rows/q6_k.wgsl gives them; each four 6-bit values meet
// four of x in one dot4I8Packed, and the lane's four groups of four lie in four
// consecutive blocks of x: a sub-block adds d·sc·dx·(Σq·qx − 32·Σqx).
fn rows_dot(rows: array<u32, R>, k: u32, x0: u32, lane: u32) -> array<f32, R> {
    let s = lane % 16u;
    let n = s / 8u;
    let l = 4u * (s % 8u);
    let sh = 8u * (l / 16u);
    let ones = 0x01010101u;
    var acc: array<f32, R>;
    for (var sb = lane / 16u; sb < k / 256u; sb += LANES / 16u) {
        let e = sb * 256u + 128u * n + l;
        let xi = e / 16u;
        let xc = (e / 4u) % 4u;
        let xw = vec4<u32>(x[xi][xc], x[xi + 2u][xc], x[xi + 4u][xc], x[xi + 6u][xc]);
        // The four blocks' scales in one vec4 (k / 4 and e / 32 are multiples of 4).
        let dx = bitcast<vec4<f32>>(x[(k / 4u + e / 32u) / 4u]);
        let sx = 32 * vec4<i32>(
            dot4I8Packed(xw.x, ones),
            dot4I8Packed(xw.y, ones),
            dot4I8Packed(xw.z, ones),
            dot4I8Packed(xw.w, ones),
        );
        var qw: array<array<u32, 6>, R>;
        for (var i = 0u; i < R; i++) {
            qw[i] = q6k_words(rows[i] * 4u + sb * 210u, n, l);
        }
        for (var i = 0u; i < R; i++) {
            let q = q6k_values(qw[i]);
            let p = vec4<i32>(
                dot4I8Packed(q[0], xw.x),
                dot4I8Packed(q[1], xw.y),
                dot4I8Packed(q[2], xw.z),
                dot4I8Packed(q[3], xw.w),
            ) - sx;
            acc[i] += dot(q6k_scales(qw[i], sh), vec4<f32>(p) * dx);
        }
    }
    return acc;
}
