// Residual add and RMSNorm: out row = [a + b | norm(a + b) · (w + offset)].
// a and b are read with row strides and column offsets (slices read in place).
// params: 0 rows, 1 d, 2 eps, 3 offset, 4 groups_x, 5 a_stride, 6 a_off, 7 b_stride,
// 8 b_off.
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read> wt: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(NORM_THREADS)
fn main(@builtin(local_invocation_index) li: u32, @builtin(workgroup_id) wg: vec3<u32>) {
    let r = flat_group(wg, pu(4));
    if r >= pu(0) {
        return;
    }
    let d = pu(1);
    var s = 0.0;
    for (var i = li; i < d; i += NORM_THREADS) {
        let v = a[r * pu(5) + pu(6) + i] + b[r * pu(7) + pu(8) + i];
        out[r * 2u * d + i] = v;
        s += v * v;
    }
    let total = workgroup_sum(li, s);
    let inv = 1.0 / sqrt(total / f32(d) + pf(2));
    for (var i = li; i < d; i += NORM_THREADS) {
        let v = a[r * pu(5) + pu(6) + i] + b[r * pu(7) + pu(8) + i];
        out[r * 2u * d + d + i] = v * inv * (wt[i] + pf(3));
    }
}
