//! Every GPU kernel that reads stored weights, against the neutral quant crate's
//! scalar decoders: the embedding gather bit-for-bit, the matmul within float
//! reassociation error.

use proptest::prelude::*;
use weft_backend::{Pick, Top};
use weft_ir::{DType, GluAct, WeightView};
use weft_quant::kernel_for;
use weft_wgpu::RowsVariant;

/// Types the GPU backend decodes.
fn gpu_types() -> Vec<DType> {
    DType::ALL
        .into_iter()
        .filter(|&d| weft_wgpu::supports(d))
        .collect()
}

/// Random stored bytes for `rows × cols` of `dtype`, with every f16 scale field set to a
/// finite value so the decoded values are finite.
fn random_weight(dtype: DType, rows: usize, cols: usize, seed: u64) -> WeightView {
    let row_bytes = cols / dtype.block_size() * dtype.block_bytes();
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut bytes: Vec<u8> = (0..rows * row_bytes)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            s as u8
        })
        .collect();
    for &off in weft_quant::f16_field_offsets(dtype) {
        for b in (0..bytes.len()).step_by(dtype.block_bytes()) {
            // A small positive or negative f16 (exponent 0x0c..0x0f: 2^-3..2^0, from
            // both random bytes: one alone left the sign and exponent fixed).
            let r = u16::from_le_bytes([bytes[b + off], bytes[b + off + 1]]);
            let v = 0x3000u16 | (r & 0x8fff);
            bytes[b + off..b + off + 2].copy_from_slice(&v.to_le_bytes());
        }
    }
    if dtype == DType::F32 {
        for c in bytes.chunks_exact_mut(4) {
            let v = (u32::from_le_bytes([c[0], c[1], c[2], c[3]]) % 2000) as f32 / 1000.0 - 1.0;
            c.copy_from_slice(&v.to_le_bytes());
        }
    }
    if dtype == DType::F16 || dtype == DType::BF16 {
        for c in bytes.chunks_exact_mut(2) {
            let v = (u16::from_le_bytes([c[0], c[1]]) % 2000) as f32 / 1000.0 - 1.0;
            let h = if dtype == DType::F16 {
                half_bits(v)
            } else {
                (v.to_bits() >> 16) as u16
            };
            c.copy_from_slice(&h.to_le_bytes());
        }
    }
    WeightView::owned("w", dtype, vec![rows, cols], bytes)
}

fn half_bits(v: f32) -> u16 {
    // Values in [-1, 1) with few mantissa bits: exact in f16.
    let q = (v * 1024.0).round() / 1024.0;
    let bits = q.to_bits();
    if q == 0.0 {
        return 0;
    }
    let sign = ((bits >> 16) & 0x8000) as u16;
    let exp = ((bits >> 23) & 0xff) as i32 - 127 + 15;
    let man = ((bits >> 13) & 0x3ff) as u16;
    sign | ((exp as u16) << 10) | man
}

