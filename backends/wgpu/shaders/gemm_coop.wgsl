// out[r, col + j] = Σ_i x[r, i] · w[j, i] for many activation rows (prefill) on the
// adapter's cooperative matrices (tensor cores): 16 × 16 × 16 tiles of f16 products summed
// in f32, over the weight decoded to f16 once a call (decode_f16_rows.wgsl).
// A workgroup of eight 32-lane subgroups computes a TM × TN = 128 × 128 tile: subgroup
// s the 32 activation rows 32(s % 4).. against the 64 weight rows 64(s / 4).., eight
// accumulators. k advances BK a step: the threads store the step's activation tile
// (converted to f16) and weight tile in workgroup memory, rows padded to XS halves so
// that the matrix loads of neighbouring rows fall in different banks, then load the
// next step's tiles into registers while each subgroup does BK / 16 steps of two A
// loads, four B loads and eight multiply-adds. On an H200 (8B shape, Q4_K_M, pp512) the
// register prefetch took 3,764 tok/s to 5,534, and BK 64 against 32 3,234 to 3,764;
// B read straight from the storage buffer, unstaged, gave 1,983.
// The sums go out through a 16 × 16 staging tile per subgroup, stored inside the bounds.
// Lowering takes it for activations int8 where the adapter has 16 × 16 × 16 f16·f16 + f32
// matrices and 32-lane subgroups (shaders.rs puts the enable directives first), and k
// is a whole number of BK steps.
// params: as gemm.wgsl: 0 m, 1 k, 2 n, 3 out_stride, 4 out_col, 11 x_stride, 12 x_off.
@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> w16: array<vec4<f16>>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

const TM: u32 = 128u;
const TN: u32 = 128u;
const BK: u32 = 64u;
const XS: u32 = BK + 8u;
const THREADS: u32 = 256u;
// The vec4 of each tile a thread stages a step (TM = TN: one row index serves both).
const LOADS: u32 = TM * BK / 4u / THREADS;

// The step's activation rows (row r at [XS·r..]) and weight rows (row j at [XS·j..]):
// A row-major and B (k × n) column-major.
var<workgroup> xs: array<f16, TM * XS>;
var<workgroup> ws: array<f16, TN * XS>;
// Each subgroup's 16 × 16 staging tile, row-major (zeros at the start: the
// accumulators' first load).
var<workgroup> cs: array<f32, 2048>;

// Stores subgroup sg's accumulator c (output rows r0.., columns j0..) through its
// staging tile: every subgroup calls it together, so its barriers are uniform.
fn store_tile(c: coop_mat16x16<f32, C>, sg: u32, lane: u32, r0: u32, j0: u32) {
    coopStoreT(c, &cs[256u * sg], 16u);
    workgroupBarrier();
    for (var e = lane; e < 256u; e += 32u) {
        let r = r0 + e / 16u;
        let j = j0 + e % 16u;
        if r < pu(0) && j < pu(2) {
            out[r * pu(3) + pu(4) + j] = cs[256u * sg + e];
        }
    }
    workgroupBarrier();
}

// A thread's share of step k0's tiles, loaded into registers: the activations' vec4 and
// the weight's 4 halves e = li + t · THREADS (row e / (BK / 4)), zeros past the rows.
fn fetch(
    li: u32,
    m0: u32,
    n0: u32,
    k0: u32,
    xr: ptr<function, array<vec4<f32>, LOADS>>,
    wr: ptr<function, array<vec4<f16>, LOADS>>,
) {
    for (var t = 0u; t < LOADS; t++) {
        let e = li + t * THREADS;
        let r = e / (BK / 4u);
        let q = e % (BK / 4u);
        (*xr)[t] = vec4<f32>(0.0);
        if m0 + r < pu(0) {
            (*xr)[t] = x[((m0 + r) * pu(11) + pu(12) + k0) / 4u + q];
        }
        (*wr)[t] = vec4<f16>(0.0);
        if n0 + r < pu(2) {
            (*wr)[t] = w16[((n0 + r) * pu(1) + k0) / 4u + q];
        }
    }
}

