// out[r, col + j] = Σ_i x[r, i] · w[j, i] for many activation rows (prefill) with
// activations int8: x quantised per 32 values by quantize_q8_rows.wgsl, the weight's
// blocks as 32 signed or unsigned bytes with their scales (x = d·q − m, d per 16 values
// where HALVES, m where MINS; `load_w_tile` decodes them in the tile,
// gemm_i8_tile_decode.wgsl, or reads them decoded once a call by decode_i8_rows.wgsl,
// gemm_i8_tile_w8.wgsl), and the products of four values at a time summed as integers
// by dot4I8Packed. A block's sum
// is scaled once: Σ (d·q − m)·dx·qx = dx·d·Σ q·qx − m·(dx·Σqx).
// A workgroup of THREADS = 16 · TY threads computes a TM × TN tile (TM = 8 · TY
// activation rows × 64 weight rows), each thread 8 rows × 4 weight rows. k advances KB
// blocks a step: all threads stage the activation and weight words and scales into
// workgroup memory, then each thread does 8 · 4 · 8 integer dots a block from it.
// params: as gemm.wgsl: 0 m, 1 k, 2 n, 3 out_stride, 4 out_col, 5 row_bytes, 6 w_base
// (the weight's, where the tile decodes it).
@group(0) @binding(1) var<storage, read> x8: array<vec4<u32>>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
@group(0) @binding(4) var<storage, read> x8s: array<vec2<f32>>;

const HALVES: bool = false;
const MINS: bool = false;

const TY: u32 = 8u;
const TM: u32 = 8u * TY;
const TN: u32 = 64u;
const THREADS: u32 = 16u * TY;
const KB: u32 = 4u;
const MAGIC: i32 = 0x4b400000;

// Word q of block b of rows 4p..4p + 3 at [(8b + q) · rows/4 + p]: a thread's rows
// are vec4 loads.
var<workgroup> xs: array<vec4<u32>, KB * 8u * TM / 4u>;
var<workgroup> ws: array<vec4<u32>, KB * 8u * TN / 4u>;
// Block b of row r at [b · rows + r]: x (dx, dx·Σqx); w (d of values 0..16, of 16..32, m).
var<workgroup> xsc: array<vec2<f32>, KB * TM>;
var<workgroup> wsc: array<vec4<f32>, KB * TN>;

@compute @workgroup_size(THREADS)
fn main(@builtin(local_invocation_index) li: u32, @builtin(workgroup_id) wg: vec3<u32>) {
    let m = pu(0);
    let k = pu(1);
    let n = pu(2);
    let nb = k / 32u;
    let m0 = wg.y * TM;
    let n0 = wg.x * TN;
    let tx = li % 16u;
    let ty = li / 16u;
    var acc: array<vec4<f32>, 8>;
    for (var c0 = 0u; c0 < nb; c0 += KB) {
        // Activation words: TM rows × KB blocks × 2 vec4.
        for (var e = li; e < TM * KB * 2u; e += THREADS) {
            let r = e / (KB * 2u);
            let v = e % (KB * 2u);
            let b = v / 2u;
            var a = vec4<u32>(0u);
            if m0 + r < m && c0 + b < nb {
                a = x8[(m0 + r) * (k / 16u) + 2u * c0 + v];
            }
            let q = 4u * (v % 2u);
            for (var t = 0u; t < 4u; t++) {
                xs[(8u * b + q + t) * (TM / 4u) + r / 4u][r % 4u] = a[t];
            }
        }
        for (var e = li; e < TM * KB; e += THREADS) {
            let r = e / KB;
            let b = e % KB;
            var s = vec2<f32>(0.0);
            if m0 + r < m && c0 + b < nb {
                s = x8s[(m0 + r) * nb + c0 + b];
            }
            xsc[b * TM + r] = s;
        }
        load_w_tile(li, c0, n0, n, nb, k);
        workgroupBarrier();
        for (var b = 0u; b < KB; b++) {
            var wd: array<vec4<f32>, 3>;
            for (var j = 0u; j < 4u; j++) {
                let s = wsc[b * TN + 4u * tx + j];
                wd[0][j] = s.x;
                wd[1][j] = s.y;
                wd[2][j] = s.z;
            }
            var xd: array<vec2<f32>, 8>;
            for (var i = 0u; i < 8u; i++) {
                xd[i] = xsc[b * TM + 8u * ty + i];
            }
            for (var h = 0u; h < select(1u, 2u, HALVES); h++) {
                // The sums start at the bits of 1.5 · 2^23, so that a sum s (|s| < 2^22:
                // at most 32 · 127 · 128 here) reads as the float 1.5 · 2^23 + s
                // exactly: an integer add and a float subtract, not a conversion (a
                // quarter-rate instruction on NVIDIA GPUs).
                var isum: array<vec4<i32>, 8>;
                for (var i = 0u; i < 8u; i++) {
                    isum[i] = vec4<i32>(MAGIC);
                }
                let q0 = select(0u, 4u * h, HALVES);
                for (var q = q0; q < q0 + select(8u, 4u, HALVES); q++) {
                    let o = (8u * b + q) * (TM / 4u) + 2u * ty;
                    let a0 = xs[o];
                    let a1 = xs[o + 1u];
                    let bw = ws[(8u * b + q) * (TN / 4u) + tx];
                    for (var j = 0u; j < 4u; j++) {
                        isum[0][j] += dot4I8Packed(a0.x, bw[j]);
                        isum[1][j] += dot4I8Packed(a0.y, bw[j]);
                        isum[2][j] += dot4I8Packed(a0.z, bw[j]);
                        isum[3][j] += dot4I8Packed(a0.w, bw[j]);
                        isum[4][j] += dot4I8Packed(a1.x, bw[j]);
                        isum[5][j] += dot4I8Packed(a1.y, bw[j]);
                        isum[6][j] += dot4I8Packed(a1.z, bw[j]);
                        isum[7][j] += dot4I8Packed(a1.w, bw[j]);
                    }
                }
                let d = wd[h];
                for (var i = 0u; i < 8u; i++) {
                    let s = bitcast<vec4<f32>>(isum[i]) - vec4<f32>(bitcast<f32>(MAGIC));
                    acc[i] += (xd[i].x * d) * s;
                }
            }
            if MINS {
                for (var i = 0u; i < 8u; i++) {
                    acc[i] -= xd[i].y * wd[2];
                }
            }
        }
        workgroupBarrier();
    }
    for (var i = 0u; i < 8u; i++) {
        let r = m0 + 8u * ty + i;
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