fn cols_for(dtype: DType, blocks: usize) -> usize {
    // Float types get widths that are not multiples of 32, to test chunk tails.
    match dtype.block_size() {
        1 => blocks * 32 + 7,
        b => blocks * b,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(6))]

    /// The greedy pick on the device is the host's: the first of tied maxima, or the
    /// first value that is NaN or infinite, over rows up to a 262k vocabulary's width
    /// (values on a coarse grid, so ties are common).
    #[test]
    fn the_gpu_pick_is_the_host_pick(
        len in prop_oneof![1usize..600, 30_000usize..270_000],
        seed in any::<u64>(),
        bad in prop::collection::vec((any::<prop::sample::Index>(), 0u8..3), 0..3),
    ) {
        let mut s = seed | 1;
        let mut row: Vec<f32> = (0..len)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                (s % 64) as f32 - 40.0
            })
            .collect();
        for (at, kind) in &bad {
            row[at.index(len)] = [f32::NAN, f32::INFINITY, f32::NEG_INFINITY][*kind as usize];
        }
        // NaN values compare by their bits.
        let bits = |p: Pick| match p {
            Pick::Token(t) => (0, t, 0),
            Pick::NonFinite { id, value } => (1, id, value.to_bits()),
        };
        prop_assert_eq!(bits(weft_wgpu::pick(&row).unwrap()), bits(weft_backend::pick(&row)));
    }

    #[test]
    fn gather_decodes_like_the_reference(rows in 1usize..5, blocks in 1usize..4, seed in any::<u64>()) {
        for dtype in gpu_types() {
            let cols = cols_for(dtype, blocks);
            let w = random_weight(dtype, rows, cols, seed);
            let ids: Vec<u32> = (0..rows as u32).rev().collect();
            let got = weft_wgpu::decode_rows(&w, &ids).unwrap();
            let mut want = vec![0.0; rows * cols];
            for (o, &id) in want.chunks_exact_mut(cols).zip(&ids) {
                kernel_for(dtype).decode_row(w.row(id as usize), o);
            }
            prop_assert_eq!(got, want, "{}", dtype);
        }
    }

    /// The tensor-core GEMM's weights: every type's chunks decoded to f16, each value
    /// the reference's within one f16 step (the rounding of the device's conversion).
    #[test]
    fn f16_decoding_matches_the_reference(rows in 1usize..5, blocks in 1usize..4, seed in any::<u64>()) {
        for dtype in gpu_types() {
            let cols = blocks * dtype.block_size().max(32);
            let w = random_weight(dtype, rows, cols, seed);
            let got = weft_wgpu::decode_f16(&w).unwrap();
            let mut want = vec![0.0; rows * cols];
            for (j, o) in want.chunks_exact_mut(cols).enumerate() {
                kernel_for(dtype).decode_row(w.row(j), o);
            }
            for (i, (&g, &v)) in got.iter().zip(&want).enumerate() {
                let g = weft_quant::f16_to_f32(g);
                let step = (v.abs().max(6.1e-5) * 2f32.powi(-10)).max(2f32.powi(-24));
                prop_assert!((g - v).abs() <= step, "{} [{}]: {} vs {}", dtype, i, g, v);
            }
        }
    }

    #[test]
    fn matmul_matches_the_reference(m in 1usize..7, n in 1usize..20, blocks in 1usize..4, seed in any::<u64>()) {
        // One row (the matvec kernel, with a GPU's 32 lanes a row too) and several.
        check_matmul(1, n, |d| cols_for(d, blocks), seed, Some(2), 0, false)?;
        // Rows of more super-blocks than a GPU matvec's lanes take at once (8 for Q4_K,
        // 4 for Q6_K), of an even count (Q6_K takes the several-rows kernel then).
        check_matmul(1, n, |d| cols_for(d, 2 * blocks + 8), seed, Some(2), 0, false)?;
        check_matmul(1, n, |d| cols_for(d, blocks), seed, None, 0, false)?;
        check_matmul(m, n, |d| cols_for(d, blocks), seed, None, 0, false)?;
        // The rows past a byte offset into the weight (a matmul split across dispatches).
        check_matmul(1, n, |d| cols_for(d, blocks), seed, Some(2), n / 2, false)?;
        check_matmul(m, n, |d| cols_for(d, blocks), seed, None, n / 2, false)?;
    }

    /// Activations int8: one row on x quantised per 32 values (the Q4_K and Q6_K
    /// several-rows kernels' integer-dot variants; other types and several rows keep
    /// f32), within the quantisation bound.
    #[test]
    fn int8_matvec_stays_within_the_quantisation_bound(n in 1usize..20, blocks in 1usize..4, seed in any::<u64>()) {
        let int8 = true;
        check_matmul(1, n, |d| cols_for(d, 2 * blocks), seed, Some(2), 0, int8)?;
        check_matmul(1, n, |d| cols_for(d, 2 * blocks + 8), seed, Some(2), n / 2, int8)?;
        check_matmul(2, n, |d| cols_for(d, blocks), seed, None, 0, int8)?;
    }

    /// The GLU epilogue of the several-rows matvecs: act(gate) · up from one [gate | up]
    /// weight, against the quant crate's dots. silu' and gelu' stay within 1.13 in
    /// magnitude, so dot errors e_g, e_u move the result by at most
    /// 1.13·e_g·|u| + |act(g)|·e_u (u, g the exact dots, |u| grown by e_u).
    #[test]
    fn glu_matvec_matches_the_reference(f in 1usize..12, blocks in 1usize..3, seed in any::<u64>()) {
        let k = 512 * blocks;
        let x: Vec<f32> = (0..k).map(|i| ((i * 7919 + seed as usize) % 1000) as f32 / 250.0 - 2.0).collect();
        for dtype in [DType::Q4_K, DType::Q6_K] {
            let w = random_weight(dtype, 2 * f, k, seed);
            for act in [GluAct::Silu, GluAct::Gelu] {
                for (int8, subgroups) in [(false, true), (false, false), (true, true)] {
                    let variant = RowsVariant { int8, subgroups, glu: true, ..RowsVariant::default() };
                    let got = weft_wgpu::matmul(&x, 1, &w, Some(2), 0, variant, act).unwrap();
                    prop_assert_eq!(got.len(), f);
                    for (j, &got) in got.iter().enumerate() {
                        let g = kernel_for(dtype).dot(w.row(j), &x);
                        let u = kernel_for(dtype).dot(w.row(f + j), &x);
                        let (eg, eu) = (dot_bound(&w, j, &x, int8), dot_bound(&w, f + j, &x, int8));
                        let a = match act {
                            GluAct::Silu => g / (1.0 + (-g).exp()),
                            GluAct::Gelu => 0.5 * g * (1.0 + (0.797_884_6 * (g + 0.044715 * g * g * g)).tanh()),
                        };
                        let want = a * u;
                        let bound = 1.13 * eg * (u.abs() + eu) + a.abs() * eu + 1e-5 * want.abs();
                        prop_assert!(
                            (got - want).abs() <= bound,
                            "{} {:?} int8 {} [{}]: {} vs {}, bound {:.3e}", dtype, act, int8, j, got, want, bound
                        );
                    }
                }
            }
        }
    }

    /// add_rms_norm's int8 variant: the normed half as the plain kernel computes it, and
    /// each 32-value block of it quantised in place: the block's scale is its largest
    /// magnitude / 127 and every value is within half a step of q · scale.
    #[test]
    fn fused_norm_quantises_each_block_of_its_output(blocks in 1usize..=128, seed in any::<u64>()) {
        let d = 32 * blocks;
        let val = |i: usize, s: u64| (((i as u64 * 7919 + s) % 2000) as f32 / 1000.0 - 1.0) * (1 + i % 7) as f32;
        let a: Vec<f32> = (0..d).map(|i| val(i, seed)).collect();
        let b: Vec<f32> = (0..d).map(|i| val(i, seed / 3)).collect();
        let w: Vec<f32> = (0..d).map(|i| val(i, seed / 7)).collect();
        let (row, q) = weft_wgpu::add_rms_norm_q8(&a, &b, &w, 1e-5).unwrap();
        let ms: f32 = a.iter().zip(&b).map(|(x, y)| (x + y) * (x + y)).sum::<f32>() / d as f32;
        let inv = 1.0 / (ms + 1e-5).sqrt();
        for i in 0..d {
            let want = (a[i] + b[i]) * inv * w[i];
            prop_assert!((row[d + i] - want).abs() <= 1e-4 * want.abs().max(1.0), "[{}] {} vs {}", i, row[d + i], want);
        }
        check_q8(&row[d..], &q)?;
    }

    /// The one-row matvec's norm prologue (a decode add_rms_norm whose normed half the
    /// matvec alone reads, worked out by each workgroup): each dot is the weight row's
    /// with norm(a + b) · (nw + offset) as the host works it out (in f64, then f32),
    /// within the f32 dot's bound, for rows up to 4096 wide (every count of values a
    /// thread holds) read from offsets into their buffers; and the sum stored is a + b.
    /// Models' eps (1e-5) hardly moves a norm, so eps also takes values that do.
    #[test]
    fn matvec_norm_prologue_matches_the_reference(blocks in prop_oneof![1usize..=20, 120usize..=128], rows in 1usize..70, offs in (0usize..3, 0usize..3), eps in prop_oneof![Just(1e-5f32), 0.5f32..4.0], seed in any::<u64>()) {
        let k = 32 * blocks;
        let (a_off, b_off) = (4 * offs.0, 4 * offs.1);
        let val = |i: usize, s: u64| (((i as u64 * 7919 + s) % 2000) as f32 / 1000.0 - 1.0) * (1 + i % 5) as f32;
        let a: Vec<f32> = (0..a_off + k).map(|i| val(i, seed)).collect();
        let b: Vec<f32> = (0..b_off + k).map(|i| val(i, seed / 3)).collect();
        let nw: Vec<f32> = (0..k).map(|i| val(i, seed / 7)).collect();
        let sum: Vec<f32> = (0..k).map(|i| a[a_off + i] + b[b_off + i]).collect();
        let ms = sum.iter().map(|&v| v as f64 * v as f64).sum::<f64>() / k as f64;
        let inv = (1.0 / (ms + eps as f64).sqrt()) as f32;
        let types = [(DType::Q4_0, 0.0), (DType::Q4_1, 1.0), (DType::Q5_1, 0.0), (DType::Q8_0, 1.0), (DType::Q5_K, 0.0)];
        for (dtype, offset) in types.into_iter().filter(|(t, _)| k % t.block_size() == 0) {
            let w = random_weight(dtype, rows, k, seed);
            let (dots, got_sum) = weft_wgpu::matvec_norm_prologue(&a, a_off, &b, b_off, &w, &nw, eps, offset).unwrap();
            prop_assert_eq!(&got_sum, &sum);
            let normed: Vec<f32> = (0..k).map(|i| sum[i] * inv * (nw[i] + offset)).collect();
            prop_assert_eq!(dots.len(), rows);
            for (j, &got) in dots.iter().enumerate() {
                let want = kernel_for(dtype).dot(w.row(j), &normed);
                let bound = dot_bound(&w, j, &normed, false);
                prop_assert!((got - want).abs() <= bound, "{} [{}]: {} vs {}, bound {:.3e}", dtype, j, got, want, bound);
            }
        }
    }

    /// The int8 matvec's norm epilogue (a decode add_rms_norm done by the matvec whose
    /// row it alone reads): each stored value is the residual plus the dot, within the
    /// int8 dot's bound; the q8 words hold that sum normed, each block quantised (its
    /// scale within 1e-5 of the host's, for the GPU sums the squares in blocks and a
    /// tree, and each value within 0.501 of a step); and every count is back at 0, so a second
    /// dispatch on the same buffers runs the same.
    #[test]
    fn matvec_norm_epilogue_matches_the_reference(blocks in prop_oneof![1usize..=16, 100usize..=128], width in 1usize..=3, seed in any::<u64>()) {
        let (d, k) = (32 * blocks, 512 * width);
        let val = |i: usize, s: u64| (((i as u64 * 7919 + s) % 2000) as f32 / 1000.0 - 1.0) * (1 + i % 5) as f32;
        let x: Vec<f32> = (0..k).map(|i| val(i, seed)).collect();
        let res: Vec<f32> = (0..d).map(|i| val(i, seed / 3)).collect();
        let nw: Vec<f32> = (0..d).map(|i| val(i, seed / 7)).collect();
        for (dtype, offset) in [(DType::Q4_K, 0.0), (DType::Q6_K, 1.0)] {
            let w = random_weight(dtype, d, k, seed);
            let (sum, q8, left) = weft_wgpu::matvec_norm_q8(&x, &w, &res, &nw, 1e-5, offset, 2).unwrap();
            prop_assert_eq!(left, 0);
            for j in 0..d {
                let want = res[j] + kernel_for(dtype).dot(w.row(j), &x);
                let bound = dot_bound(&w, j, &x, true);
                prop_assert!((sum[j] - want).abs() <= bound, "{} [{}]: {} vs {}, bound {:.3e}", dtype, j, sum[j], want, bound);
            }
            // In f64, so that the host's own rounding stays far below the tolerance.
            let ms = sum.iter().map(|&v| v as f64 * v as f64).sum::<f64>() / d as f64;
            let inv = (1.0 / (ms + 1e-5).sqrt()) as f32;
            let normed: Vec<f32> = (0..d).map(|j| sum[j] * inv * (nw[j] + offset)).collect();
            check_q8_within(&normed, &q8, 1e-5, 0.501)?;
        }
    }

    /// Decode attention's output quantised where it is written (activations int8: no
    /// quantize_q8 dispatch), in one chunk of keys and in several that the last to
    /// finish merges, grouped-query heads of 32 to 256 dims: the output as a softmax over
    /// the keys gives it, every block of it quantised, and every chunk count back at 0
    /// (so the second of two dispatches runs the same).
    #[test]
    fn decode_attention_quantises_its_output(kv in 1usize..3, group in 1usize..4, width in 1usize..=8, keys in 1usize..150, chunks in 1usize..4, seed in any::<u64>()) {
        let (nh, hd, chunks) = (kv * group, 32 * width, chunks.min(keys));
        let val = |i: usize, s: u64| ((i as u64 * 7919 + s) % 2000) as f32 / 1000.0 - 1.0;
        let q: Vec<f32> = (0..nh * hd).map(|i| val(i, seed)).collect();
        let kc: Vec<f32> = (0..keys * kv * hd).map(|i| val(i, seed / 3)).collect();
        let vc: Vec<f32> = (0..keys * kv * hd).map(|i| val(i, seed / 5)).collect();
        let (row, q8, left) = weft_wgpu::attention_q8(&q, &kc, &vc, nh, kv, chunks).unwrap();
        prop_assert_eq!(left, 0);
        for h in 0..nh {
            let want = attend(&q[h * hd..(h + 1) * hd], &kc, &vc, 0..keys, |p| p * kv * hd + (h / group) * hd);
            for (e, want) in want.into_iter().enumerate() {
                let got = row[h * hd + e];
                prop_assert!((got - want).abs() <= 1e-4, "head {} [{}]: {} vs {}", h, e, got, want);
            }
        }
        check_q8(&row, &q8)?;
    }

    /// Prefill attention over blocks of rows: grouped-query ratios up to 5:1, heads of
    /// any multiple of 4 dims up to 256, partial blocks, prompts after earlier positions
    /// and sliding windows: each row a softmax over its own keys.
    #[test]
    fn prefill_attention_matches_the_reference(kv in 1usize..3, group in 1usize..6, width in 1usize..=64, rows in 1usize..40, pos0 in 0usize..30, window in prop_oneof![Just(0usize), 1usize..8], seed in any::<u64>()) {
        let (nh, hd, keys) = (kv * group, 4 * width, pos0 + rows);
        let val = |i: usize, s: u64| ((i as u64 * 7919 + s) % 2000) as f32 / 1000.0 - 1.0;
        let q: Vec<f32> = (0..rows * nh * hd).map(|i| val(i, seed)).collect();
        let kc: Vec<f32> = (0..keys * kv * hd).map(|i| val(i, seed / 3)).collect();
        let vc: Vec<f32> = (0..keys * kv * hd).map(|i| val(i, seed / 5)).collect();
        let out = weft_wgpu::attention_rows(&q, &kc, &vc, nh, kv, hd, pos0, window).unwrap();
        for t in 0..rows {
            let p = pos0 + t;
            let first = match window {
                0 => 0,
                w => (p + 1).saturating_sub(w),
            };
            for h in 0..nh {
                let qo = (t * nh + h) * hd;
                let want = attend(&q[qo..qo + hd], &kc, &vc, first..p + 1, |j| j * kv * hd + (h / group) * hd);
                for (e, want) in want.into_iter().enumerate() {
                    let got = out[qo + e];
                    prop_assert!((got - want).abs() <= 1e-4, "row {} head {} [{}]: {} vs {}", t, h, e, got, want);
                }
            }
        }
    }

    /// Enough rows for the register-tiled GEMM, with partial tiles on both sides.
    #[test]
    fn gemm_matches_the_reference(m in 32usize..80, n in 1usize..140, blocks in 1usize..3, seed in any::<u64>()) {
        // Float types too: widths of whole chunks.
        check_matmul(m, n, |d| blocks * d.block_size().max(32), seed, None, 0, false)?;
        check_matmul(m, n, |d| blocks * d.block_size().max(32), seed, None, n / 3, false)?;
    }

    /// Activations int8 at GEMM rows: the integer-dot GEMM (Q4_K, Q6_K, Q8_0, Q4_0,
    /// Q4_1, Q5_0; the other types keep the f32 GEMM) within the quantisation bound, over
    /// partial tiles and k steps of 1 to 5 blocks.
    #[test]
    fn int8_gemm_stays_within_the_quantisation_bound(m in 32usize..80, n in 1usize..140, blocks in 1usize..6, seed in any::<u64>()) {
        let cols = |d: DType| match d.block_size() {
            256 => blocks.div_ceil(2) * 256,
            b => blocks * b.max(32),
        };
        check_matmul(m, n, cols, seed, None, 0, true)?;
        check_matmul(m, n, cols, seed, None, n / 3, true)?;
    }
}

