// out[r, col + j] = Σ_i x[r, i] · w[j, i] for many activation rows (prefill), register
// tiled: a workgroup of THREADS threads computes a TM × TN tile (activation rows ×
// weight rows), each thread an RM × 4 block of it (THREADS = 16 · TM / RM). On an H200
// (Llama 3.2 1B shape, Q4_K_M, pp512) TM/RM 64/4 gave 6,471 tok/s, 64/8 6,041, 128/8
// 6,254, 128/16 5,008; schedule.rs's GEMM_TM and GEMM_TN follow TM and TN.
// k advances one 32-element chunk at a time: TN threads decode one weight row's chunk
// each into workgroup memory while all of them stage the TM × 32 activation tile, then
// every thread does RM · 4 · 32 FMAs reading workgroup memory only. So each weight
// chunk is decoded once per TM activation rows and each activation value read once per
// TN weight rows.
// Lowering takes this kernel only where k is a whole number of chunks and every x
// offset is 16-byte aligned (vec4 loads).
// params: as matmul.wgsl: 0 m, 1 k, 2 n, 3 out_stride, 4 out_col, 5 row_bytes,
// 6 w_base, 7 groups_x, 11 x_stride, 12 x_off.
@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> w: array<u32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

const TM: u32 = 64u;
const TN: u32 = 64u;
const RM: u32 = 4u;
const THREADS: u32 = 256u;

// Chunk element t of rows 4q..4q + 3 of a tile at [t · rows / 4 + q]: four of a
// thread's rows are one vec4 load.
var<workgroup> xs: array<vec4<f32>, TM * 8u>;
var<workgroup> ws: array<vec4<f32>, 512>;

@compute @workgroup_size(THREADS)
fn main(@builtin(local_invocation_index) li: u32, @builtin(workgroup_id) wg: vec3<u32>) {
    let m = pu(0);
    let k = pu(1);
    let n = pu(2);
    let m0 = wg.y * TM;
    let n0 = wg.x * TN;
    // This thread's activation rows m0 + RM·ty + i and weight rows n0 + 4·tx + j.
    let tx = li % 16u;
    let ty = li / 16u;
    var acc: array<vec4<f32>, RM>;
    for (var c = 0u; c < k / 32u; c++) {
        // The activation tile: TM rows × 8 vec4.
        for (var e = li; e < TM * 8u; e += THREADS) {
            let r = e / 8u;
            let q = e % 8u;
            var v = vec4<f32>(0.0);
            if m0 + r < m {
                v = x[((m0 + r) * pu(11) + pu(12) + c * 32u) / 4u + q];
            }
            for (var t = 0u; t < 4u; t++) {
                xs[(4u * q + t) * (TM / 4u) + r / 4u][r % 4u] = v[t];
            }
        }
        // The weight tile: one row's chunk a thread.
        if li < TN {
            var v: array<f32, 32>;
            if n0 + li < n {
                v = decode_chunk(pu(6) + (n0 + li) * pu(5), c, k);
            }
            for (var t = 0u; t < 32u; t++) {
                ws[t * 16u + li / 4u][li % 4u] = v[t];
            }
        }
        workgroupBarrier();
        for (var t = 0u; t < 32u; t++) {
            let b = ws[t * 16u + tx];
            for (var u = 0u; u < RM / 4u; u++) {
                let a = xs[t * (TM / 4u) + ty * (RM / 4u) + u];
                acc[4u * u] += a.x * b;
                acc[4u * u + 1u] += a.y * b;
                acc[4u * u + 2u] += a.z * b;
                acc[4u * u + 3u] += a.w * b;
            }
        }
        workgroupBarrier();
    }
    for (var i = 0u; i < RM; i++) {
        let r = m0 + RM * ty + i;
        if r < m {
            for (var j = 0u; j < 4u; j++) {
                let col = n0 + 4u * tx + j;
                if col < n {
                    out[r * pu(3) + pu(4) + col] = acc[i][j];
                }
            }
        }
    }
}
