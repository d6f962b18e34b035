// A row's dot with x by chunks, for any stored type: lane `lane` of LANES takes every LANES-th
// 32-element chunk, decoded into registers and dotted with x. Returns its part.
fn row_dot(row: u32, k: u32, x0: u32, lane: u32) -> f32 {
    var acc = 0.0;
    for (var c = lane; c < (k + 31u) / 32u; c += LANES) {
        let len = min(32u, k - c * 32u);
        acc += chunk_dot(decode_chunk(row, c, k), x0 + c * 32u, len);
    }
    return acc;
}
