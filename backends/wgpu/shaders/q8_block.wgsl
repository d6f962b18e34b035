// Block b of a row quantised to 8 bits (activations int8), as the CPU's Q8 rows:
// d = max|x| / 127, q = round(x / d) in −127..=127, into `q8` (which the kernel declares):
// words 8b..8b + 8 hold the packed values, word k/4 + b the scale (f32 bits). A block
// holding a NaN gets a NaN scale, so the NaN reaches the matvec's output.
fn q8_block(v: array<vec4<f32>, 8>, b: u32, k: u32) {
    var amax = 0.0;
    var nan = false;
    for (var i = 0u; i < 8u; i++) {
        let a = abs(v[i]);
        amax = max(amax, max(max(a.x, a.y), max(a.z, a.w)));
        nan = nan || any(v[i] != v[i]);
    }
    let id = select(0.0, 127.0 / amax, amax > 0.0);
    for (var i = 0u; i < 8u; i++) {
        let q = clamp(round(v[i] * id), vec4<f32>(-127.0), vec4<f32>(127.0));
        q8[b * 8u + i] = pack4xI8(vec4<i32>(q));
    }
    q8[k / 4u + b] = select(bitcast<u32>(amax / 127.0), 0x7fc00000u, nan);
}
