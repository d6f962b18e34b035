// A matvec epilogue's block finisher (matvec_norm.wgsl, matvec_glu_q8.wgsl): the
// workgroup whose rows complete block b of 32 outputs, counted in done[b], quantises
// them into `q8` as quantize_q8.wgsl would. The epilogue declares `out` (atomic words:
// values cross workgroups through atomics, with device-scope barriers around the
// count), `done` and `q8`.
var<workgroup> flag: u32;
// A block's magnitudes (−1: NaN) and a second value to add up; its quantised values.
var<workgroup> red: array<f32, 64>;
var<workgroup> qs: array<i32, 32>;

// Whether this workgroup, having stored `rows` outputs of block b, completed it (the
// count is set back to 0 for the next dispatch). Called in uniform control flow.
fn block_done(lane: u32, b: u32, rows: u32) -> bool {
    storageBarrier();
    if lane == 0u {
        let full = atomicAdd(&done[b], rows) + rows == 32u;
        if full {
            atomicStore(&done[b], 0u);
        }
        flag = u32(full);
    }
    let full = workgroupUniformLoad(&flag) == 1u;
    storageBarrier();
    return full;
}

// Lane l < 32 holds value y of block b and a term t: packs the block's values into q8
// words 8b … 8b + 8 scaled by their max|y| / 127, and returns (max|y| or −1 for a NaN,
// Σ t). Called in uniform control flow.
fn block_q8(lane: u32, b: u32, y: f32, t: f32) -> vec2<f32> {
    if lane < 32u {
        red[lane] = select(abs(y), -1.0, y != y);
        red[32u + lane] = t;
    }
    workgroupBarrier();
    for (var h = 16u; h > 0u; h = h / 2u) {
        if lane < h {
            let m0 = red[lane];
            let m1 = red[lane + h];
            red[lane] = select(max(m0, m1), -1.0, m0 < 0.0 || m1 < 0.0);
            red[32u + lane] += red[32u + lane + h];
        }
        workgroupBarrier();
    }
    let amax = red[0];
    if lane < 32u {
        let id = select(0.0, 127.0 / amax, amax > 0.0);
        qs[lane] = i32(clamp(round(y * id), -127.0, 127.0));
    }
    workgroupBarrier();
    if lane < 8u {
        let q = vec4<i32>(qs[4u * lane], qs[4u * lane + 1u], qs[4u * lane + 2u], qs[4u * lane + 3u]);
        q8[8u * b + lane] = pack4xI8(q);
    }
    return vec2<f32>(amax, red[32u]);
}

// A block's scale word from block_q8's max (−1: NaN).
fn q8_scale(amax: f32) -> u32 {
    return select(bitcast<u32>(amax / 127.0), 0x7fc00000u, amax < 0.0);
}
