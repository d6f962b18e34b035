// R Q4_K rows' dots with f32 x (matvec_rows.wgsl; the block's words in q4_k_block.wgsl).
// Lane L takes word 1 + s (s = L % 8) of super-blocks L / 8, L / 8 + LANES / 8, …: qs bytes
// 16s.. hold elements l..l + 15 (l = 16·(s % 2)) of sub-blocks 2·(s / 2) (low nibbles) and
// 2·(s / 2) + 1 (high nibbles). Σ(dl·q − ml)·x = dl·Σq·x − ml·Σx per sub-block.
fn nib_dot(q: vec4<u32>, shift: u32, x0: vec4<f32>, x1: vec4<f32>, x2: vec4<f32>, x3: vec4<f32>) -> f32 {
    let m = 0x0f0f0f0fu;
    return dot(vec4<f32>(unpack4xU8((q.x >> shift) & m)), x0)
        + dot(vec4<f32>(unpack4xU8((q.y >> shift) & m)), x1)
        + dot(vec4<f32>(unpack4xU8((q.z >> shift) & m)), x2)
        + dot(vec4<f32>(unpack4xU8((q.w >> shift) & m)), x3);
}

fn rows_dot(rows: array<u32, R>, k: u32, x0: u32, lane: u32) -> array<f32, R> {
    let s = lane % 8u;
    let j = 2u * (s / 2u);
    let l = 16u * (s % 2u);
    var acc: array<f32, R>;
    for (var sb = lane / 8u; sb < k / 256u; sb += LANES / 8u) {
        let xb = (x0 + sb * 256u + 32u * j + l) / 4u;
        let xl0 = x[xb];
        let xl1 = x[xb + 1u];
        let xl2 = x[xb + 2u];
        let xl3 = x[xb + 3u];
        let xh0 = x[xb + 8u];
        let xh1 = x[xb + 9u];
        let xh2 = x[xb + 10u];
        let xh3 = x[xb + 11u];
        let one = vec4<f32>(1.0);
        let sl = dot(xl0 + xl1 + xl2 + xl3, one);
        let sh = dot(xh0 + xh1 + xh2 + xh3, one);
        let ws = q4k_words(rows, sb, s);
        let hs = ws.h;
        let qs = ws.q;
        for (var i = 0u; i < R; i++) {
            let dm = unpack2x16float(hs[i].x);
            let sm = q4k_scales_mins(hs[i], s / 2u);
            let dl = nib_dot(qs[i], 0u, xl0, xl1, xl2, xl3);
            let dh = nib_dot(qs[i], 4u, xh0, xh1, xh2, xh3);
            acc[i] += dm.x * (sm.x * dl + sm.z * dh) - dm.y * (sm.y * sl + sm.w * sh);
        }
    }
    return acc;
}
