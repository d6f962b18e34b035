// One activation row quantised to 8 bits per 32 values for the integer-dot matvecs
// (activations int8; q8_block.wgsl), an invocation a vec4.
// params: 0 k, 1 x_off (the row's first float, a multiple of 4), 2 groups_x.
@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> q8: array<u32>;

@compute @workgroup_size(Q8_SLOTS)
fn main(@builtin(local_invocation_index) li: u32, @builtin(workgroup_id) wg: vec3<u32>) {
    let v = flat_group(wg, pu(2)) * Q8_SLOTS + li;
    let k = pu(0);
    // The workgroup is whole blocks, so an invocation past the row marks a block of its
    // own; the barrier stays in uniform control flow.
    let inside = v < k / 4u;
    var h = vec4<f32>(0.0);
    if inside {
        h = x[pu(1) / 4u + v];
    }
    q8_mark(li, h);
    workgroupBarrier();
    if inside {
        q8_store(li, v, h, k);
    }
}
