// Q4_K weights as the several-rows matvecs read them (matvec_rows.wgsl): a super-block is
// 9 words of 16 bytes, {f16 d, f16 dmin, u8 scales[12]} then qs[128].
@group(0) @binding(2) var<storage, read> w: array<vec4<u32>>;

const W_BYTES: u32 = 16u;
// The 6-bit scales and mins of sub-blocks 2p and 2p + 1 (p < 4), as (scale, min,
// scale, min). Sub-block j takes byte j % 4 of header words y, z, w: for j < 4 the low
// 6 bits of y's (scale) and z's (min); for j >= 4 the nibbles of w's with the top 2 bits
// of y's and z's. So both of a pair's are bytes 2(p % 2) and the next of the three words
// shifted alike, and no byte is picked by a lane-dependent index.
fn q4k_scales_mins(h: vec4<u32>, p: u32) -> vec4<f32> {
    let t = vec2<u32>(16u * (p % 2u), 16u * (p % 2u) + 8u);
    let y = vec2<u32>(h.y) >> t;
    let z = vec2<u32>(h.z) >> t;
    let v = vec2<u32>(h.w) >> t;
    var sc = y & vec2<u32>(63u);
    var mn = z & vec2<u32>(63u);
    if p >= 2u {
        sc = (v & vec2<u32>(15u)) | (((y >> vec2<u32>(6u)) & vec2<u32>(3u)) << vec2<u32>(4u));
        mn = ((v >> vec2<u32>(4u)) & vec2<u32>(15u))
            | (((z >> vec2<u32>(6u)) & vec2<u32>(3u)) << vec2<u32>(4u));
    }
    return vec4<f32>(vec4<u32>(sc.x, mn.x, sc.y, mn.y));
}

// The header word and qs word 1 + s of super-block sb of each of the R rows, all loaded
// before any is used.
struct Q4kWords {
    h: array<vec4<u32>, R>,
    q: array<vec4<u32>, R>,
}

fn q4k_words(rows: array<u32, R>, sb: u32, s: u32) -> Q4kWords {
    var r: Q4kWords;
    for (var i = 0u; i < R; i++) {
        r.h[i] = w[rows[i] + sb * 9u];
        r.q[i] = w[rows[i] + sb * 9u + 1u + s];
    }
    return r;
}
