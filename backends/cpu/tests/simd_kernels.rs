//! The SIMD kernels (and the portable path) against an oracle: weights decoded by the
//! neutral quant crate's scalar decoders, dotted in f64. Random shapes: m = 1..=9
//! activation rows (every tile shape), odd weight-row counts (the two-row decode
//! tile's tail), lengths that are not a multiple of 256 wherever the type allows,
//! stacked weights of mixed types.
//!
//! f32 mode: within 1e-5 of Σ|w·x| (the decoded weights are bit-exact; only the
//! order of the sum differs). Int8 mode: each activation moves by at most half its
//! block's step d = max|x|/127 (d's own rounding adds a few ulps, hence 0.5001), so
//! the error is at most Σ_blocks 0.5001·d·Σ_block |w|, plus the same 1e-5·Σ|w·x|.

use proptest::prelude::*;
use weft_backend::{Activations, MatKernel};
use weft_cpu::attention::ScoreRows;
use weft_cpu::matmul::{matmul_with, Config};
use weft_cpu::q8::{Q8KRows, Q8Rows};
use weft_cpu::repack::Packed;
use weft_cpu::{simd, Isa};
use weft_ir::{DType, WeightView};
use weft_reference::ops::KvRows;

mod common;
use common::{decoded, weight, Rng};

fn activations(m: usize, k: usize, rng: &mut Rng) -> Vec<f32> {
    let mut x: Vec<f32> = (0..m * k).map(|_| 4.0 * rng.f()).collect();
    for row in x.chunks_exact_mut(k) {
        match rng.next() % 4 {
            0 => row[(rng.next() % k as u64) as usize] *= 50.0,
            1 => row[..k.min(32)].fill(0.0),
            _ => {}
        }
    }
    x
}

/// The activation block length the integer kernels quantise `dtype`'s inputs in
/// (None: the float types keep f32 activations in int8 mode).
fn int8_block(dtype: DType, isa: Isa) -> Option<usize> {
    let (_, needs) = simd::kernel(isa, Activations::Int8, dtype)?;
    match needs {
        simd::Needs::F32 => None,
        simd::Needs::Q8 => Some(32),
        simd::Needs::Q8K => Some(256),
    }
}

/// Checks `out` = x · [ws]ᵀ for every element against the f64 oracle.
fn check(cfg: Config, ws: &[&WeightView], x: &[f32], m: usize, out: &[f32]) {
    let k = ws[0].cols();
    let n: usize = ws.iter().map(|w| w.rows()).sum();
    let mut j0 = 0;
    for w in ws {
        let wd = decoded(w);
        let qblock = match cfg.activations {
            Activations::Int8 => int8_block(w.dtype, cfg.isa),
            Activations::F32 => None,
        };
        for i in 0..m {
            let xi = &x[i * k..(i + 1) * k];
            for j in 0..w.rows() {
                let wj = &wd[j * k..(j + 1) * k];
                let (mut want, mut abs) = (0f64, 0f64);
                for (a, b) in xi.iter().zip(wj) {
                    let t = *a as f64 * *b as f64;
                    want += t;
                    abs += t.abs();
                }
                let mut bound = 1e-5 * abs + 1e-30;
                if let Some(qb) = qblock {
                    for (xb, wb) in xi.chunks(qb).zip(wj.chunks(qb)) {
                        let d = xb.iter().fold(0f32, |a, v| a.max(v.abs())) as f64 / 127.0;
                        let wabs: f64 = wb.iter().map(|v| v.abs() as f64).sum();
                        bound += 0.5001 * d * wabs;
                    }
                }
                let got = out[i * n + j0 + j] as f64;
                assert!(
                    (got - want).abs() <= bound,
                    "{} {:?} {:?} m={m} n={n} k={k} [{i},{}]: got {got}, want {want}, bound {bound:.3e}",
                    w.dtype,
                    cfg.isa,
                    cfg.activations,
                    j0 + j
                );
            }
        }
        j0 += w.rows();
    }
}

