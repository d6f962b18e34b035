// The several-rows matvec's entry point with subgroup operations (wgpu's SUBGROUP
// feature): each subgroup adds its lanes' sums in registers, then lane i adds the
// subgroups' sums of row i, in subgroup order, into partial[i · LANES].
@compute @workgroup_size(LANES)
fn main(
    @builtin(local_invocation_index) lane: u32,
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(subgroup_invocation_id) sl: u32,
    @builtin(subgroup_id) sg: u32,
    @builtin(num_subgroups) nsg: u32,
) {
    let acc = lane_sums(lane, wg);
    for (var i = 0u; i < R; i++) {
        let t = subgroupAdd(acc[i]);
        if sl == 0u {
            partial[i * LANES + sg] = t;
        }
    }
    workgroupBarrier();
    if lane < R {
        var v = 0.0;
        for (var g = 0u; g < nsg; g++) {
            v += partial[lane * LANES + g];
        }
        partial[lane * LANES] = v;
    }
    workgroupBarrier();
    finish(wg, lane);
    after_rows(lane, wg);
}