/// The top-k on the device is the host's, in the same order: rows of one value up to a
/// 262k vocabulary and past it, values on a coarse grid (ties everywhere, +0 and -0
/// among them), every value tied, and rows holding -inf, inf or NaN (the first one is
/// reported, wherever the rounds meet it); k over the row's length is clamped.
#[test]
fn the_gpu_top_k_is_the_host_top_k() {
    let bits = |t: Top| match t {
        Top::Candidates(c) => (0, c.iter().map(|&(v, i)| (v.to_bits(), i)).collect()),
        Top::NonFinite { id, value } => (1, vec![(value.to_bits(), id)]),
    };
    let mut s = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        s
    };
    for len in [1usize, 7, 2048, 2049, 49_152, 262_145] {
        let grid: Vec<f32> = (0..len)
            .map(|_| match next() % 64 {
                0 => -0.0,
                v => v as f32 - 40.0,
            })
            .collect();
        let mut rows = vec![grid.clone(), vec![1.5; len]];
        for bad in [
            &[f32::NEG_INFINITY][..],
            &[f32::NAN, f32::INFINITY],
            &[f32::INFINITY, f32::NEG_INFINITY, f32::NAN],
        ] {
            let mut row = grid.clone();
            for &v in bad {
                row[next() as usize % len] = v;
            }
            rows.push(row);
        }
        // The only non-finite value last: the final round must still find it.
        let mut row = grid.clone();
        row[len - 1] = f32::NAN;
        rows.push(row);
        for row in &rows {
            for k in [1, 40, 104, 256] {
                let want = weft_backend::top_k(row, k);
                if let Top::Candidates(c) = &want {
                    assert_eq!(c.len(), k.min(len));
                }
                let got = weft_wgpu::top_k(row, k).unwrap();
                assert_eq!(bits(got), bits(want), "len {len}, k {k}");
            }
        }
    }
    for k in [0, weft_backend::MAX_TOP_K + 1] {
        assert!(weft_wgpu::top_k(&[1.0], k).is_err(), "k {k}");
    }
}

