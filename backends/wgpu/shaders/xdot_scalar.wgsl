// The activation row, read a float at a time (float weights, whose rows may end inside
// a chunk, or x slices that are not 16-byte aligned).
@group(0) @binding(1) var<storage, read> x: array<f32>;

// A decoded chunk's dot with x[xo..xo + len]: a fixed trip count keeps the chunk in
// registers; past a row's end a lane reads a valid x and adds nothing.
fn chunk_dot(v: array<f32, 32>, xo: u32, len: u32) -> f32 {
    var s = 0.0;
    for (var e = 0u; e < 32u; e++) {
        s += select(0.0, v[e] * x[xo + min(e, len - 1u)], e < len);
    }
    return s;
}
