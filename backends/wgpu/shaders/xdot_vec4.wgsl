// The activation row, read four floats a load (block-quantised weights: whole chunks;
// lowering checks that every x offset and stride is a multiple of 4).
@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;

// A decoded chunk's dot with x[xo..xo + 32].
fn chunk_dot(v: array<f32, 32>, xo: u32, len: u32) -> f32 {
    let b = xo / 4u;
    var s = 0.0;
    for (var i = 0u; i < 8u; i++) {
        let w = vec4<f32>(v[4u * i], v[4u * i + 1u], v[4u * i + 2u], v[4u * i + 3u]);
        s += dot(w, x[b + i]);
    }
    return s;
}
