// R Q6_K rows' dots with f32 x (matvec_rows.wgsl; the block's words in q6_k_block.wgsl).
// Lane L takes super-blocks L / 16, L / 16 + LANES / 16, …, in
// each the 16 elements 128n + l + {0, 32, 64, 96} + 0..3 (n = s / 8, l = 4·(s % 8),
// s = L % 16): the low 4 bits are the nibbles of ql words 64n + l (elements +0, +64) and
// 64n + 32 + l (+32, +96), the top 2 bits are bit pairs of qh word 128 + 32n + l, and the
// scales are bytes l / 16 + {0, 2, 4, 6} of the eight at 192 + 8n.
// x = d·sc·(q − 32), so a sub-block adds d·sc·(Σq·x − 32·Σx).
fn q6k_part(q: u32, x: vec4<f32>) -> vec2<f32> {
    return vec2<f32>(dot(vec4<f32>(unpack4xU8(q)), x), dot(x, vec4<f32>(1.0)));
}

fn rows_dot(rows: array<u32, R>, k: u32, x0: u32, lane: u32) -> array<f32, R> {
    let s = lane % 16u;
    let n = s / 8u;
    let l = 4u * (s % 8u);
    // Byte shift of this lane's scales within their words.
    let sh = 8u * (l / 16u);
    var acc: array<f32, R>;
    for (var sb = lane / 16u; sb < k / 256u; sb += LANES / 16u) {
        let xb = (x0 + sb * 256u + 128u * n + l) / 4u;
        let x1 = x[xb];
        let x2 = x[xb + 8u];
        let x3 = x[xb + 16u];
        let x4 = x[xb + 24u];
        var qw: array<array<u32, 6>, R>;
        for (var i = 0u; i < R; i++) {
            qw[i] = q6k_words(rows[i] * 4u + sb * 210u, n, l);
        }
        for (var i = 0u; i < R; i++) {
            let q = q6k_values(qw[i]);
            let p1 = q6k_part(q[0], x1);
            let p2 = q6k_part(q[1], x2);
            let p3 = q6k_part(q[2], x3);
            let p4 = q6k_part(q[3], x4);
            let qx = vec4<f32>(p1.x, p2.x, p3.x, p4.x);
            let sx = vec4<f32>(p1.y, p2.y, p3.y, p4.y);
            acc[i] += dot(q6k_scales(qw[i][3], qw[i][4], qw[i][5], sh), qx - 32.0 * sx);
        }
    }
    return acc;
}
