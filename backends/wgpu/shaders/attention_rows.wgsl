// Causal attention for many query rows (prefill): one workgroup a block of QB query rows
// of one head, online softmax over tiles of KT keys. Each tile's keys, then its values,
// are staged once in workgroup memory for the whole block, where attention.wgsl (one
// query row a workgroup) reads them again for every row: at 512 rows, its K and V reads
// bound it. Grouped-query: head h reads kv head h / (heads / kv_heads). Sliding window:
// row p's keys are p - window + 1..p. q is read as attention.wgsl reads it (a row stride,
// a column offset, rotated as it loads where the attention is rope-fused).
// Per tile: score (r, j) a thread, from the block's q rows and the key tile (rows
// padded to HD4 + 1 vec4, so a quarter-warp's 16-byte loads of different keys fall in
// different banks); the row's max and weights; then a thread a vec4 column of the head
// for a few rows adds the tile's weighted values, rescaled where the row's max rose.
// Lowering picks QB and HD4 (the head's vec4, at most) so that the tiles fit the
// device's workgroup memory; head_dim is a multiple of 4.
// params: as attention.wgsl: 0 seq, 1 n_heads, 2 n_kv_heads, 3 head_dim, 4 scale,
// 5 window (0: none), 6 softcap (0: none), 7 pos0, 8 groups_x, 9 q_stride, 10 q_off,
// 11 flags: rope (bit 0), rope layout (bit 1), rope half (bits 3..).
@group(0) @binding(1) var<storage, read> q: array<f32>;
@group(0) @binding(2) var<storage, read_write> kc: array<f32>;
@group(0) @binding(3) var<storage, read_write> vc: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;
@group(0) @binding(5) var<storage, read> cs: array<vec2<f32>>;

const T: u32 = 256u;
const QB: u32 = 16u;
const KT: u32 = 16u;
const HD4: u32 = 32u;
const S: u32 = HD4 + 1u;
// Rows a thread accumulates, at most (a vec4 column of a head of up to 256 dims takes at
// least four groups of threads).
const RPT: u32 = (QB + 3u) / 4u;

var<workgroup> qs: array<vec4<f32>, QB * HD4>;
var<workgroup> kv: array<vec4<f32>, KT * S>;
// The tile's scores, then its weights, row r at [KT · r..]; each row's max.
var<workgroup> sc: array<f32, QB * KT>;
var<workgroup> pw: array<f32, QB * KT>;
var<workgroup> mx: array<f32, QB>;

// The keys (or the values) tile..tile + KT of this head into `kv`, zeros past hi.
fn stage(li: u32, tile: u32, hi: u32, kvw: u32, kvo: u32, d4: u32, values: bool) {
    for (var e = li; e < KT * d4; e += T) {
        let j = e / d4;
        var v = vec4<f32>(0.0);
        if tile + j < hi {
            let at = (tile + j) * kvw + kvo + 4u * (e % d4);
            if values {
                v = v_at4(at);
            } else {
                v = k_at4(at);
            }
        }
        kv[j * S + e % d4] = v;
    }
}

@compute @workgroup_size(256)
fn main(@builtin(local_invocation_index) li: u32, @builtin(workgroup_id) wg: vec3<u32>) {
    let seq = pu(0);
    let nh = pu(1);
    let blocks = (seq + QB - 1u) / QB;
    let idx = flat_group(wg, pu(8));
    if idx >= blocks * nh {
        return;
    }
    // The last blocks, with the most keys, first.
    let t0 = (blocks - 1u - idx / nh) * QB;
    let h = idx % nh;
    let hd = pu(3);
    let d4 = hd / 4u;
    let kvw = pu(2) * hd;
    let kvo = (h / (nh / pu(2))) * hd;
    let window = pu(5);
    let flags = pu(11);
    let rope = (flags & 1u) == 1u;
    let lay = (flags >> 1u) & 1u;
    let half = flags >> 3u;
    let rows = min(QB, seq - t0);
    let p0 = pu(7) + t0;
    // The block's keys: from the first row's window start to the last row.
    var lo = 0u;
    if window > 0u && p0 + 1u > window {
        lo = p0 + 1u - window;
    }
    let hi = p0 + rows;
    for (var e = li; e < QB * hd; e += T) {
        let r = e / hd;
        let d = e % hd;
        var v = 0.0;
        if r < rows {
            let qo = (t0 + r) * pu(9) + pu(10) + h * hd;
            v = q[qo + d];
            if rope {
                v = roped(v, q[qo + partner_of(d, half, lay)], d, half, lay, p0 + r);
            }
        }
        qs[r * HD4 + d / 4u][d % 4u] = v;
    }
    // Scoring: row sr, key sj of the tile (threads past QB · KT score nothing).
    let sr = li / KT;
    let sj = li % KT;
    let sp = p0 + sr;
    var s_lo = 0u;
    if window > 0u && sp + 1u > window {
        s_lo = sp + 1u - window;
    }
    var m = -3.4e38;
    // Values: vec4 column vc4 of rows vg, vg + groups, … .
    let groups = T / d4;
    let vc4 = li % d4;
    let vg = li / d4;
    var acc: array<vec4<f32>, RPT>;
    var l: array<f32, RPT>;
    var mv: array<f32, RPT>;
    for (var u = 0u; u < RPT; u++) {
        mv[u] = -3.4e38;
    }
    let cap = pf(6);
    for (var tile = lo; tile < hi; tile += KT) {
        stage(li, tile, hi, kvw, kvo, d4, false);
        workgroupBarrier();
        var s = -3.4e38;
        let key = tile + sj;
        let live = sr < rows && key >= s_lo && key <= sp;
        if live {
            var qk = 0.0;
            for (var c = 0u; c < d4; c++) {
                qk += dot(qs[sr * HD4 + c], kv[sj * S + c]);
            }
            s = qk * pf(4);
            if cap != 0.0 {
                s = softcap(s, cap);
            }
        }
        if sr < QB {
            sc[li] = s;
        }
        workgroupBarrier();
        // Each scoring thread takes its row's max over the tile, and its weight.
        if sr < QB {
            var tm = m;
            for (var j = 0u; j < KT; j++) {
                tm = max(tm, sc[sr * KT + j]);
            }
            pw[li] = select(0.0, exp(s - tm), live);
            m = tm;
            if sj == 0u {
                mx[sr] = tm;
            }
        }
        // The values, over the keys (all read).
        stage(li, tile, hi, kvw, kvo, d4, true);
        workgroupBarrier();
        if vg < groups {
            for (var u = 0u; u < RPT; u++) {
                let r = vg + groups * u;
                if r < QB {
                    let mt = mx[r];
                    let corr = exp(mv[u] - mt);
                    mv[u] = mt;
                    var a = acc[u] * corr;
                    var ts = 0.0;
                    for (var j = 0u; j < KT; j++) {
                        let p = pw[r * KT + j];
                        a += p * kv[j * S + vc4];
                        ts += p;
                    }
                    acc[u] = a;
                    l[u] = l[u] * corr + ts;
                }
            }
        }
        workgroupBarrier();
    }
    if vg < groups {
        for (var u = 0u; u < RPT; u++) {
            let r = vg + groups * u;
            if r < rows {
                let o = ((t0 + r) * nh + h) * hd + 4u * vc4;
                let v = acc[u] / l[u];
                out[o] = v.x;
                out[o + 1u] = v.y;
                out[o + 2u] = v.z;
                out[o + 3u] = v.w;
            }
        }
    }
}
