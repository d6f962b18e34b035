// Causal attention, one workgroup a (query row, head), online softmax over tiles of 64
// keys (flash-style: any context length in fixed workgroup memory). Grouped-query: head
// h reads kv head h / (heads / kv_heads). Sliding window: keys p-window+1..p.
// q is read with a row stride and column offset (a slice of a fused q|k|v output) and,
// where the attention is rope-fused, rotated as it is loaded.
// params: 0 seq, 1 n_heads, 2 n_kv_heads, 3 head_dim (≤ 256), 4 scale, 5 window (0:
// none), 6 softcap (0: none), 7 pos0, 8 groups_x, 9 q_stride, 10 q_off, 11 rope (0/1),
// 12 rope half, 13 rope layout.
@group(0) @binding(1) var<storage, read> q: array<f32>;
@group(0) @binding(2) var<storage, read> kc: array<f32>;
@group(0) @binding(3) var<storage, read> vc: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;
@group(0) @binding(5) var<storage, read> cs: array<vec2<f32>>;

var<workgroup> qs: array<f32, 256>;
var<workgroup> sc: array<f32, 64>;

@compute @workgroup_size(64)
fn main(@builtin(local_invocation_index) li: u32, @builtin(workgroup_id) wg: vec3<u32>) {
    let nh = pu(1);
    let idx = flat_group(wg, pu(8));
    if idx >= pu(0) * nh {
        return;
    }
    let t = idx / nh;
    let h = idx % nh;
    let hd = pu(3);
    let kvw = pu(2) * hd;
    let kvo = (h / (nh / pu(2))) * hd;
    let p = pu(7) + t;
    var start = 0u;
    let window = pu(5);
    if window > 0u && p + 1u > window {
        start = p + 1u - window;
    }
    let qo = t * pu(9) + pu(10) + h * hd;
    for (var d = li; d < hd; d += 64u) {
        var v = q[qo + d];
        if pu(11) == 1u {
            v = roped(v, q[qo + partner_of(d, pu(12), pu(13))], d, pu(12), pu(13), p);
        }
        qs[d] = v;
    }
    workgroupBarrier();
    let cap = pf(6);
    var m = -3.4e38;
    var l = 0.0;
    var acc = array<f32, 4>(0.0, 0.0, 0.0, 0.0);
    for (var tile = start; tile <= p; tile += 64u) {
        let j = tile + li;
        var s = -3.4e38;
        if j <= p {
            var dot = 0.0;
            for (var d = 0u; d < hd; d++) {
                dot += qs[d] * kc[j * kvw + kvo + d];
            }
            s = dot * pf(4);
            if cap != 0.0 {
                s = softcap(s, cap);
            }
        }
        sc[li] = s;
        workgroupBarrier();
        var mt = m;
        for (var i = 0u; i < 64u; i++) {
            mt = max(mt, sc[i]);
        }
        let corr = exp(m - mt);
        l *= corr;
        for (var u = 0u; u < 4u; u++) {
            acc[u] *= corr;
        }
        for (var i = 0u; i < 64u; i++) {
            let jj = tile + i;
            if jj <= p {
                let pw = exp(sc[i] - mt);
                l += pw;
                for (var u = 0u; u < 4u; u++) {
                    let d = li + 64u * u;
                    if d < hd {
                        acc[u] += pw * vc[jj * kvw + kvo + d];
                    }
                }
            }
        }
        m = mt;
        workgroupBarrier();
    }
    for (var u = 0u; u < 4u; u++) {
        let d = li + 64u * u;
        if d < hd {
            out[t * nh * hd + h * hd + d] = acc[u] / l;
        }
    }
}
