// The router's choice per row: softmax over expert logits, the top_k experts (ties to
// the lower index) and their weights (renormalised over the k when norm_topk).
// Writes ids and weights for the k slots of each row. One thread a row.
// params: 0 rows, 1 n_experts (≤ 256), 2 top_k, 3 norm_topk, 4 groups_x.
@group(0) @binding(1) var<storage, read> logits: array<f32>;
@group(0) @binding(2) var<storage, read_write> ids: array<u32>;
@group(0) @binding(3) var<storage, read_write> wts: array<f32>;

@compute @workgroup_size(64)
fn main(@builtin(local_invocation_index) li: u32, @builtin(workgroup_id) wg: vec3<u32>) {
    let r = flat_group(wg, pu(4)) * 64u + li;
    if r >= pu(0) {
        return;
    }
    let n = pu(1);
    let k = pu(2);
    let lo = r * n;
    var mx = -3.4e38;
    for (var e = 0u; e < n; e++) {
        mx = max(mx, logits[lo + e]);
    }
    var z = 0.0;
    for (var e = 0u; e < n; e++) {
        z += exp(logits[lo + e] - mx);
    }
    // Chosen experts, 256 bits.
    var taken = array<u32, 8>();
    var norm = 0.0;
    for (var s = 0u; s < k; s++) {
        var best = 0u;
        var bv = -1.0;
        for (var e = 0u; e < n; e++) {
            let v = exp(logits[lo + e] - mx);
            if (taken[e / 32u] & (1u << (e % 32u))) == 0u && v > bv {
                best = e;
                bv = v;
            }
        }
        taken[best / 32u] |= 1u << (best % 32u);
        ids[r * k + s] = best;
        wts[r * k + s] = bv / z;
        norm += bv / z;
    }
    if pu(3) == 1u {
        for (var s = 0u; s < k; s++) {
            wts[r * k + s] = wts[r * k + s] / norm;
        }
    }
}
