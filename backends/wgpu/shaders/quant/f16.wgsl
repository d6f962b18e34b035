// F16: 2 bytes an element (rows start at even offsets).
fn decode_chunk(row: u32, c: u32, k: u32) -> array<f32, 32> {
    var v: array<f32, 32>;
    for (var e = 0u; e < 32u; e++) {
        let i = c * 32u + e;
        if i < k {
            v[e] = wf16(row + 2u * i);
        }
    }
    return v;
}
