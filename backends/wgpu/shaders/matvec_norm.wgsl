// The several-rows matvec's norm epilogue (activations int8, one row): the matmul feeds
// an add_rms_norm alone, whose normed half only int8 matvecs read, and this dispatch does
// that step's work, so it needs no dispatch of its own. Each workgroup stores its rows
// plus the residual's (`res` from word 14): the first half, s = a + b, of the norm's
// value (d = n wide). The workgroup that completes a block of 32 rows (a count a block
// in `done`) quantises s · (w + offset) (offset word 16) over it into `q8` (a q8 row
// buffer other than x, which other workgroups may still be reading): the values round
// as those of norm(s) · (w + offset) do, for 1 / rms(s) > 0 scales them all; it keeps
// the block's Σ s² and max / 127. The last block to finish adds the sums
// into 1 / rms(s) (eps word 15) and writes each block's scale. The f32 normed half is
// not written. Values cross workgroups through atomics with device-scope barriers around
// the counts: what WGSL offers for "the last one sees every other's stores".
@group(0) @binding(3) var<storage, read_write> out: array<atomic<u32>>;
@group(0) @binding(5) var<storage, read> res: array<f32>;
@group(0) @binding(6) var<storage, read> nw: array<f32>;
// Words: each block's count, then the finished blocks' count, then each block's Σ s²,
// then its max|s · (w + offset)| / 127 (f32 bits, −1 for a block holding a NaN). The
// last block sets every count back to 0.
@group(0) @binding(7) var<storage, read_write> done: array<atomic<u32>>;
@group(0) @binding(8) var<storage, read_write> q8: array<u32>;

// Rows up to NORM_WIDTH wide: blocks of 32 rows.
const NORM_WIDTH: u32 = 4096u;
const NORM_BLOCKS: u32 = NORM_WIDTH / 32u;
const SUMS: u32 = NORM_BLOCKS + 1u;
const MAXES: u32 = 2u * NORM_BLOCKS + 1u;
var<workgroup> flag: u32;
// A block's quantised values. Its 32 squares and magnitudes (−1: NaN), and the last
// block's lanes' sums, go through the matvec's `partial` (R · LANES ≥ 64 floats), free
// once its rows are stored.
var<workgroup> qs: array<i32, 32>;

fn store_row(i: u32, v: f32) {
    atomicStore(&out[i], bitcast<u32>(v + res[pu(14) + i]));
}

fn after_rows(lane: u32, wg: vec3<u32>) {
    let d = pu(2);
    let b = wg.x * R / 32u;
    storageBarrier();
    if lane == 0u {
        flag = u32(atomicAdd(&done[b], R) + R == 32u);
    }
    if workgroupUniformLoad(&flag) == 0u {
        return;
    }
    storageBarrier();
    // Block b is whole: lane l < 32 takes its value l.
    var y = 0.0;
    if lane < 32u {
        let s = bitcast<f32>(atomicLoad(&out[32u * b + lane]));
        y = s * (nw[32u * b + lane] + pf(16));
        partial[lane] = s * s;
        partial[32u + lane] = select(abs(y), -1.0, y != y);
    }
    workgroupBarrier();
    for (var h = 16u; h > 0u; h = h / 2u) {
        if lane < h {
            partial[lane] += partial[lane + h];
            let m0 = partial[32u + lane];
            let m1 = partial[32u + lane + h];
            partial[32u + lane] = select(max(m0, m1), -1.0, m0 < 0.0 || m1 < 0.0);
        }
        workgroupBarrier();
    }
    let amax = partial[32u];
    if lane < 32u {
        let id = select(0.0, 127.0 / amax, amax > 0.0);
        qs[lane] = i32(clamp(round(y * id), -127.0, 127.0));
    }
    workgroupBarrier();
    if lane < 8u {
        let q = vec4<i32>(qs[4u * lane], qs[4u * lane + 1u], qs[4u * lane + 2u], qs[4u * lane + 3u]);
        q8[8u * b + lane] = pack4xI8(q);
    }
    if lane == 0u {
        atomicStore(&done[SUMS + b], bitcast<u32>(partial[0]));
        atomicStore(&done[MAXES + b], bitcast<u32>(select(amax / 127.0, -1.0, amax < 0.0)));
    }
    storageBarrier();
    if lane == 0u {
        flag = u32(atomicAdd(&done[NORM_BLOCKS], 1u) + 1u == d / 32u);
    }
    if workgroupUniformLoad(&flag) == 0u {
        return;
    }
    storageBarrier();
    // The last block: 1 / rms(s) from every block's sum, then each block's scale.
    var ss = 0.0;
    for (var c = lane; c < d / 32u; c += LANES) {
        ss += bitcast<f32>(atomicLoad(&done[SUMS + c]));
    }
    partial[lane] = ss;
    workgroupBarrier();
    for (var h = LANES / 2u; h > 0u; h = h / 2u) {
        if lane < h {
            partial[lane] += partial[lane + h];
        }
        workgroupBarrier();
    }
    let inv = 1.0 / sqrt(partial[0] / f32(d) + pf(15));
    for (var c = lane; c < d / 32u; c += LANES) {
        let m = bitcast<f32>(atomicLoad(&done[MAXES + c]));
        q8[d / 4u + c] = select(bitcast<u32>(m * inv), 0x7fc00000u, m < 0.0);
        atomicStore(&done[c], 0u);
    }
    if lane == 0u {
        atomicStore(&done[NORM_BLOCKS], 0u);
    }
}
