// out[r, col + j] = Σ_i x[r, i] · w[j, i], reading w's stored blocks. A workgroup takes
// ROWS weight rows and MT activation rows; LANES threads share each weight row's
// chunks, and each decoded chunk serves all MT activation rows. ROWS · LANES = 64;
// the host picks them per device (shaders.rs, matmul_source).
// Several activation rows (prefill); one row and expert routing take matvec.wgsl.
// params: 0 m (output rows), 1 k, 2 n (weight rows), 3 out_stride, 4 out_col,
// 5 row_bytes, 6 w_base (byte offset of row 0), 7 groups_x, 8..10 unused here,
// 11 x_stride, 12 x_off (x may be a column slice, read in place).
@group(0) @binding(2) var<storage, read> w: array<u32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

const ROWS: u32 = 64u;
const LANES: u32 = 1u;
const MT: u32 = 4u;

var<workgroup> partial: array<f32, 64u * MT>;

@compute @workgroup_size(64)
fn main(@builtin(local_invocation_index) li: u32, @builtin(workgroup_id) wg: vec3<u32>) {
    let m = pu(0);
    let k = pu(1);
    let n = pu(2);
    let j = wg.x * ROWS + li / LANES;
    let lane = li % LANES;
    let base = pu(6);
    let m0 = wg.y * MT;
    var acc: array<f32, MT>;
    if j < n {
        let row = base + j * pu(5);
        let chunks = (k + 31u) / 32u;
        for (var c = lane; c < chunks; c += LANES) {
            let v = decode_chunk(row, c, k);
            let len = min(32u, k - c * 32u);
            for (var t = 0u; t < MT; t++) {
                let r = m0 + t;
                if r < m {
                    let xo = r * pu(11) + pu(12) + c * 32u;
                    acc[t] += chunk_dot(v, xo, len);
                }
            }
        }
    }
    for (var t = 0u; t < MT; t++) {
        partial[li * MT + t] = acc[t];
    }
    workgroupBarrier();
    if lane == 0u && j < n {
        for (var t = 0u; t < MT; t++) {
            let r = m0 + t;
            if r < m {
                var s = 0.0;
                for (var l = 0u; l < LANES; l++) {
                    s += partial[(li + l) * MT + t];
                }
                out[r * pu(3) + pu(4) + j] = s;
            }
        }
    }
}