/// `q` (the packed values, then the block scales' bits) holds `row` quantised per 32
/// values: each block's scale its largest magnitude / 127, each value within half a step
/// of q · scale.
/// One head's attention output for query `q` over cache positions `keys` (position j's
/// head at `at(j)` in `kc` and `vc`), scaled by 1/√head_dim: the softmax reference.
fn attend(
    q: &[f32],
    kc: &[f32],
    vc: &[f32],
    keys: std::ops::Range<usize>,
    at: impl Fn(usize) -> usize,
) -> Vec<f32> {
    let hd = q.len();
    let s: Vec<f32> = keys
        .clone()
        .map(|j| (0..hd).map(|e| q[e] * kc[at(j) + e]).sum::<f32>() / (hd as f32).sqrt())
        .collect();
    let m = s.iter().fold(f32::MIN, |a, &b| a.max(b));
    let w: Vec<f32> = s.iter().map(|x| (x - m).exp()).collect();
    let l: f32 = w.iter().sum();
    (0..hd)
        .map(|e| {
            keys.clone()
                .zip(&w)
                .map(|(j, w)| w * vc[at(j) + e])
                .sum::<f32>()
                / l
        })
        .collect()
}

fn check_q8(row: &[f32], q: &[u32]) -> Result<(), TestCaseError> {
    check_q8_within(row, q, 1e-6, 0.5001)
}

