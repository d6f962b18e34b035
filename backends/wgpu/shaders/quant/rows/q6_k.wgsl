// R Q6_K rows' dots with x (matvec_rows.wgsl). A super-block is 210 bytes: ql[128], qh[64],
// i8 scales[16], f16 d; rows of an even number of super-blocks start 4-byte aligned, odd
// super-blocks 2 bytes past a word. Lane L takes super-blocks L / 16, L / 16 + LANES / 16, …, in
// each the 16 elements 128n + l + {0, 32, 64, 96} + 0..3 (n = s / 8, l = 4·(s % 8),
// s = L % 16): the low 4 bits are the nibbles of ql words 64n + l (elements +0, +64) and
// 64n + 32 + l (+32, +96), the top 2 bits are bit pairs of qh word 128 + 32n + l, and the
// scales are bytes l / 16 + {0, 2, 4, 6} of the eight at 192 + 8n.
// x = d·sc·(q − 32), so a sub-block adds d·sc·(Σq·x − 32·Σx).
@group(0) @binding(2) var<storage, read> w: array<u32>;

const W_BYTES: u32 = 4u;

// The u32 at an even byte offset (two words where it straddles them).
fn q6k_word(off: u32) -> u32 {
    let i = off / 4u;
    let lo = w[i];
    let hi = w[min(i + 1u, arrayLength(&w) - 1u)];
    return select(lo, (lo >> 16u) | (hi << 16u), (off & 2u) != 0u);
}

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
        var qa: array<u32, R>;
        var qb: array<u32, R>;
        var qh: array<u32, R>;
        var s0: array<u32, R>;
        var s1: array<u32, R>;
        var dd: array<u32, R>;
        for (var i = 0u; i < R; i++) {
            let b = rows[i] * 4u + sb * 210u;
            qa[i] = q6k_word(b + 64u * n + l);
            qb[i] = q6k_word(b + 64u * n + 32u + l);
            qh[i] = q6k_word(b + 128u + 32u * n + l);
            s0[i] = q6k_word(b + 192u + 8u * n);
            s1[i] = q6k_word(b + 196u + 8u * n);
            dd[i] = w[(b + 208u) / 4u] >> (8u * ((b + 208u) & 2u));
        }
        for (var i = 0u; i < R; i++) {
            let m = 0x0f0f0f0fu;
            let t = 0x03030303u;
            let p1 = q6k_part((qa[i] & m) | ((qh[i] & t) << 4u), x1);
            let p2 = q6k_part((qb[i] & m) | (((qh[i] >> 2u) & t) << 4u), x2);
            let p3 = q6k_part(((qa[i] >> 4u) & m) | (((qh[i] >> 4u) & t) << 4u), x3);
            let p4 = q6k_part(((qb[i] >> 4u) & m) | (((qh[i] >> 6u) & t) << 4u), x4);
            let sc = vec4<f32>(
                f32(i32(s0[i] << (24u - sh)) >> 24u),
                f32(i32(s0[i] << (8u - sh)) >> 24u),
                f32(i32(s1[i] << (24u - sh)) >> 24u),
                f32(i32(s1[i] << (8u - sh)) >> 24u),
            );
            let d = unpack2x16float(dd[i] & 0xffffu).x;
            let qx = vec4<f32>(p1.x, p2.x, p3.x, p4.x);
            let sx = vec4<f32>(p1.y, p2.y, p3.y, p4.y);
            acc[i] += d * dot(sc, qx - 32.0 * sx);
        }
    }
    return acc;
}
