// A weight's chunks decoded to f16 for the tensor-core GEMM (gemm_coop.wgsl) once per
// matmul call, a thread a 32-value chunk: chunk c of row j (from the weight's byte
// w_base) as 16 words of two halves at vec4 words 4(j·k/32 + c).. of `w16` (the type's
// decode_chunk, rounded to f16). The GEMM's tiles then read the halves rather than
// each decoding the blocks again.
// params: 0 n, 1 k, 2 row_bytes, 3 w_base, 4 groups_x.
@group(0) @binding(1) var<storage, read> w: array<u32>;
@group(0) @binding(2) var<storage, read_write> w16: array<vec4<u32>>;

@compute @workgroup_size(64)
fn main(@builtin(local_invocation_index) li: u32, @builtin(workgroup_id) wg: vec3<u32>) {
    let e = flat_group(wg, pu(4)) * 64u + li;
    let nb = pu(1) / 32u;
    if e >= pu(0) * nb {
        return;
    }
    let v = decode_chunk(pu(3) + (e / nb) * pu(2), e % nb, pu(1));
    for (var q = 0u; q < 4u; q++) {
        let t = 8u * q;
        w16[4u * e + q] = vec4<u32>(
            pack2x16float(vec2<f32>(v[t], v[t + 1u])),
            pack2x16float(vec2<f32>(v[t + 2u], v[t + 3u])),
            pack2x16float(vec2<f32>(v[t + 4u], v[t + 5u])),
            pack2x16float(vec2<f32>(v[t + 6u], v[t + 7u])),
        );
    }
}