/// `x · [ws]ᵀ` with the weights in their stored layout, and with every weight the
/// config's kernels read packed in its packed layout (the same result, within the
/// same bound).
fn run_both(
    cfg: Config,
    ws: &[&WeightView],
    x: &[f32],
    m: usize,
    kernel: MatKernel,
) -> [Vec<f32>; 2] {
    let packed = Packed::for_weights(&cfg, ws.iter().copied());
    [Packed::default(), packed].map(|p| {
        let n: usize = ws.iter().map(|w| w.rows()).sum();
        let mut out = vec![f32::NAN; m * n];
        matmul_with(&cfg, &p, x, m, ws, kernel, &mut out);
        out
    })
}

fn configs() -> Vec<Config> {
    let mut c = Vec::new();
    // A VNNI machine checks the plain AVX2 kernels too.
    let isas = match Isa::detect() {
        Isa::Avx2Vnni => vec![Isa::Avx2Vnni, Isa::Avx2, Isa::Portable],
        isa => vec![isa, Isa::Portable],
    };
    for isa in isas {
        for activations in [Activations::F32, Activations::Int8] {
            c.push(Config { isa, activations });
        }
    }
    c.dedup();
    c
}

/// A row length for `dtype` from `units`: any length for the float types, any
/// number of 32-blocks (so not a multiple of 256) for the 32-element types.
fn k_for(dtype: DType, units: usize, odd: usize) -> usize {
    match dtype.block_size() {
        1 => 8 * units + odd % 8,
        bs => bs * units,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn every_type_every_mode(
        m in 1usize..=9,
        n in 1usize..=21,
        units in 1usize..=9,
        odd in 0usize..8,
        seed in any::<u64>(),
    ) {
        let mut rng = Rng(seed | 1);
        for dtype in DType::ALL {
            let units = if dtype.block_size() == 256 { 1 + units % 3 } else { units };
            let k = k_for(dtype, units, odd);
            let w = weight(dtype, n, k, &mut rng);
            let x = activations(m, k, &mut rng);
            for cfg in configs() {
                for kernel in [MatKernel::Dot, MatKernel::DecodeReuse] {
                    for out in run_both(cfg, &[&w], &x, m, kernel) {
                        check(cfg, &[&w], &x, m, &out);
                    }
                }
            }
        }
    }

    /// Fused projections: weights of different types over one input, as a Gemma 3
    /// q/k/v (Q5_0, Q5_0, Q8_0) or a k-quant mix; outputs side by side.
    #[test]
    fn stacked_weights_of_mixed_types(
        m in 1usize..=9,
        n in 1usize..=13,
        seed in any::<u64>(),
    ) {
        let mut rng = Rng(seed | 1);
        let k = 512;
        let types = [DType::Q5_0, DType::Q8_0, DType::Q4_K, DType::Q6_K, DType::F16, DType::Q4_1];
        let ws: Vec<WeightView> = types
            .iter()
            .enumerate()
            .map(|(i, &t)| weight(t, n + i, k, &mut rng))
            .collect();
        let refs: Vec<&WeightView> = ws.iter().collect();
        let x = activations(m, k, &mut rng);
        for cfg in configs() {
            for out in run_both(cfg, &refs, &x, m, MatKernel::DecodeReuse) {
                check(cfg, &refs, &x, m, &out);
            }
        }
    }

    /// A row's result does not depend on the batch it came in (tile shapes differ with
    /// m): rows computed in two batches, split anywhere, equal one batch bit for bit.
    /// Sessions rely on it (a truncated and resumed session equals a fresh one).
    #[test]
    fn rows_do_not_depend_on_the_batch(
        m in 2usize..=19,
        split in 1usize..19,
        n in 1usize..=19,
        seed in any::<u64>(),
    ) {
        let split = split.min(m - 1);
        let mut rng = Rng(seed | 1);
        for dtype in DType::ALL {
            let k = k_for(dtype, if dtype.block_size() == 256 { 2 } else { 9 }, 5);
            let w = weight(dtype, n, k, &mut rng);
            let x = activations(m, k, &mut rng);
            for activations in [Activations::F32, Activations::Int8] {
                let cfg = Config { isa: Isa::detect(), activations };
                let kernel = MatKernel::Dot;
                let all = run_both(cfg, &[&w], &x, m, kernel);
                let head = run_both(cfg, &[&w], &x[..split * k], split, kernel);
                let tail = run_both(cfg, &[&w], &x[split * k..], m - split, kernel);
                for ((all, head), tail) in all.iter().zip(head).zip(tail) {
                    let parts = [head, tail].concat();
                    let same = all.iter().zip(&parts).all(|(a, b)| a.to_bits() == b.to_bits());
                    prop_assert!(same, "{} {:?} m={} split={}", dtype, activations, m, split);
                }
            }
        }
    }

    /// The AVX2 quantisers give exactly the portable quantisers' values.
    #[test]
    fn quantisers_agree(m in 1usize..=5, blocks in 1usize..=4, seed in any::<u64>()) {
        let mut rng = Rng(seed | 1);
        let k = 256 * blocks;
        let x = activations(m, k, &mut rng);
        // Into buffers that held something else, as the matmul's per-thread ones do.
        let (mut a, mut b) = (Q8Rows::default(), Q8Rows::default());
        simd::quantize_q8(Isa::detect(), &x[..k], 1, k, &mut a);
        simd::quantize_q8(Isa::detect(), &x, m, k, &mut a);
        simd::quantize_q8(Isa::Portable, &x, m, k, &mut b);
        prop_assert_eq!(&a.q, &b.q);
        prop_assert_eq!(&a.d, &b.d);
        prop_assert_eq!(&a.s, &b.s);
        let (mut a, mut b) = (Q8KRows::default(), Q8KRows::default());
        simd::quantize_q8k(Isa::detect(), &x[..k], 1, k, &mut a);
        simd::quantize_q8k(Isa::detect(), &x, m, k, &mut a);
        simd::quantize_q8k(Isa::Portable, &x, m, k, &mut b);
        prop_assert_eq!(&a.q, &b.q);
        prop_assert_eq!(&a.d, &b.d);
        prop_assert_eq!(&a.bsums, &b.bsums);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Attention's row kernels for this machine against f64 sums, on every length
    /// class (whole 8-row blocks and single rows; 64-column blocks and 8-column
    /// steps), f32 and f16 rows, with a stride and an offset into the cache.
    #[test]
    fn attention_row_ops(
        hd in prop::sample::select(vec![8usize, 40, 64, 72, 128, 256]), n in 0usize..40,
        pad in 0usize..3, first in 0usize..5, heads in 1usize..=5, seed in any::<u64>(),
    ) {
        let mut rng = Rng(seed | 1);
        let stride = hd + 8 * pad;
        let len = first + n * stride + hd;
        let cache: Vec<f32> = (0..len).map(|_| rng.f()).collect();
        let c16: Vec<u16> = cache.iter().map(|&v| half::f16::from_f32(v).to_bits()).collect();
        let q: Vec<f32> = (0..heads * hd).map(|_| rng.f()).collect();
        let w: Vec<f32> = (0..n).map(|_| rng.f()).collect();
        let ops = simd::row_ops(Isa::detect());
        for rows in [KvRows::F32(&cache), KvRows::F16(&c16)] {
            let at = |i: usize| match rows {
                KvRows::F32(r) => r[i] as f64,
                KvRows::F16(r) => half::f16::from_bits(r[i]).to_f64(),
            };
            // Head h's scores at h·ld, ld > n (rows of a scores buffer).
            let ld = n + 3;
            let mut got = vec![f32::NAN; (heads - 1) * ld + n];
            let out = ScoreRows { out: &mut got, ld, n };
            (ops.scores)(&q, rows, first, stride, 0.5, out);
            for h in 0..heads {
                for j in 0..n {
                    let g = got[h * ld + j];
                    let terms = (0..hd).map(|i| q[h * hd + i] as f64 * at(first + j * stride + i));
                    let (want, size) = terms.fold((0.0, 0.0), |(s, a), t| (s + t, a + t.abs()));
                    prop_assert!((g as f64 - 0.5 * want).abs() <= 1e-6 * size, "score [{h}][{j}] {g} vs {}", 0.5 * want);
                }
            }
            let init: Vec<f32> = (0..hd).map(|_| rng.f()).collect();
            let mut acc = init.clone();
            (ops.weighted_sum)(&w, rows, first, stride, &mut acc);
            for (i, a) in acc.iter().enumerate() {
                let terms = (0..n).map(|j| w[j] as f64 * at(first + j * stride + i));
                let (want, size) = terms.fold((init[i] as f64, init[i].abs() as f64), |(s, a), t| (s + t, a + t.abs()));
                prop_assert!((*a as f64 - want).abs() <= 1e-6 * size + 1e-30, "sum [{i}] {a} vs {want}");
            }
        }
        // e^(x − m) against f64, relative, and the sum of what was written.
        let mut x: Vec<f32> = (0..n).map(|_| 20.0 * rng.f()).collect();
        let m = x.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
        let before = x.clone();
        let total = (ops.exp_sum)(&mut x, m);
        for (e, v) in x.iter().zip(&before) {
            let want = ((*v - m) as f64).exp();
            prop_assert!((*e as f64 - want).abs() <= 4.0 * f32::EPSILON as f64 * want, "exp({}) {e} vs {want}", v - m);
        }
        let sum: f32 = x.iter().sum();
        prop_assert!((total - sum).abs() <= 1e-5 * sum.max(1.0), "sum {total} vs {sum}");
    }

    /// A prompt's attention rows equal, bit for bit, what they give in other batches:
    /// rows in one call (prefill tiles of several rows) against the same rows in two
    /// calls split anywhere (smaller tiles, or a task per row). One-token steps whose
    /// keys run in merged chunks are the exception (a wide `chunk` keeps them whole).
    #[test]
    fn attention_rows_do_not_depend_on_the_batch(
        kv in 1usize..=2, group in 1usize..=4, hd in prop::sample::select(vec![8usize, 64, 72]),
        past in 0usize..300, seq in 2usize..=20, split in 1usize..20,
        window in prop::option::of(1usize..200), softcap in prop::option::of(5.0f32..50.0),
        seed in any::<u64>(),
    ) {
        let split = split.min(seq - 1);
        let mut rng = Rng(seed | 1);
        let len = past + seq;
        let s = weft_reference::ops::AttnShape {
            n_heads: kv * group, n_kv_heads: kv, head_dim: hd,
            scale: 1.0 / (hd as f32).sqrt(), window, softcap, cache_rows: len,
        };
        let mut v = |n: usize| (0..n).map(|_| 3.0 * rng.f()).collect::<Vec<f32>>();
        let (q, k, vals) = (v(seq * s.n_heads * hd), v(len * kv * hd), v(len * kv * hd));
        let ops = simd::row_ops(Isa::detect());
        let call = |q: &[f32], pos0: usize| {
            let mut out = vec![0f32; q.len()];
            weft_cpu::attention::attention(
                ops, q, KvRows::F32(&k), KvRows::F32(&vals), s, pos0, &mut out, 1 << 20,
            );
            out
        };
        let all = call(&q, past);
        let at = split * s.n_heads * hd;
        let parts = [call(&q[..at], past), call(&q[at..], past + split)].concat();
        let same = all.iter().zip(&parts).all(|(a, b)| a.to_bits() == b.to_bits());
        prop_assert!(same, "seq {seq} split {split} past {past} window {window:?}");
    }

    /// The cpu backend's attention (query heads grouped by KV head, one-token steps in
    /// key chunks merged at the end) with this machine's vector ops against the
    /// reference's per-head scalar loop: GQA, several query rows, windows, softcaps, and
    /// chunks of 1 key up to more than the cache; a windowed layer's cache as a ring (the
    /// cpu backend reads the ring, the reference the whole cache).
    #[test]
    fn attention_grouped_and_chunked(
        kv in 1usize..=3, group in 1usize..=5, hd in prop::sample::select(vec![8usize, 40, 64, 72, 256]),
        seq in 1usize..=12, past in 0usize..160, window in prop::option::of(1usize..100),
        softcap in prop::option::of(5.0f32..50.0), chunk in 1usize..48, slack in 0usize..40,
        seed in any::<u64>(),
    ) {
        use weft_reference::ops::{attention, AttnShape};
        // Chunks only split one-token steps: most cases are one. Past 64 keys a task folds several pieces into its running softmax.
        let seq = if seed % 3 == 0 { seq } else { 1 };
        let mut rng = Rng(seed | 1);
        let s = AttnShape {
            n_heads: kv * group, n_kv_heads: kv, head_dim: hd,
            scale: 1.0 / (hd as f32).sqrt(), window, softcap, cache_rows: past + seq,
        };
        let len = past + seq;
        let mut v = |n: usize| (0..n).map(|_| 3.0 * rng.f()).collect::<Vec<f32>>();
        let (q, k, vals) = (v(seq * s.n_heads * hd), v(len * kv * hd), v(len * kv * hd));
        // A windowed layer's ring: the rows the queries read and some slack, position j at
        // row j % rows; rows nobody should read are NaN.
        let rows = window.map_or(len, |w| w + seq - 1 + slack).min(len);
        let ring = |x: &[f32]| {
            let w = kv * hd;
            let mut r = vec![f32::NAN; rows * w];
            for j in len - rows..len {
                r[j % rows * w..][..w].copy_from_slice(&x[j * w..][..w]);
            }
            r
        };
        let (rk, rv) = (ring(&k), ring(&vals));
        let on_ring = AttnShape { cache_rows: rows, ..s };
        // An f16 cache too: its SIMD reads (F16C) against the scalar ones.
        let f16 = |x: &[f32]| x.iter().map(|&v| half::f16::from_f32(v).to_bits()).collect::<Vec<u16>>();
        let (k16, v16, rk16, rv16) = (f16(&k), f16(&vals), f16(&rk), f16(&rv));
        let caches = [
            ("f32", KvRows::F32(&k), KvRows::F32(&vals), KvRows::F32(&rk), KvRows::F32(&rv)),
            ("f16", KvRows::F16(&k16), KvRows::F16(&v16), KvRows::F16(&rk16), KvRows::F16(&rv16)),
        ];
        for (kind, kc, vc, rkc, rvc) in caches {
            let (mut want, mut got) = (vec![0f32; q.len()], vec![0f32; q.len()]);
            attention(&q, kc, vc, s, past, &mut want);
            weft_cpu::attention::attention(
                simd::row_ops(Isa::detect()), &q, rkc, rvc, on_ring, past, &mut got, chunk,
            );
            let max = want.iter().fold(0f32, |m, x| m.max(x.abs()));
            for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                prop_assert!((g - w).abs() <= 1e-5 * max.max(1.0), "{kind} [{i}] {g} vs {w}");
            }
        }
    }
}

/// Shapes of the real models (SmolLM2's 576 and Gemma 3's 640 widths, a 1536 FFN)
/// across many rayon tasks, decode and prefill.
#[test]
fn model_shapes() {
    let mut rng = Rng(0x5eed);
    for (dtype, n, k) in [
        (DType::Q4_1, 577, 576),
        (DType::Q8_0, 300, 640),
        (DType::Q5_0, 257, 640),
        (DType::Q4_K, 130, 1024),
        (DType::Q6_K, 97, 1536),
        (DType::Q5_K, 65, 512),
    ] {
        let w = weight(dtype, n, k, &mut rng);
        for m in [1, 7, 33] {
            let x = activations(m, k, &mut rng);
            for cfg in configs() {
                for out in run_both(cfg, &[&w], &x, m, MatKernel::DecodeReuse) {
                    check(cfg, &[&w], &x, m, &out);
                }
            }
        }
    }
}

/// The SIMD path is taken where promised: every listed type has a kernel on an
/// AVX2 or NEON machine, in both modes.
#[test]
fn simd_kernels_cover_the_listed_types() {
    // Every aarch64 Linux machine has NEON (scripts/test_aarch64.sh runs this there).
    #[cfg(target_arch = "aarch64")]
    assert_eq!(Isa::detect(), Isa::Neon);
    if Isa::detect() == Isa::Portable {
        eprintln!("no AVX2 here: only the portable path is tested");
        return;
    }
    for dtype in [
        DType::Q4_0,
        DType::Q4_1,
        DType::Q5_0,
        DType::Q5_1,
        DType::Q8_0,
        DType::Q4_K,
        DType::Q5_K,
        DType::Q6_K,
        DType::F16,
        DType::BF16,
        DType::F32,
    ] {
        for mode in [Activations::F32, Activations::Int8] {
            assert!(
                simd::kernel(Isa::detect(), mode, dtype).is_some(),
                "{dtype} {mode:?}"
            );
        }
    }
}
