// Causal attention, one workgroup a (query row, head, chunk of keys), online softmax over
// tiles of 64 keys (flash-style: any context length in fixed workgroup memory). Grouped-
// query: head h reads kv head h / (heads / kv_heads). Sliding window: keys p-window+1..p.
// q is read with a row stride and column offset (a slice of a fused q|k|v output) and,
// where the attention is rope-fused, rotated as it is loaded.
// A tile: a thread scores one key, the tile's max and sum are trees, the weights land in
// workgroup memory, and a thread adds its dims' weighted values over the tile's keys
// (no exp and no branch in that loop, so its loads go out together).
// Chunks (params 14, 15 > 1; decode): the keys split into chunks of pu(14) that run side
// by side; each writes its unnormalised (max, sum, Σ weight · v) to `part`, which
// attention_merge.wgsl adds up. One chunk: the output directly.
// Append (decode: one row): the call's key and value enter the caches here rather than
// in a kv_append dispatch. Every workgroup that reads the new position (the last chunk
// of each head) writes that row itself, rotating k as kv_append does, and reads it back
// after a barrier. The row's writers write the same bits, and the keys are then scored
// and summed from the cache in the very order a prefill of the same positions uses.
// params: 0 seq, 1 n_heads, 2 n_kv_heads, 3 head_dim (≤ 256), 4 scale, 5 window (0:
// none), 6 softcap (0: none), 7 pos0, 8 groups_x, 9 q_stride, 10 q_off, 11 flags: rope
// (bit 0), rope layout (bit 1), append (bit 2), rope half (bits 3..), 12 k_off, 13 v_off
// (append: the new row's columns in ks and vs), 14 chunk keys, 15 chunks.
@group(0) @binding(1) var<storage, read> q: array<f32>;
@group(0) @binding(2) var<storage, read_write> kc: array<f32>;
@group(0) @binding(3) var<storage, read_write> vc: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;
@group(0) @binding(5) var<storage, read> cs: array<vec2<f32>>;
@group(0) @binding(6) var<storage, read_write> part: array<f32>;
@group(0) @binding(7) var<storage, read> ks: array<f32>;
@group(0) @binding(8) var<storage, read> vs: array<f32>;

var<workgroup> qs: array<f32, 256>;
var<workgroup> sc: array<f32, 64>;
var<workgroup> red: array<f32, 64>;

// The max (or, with add, the sum) of one value from each of the 64 threads.
fn tile_reduce(li: u32, v: f32, add: bool) -> f32 {
    red[li] = v;
    workgroupBarrier();
    for (var h = 32u; h > 0u; h = h / 2u) {
        if li < h {
            red[li] = select(max(red[li], red[li + h]), red[li] + red[li + h], add);
        }
        workgroupBarrier();
    }
    let r = red[0];
    workgroupBarrier();
    return r;
}

@compute @workgroup_size(64)
fn main(@builtin(local_invocation_index) li: u32, @builtin(workgroup_id) wg: vec3<u32>) {
    let nh = pu(1);
    let chunks = max(pu(15), 1u);
    let idx = flat_group(wg, pu(8));
    if idx >= pu(0) * nh * chunks {
        return;
    }
    let c = idx % chunks;
    let th = idx / chunks;
    let t = th / nh;
    let h = th % nh;
    let hd = pu(3);
    let kvw = pu(2) * hd;
    let kvo = (h / (nh / pu(2))) * hd;
    let p = pu(7) + t;
    var start = 0u;
    let window = pu(5);
    if window > 0u && p + 1u > window {
        start = p + 1u - window;
    }
    var lo = start;
    var hi = p + 1u;
    if chunks > 1u {
        lo = start + c * pu(14);
        hi = min(hi, lo + pu(14));
    }
    let flags = pu(11);
    let rope = (flags & 1u) == 1u;
    let lay = (flags >> 1u) & 1u;
    let half = flags >> 3u;
    if (flags & 4u) != 0u && hi == p + 1u {
        let ko = pu(12) + kvo;
        let vo = pu(13) + kvo;
        let row = p * kvw + kvo;
        for (var d = li; d < hd; d += 64u) {
            var k = ks[ko + d];
            if rope {
                k = roped(k, ks[ko + partner_of(d, half, lay)], d, half, lay, p);
            }
            kc[row + d] = k;
            vc[row + d] = vs[vo + d];
        }
    }
    let qo = t * pu(9) + pu(10) + h * hd;
    for (var d = li; d < hd; d += 64u) {
        var v = q[qo + d];
        if rope {
            v = roped(v, q[qo + partner_of(d, half, lay)], d, half, lay, p);
        }
        qs[d] = v;
    }
    storageBarrier();
    workgroupBarrier();
    let cap = pf(6);
    var m = -3.4e38;
    var l = 0.0;
    var acc = array<f32, 4>(0.0, 0.0, 0.0, 0.0);
    for (var tile = lo; tile < hi; tile += 64u) {
        let j = tile + li;
        var s = -3.4e38;
        if j < hi {
            // Four dims a step, in four sums: four loads in flight.
            let kb = j * kvw + kvo;
            var d4 = vec4<f32>(0.0);
            var d = 0u;
            for (; d + 4u <= hd; d += 4u) {
                let qv = vec4<f32>(qs[d], qs[d + 1u], qs[d + 2u], qs[d + 3u]);
                d4 += qv * vec4<f32>(kc[kb + d], kc[kb + d + 1u], kc[kb + d + 2u], kc[kb + d + 3u]);
            }
            var dot = d4.x + d4.y + d4.z + d4.w;
            for (; d < hd; d++) {
                dot += qs[d] * kc[kb + d];
            }
            s = dot * pf(4);
            if cap != 0.0 {
                s = softcap(s, cap);
            }
        }
        let mt = max(m, tile_reduce(li, s, false));
        let pw = select(0.0, exp(s - mt), j < hi);
        sc[li] = pw;
        let corr = exp(m - mt);
        l = l * corr + tile_reduce(li, pw, true);
        for (var u = 0u; u < 4u; u++) {
            acc[u] *= corr;
        }
        // Keys past hi weigh 0 and read row hi - 1 (written, finite) in their place.
        let n = min(64u, hi - tile);
        for (var i = 0u; i < n; i += 4u) {
            var rows: array<u32, 4>;
            for (var e = 0u; e < 4u; e++) {
                rows[e] = min(tile + i + e, hi - 1u) * kvw + kvo;
            }
            for (var u = 0u; u < 4u; u++) {
                let d = li + 64u * u;
                if d < hd {
                    acc[u] += sc[i] * vc[rows[0] + d] + sc[i + 1u] * vc[rows[1] + d]
                        + sc[i + 2u] * vc[rows[2] + d] + sc[i + 3u] * vc[rows[3] + d];
                }
            }
        }
        m = mt;
        workgroupBarrier();
    }
    if chunks == 1u {
        for (var u = 0u; u < 4u; u++) {
            let d = li + 64u * u;
            if d < hd {
                out[th * hd + d] = acc[u] / l;
            }
        }
        return;
    }
    let base = idx * (hd + 2u);
    if li == 0u {
        part[base] = m;
        part[base + 1u] = l;
    }
    for (var u = 0u; u < 4u; u++) {
        let d = li + 64u * u;
        if d < hd {
            part[base + 2u + d] = acc[u];
        }
    }
}
