// One activation row against a weight: out[r, col + j] = Σ_i x[i] · w[j, i] (decode), or
// in expert mode (8 = 1) output row r = workgroup y of m, reading activation row r / 9
// (x_div) and expert ids[r]'s weight at byte w_base + ids[r] · 10. ROWS weight rows a
// workgroup, LANES threads a row (ROWS · LANES = 64, picked per device), their partial
// sums added in a tree. `row_dot` (a lane's part) is by chunks for every type
// (row_dot_chunks.wgsl), or, for some types with 32 lanes, by super-blocks shared by
// the lanes so that their loads coalesce (quant/rowdot/).
// params: as matmul.wgsl: 0 m, 1 k, 2 n, 3 out_stride, 4 out_col, 5 row_bytes, 6 w_base,
// 7 groups_x, 8 expert mode, 9 x_div, 10 expert_bytes, 11 x_stride, 12 x_off.
// GLU epilogue (GLU true; not in expert mode): the weight is [gate | up] (n rows, halves
// of n / 2), a workgroup takes ROWS / 2 gate rows and the matching up rows, and stores
// act(gate) · up, the act by param 13 (0 silu, 1 gelu).
// Norm prologue (matvec_norm_prologue.wgsl in place of the x binding and `x_prologue`):
// x is an add_rms_norm's normed half, worked out by each workgroup first.
@group(0) @binding(2) var<storage, read> w: array<u32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
@group(0) @binding(4) var<storage, read> ids: array<u32>;

const ROWS: u32 = 64u;
const LANES: u32 = 1u;
const GLU: bool = false;

var<workgroup> partial: array<f32, 64>;
fn x_prologue(li: u32, wg: vec3<u32>) {}

@compute @workgroup_size(64)
fn main(@builtin(local_invocation_index) li: u32, @builtin(workgroup_id) wg: vec3<u32>) {
    x_prologue(li, wg);
    let k = pu(1);
    let n = pu(2);
    var j = wg.x * ROWS + li / LANES;
    let lane = li % LANES;
    let h = ROWS / 2u;
    if GLU {
        // Row i of the workgroup: gate row wg.x·h + i % h (the last one again past the
        // end, in range and not stored), or its up row n / 2 further.
        let i = li / LANES;
        j = min(wg.x * h + i % h, n / 2u - 1u) + n / 2u * (i / h);
    }
    let r = wg.y;
    var base = pu(6);
    var xrow = r;
    if pu(8) == 1u {
        base += ids[r] * pu(10);
        xrow = r / pu(9);
    }
    var acc = 0.0;
    if j < n {
        acc = row_dot(base + j * pu(5), k, xrow * pu(11) + pu(12), lane);
    }
    partial[li] = acc;
    workgroupBarrier();
    for (var h = LANES / 2u; h > 0u; h = h / 2u) {
        if lane < h {
            partial[li] += partial[li + h];
        }
        workgroupBarrier();
    }
    if GLU {
        let jg = wg.x * h + li / LANES;
        if lane == 0u && li < h * LANES && jg < n / 2u {
            out[r * pu(3) + pu(4) + jg] = glu_act(partial[li], pu(13)) * partial[li + h * LANES];
        }
    } else if lane == 0u && j < n {
        out[r * pu(3) + pu(4) + j] = partial[li];
    }
}
