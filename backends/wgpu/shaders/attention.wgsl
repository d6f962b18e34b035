// Causal attention, one workgroup a (query row, head, chunk of keys), online softmax over
// tiles of 64 keys (flash-style: any context length in fixed workgroup memory): decode,
// and prefill where attention_rows.wgsl's tiles do not fit. Grouped-query: head h
// reads kv head h / (heads / kv_heads). Sliding window: keys p-window+1..p. q is read
// with a row stride and column offset (a slice of a fused q|k|v output) and, where the
// attention is rope-fused, rotated as it is loaded.
// 256 threads, tiles of 64 keys. Scoring: four adjacent threads a key, each summing every
// fourth dim (their loads are one contiguous run), the key's score from their four
// sums. Scores and weights land in workgroup memory; every thread reads all 64 for the
// tile's max and sum (fewer barriers than trees, which a short decode context pays for). Value
// sums: four groups of 64 threads, each over 16 keys of the tile (no exp and no branch
// in that loop, so its loads go out together), a thread a dim (and dim + 64, …); the
// groups' sums are added at the end. Four times the threads of a thread a key: a decode
// step has a workgroup or a few per head, so its loads need threads to be in flight.
// Chunks (params 14, 15 > 1; decode): the keys split into chunks of pu(14) that run side
// by side; each writes its unnormalised (max, sum, Σ weight · v) to `part`, and the
// head's last chunk to finish (a count a head in `done`) rescales and adds them all, so
// no merge dispatch runs. Values cross workgroups through atomics with device-scope
// barriers around the count, as in matvec_norm.wgsl. One chunk: the output directly.
// Append (decode: one row): the call's key and value enter the caches here rather than
// in a kv_append dispatch. Every workgroup that reads the new position (the last chunk
// of each head) writes that row itself, rotating k as kv_append does, and reads it back
// after a barrier. The row's writers write the same bits.
// params: 0 seq, 1 n_heads, 2 n_kv_heads, 3 head_dim (≤ 256), 4 scale, 5 window (0:
// none), 6 softcap (0: none), 7 pos0, 8 groups_x, 9 q_stride, 10 q_off, 11 flags: rope
// (bit 0), rope layout (bit 1), append (bit 2), rope half (bits 3..), 12 k_off, 13 v_off
// (append: the new row's columns in ks and vs), 14 chunk keys, 15 chunks, 16 quantise
// (1: one row; the output also goes into q8, quantised from workgroup memory by
// q8_block.wgsl's helpers, so that the int8 matvec reading it needs no quantize_q8).
@group(0) @binding(1) var<storage, read> q: array<f32>;
@group(0) @binding(2) var<storage, read_write> kc: array<f32>;
@group(0) @binding(3) var<storage, read_write> vc: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;
@group(0) @binding(5) var<storage, read> cs: array<vec2<f32>>;
@group(0) @binding(6) var<storage, read_write> part: array<atomic<u32>>;
@group(0) @binding(7) var<storage, read> ks: array<f32>;
@group(0) @binding(8) var<storage, read> vs: array<f32>;
@group(0) @binding(9) var<storage, read_write> q8: array<u32>;
// Each (row, head)'s finished chunks (decode over several); the last sets it back to 0.
@group(0) @binding(10) var<storage, read_write> done: array<atomic<u32>>;
var<workgroup> flag: u32;

const T: u32 = 256u;
const KEYS: u32 = 64u;

var<workgroup> qs: array<f32, 256>;
// The tile's scores, then its weights, four keys a vector.
var<workgroup> sc: array<vec4<f32>, KEYS / 4u>;
var<workgroup> pw: array<vec4<f32>, KEYS / 4u>;
var<workgroup> red: array<f32, T>;
// Each value group's sums (4 × head_dim ≤ 256), added at the end.
var<workgroup> sums: array<f32, 1024>;

// Dims a head, set by lowering (param 3 says the same): the loops over a head then
// have fixed trip counts, which the driver unrolls (8B decode: +2.7% on an H200).
const HD: u32 = 64u;

