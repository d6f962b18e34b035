// One activation row quantised to 8 bits per 32 values for the integer-dot matvecs
// (activations int8; q8_block.wgsl), a thread a block.
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
    for (var i = 0u; i < 8u; i++) {
        v[i] = x[x0 + i];
    }
    q8_block(v, b, k);
}
