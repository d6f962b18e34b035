// Byte-addressed reads of `w`, a weight in its stored blocks (bound as array<u32> by the
// kernel that includes this). Blocks are not 4-byte aligned (Q4_0 is 18 bytes), so
// every field is read by byte offset.

fn wbyte(off: u32) -> u32 {
    return (w[off >> 2u] >> ((off & 3u) * 8u)) & 0xffu;
}

// A little-endian u16 at an even offset.
fn wu16(off: u32) -> u32 {
    return (w[off >> 2u] >> ((off & 2u) * 8u)) & 0xffffu;
}

fn wf16(off: u32) -> f32 {
    return unpack2x16float(wu16(off)).x;
}

// A little-endian u32 at any offset.
fn wu32(off: u32) -> u32 {
    let s = (off & 3u) * 8u;
    let lo = w[off >> 2u];
    if s == 0u {
        return lo;
    }
    return (lo >> s) | (w[(off >> 2u) + 1u] << (32u - s));
}

// Q4_K and Q5_K: the 6-bit scale and min of sub-block j, packed in the 12 bytes at s:
// for j < 4 the low 6 bits of bytes j and j + 4; for j >= 4 the nibbles of byte j + 4
// with the top 2 bits of bytes j − 4 and j.
fn k_scale_min(s: u32, j: u32) -> vec2<u32> {
    if j < 4u {
        return vec2<u32>(wbyte(s + j) & 63u, wbyte(s + j + 4u) & 63u);
    }
    let x = wbyte(s + j + 4u);
    return vec2<u32>(
        (x & 0xfu) | ((wbyte(s + j - 4u) >> 6u) << 4u),
        (x >> 4u) | ((wbyte(s + j) >> 6u) << 4u),
    );
}
