// (x − mean) / sqrt(var + eps) · w + b over rows of d; one workgroup a row.
// params: 0 rows, 1 d, 2 eps, 3 groups_x.
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> wt: array<f32>;
@group(0) @binding(3) var<storage, read> bs: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(NORM_THREADS)
fn main(@builtin(local_invocation_index) li: u32, @builtin(workgroup_id) wg: vec3<u32>) {
    let r = flat_group(wg, pu(3));
    if r >= pu(0) {
        return;
    }
    let d = pu(1);
    let base = r * d;
    var s = 0.0;
    for (var i = li; i < d; i += NORM_THREADS) {
        s += x[base + i];
    }
    let mean = workgroup_sum(li, s) / f32(d);
    var q = 0.0;
    for (var i = li; i < d; i += NORM_THREADS) {
        let c = x[base + i] - mean;
        q += c * c;
    }
    let inv = 1.0 / sqrt(workgroup_sum(li, q) / f32(d) + pf(2));
    for (var i = li; i < d; i += NORM_THREADS) {
        out[base + i] = (x[base + i] - mean) * inv * wt[i] + bs[i];
    }
}
