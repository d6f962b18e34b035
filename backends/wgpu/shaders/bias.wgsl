// Adds a bias vector to columns col..col+len of every row, in place.
// params: 0 rows·len, 1 width, 2 col, 3 len, 4 groups_x.
@group(0) @binding(1) var<storage, read> b: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(256)
fn main(@builtin(local_invocation_index) li: u32, @builtin(workgroup_id) wg: vec3<u32>) {
    let i = flat_group(wg, pu(4)) * 256u + li;
    if i >= pu(0) {
        return;
    }
    let len = pu(3);
    let r = i / len;
    let c = i % len;
    out[r * pu(1) + pu(2) + c] += b[c];
}
