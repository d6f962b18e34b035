// One activation row against R weight rows a workgroup, for K-quant types (decode): the
// LANES lanes split each row's super-blocks among them, every lane serves all R rows from
// the same x loads (x is read once per R rows, not once per row), and a lane loads whole
// words of each row so that many bytes are in flight. The type's part (quant/rows/)
// declares the weight `w` as words of W_BYTES bytes and `rows_dot`, which returns a
// lane's partial sums, which the entry point (matvec_rows_tree.wgsl or
// matvec_rows_subgroup.wgsl) adds up.
// Expert mode (8 = 1): output row r = workgroup y of m reads activation row r / 9 and
// expert ids[r]'s weight at byte w_base + ids[r] · 10.
// params: as matmul.wgsl: 0 m, 1 k, 2 n, 3 out_stride, 4 out_col, 5 row_bytes, 6 w_base,
// 7 groups_x, 8 expert mode, 9 x_div, 10 expert_bytes, 11 x_stride, 12 x_off.
// Lowering picks it only where row_bytes, w_base and expert_bytes are multiples of W_BYTES.
// GLU epilogue (GLU true): the weight is [gate | up] (n rows, halves of n / 2), a workgroup
// takes R / 2 gate rows and the matching up rows, and stores act(gate) · up, the act by
// param 13 (0 silu, 1 gelu).
// Norm epilogue (matvec_norm.wgsl in place of the three lines after the bindings): the
// rows stored are a residual add's sum, and the workgroups that complete blocks of it
// quantise the normed row.
@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read> ids: array<u32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
fn store_row(i: u32, v: f32) { out[i] = v; }
fn after_rows(lane: u32, wg: vec3<u32>) {}

const R: u32 = 4u;
const LANES: u32 = 64u;
const GLU: bool = false;

var<workgroup> partial: array<f32, R * LANES>;

// The lanes' partial sums of the workgroup's R rows (rows past the end read the last row
// again, in range, and are not stored).
fn lane_sums(lane: u32, wg: vec3<u32>) -> array<f32, R> {
    let k = pu(1);
    let n = pu(2);
    let r = wg.y;
    var base = pu(6);
    var xrow = r;
    if pu(8) == 1u {
        base += ids[r] * pu(10);
        xrow = r / pu(9);
    }
    var rows: array<u32, R>;
    for (var i = 0u; i < R; i++) {
        var j = min(wg.x * R + i, n - 1u);
        if GLU {
            let h = R / 2u;
            let f = n / 2u;
            j = min(wg.x * h + i % h, f - 1u) + f * (i / h);
        }
        rows[i] = (base + j * pu(5)) / W_BYTES;
    }
    return rows_dot(rows, k, xrow * pu(11) + pu(12), lane);
}

// Stores the workgroup's rows from their sums, partial[i · LANES] for row i (after a
// barrier): lane i < R stores row i, or with the GLU epilogue lane i < R / 2 stores
// act(gate row i) · (up row i).
fn finish(wg: vec3<u32>, lane: u32) {
    var j = wg.x * R + lane;
    var v = partial[lane * LANES];
    var n = pu(2);
    if GLU {
        let h = R / 2u;
        if lane >= h {
            return;
        }
        j = wg.x * h + lane;
        n = n / 2u;
        v = glu_act(v, pu(13)) * partial[(lane + h) * LANES];
    }
    if lane < R && j < n {
        store_row(wg.y * pu(3) + pu(4) + j, v);
    }
}
