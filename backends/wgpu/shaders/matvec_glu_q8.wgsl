// The several-rows matvec's q8 epilogue (activations int8, one row, with the GLU
// epilogue): the GLU's output is read by int8 matvecs, and this dispatch quantises it
// (q8_block.wgsl's format: words 8b.. the packed values of block b, word f / 4 + b its
// scale) into `q8`, a buffer other than x, so that no quantize_q8 dispatch runs. Each
// workgroup stores its R / 2 values; the one that completes a block of 32 (a count a
// block in `done`, from word DONE0, past the norm epilogue's) quantises it and sets the
// count back to 0. Values cross workgroups through atomics with device-scope barriers
// around the counts, as in matvec_norm.wgsl.
@group(0) @binding(3) var<storage, read_write> out: array<atomic<u32>>;
@group(0) @binding(5) var<storage, read_write> done: array<atomic<u32>>;
@group(0) @binding(6) var<storage, read_write> q8: array<u32>;

const DONE0: u32 = 0u;
var<workgroup> flag: u32;
var<workgroup> qs: array<i32, 32>;

fn store_row(i: u32, v: f32) {
    atomicStore(&out[i], bitcast<u32>(v));
}

fn after_rows(lane: u32, wg: vec3<u32>) {
    let h = R / 2u;
    let f = pu(2) / 2u;
    let b = wg.x * h / 32u;
    storageBarrier();
    if lane == 0u {
        flag = u32(atomicAdd(&done[DONE0 + b], h) + h == 32u);
    }
    if workgroupUniformLoad(&flag) == 0u {
        return;
    }
    storageBarrier();
    // Block b is whole: lane l < 32 takes its value l; the magnitudes (−1: NaN) go
    // through the matvec's `partial` (R · LANES ≥ 64 floats), free once its rows are
    // stored.
    var y = 0.0;
    if lane < 32u {
        y = bitcast<f32>(atomicLoad(&out[pu(4) + 32u * b + lane]));
        partial[lane] = select(abs(y), -1.0, y != y);
    }
    workgroupBarrier();
    for (var s = 16u; s > 0u; s = s / 2u) {
        if lane < s {
            let m0 = partial[lane];
            let m1 = partial[lane + s];
            partial[lane] = select(max(m0, m1), -1.0, m0 < 0.0 || m1 < 0.0);
        }
        workgroupBarrier();
    }
    let amax = partial[0];
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
        q8[f / 4u + b] = select(bitcast<u32>(amax / 127.0), 0x7fc00000u, amax < 0.0);
        atomicStore(&done[DONE0 + b], 0u);
    }
}
