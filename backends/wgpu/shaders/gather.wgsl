// Rows of a stored table picked by ids (token embedding) or by position (learned
// position embedding), decoded to f32. One workgroup a row; threads take chunks.
// params: 0 rows, 1 k (row width), 2 row_bytes, 3 mode (0: ids, 1: pos0 + row),
// 4 pos0, 5 groups_x, 6..7 the ids this binding holds (a table split across bindings
// is gathered once per part, each part writing its own rows).
@group(0) @binding(1) var<storage, read> ids: array<u32>;
@group(0) @binding(2) var<storage, read> w: array<u32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(64)
fn main(@builtin(local_invocation_index) li: u32, @builtin(workgroup_id) wg: vec3<u32>) {
    let r = flat_group(wg, pu(5));
    let k = pu(1);
    if r >= pu(0) {
        return;
    }
    var id = pu(4) + r;
    if pu(3) == 0u {
        id = ids[r];
    }
    if id < pu(6) || id >= pu(7) {
        return;
    }
    let row = (id - pu(6)) * pu(2);
    let chunks = (k + 31u) / 32u;
    for (var c = li; c < chunks; c += 64u) {
        let v = decode_chunk(row, c, k);
        for (var e = 0u; e < 32u; e++) {
            let i = c * 32u + e;
            if i < k {
                out[r * k + i] = v[e];
            }
        }
    }
}