@compute @workgroup_size(THREADS)
fn main(
    @builtin(local_invocation_index) li: u32,
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(subgroup_id) sg: u32,
    @builtin(subgroup_invocation_id) lane: u32,
) {
    let k = pu(1);
    let m0 = wg.y * TM;
    let n0 = wg.x * TN;
    for (var e = li; e < 2048u; e += THREADS) {
        cs[e] = 0.0;
    }
    workgroupBarrier();
    var c00 = coopLoadT<coop_mat16x16<f32, C>>(&cs[256u * sg], 16u);
    var c01 = c00;
    var c02 = c00;
    var c03 = c00;
    var c10 = c00;
    var c11 = c00;
    var c12 = c00;
    var c13 = c00;
    let xa = 32u * (sg % 4u) * XS;
    let wb = 64u * (sg / 4u) * XS;
    var xr: array<vec4<f32>, LOADS>;
    var wr: array<vec4<f16>, LOADS>;
    fetch(li, m0, n0, 0u, &xr, &wr);
    for (var k0 = 0u; k0 < k; k0 += BK) {
        for (var t = 0u; t < LOADS; t++) {
            let e = li + t * THREADS;
            let at = (e / (BK / 4u)) * XS + 4u * (e % (BK / 4u));
            let h = vec4<f16>(xr[t]);
            xs[at] = h.x;
            xs[at + 1u] = h.y;
            xs[at + 2u] = h.z;
            xs[at + 3u] = h.w;
            ws[at] = wr[t].x;
            ws[at + 1u] = wr[t].y;
            ws[at + 2u] = wr[t].z;
            ws[at + 3u] = wr[t].w;
        }
        workgroupBarrier();
        if k0 + BK < k {
            fetch(li, m0, n0, k0 + BK, &xr, &wr);
        }
        for (var h = 0u; h < BK; h += 16u) {
            let a0 = coopLoadT<coop_mat16x16<f16, A>>(&xs[xa + h], XS);
            let a1 = coopLoadT<coop_mat16x16<f16, A>>(&xs[xa + 16u * XS + h], XS);
            var b = coopLoad<coop_mat16x16<f16, B>>(&ws[wb + h], XS);
            c00 = coopMultiplyAdd(a0, b, c00);
            c10 = coopMultiplyAdd(a1, b, c10);
            b = coopLoad<coop_mat16x16<f16, B>>(&ws[wb + 16u * XS + h], XS);
            c01 = coopMultiplyAdd(a0, b, c01);
            c11 = coopMultiplyAdd(a1, b, c11);
            b = coopLoad<coop_mat16x16<f16, B>>(&ws[wb + 32u * XS + h], XS);
            c02 = coopMultiplyAdd(a0, b, c02);
            c12 = coopMultiplyAdd(a1, b, c12);
            b = coopLoad<coop_mat16x16<f16, B>>(&ws[wb + 48u * XS + h], XS);
            c03 = coopMultiplyAdd(a0, b, c03);
            c13 = coopMultiplyAdd(a1, b, c13);
        }
        workgroupBarrier();
    }
    let r0 = m0 + 32u * (sg % 4u);
    let j0 = n0 + 64u * (sg / 4u);
    store_tile(c00, sg, lane, r0, j0);
    store_tile(c01, sg, lane, r0, j0 + 16u);
    store_tile(c02, sg, lane, r0, j0 + 32u);
    store_tile(c03, sg, lane, r0, j0 + 48u);
    store_tile(c10, sg, lane, r0 + 16u, j0);
    store_tile(c11, sg, lane, r0 + 16u, j0 + 16u);
    store_tile(c12, sg, lane, r0 + 16u, j0 + 32u);
    store_tile(c13, sg, lane, r0 + 16u, j0 + 48u);
}