/// `check_q8` where `row` is computed apart from the kernel: each scale within `rel` of
/// max / 127, each value within `step` scales of q · scale.
fn check_q8_within(row: &[f32], q: &[u32], rel: f32, step: f32) -> Result<(), TestCaseError> {
    let d = row.len();
    for (blk, hb) in row.chunks(32).enumerate() {
        let amax = hb.iter().fold(0f32, |m, v| m.max(v.abs()));
        let scale = f32::from_bits(q[d / 4 + blk]);
        prop_assert!(
            (scale - amax / 127.0).abs() <= rel * amax,
            "block {}: scale {} for max {}",
            blk,
            scale,
            amax
        );
        for (e, &v) in hb.iter().enumerate() {
            let i = 32 * blk + e;
            let qv = (q[i / 4] >> (8 * (i % 4))) as u8 as i8 as f32;
            prop_assert!(
                (qv * scale - v).abs() <= step * scale + 1e-7,
                "[{}] {} · {} vs {}",
                i,
                qv,
                scale,
                v
            );
        }
    }
    Ok(())
}

/// The GPU matmul of m random activation rows and an n-row weight of each type
/// (`cols(dtype)` wide; `rows` weight rows a workgroup; the weight's rows from `skip`
/// on) against the quant crate's dots: within 1e-5 of Σ|w·x|, plus with int8
/// activations (`int8`) what quantising x per 32 values can move the dot, Σ_blocks
/// 0.5001·d·Σ_block |w| (d = max|x|/127 of the block; its own rounding adds a few ulps).
fn check_matmul(
    m: usize,
    n: usize,
    cols: impl Fn(DType) -> usize,
    seed: u64,
    rows: Option<usize>,
    skip: usize,
    int8: bool,
) -> Result<(), TestCaseError> {
    for dtype in gpu_types() {
        let k = cols(dtype);
        let w = random_weight(dtype, n, k, seed);
        // Off centre, so that a block's Σx is far from 0 and a type's offset term
        // (Q4_1's m, the K-quants' mins) counts.
        let mut x: Vec<f32> = (0..m * k)
            .map(|i| ((i * 7919 + seed as usize) % 1000) as f32 / 500.0 - 0.75)
            .collect();
        if int8 {
            // An outlier (a coarse block) and an all-zero block.
            x[seed as usize % k] *= 50.0;
            if k >= 64 {
                x[32..64].fill(0.0);
            }
        }
        // Both ways a several-rows matvec adds its lanes' sums (the same kernel elsewhere).
        for subgroups in [true, false] {
            let variant = RowsVariant {
                int8,
                subgroups,
                ..RowsVariant::default()
            };
            let got = weft_wgpu::matmul(&x, m, &w, rows, skip, variant, GluAct::Silu).unwrap();
            check_dots(&w, &x, m, k, skip, &got, int8)?;
        }
    }
    Ok(())
}

