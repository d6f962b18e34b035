// A weight's blocks decoded for the integer-dot GEMM (gemm_i8.wgsl) once per matmul
// call, a thread a block: block c of row j (from the weight's byte w_base) as 32 bytes
// at vec4 words 2(j·k/32 + c).. of `w8` and its (d of values 0..16, of 16..32, m, 0)
// at j·k/32 + c of `w8s` (the type's decode_i8, quant/i8/: x = d·q − m). The GEMM's
// row tiles then read the decoded blocks rather than each decoding them again.
// params: 0 n, 1 k, 2 row_bytes, 3 w_base, 4 groups_x.
@group(0) @binding(1) var<storage, read> w: array<u32>;
@group(0) @binding(2) var<storage, read_write> w8: array<vec4<u32>>;
@group(0) @binding(3) var<storage, read_write> w8s: array<vec4<f32>>;

struct I8Chunk {
    q: array<u32, 8>,
    d: vec2<f32>,
    m: f32,
}

@compute @workgroup_size(64)
fn main(@builtin(local_invocation_index) li: u32, @builtin(workgroup_id) wg: vec3<u32>) {
    let e = flat_group(wg, pu(4)) * 64u + li;
    let nb = pu(1) / 32u;
    if e >= pu(0) * nb {
        return;
    }
    let j = e / nb;
    let c = e % nb;
    let ch = decode_i8(pu(3) + j * pu(2), c);
    w8[2u * e] = vec4<u32>(ch.q[0], ch.q[1], ch.q[2], ch.q[3]);
    w8[2u * e + 1u] = vec4<u32>(ch.q[4], ch.q[5], ch.q[6], ch.q[7]);
    w8s[e] = vec4<f32>(ch.d, ch.m, 0.0);
}
