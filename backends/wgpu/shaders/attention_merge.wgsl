// The chunks of a split attention (attention.wgsl) added up: one workgroup a (query row,
// head), each chunk's (max, sum, Σ weight · v) rescaled to the largest max.
// params: 0 rows · heads, 1 head_dim, 2 chunks, 3 groups_x, 4 quantise (1: one row; the
// output also goes into q8, q8_out.wgsl).
@group(0) @binding(1) var<storage, read> part: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<storage, read_write> q8: array<u32>;

@compute @workgroup_size(64)
fn main(@builtin(local_invocation_index) li: u32, @builtin(workgroup_id) wg: vec3<u32>) {
    let th = flat_group(wg, pu(3));
    if th >= pu(0) {
        return;
    }
    let hd = pu(1);
    let n = pu(2);
    let stride = hd + 2u;
    let base = th * n * stride;
    var mx = -3.4e38;
    for (var c = 0u; c < n; c++) {
        mx = max(mx, part[base + c * stride]);
    }
    var l = 0.0;
    for (var c = 0u; c < n; c++) {
        l += exp(part[base + c * stride] - mx) * part[base + c * stride + 1u];
    }
    for (var d = li; d < hd; d += 64u) {
        var a = 0.0;
        for (var c = 0u; c < n; c++) {
            a += exp(part[base + c * stride] - mx) * part[base + c * stride + 2u + d];
        }
        out[th * hd + d] = a / l;
    }
    if pu(4) == 1u {
        q8_from_out(li, th * hd / 4u, hd / 4u, pu(0) * hd);
    }
}