/// How far the GPU's dot of weight row `j` with `x` may be from the quant crate's: 1e-5
/// of Σ|w·x|, plus with int8 activations Σ_blocks 0.5001·d·Σ_block |w|.
fn dot_bound(w: &WeightView, j: usize, x: &[f32], int8: bool) -> f32 {
    let mut row = vec![0.0; x.len()];
    kernel_for(w.dtype).decode_row(w.row(j), &mut row);
    let mag: f32 = row.iter().zip(x).map(|(a, b)| (a * b).abs()).sum();
    let mut bound = 1e-5 * mag.max(1.0);
    if int8 {
        for (xb, wb) in x.chunks(32).zip(row.chunks(32)) {
            let d = xb.iter().fold(0f32, |a, v| a.max(v.abs())) / 127.0;
            bound += 0.5001 * d * wb.iter().map(|v| v.abs()).sum::<f32>();
        }
    }
    bound
}

/// `got` (m × the weight's rows from `skip`) against the quant crate's dots.
fn check_dots(
    w: &WeightView,
    x: &[f32],
    m: usize,
    k: usize,
    skip: usize,
    got: &[f32],
    int8: bool,
) -> Result<(), TestCaseError> {
    let (dtype, n) = (w.dtype, w.rows());
    let cols = n - skip;
    for r in 0..m {
        for (c, j) in (skip..n).enumerate() {
            let want = kernel_for(dtype).dot(w.row(j), &x[r * k..(r + 1) * k]);
            let bound = dot_bound(w, j, &x[r * k..(r + 1) * k], int8);
            let g = got[r * cols + c];
            prop_assert!(
                (g - want).abs() <= bound,
                "{dtype} int8 {int8} m={m} n={n} k={k} [{r},{j}]: {g} vs {want}, bound {bound:.3e}"
            );
        }
    }
    Ok(())
}
