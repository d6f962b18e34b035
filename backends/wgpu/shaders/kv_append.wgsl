// Appends this call's k and v rows to the layer's caches at positions pos0.., rotating
// k by rope where the attention is rope-fused. k and v are read with a row stride and
// a column offset (slices of a fused q|k|v matmul output, read in place).
// params: 0 seq, 1 kv width, 2 k_stride, 3 k_off, 4 v_stride, 5 v_off, 6 pos0,
// 7 groups_x, 8 rope (0/1), 9 head_dim, 10 half, 11 layout.
@group(0) @binding(1) var<storage, read> ks: array<f32>;
@group(0) @binding(2) var<storage, read> vs: array<f32>;
@group(0) @binding(3) var<storage, read_write> kc: array<f32>;
@group(0) @binding(4) var<storage, read_write> vc: array<f32>;
@group(0) @binding(5) var<storage, read> cs: array<vec2<f32>>;

@compute @workgroup_size(256)
fn main(@builtin(local_invocation_index) li: u32, @builtin(workgroup_id) wg: vec3<u32>) {
    let i = flat_group(wg, pu(7)) * 256u + li;
    let w = pu(1);
    if i >= pu(0) * w {
        return;
    }
    let t = i / w;
    let c = i % w;
    let p = pu(6) + t;
    let ko = t * pu(2) + pu(3);
    var k = ks[ko + c];
    if pu(8) == 1u {
        let hd = pu(9);
        let d = c % hd;
        let other = ks[ko + c - d + partner_of(d, pu(10), pu(11))];
        k = roped(k, other, d, pu(10), pu(11), p);
    }
    kc[p * w + c] = k;
    vc[p * w + c] = vs[t * pu(4) + pu(5) + c];
}
