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
    // As add_rms_norm.wgsl: a group up to NORM_THREADS · NORM_KEEP wide is loaded once,
    // all at once.
    if n <= NORM_THREADS * NORM_KEEP {
        var v: array<f32, NORM_KEEP>;
        var s = 0.0;
        for (var u = 0u; u < NORM_KEEP; u++) {
            let i = li + u * NORM_THREADS;
            if i < n {
                v[u] = x[base + i];
            }
        }
        for (var u = 0u; u < NORM_KEEP; u++) {
            s += v[u] * v[u];
        }
        let r = 1.0 / sqrt(workgroup_sum(li, s) / f32(n) + pf(2));
        for (var u = 0u; u < NORM_KEEP; u++) {
            let i = li + u * NORM_THREADS;
            if i < n {
                out[base + i] = v[u] * r * scale(i);
            }
        }
        return;
    }
    var s = 0.0;
    for (var i = li; i < n; i += NORM_THREADS) {
        let v = x[base + i];
        s += v * v;
    }
    let r = 1.0 / sqrt(workgroup_sum(li, s) / f32(n) + pf(2));
    for (var i = li; i < n; i += NORM_THREADS) {
        out[base + i] = x[base + i] * r * scale(i);
    }
}

// The weight factor of element i (1 without a weight).
fn scale(i: u32) -> f32 {
    if pu(4) != 0u {
        return wt[i] + pf(3);
    }
    return 1.0;
}
