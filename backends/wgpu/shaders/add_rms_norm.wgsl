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
// Four values a slot: thread li holds values 4(li + u · NORM_THREADS) + c, c < 4, so
// that a q8 block is eight neighbouring threads' slots (q8_block.wgsl).
const V4: u32 = max(NORM_KEEP / 4u, 1u);

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
    // Rows up to NORM_THREADS · 4 · V4 wide: each thread loads its values at once (a
    // loop of constant length) and keeps them, so the row is read once and its loads
    // are in flight together rather than one after another.
    if d <= NORM_THREADS * 4u * V4 {
        // The weights load with the row (they are cold: the matvecs stream past the
        // cache), so their latency overlaps the row's and the sum's.
        var v: array<vec4<f32>, V4>;
        var w: array<vec4<f32>, V4>;
        var s = 0.0;
        for (var u = 0u; u < V4; u++) {
            for (var c = 0u; c < 4u; c++) {
                let i = 4u * (li + u * NORM_THREADS) + c;
                if i < d {
                    v[u][c] = a[ao + i] + b[bo + i];
                    w[u][c] = wt[i];
                }
            }
        }
        for (var u = 0u; u < V4; u++) {
            for (var c = 0u; c < 4u; c++) {
                let i = 4u * (li + u * NORM_THREADS) + c;
                if i < d {
                    out[oo + i] = v[u][c];
                    s += v[u][c] * v[u][c];
                }
            }
        }
        let inv = 1.0 / sqrt(workgroup_sum(li, s) / f32(d) + pf(2));
        // The Q8 variant quantises slot j = li + u · NORM_THREADS, whole blocks, so a
        // slot past the row is never read.
        let q = Q8_WIDTH > 0u && pu(9) == 1u;
        for (var u = 0u; u < V4; u++) {
            v[u] = v[u] * inv * (w[u] + pf(3));
            for (var c = 0u; c < 4u; c++) {
                let i = 4u * (li + u * NORM_THREADS) + c;
                if i < d {
                    out[oo + d + i] = v[u][c];
                }
            }
            let j = li + u * NORM_THREADS;
            if q && 4u * j < d {
                q8_mark(j, v[u]);
            }
        }
        if q {
            workgroupBarrier();
            for (var u = 0u; u < V4; u++) {
                let j = li + u * NORM_THREADS;
                if 4u * j < d {
                    q8_store(j, j, v[u], d);
                }
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
