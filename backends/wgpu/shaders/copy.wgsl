// Copies rows × width values between strided layouts (slices, the last position, KV
// cache appends). params: 0 rows, 1 width, 2 src_stride, 3 src_off, 4 dst_stride,
// 5 dst_off, 6 groups_x.
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;

@compute @workgroup_size(256)
fn main(@builtin(local_invocation_index) li: u32, @builtin(workgroup_id) wg: vec3<u32>) {
    let i = flat_group(wg, pu(6)) * 256u + li;
    let width = pu(1);
    if i >= pu(0) * width {
        return;
    }
    let r = i / width;
    let c = i % width;
    dst[pu(5) + r * pu(4) + c] = src[pu(3) + r * pu(2) + c];
}
