// The several-rows matvec's GLU epilogue quantising its output (activations int8, one
// row, x not in `q8`): besides storing act(gate) · up (f = n / 2 values), the workgroup
// that completes a block of 32 of them (a count a block in `done`, q8_finish.wgsl)
// quantises it into `q8`, which the int8 matvec after it reads, so that row needs no
// quantize_q8 dispatch.
@group(0) @binding(3) var<storage, read_write> out: array<atomic<u32>>;
@group(0) @binding(5) var<storage, read_write> done: array<atomic<u32>>;
@group(0) @binding(6) var<storage, read_write> q8: array<u32>;

fn store_row(i: u32, v: f32) {
    atomicStore(&out[i], bitcast<u32>(v));
}

fn after_rows(lane: u32, wg: vec3<u32>) {
    let h = R / 2u;
    let b = wg.x * h / 32u;
    if !block_done(lane, b, h) {
        return;
    }
    var y = 0.0;
    if lane < 32u {
        y = bitcast<f32>(atomicLoad(&out[32u * b + lane]));
    }
    let r = block_q8(lane, b, y, 0.0);
    if lane == 0u {
        q8[pu(2) / 8u + b] = q8_scale(r.x);
    }
}
