// x / rms(x) · (w + offset) over groups of `group` values; one workgroup a group.
// params: 0 groups, 1 group, 2 eps, 3 offset, 4 has_w, 5 groups_x.
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> wt: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(NORM_THREADS)
fn main(@builtin(local_invocation_index) li: u32, @builtin(workgroup_id) wg: vec3<u32>) {
    let g = flat_group(wg, pu(5));
    if g >= pu(0) {
        return;
    }
    let n = pu(1);
    let base = g * n;
    var s = 0.0;
    for (var i = li; i < n; i += NORM_THREADS) {
        let v = x[base + i];
        s += v * v;
    }
    let total = workgroup_sum(li, s);
    let r = 1.0 / sqrt(total / f32(n) + pf(2));
    for (var i = li; i < n; i += NORM_THREADS) {
        var scale = 1.0;
        if pu(4) != 0u {
            scale = wt[i] + pf(3);
        }
        out[base + i] = x[base + i] * r * scale;
    }
}
