// Appends this call's k and v rows to the layer's caches at positions pos0.., rotating
// k by rope where the attention is rope-fused. k and v are read with a row stride and
// a column offset (slices of a fused q|k|v matmul output, read in place). A thread a
// pair of values (the kv width is even), so an f16 cache's word has one writer.
// params: 0 seq, 1 kv width, 2 k_stride, 3 k_off, 4 v_stride, 5 v_off, 6 pos0,
// 7 groups_x, 8 rope (0/1), 9 head_dim, 10 half, 11 layout.
@group(0) @binding(1) var<storage, read> ks: array<f32>;
@group(0) @binding(2) var<storage, read> vs: array<f32>;
@group(0) @binding(3) var<storage, read_write> kc: array<f32>;
@group(0) @binding(4) var<storage, read_write> vc: array<f32>;
@group(0) @binding(5) var<storage, read> cs: array<vec2<f32>>;

@compute @workgroup_size(256)
fn main(@builtin(local_invocation_index) li: u32, @builtin(workgroup_id) wg: vec3<u32>) {
    let i = 2u * (flat_group(wg, pu(7)) * 256u + li);
    let w = pu(1);
    if i >= pu(0) * w {
        return;
    }
    let t = i / w;
    let c = i % w;
    let p = pu(6) + t;
    let ko = t * pu(2) + pu(3);
    var k = vec2<f32>(ks[ko + c], ks[ko + c + 1u]);
    if pu(8) == 1u {
        let hd = pu(9);
        for (var e = 0u; e < 2u; e++) {
            let d = (c + e) % hd;
            let other = ks[ko + c + e - d + partner_of(d, pu(10), pu(11))];
            k[e] = roped(k[e], other, d, pu(10), pu(11), p);
        }
    }
    let vo = t * pu(4) + pu(5) + c;
    kv_put2(p * w + c, k, vec2<f32>(vs[vo], vs[vo + 1u]));
}
