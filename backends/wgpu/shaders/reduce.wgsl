// Norm kernels run NORM_THREADS invocations a row: a row's loads are spread over many
// threads, since one row alone (decode) is latency-bound, not bandwidth-bound.
const NORM_THREADS: u32 = 256u;

// Values a norm thread keeps in registers (rows up to 8192 wide load once).
const NORM_KEEP: u32 = 32u;

// The sum of one value from each of a workgroup's invocations, added as a tree in a
// fixed order (the same every time). Call from uniform control flow; the trailing
// barrier lets a kernel call it again.
var<workgroup> part: array<f32, NORM_THREADS>;

fn workgroup_sum(li: u32, v: f32) -> f32 {
    part[li] = v;
    workgroupBarrier();
    for (var h = NORM_THREADS / 2u; h > 0u; h = h / 2u) {
        if li < h {
            part[li] += part[li + h];
        }
        workgroupBarrier();
    }
    let t = part[0];
    workgroupBarrier();
    return t;
}
