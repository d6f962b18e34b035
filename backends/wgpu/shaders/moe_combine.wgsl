// out[r] = Σ_s wts[r, s] · y[r·k + s], the experts' outputs weighted, in slot order.
// params: 0 rows·d, 1 d, 2 top_k, 3 groups_x.
@group(0) @binding(1) var<storage, read> y: array<f32>;
@group(0) @binding(2) var<storage, read> wts: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(256)
fn main(@builtin(local_invocation_index) li: u32, @builtin(workgroup_id) wg: vec3<u32>) {
    let i = flat_group(wg, pu(3)) * 256u + li;
    if i >= pu(0) {
        return;
    }
    let d = pu(1);
    let k = pu(2);
    let r = i / d;
    let c = i % d;
    var s = 0.0;
    for (var j = 0u; j < k; j++) {
        s += wts[r * k + j] * y[(r * k + j) * d + c];
    }
    out[i] = s;
}
