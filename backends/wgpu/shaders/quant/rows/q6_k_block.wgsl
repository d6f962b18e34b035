// Q6_K weights as the several-rows matvecs read them (matvec_rows.wgsl): a super-block is
// 210 bytes, ql[128], qh[64], i8 scales[16], f16 d; rows of an even number of super-blocks
// start 4-byte aligned, odd super-blocks 2 bytes past a word.
@group(0) @binding(2) var<storage, read> w: array<u32>;

const W_BYTES: u32 = 4u;

// The u32 at an even byte offset (two words where it straddles them).
fn q6k_word(off: u32) -> u32 {
    let i = off / 4u;
    let lo = w[i];
    let hi = w[min(i + 1u, arrayLength(&w) - 1u)];
    return select(lo, (lo >> 16u) | (hi << 16u), (off & 2u) != 0u);
}

// The two words at even byte offset `off` of the weight.
fn q6k_pair(off: u32) -> vec2<u32> {
    let i = off / 4u;
    let a = w[i];
    let b = w[i + 1u];
    let c = w[min(i + 2u, arrayLength(&w) - 1u)];
    let shifted = vec2<u32>((a >> 16u) | (b << 16u), (b >> 16u) | (c << 16u));
    return select(vec2<u32>(a, b), shifted, (off & 2u) != 0u);
}

// Lane words of a super-block at byte b (see the rows_dot files for which elements): ql
// words 64n + l and 64n + 32 + l, qh word 128 + 32n + l, the scale words 192 + 8n and
// 196 + 8n, and the word holding d in its low half.
fn q6k_words(b: u32, n: u32, l: u32) -> array<u32, 6> {
    return array<u32, 6>(
        q6k_word(b + 64u * n + l),
        q6k_word(b + 64u * n + 32u + l),
        q6k_word(b + 128u + 32u * n + l),
        q6k_word(b + 192u + 8u * n),
        q6k_word(b + 196u + 8u * n),
        w[(b + 208u) / 4u] >> (8u * ((b + 208u) & 2u)),
    );
}

// The 6-bit values of the lane's elements +0, +32, +64, +96 (4 each, a byte a value).
fn q6k_values(q: array<u32, 6>) -> array<u32, 4> {
    let m = 0x0f0f0f0fu;
    let t = 0x03030303u;
    return array<u32, 4>(
        (q[0] & m) | ((q[2] & t) << 4u),
        (q[1] & m) | (((q[2] >> 2u) & t) << 4u),
        ((q[0] >> 4u) & m) | (((q[2] >> 4u) & t) << 4u),
        ((q[1] >> 4u) & m) | (((q[2] >> 6u) & t) << 4u),
    );
}

// The four sub-block scales of a lane's elements (signed bytes at byte shift sh of the
// scale words s0 and s1, bytes 0, 2 of each) times d (the low half of word dw).
fn q6k_scales(s0: u32, s1: u32, dw: u32, sh: u32) -> vec4<f32> {
    return vec4<f32>(
        f32(i32(s0 << (24u - sh)) >> 24u),
        f32(i32(s0 << (8u - sh)) >> 24u),
        f32(i32(s1 << (24u - sh)) >> 24u),
        f32(i32(s1 << (8u - sh)) >> 24u),
    ) * unpack2x16float(dw & 0xffffu).x;
}
