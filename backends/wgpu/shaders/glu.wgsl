// act(gate) · up over rows of [gate | up] (2f wide) → f wide.
// params: 0 rows·f, 1 f, 2 act (0 silu, 1 gelu), 3 groups_x.
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(256)
fn main(@builtin(local_invocation_index) li: u32, @builtin(workgroup_id) wg: vec3<u32>) {
    let i = flat_group(wg, pu(3)) * 256u + li;
    if i >= pu(0) {
        return;
    }
    let f = pu(1);
    let r = i / f;
    let c = i % f;
    let g = x[r * 2u * f + c];
    out[i] = glu_act(g, pu(2)) * x[r * 2u * f + f + c];
}
