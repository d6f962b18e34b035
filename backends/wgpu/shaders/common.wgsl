// Prepended to every kernel: the step's parameters, twenty 32-bit words written by the
// host before each forward call (sizes that depend on the call: rows, positions).
struct Params {
    v: array<vec4<u32>, 5>,
}

@group(0) @binding(0) var<uniform> params: Params;

fn pu(i: u32) -> u32 {
    return params.v[i / 4u][i % 4u];
}

fn pf(i: u32) -> f32 {
    return bitcast<f32>(pu(i));
}

// The flat index of a workgroup in a dispatch spread over x and y (x is capped by the
// device's per-dimension limit).
fn flat_group(wg: vec3<u32>, groups_x: u32) -> u32 {
    return wg.y * groups_x + wg.x;
}
