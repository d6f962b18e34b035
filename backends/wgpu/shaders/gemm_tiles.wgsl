// What the f32-x GEMMs (gemm.wgsl, gemm_coop.wgsl) stage each 32-element chunk c: the
// activation tile's vec4 e (row e / 8 of the tile from activation row m0, zeros past
// the call's rows) and weight row j's chunk (zeros past the weight's rows). The
// kernels' x and w bindings are these.
@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> w: array<u32>;

fn gemm_x4(m0: u32, e: u32, c: u32) -> vec4<f32> {
    let r = e / 8u;
    if m0 + r >= pu(0) {
        return vec4<f32>(0.0);
    }
    return x[((m0 + r) * pu(11) + pu(12) + c * 32u) / 4u + e % 8u];
}

fn gemm_w_chunk(j: u32, c: u32) -> array<f32, 32> {
    var v: array<f32, 32>;
    if j < pu(2) {
        v = decode_chunk(pu(6) + j * pu(5), c, pu(1));
    }
    return v;
}
