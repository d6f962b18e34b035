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
    let ao = r * pu(5) + pu(6);
    let bo = r * pu(7) + pu(8);
    let oo = r * 2u * d;
    // Rows up to NORM_THREADS · NORM_KEEP wide: each thread loads its values at once (a
    // loop of constant length) and keeps them, so the row is read once and its loads
    // are in flight together rather than one after another.
    if d <= NORM_THREADS * NORM_KEEP {
        var v: array<f32, NORM_KEEP>;
        var s = 0.0;
        for (var u = 0u; u < NORM_KEEP; u++) {
            let i = li + u * NORM_THREADS;
            if i < d {
                v[u] = a[ao + i] + b[bo + i];
            }
        }
        for (var u = 0u; u < NORM_KEEP; u++) {
            let i = li + u * NORM_THREADS;
            if i < d {
                out[oo + i] = v[u];
                s += v[u] * v[u];
            }
        }
        let inv = 1.0 / sqrt(workgroup_sum(li, s) / f32(d) + pf(2));
        for (var u = 0u; u < NORM_KEEP; u++) {
            let i = li + u * NORM_THREADS;
            if i < d {
                out[oo + d + i] = v[u] * inv * (wt[i] + pf(3));
            }
        }
        return;
    }
    var s = 0.0;
    for (var i = li; i < d; i += NORM_THREADS) {
        let v = a[ao + i] + b[bo + i];
        out[oo + i] = v;
        s += v * v;
    }
    let inv = 1.0 / sqrt(workgroup_sum(li, s) / f32(d) + pf(2));
    for (var i = li; i < d; i += NORM_THREADS) {
        out[oo + d + i] = (a[ao + i] + b[bo + i]) * inv * (wt[i] + pf(3));
    }
}
