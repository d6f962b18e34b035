// Q4_K weights as the several-rows matvecs read them (matvec_rows.wgsl): a super-block is
// 9 words of 16 bytes, {f16 d, f16 dmin, u8 scales[12]} then qs[128].
@group(0) @binding(2) var<storage, read> w: array<vec4<u32>>;

const W_BYTES: u32 = 16u;
// Byte i of the 12 scale bytes (words y, z, w of the header).
fn q4k_byte(h: vec4<u32>, i: u32) -> u32 {
    return (h[1u + i / 4u] >> (8u * (i % 4u))) & 0xffu;
}

// The 6-bit scale and min of sub-block j: for j < 4 the low 6 bits of bytes j and j + 4;
// for j >= 4 the nibbles of byte j + 4 with the top 2 bits of bytes j − 4 and j.
fn q4k_scale_min(h: vec4<u32>, j: u32) -> vec2<f32> {
    let lo = vec2<u32>(q4k_byte(h, j) & 63u, q4k_byte(h, j + 4u) & 63u);
    let b = q4k_byte(h, (j + 4u) % 12u);
    let hi = vec2<u32>(
        (b & 0xfu) | ((q4k_byte(h, j & 3u) >> 6u) << 4u),
        (b >> 4u) | ((q4k_byte(h, j) >> 6u) << 4u),
    );
    return vec2<f32>(select(hi, lo, j < 4u));
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
