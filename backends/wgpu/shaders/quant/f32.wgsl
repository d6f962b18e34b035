// F32: 4 bytes an element. Chunk `c` of a row starting at byte `row` holds elements
// 32c..32c+31; those at or past `k` read as 0.
fn decode_chunk(row: u32, c: u32, k: u32) -> array<f32, 32> {
    var v: array<f32, 32>;
    for (var e = 0u; e < 32u; e++) {
        let i = c * 32u + e;
        if i < k {
            v[e] = bitcast<f32>(w[(row >> 2u) + i]);
        }
    }
    return v;
}
