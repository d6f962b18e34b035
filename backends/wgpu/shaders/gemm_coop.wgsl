// out[r, col + j] = Σ_i x[r, i] · w[j, i] for many activation rows (prefill) on the
// adapter's cooperative matrices (tensor cores): 16 × 16 × 16 tiles of f16 products summed
// in f32. A workgroup of four 32-lane subgroups computes a TM × TN = 64 × 64 tile, subgroup
// s the 16 activation rows 16s.. against all 64 weight rows (four accumulators). k
// advances one 32-element chunk a step: all threads stage the activation tile as f16 and
// TN of them decode one weight row's chunk each (the type's decode_chunk) as f16, then
// each subgroup does two 16-deep steps of one A load, four B loads and four
// multiply-adds from workgroup memory. The sums are staged through workgroup memory
// and stored inside the bounds.
// Lowering takes it for activations int8 with WEFT_GPU_COOP=1, where the adapter has
// 16 × 16 × 16 f16·f16 + f32 matrices and 32-lane subgroups (shaders.rs puts the enable
// directives first). On an H200 it is correct but slower than gemm_i8.wgsl so far.
// params: as gemm.wgsl: 0 m, 1 k, 2 n, 3 out_stride, 4 out_col, 5 row_bytes,
// 6 w_base, 7 groups_x, 11 x_stride, 12 x_off.
// x (binding 1) and the weight w (binding 2): gemm_tiles.wgsl, which reads them.
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

const TM: u32 = 64u;
const TN: u32 = 64u;
const THREADS: u32 = 128u;

// The chunk's activations, row r at [32r..], and its weight rows, row j at [32j..]:
// A row-major and B (k × n) column-major, both with stride 32.
var<workgroup> xs: array<f16, TM * 32u>;
var<workgroup> ws: array<f16, TN * 32u>;
// The tile's sums, row-major (zeros at the start: the accumulators' first load).
var<workgroup> cs: array<f32, TM * TN>;

@compute @workgroup_size(THREADS)
fn main(
    @builtin(local_invocation_index) li: u32,
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(subgroup_id) sg: u32,
) {
    let m = pu(0);
    let k = pu(1);
    let n = pu(2);
    let m0 = wg.y * TM;
    let n0 = wg.x * TN;
    for (var e = li; e < TM * TN; e += THREADS) {
        cs[e] = 0.0;
    }
    workgroupBarrier();
    let strip = 16u * sg * TN;
    var c0 = coopLoadT<coop_mat16x16<f32, C>>(&cs[strip], TN);
    var c1 = coopLoadT<coop_mat16x16<f32, C>>(&cs[strip + 16u], TN);
    var c2 = coopLoadT<coop_mat16x16<f32, C>>(&cs[strip + 32u], TN);
    var c3 = coopLoadT<coop_mat16x16<f32, C>>(&cs[strip + 48u], TN);
    for (var c = 0u; c < k / 32u; c++) {
        // The activation tile: TM rows × 8 vec4.
        for (var e = li; e < TM * 8u; e += THREADS) {
            let v = gemm_x4(m0, e, c);
            for (var t = 0u; t < 4u; t++) {
                xs[4u * e + t] = f16(v[t]);
            }
        }
        // The weight tile: one row's chunk a thread.
        if li < TN {
            let v = gemm_w_chunk(n0 + li, c);
            for (var t = 0u; t < 32u; t++) {
                ws[32u * li + t] = f16(v[t]);
            }
        }
        workgroupBarrier();
        for (var h = 0u; h < 32u; h += 16u) {
            let a = coopLoadT<coop_mat16x16<f16, A>>(&xs[16u * sg * 32u + h], 32u);
            c0 = coopMultiplyAdd(a, coopLoad<coop_mat16x16<f16, B>>(&ws[h], 32u), c0);
            c1 = coopMultiplyAdd(a, coopLoad<coop_mat16x16<f16, B>>(&ws[512u + h], 32u), c1);
            c2 = coopMultiplyAdd(a, coopLoad<coop_mat16x16<f16, B>>(&ws[1024u + h], 32u), c2);
            c3 = coopMultiplyAdd(a, coopLoad<coop_mat16x16<f16, B>>(&ws[1536u + h], 32u), c3);
        }
        workgroupBarrier();
    }
    coopStoreT(c0, &cs[strip], TN);
    coopStoreT(c1, &cs[strip + 16u], TN);
    coopStoreT(c2, &cs[strip + 32u], TN);
    coopStoreT(c3, &cs[strip + 48u], TN);
    workgroupBarrier();
    for (var e = li; e < TM * TN; e += THREADS) {
        let r = e / TN;
        let j = e % TN;
        if m0 + r < m && n0 + j < n {
            out[(m0 + r) * pu(3) + pu(4) + n0 + j] = cs[e];
        }
    }
}