@compute @workgroup_size(256)
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
    let hd = HD;
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
        // A thread a pair of values (head_dim is even): an f16 cache's word has one writer.
        for (var d = 2u * li; d < hd; d += 2u * T) {
            var k = vec2<f32>(ks[ko + d], ks[ko + d + 1u]);
            if rope {
                for (var e = 0u; e < 2u; e++) {
                    let de = d + e;
                    k[e] = roped(k[e], ks[ko + partner_of(de, half, lay)], de, half, lay, p);
                }
            }
            kv_put2(row + d, k, vec2<f32>(vs[vo + d], vs[vo + d + 1u]));
        }
    }
    let qo = t * pu(9) + pu(10) + h * hd;
    for (var d = li; d < hd; d += T) {
        var v = q[qo + d];
        if rope {
            v = roped(v, q[qo + partner_of(d, half, lay)], d, half, lay, p);
        }
        qs[d] = v;
    }
    storageBarrier();
    workgroupBarrier();
    let cap = pf(6);
    // Scoring: key li / 4 of the tile, dims li % 4, + 4, + 8, …
    let key = li / 4u;
    let lane = li % 4u;
    // Value sums: group li / 64 takes keys 16g .. 16g + 16 of the tile.
    let g = li / KEYS;
    let dl = li % KEYS;
    var m = -3.4e38;
    var l = 0.0;
    var acc = array<f32, 4>(0.0, 0.0, 0.0, 0.0);
    for (var tile = lo; tile < hi; tile += KEYS) {
        let j = tile + key;
        var dot = 0.0;
        if j < hi {
            let kb = j * kvw + kvo;
            for (var d = lane; d < hd; d += 4u) {
                dot += qs[d] * k_at(kb + d);
            }
        }
        red[li] = dot;
        workgroupBarrier();
        var s = -3.4e38;
        if lane == 0u {
            if j < hi {
                s = ((red[li] + red[li + 1u]) + (red[li + 2u] + red[li + 3u])) * pf(4);
                if cap != 0.0 {
                    s = softcap(s, cap);
                }
            }
            sc[key / 4u][key % 4u] = s;
        }
        workgroupBarrier();
        // Every thread reads the tile's 64 scores (16 vectors, each a broadcast): its
        // max and then its sum take two barriers, where trees over the threads took 18.
        var tm = m;
        for (var i = 0u; i < KEYS / 4u; i++) {
            let v = sc[i];
            tm = max(tm, max(max(v.x, v.y), max(v.z, v.w)));
        }
        let mt = tm;
        if lane == 0u {
            pw[key / 4u][key % 4u] = select(0.0, exp(s - mt), j < hi);
        }
        workgroupBarrier();
        var ts = 0.0;
        for (var i = 0u; i < KEYS / 4u; i++) {
            let v = pw[i];
            ts += (v.x + v.y) + (v.z + v.w);
        }
        let corr = exp(m - mt);
        l = l * corr + ts;
        for (var u = 0u; u < 4u; u++) {
            acc[u] *= corr;
        }
        // Keys past hi weigh 0 and read row hi - 1 (written, finite) in their place.
        let n = min(16u * (g + 1u), hi - tile);
        for (var i = 16u * g; i < n; i += 4u) {
            var rows: array<u32, 4>;
            for (var e = 0u; e < 4u; e++) {
                rows[e] = min(tile + i + e, hi - 1u) * kvw + kvo;
            }
            let w = pw[i / 4u];
            for (var u = 0u; u < 4u; u++) {
                let d = dl + KEYS * u;
                if d < hd {
                    acc[u] += w.x * v_at(rows[0] + d) + w.y * v_at(rows[1] + d)
                        + w.z * v_at(rows[2] + d) + w.w * v_at(rows[3] + d);
                }
            }
        }
        m = mt;
        workgroupBarrier();
    }
    for (var u = 0u; u < 4u; u++) {
        let d = dl + KEYS * u;
        if d < hd {
            sums[g * 256u + d] = acc[u];
        }
    }
    workgroupBarrier();
    let base = idx * (hd + 2u);
    for (var d = li; d < hd; d += T) {
        let a = (sums[d] + sums[256u + d]) + (sums[512u + d] + sums[768u + d]);
        if chunks == 1u {
            red[d] = a / l;
        } else {
            atomicStore(&part[base + 2u + d], bitcast<u32>(a));
        }
    }
    if chunks > 1u {
        if li == 0u {
            atomicStore(&part[base], bitcast<u32>(m));
            atomicStore(&part[base + 1u], bitcast<u32>(l));
        }
        // The head's last chunk to finish merges them all: each chunk's sums rescaled
        // to the largest max.
        storageBarrier();
        if li == 0u {
            flag = u32(atomicAdd(&done[th], 1u) + 1u == chunks);
        }
        if workgroupUniformLoad(&flag) == 0u {
            return;
        }
        storageBarrier();
        let stride = hd + 2u;
        let b0 = th * chunks * stride;
        var mx = -3.4e38;
        for (var c = 0u; c < chunks; c++) {
            mx = max(mx, part_at(b0 + c * stride));
        }
        for (var d = li; d < hd; d += T) {
            var lt = 0.0;
            var a = 0.0;
            for (var c = 0u; c < chunks; c++) {
                let at = b0 + c * stride;
                let e = exp(part_at(at) - mx);
                lt += e * part_at(at + 1u);
                a += e * part_at(at + 2u + d);
            }
            red[d] = a / lt;
        }
        if li == 0u {
            atomicStore(&done[th], 0u);
        }
    }
    workgroupBarrier();
    for (var d = li; d < hd; d += T) {
        out[th * hd + d] = red[d];
    }
    // Activations int8: the row quantised from workgroup memory as it is stored.
    if pu(16) == 1u {
        let inside = li < hd / 4u;
        var hv = vec4<f32>(0.0);
        if inside {
            hv = vec4<f32>(red[4u * li], red[4u * li + 1u], red[4u * li + 2u], red[4u * li + 3u]);
        }
        if li < Q8_SLOTS {
            q8_mark(li, hv);
        }
        workgroupBarrier();
        if inside {
            q8_store(li, th * hd / 4u + li, hv, nh * hd);
        }
    }
}

fn part_at(i: u32) -> f32 {
    return bitcast<f32>(atomicLoad(&part[i]));
}
