// Many activation rows quantised to 8 bits per 32 values for the integer-dot GEMM
// (gemm_i8.wgsl, activations int8), a thread a block, with q8_block.wgsl's rounding:
// d = max|x| / 127, q = round(x / d). Row r's block b: its packed values at words
// r · k/4 + 8b.. of `q8`, and (d, d · Σq) at r · k/32 + b of `q8s` (a block holding a
// NaN gets a NaN scale, so the NaN reaches the GEMM's output).
// params: 0 m, 1 k, 2 x_stride, 3 x_off, 4 groups_x.
@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> q8: array<vec4<u32>>;
@group(0) @binding(3) var<storage, read_write> q8s: array<vec2<f32>>;

@compute @workgroup_size(64)
fn main(@builtin(local_invocation_index) li: u32, @builtin(workgroup_id) wg: vec3<u32>) {
    let e = flat_group(wg, pu(4)) * 64u + li;
    let k = pu(1);
    let nb = k / 32u;
    if e >= pu(0) * nb {
        return;
    }
    let r = e / nb;
    let b = e % nb;
    let x0 = (r * pu(2) + pu(3)) / 4u + b * 8u;
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
    var sum = vec4<f32>(0.0);
    var p: array<u32, 8>;
    for (var i = 0u; i < 8u; i++) {
        let q = clamp(round(v[i] * id), vec4<f32>(-127.0), vec4<f32>(127.0));
        sum += q;
        p[i] = pack4xI8(vec4<i32>(q));
    }
    let o = (r * k) / 16u + 2u * b;
    q8[o] = vec4<u32>(p[0], p[1], p[2], p[3]);
    q8[o + 1u] = vec4<u32>(p[4], p[5], p[6], p[7]);
    let d = select(amax / 127.0, bitcast<f32>(0x7fc00000u), nan);
    q8s[r * nb + b] = vec2<f32>(d, d * (sum.x + sum.y + sum.z + sum.w));
}
