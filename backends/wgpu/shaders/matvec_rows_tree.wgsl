// The several-rows matvec's entry point where the adapter has no subgroup operations:
// the lanes' sums added as a tree through workgroup memory.
@compute @workgroup_size(LANES)
fn main(@builtin(local_invocation_index) lane: u32, @builtin(workgroup_id) wg: vec3<u32>) {
    let acc = lane_sums(lane, wg);
    for (var i = 0u; i < R; i++) {
        partial[i * LANES + lane] = acc[i];
    }
    workgroupBarrier();
    for (var h = LANES / 2u; h > 0u; h = h / 2u) {
        if lane < h {
            for (var i = 0u; i < R; i++) {
                partial[i * LANES + lane] += partial[i * LANES + lane + h];
            }
        }
        workgroupBarrier();
    }
    finish(wg, lane);
    after_rows(lane, wg);
}
