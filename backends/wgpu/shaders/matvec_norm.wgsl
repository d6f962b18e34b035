// The several-rows matvec's norm epilogue (activations int8, one row): the matmul feeds
// an add_rms_norm alone, and this dispatch does that step's work, so it needs no
// dispatch of its own. Each workgroup stores its rows plus the residual's (`res` from
// word 14) into the norm's value ([a + b | norm(a + b) · (w + offset)], d = n wide);
// the last workgroup to finish (counted in `done`) reads the whole sum back, normalises
// it (eps word 15, offset word 16) and quantises it into x, whose row every workgroup
// has read by then (x is the q8 row buffer, read_write in this variant). The sums cross
// workgroups through atomics with device-scope barriers around the count: what WGSL
// offers for "the last workgroup sees every other's stores".
@group(0) @binding(3) var<storage, read_write> out: array<atomic<u32>>;
@group(0) @binding(5) var<storage, read> res: array<f32>;
@group(0) @binding(6) var<storage, read> nw: array<f32>;
@group(0) @binding(7) var<storage, read_write> done: atomic<u32>;

// Blocks of 32 a lane normalises: rows up to NORM_WIDTH wide.
const NORM_WIDTH: u32 = 4096u;
const NB: u32 = (NORM_WIDTH / 32u + LANES - 1u) / LANES;
var<workgroup> last: u32;
var<workgroup> sums: array<f32, LANES>;

fn store_row(i: u32, v: f32) {
    atomicStore(&out[i], bitcast<u32>(v + res[pu(14) + i]));
}

fn after_rows(lane: u32) {
    storageBarrier();
    if lane == 0u {
        last = u32(atomicAdd(&done, 1u) + 1u == pu(7));
    }
    if workgroupUniformLoad(&last) == 0u {
        return;
    }
    storageBarrier();
    let d = pu(2);
    // Lane l holds blocks l, l + LANES, …: all its loads are issued before the sum.
    var v: array<array<f32, 32>, NB>;
    var s = 0.0;
    for (var u = 0u; u < NB; u++) {
        let b = lane + u * LANES;
        if 32u * b < d {
            for (var c = 0u; c < 32u; c++) {
                v[u][c] = bitcast<f32>(atomicLoad(&out[32u * b + c]));
                s += v[u][c] * v[u][c];
            }
        }
    }
    sums[lane] = s;
    workgroupBarrier();
    for (var h = LANES / 2u; h > 0u; h = h / 2u) {
        if lane < h {
            sums[lane] += sums[lane + h];
        }
        workgroupBarrier();
    }
    let inv = 1.0 / sqrt(sums[0] / f32(d) + pf(15));
    // Each block quantised as quantize_q8.wgsl does: words 8b … 8b + 8 its values, word
    // d / 4 + b its scale (a NaN scale where the block holds a NaN).
    for (var u = 0u; u < NB; u++) {
        let b = lane + u * LANES;
        if 32u * b < d {
            var amax = 0.0;
            var nan = false;
            for (var c = 0u; c < 32u; c++) {
                let y = v[u][c] * inv * (nw[32u * b + c] + pf(16));
                v[u][c] = y;
                atomicStore(&out[d + 32u * b + c], bitcast<u32>(y));
                amax = max(amax, abs(y));
                nan = nan || y != y;
            }
            let id = select(0.0, 127.0 / amax, amax > 0.0);
            for (var w = 0u; w < 8u; w++) {
                let h = vec4<f32>(v[u][4u * w], v[u][4u * w + 1u], v[u][4u * w + 2u], v[u][4u * w + 3u]);
                let q = clamp(round(h * id), vec4<f32>(-127.0), vec4<f32>(127.0));
                let word = 8u * b + w;
                x[word / 4u][word % 4u] = pack4xI8(vec4<i32>(q));
            }
            let sw = d / 4u + b;
            x[sw / 4u][sw % 4u] = select(bitcast<u32>(amax / 127.0), 0x7fc00000u, nan);
        }
    }
    if lane == 0u {
        atomicStore(&done, 0u);
    }
}
