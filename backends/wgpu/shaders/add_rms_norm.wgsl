// Residual add and RMSNorm: out row = [a + b | norm(a + b) · (w + offset)].
// a and b are read with row strides and column offsets (slices read in place).
// params: 0 rows, 1 d, 2 eps, 3 offset, 4 groups_x, 5 a_stride, 6 a_off, 7 b_stride,
// 8 b_off, 9 quantise (Q8 variant).
// Q8 variant (Q8_WIDTH > 0; activations int8): where param 9 is 1 (one row, d a multiple
// of 32 up to Q8_WIDTH) the normed half is also quantised into q8 (q8_block.wgsl) for the
// integer-dot matvecs that read it, with no dispatch of its own.
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read> wt: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;
@group(0) @binding(5) var<storage, read_write> q8: array<u32>;

const Q8_WIDTH: u32 = 0u;
// The normed row for the quantiser, one pad word after every 32 (block b at 33b), so
// the threads that each read a block hit distinct banks.
var<workgroup> hs: array<f32, max(Q8_WIDTH + Q8_WIDTH / 32u, 1u)>;

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
        // The weights load with the row (they are cold: the matvecs stream past the
        // cache), so their latency overlaps the row's and the sum's.
        var v: array<f32, NORM_KEEP>;
        var w: array<f32, NORM_KEEP>;
        var s = 0.0;
        for (var u = 0u; u < NORM_KEEP; u++) {
            let i = li + u * NORM_THREADS;
            if i < d {
                v[u] = a[ao + i] + b[bo + i];
                w[u] = wt[i];
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
        let q = Q8_WIDTH > 0u && pu(9) == 1u;
        for (var u = 0u; u < NORM_KEEP; u++) {
            let i = li + u * NORM_THREADS;
            if i < d {
                let h = v[u] * inv * (w[u] + pf(3));
                out[oo + d + i] = h;
                if q {
                    hs[i + i / 32u] = h;
                }
            }
        }
        if q {
            workgroupBarrier();
            for (var b = li; b < d / 32u; b += NORM_THREADS) {
                var blk: array<vec4<f32>, 8>;
                for (var e = 0u; e < 8u; e++) {
                    let i = 33u * b + 4u * e;
                    blk[e] = vec4<f32>(hs[i], hs[i + 1u], hs[i + 2u], hs[i + 3u]);
                }
                q8_block(blk, b, d);
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
