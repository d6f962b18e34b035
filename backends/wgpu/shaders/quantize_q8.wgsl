// One activation row quantised to 8 bits per 32 values for the integer-dot matvecs
// (activations int8), as the CPU's Q8 rows: d = max|x| / 127, q = round(x / d) in
// −127..=127. Out: the k/4 words of packed values, then the k/32 scales (f32 bits). A
// block holding a NaN gets a NaN scale, so the NaN reaches the matvec's output.
// params: 0 k, 1 x_off (the row's first float, a multiple of 4), 2 groups_x.
@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> q8: array<u32>;

@compute @workgroup_size(64)
fn main(@builtin(local_invocation_index) li: u32, @builtin(workgroup_id) wg: vec3<u32>) {
    let b = flat_group(wg, pu(2)) * 64u + li;
    let k = pu(0);
    if b >= k / 32u {
        return;
    }
    let x0 = pu(1) / 4u + b * 8u;
    var v: array<vec4<f32>, 8>;
    var amax = 0.0;
    var nan = false;
    for (var i = 0u; i < 8u; i++) {
        v[i] = x[x0 + i];
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
