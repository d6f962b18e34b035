// Norm kernels run NORM_THREADS invocations a row: a row's loads are spread over many
// threads, since one row alone (decode) is latency-bound, not bandwidth-bound.
const NORM_THREADS: u32 = 256u;

// Values a norm thread keeps in registers (rows up to 8192 wide load once).
const NORM_KEEP: u32 = 32u;

// The sum of one value from each of a workgroup's invocations, in a fixed order (the
// same every time): 16 invocations add a column of 16 values each, then every invocation
// adds the 16 column sums. Two barriers, not one per halving: a decode row's norm is
// latency-bound. Call from uniform control flow; a kernel may call it again, since its
// next writes to `part` and `cols` come after barriers that its reads of them precede.
const SUM_COLS: u32 = 16u;
var<workgroup> part: array<f32, NORM_THREADS>;
var<workgroup> cols: array<f32, SUM_COLS>;

fn workgroup_sum(li: u32, v: f32) -> f32 {
    part[li] = v;
    workgroupBarrier();
    if li < SUM_COLS {
        var c = 0.0;
        for (var j = li; j < NORM_THREADS; j += SUM_COLS) {
            c += part[j];
        }
        cols[li] = c;
    }
    workgroupBarrier();
    var t = 0.0;
    for (var j = 0u; j < SUM_COLS; j++) {
        t += cols[j];
    }
    return t;
}
