//! Each kernel against a scalar decoder written here from the format definitions,
//! and `dot` against the naive dot of the decoded row.

// The reference decoders index like ggml's C loops on purpose: a second,
// differently shaped reading of each layout than the kernels' iterators.
#![allow(clippy::needless_range_loop)]

use proptest::prelude::*;
use weft_ir::DType;
use weft_quant::{
    kernel_for, BlockFormat, IQ4_NL, IQ4_XS, Q2_K, Q3_K, Q4_0, Q4_1, Q4_K, Q5_0, Q5_1, Q5_K, Q6_K,
    Q8_0, TQ1_0, TQ2_0,
};

/// IEEE half → f32 by the definition (exact in f64, so the cast is exact too).
fn f16_ref(bits: u16) -> f32 {
    let sign = if bits & 0x8000 != 0 { -1.0 } else { 1.0 };
    let e = ((bits >> 10) & 0x1F) as i32;
    let m = (bits & 0x3FF) as f64;
    assert!(e != 0x1F, "test data has only finite halves");
    let v = if e == 0 {
        m / 1024.0 * 2f64.powi(-14)
    } else {
        (1.0 + m / 1024.0) * 2f64.powi(e - 15)
    };
    (sign * v) as f32
}

fn u16_at(b: &[u8], i: usize) -> u16 {
    u16::from_le_bytes([b[i], b[i + 1]])
}

/// The scalar decoder of one row, straight from the format definitions.
fn decode_ref(dtype: DType, row: &[u8]) -> Vec<f32> {
    let mut out = Vec::new();
    match dtype {
        DType::F32 => {
            for b in row.chunks_exact(4) {
                out.push(f32::from_le_bytes([b[0], b[1], b[2], b[3]]));
            }
        }
        DType::F16 => {
            for b in row.chunks_exact(2) {
                out.push(f16_ref(u16_at(b, 0)));
            }
        }
        DType::BF16 => {
            for b in row.chunks_exact(2) {
                out.push(f32::from_bits((u16_at(b, 0) as u32) << 16));
            }
        }
        DType::Q8_0 => {
            for b in row.chunks_exact(34) {
                let d = f16_ref(u16_at(b, 0));
                for j in 0..32 {
                    out.push(d * b[2 + j] as i8 as f32);
                }
            }
        }
        DType::Q4_0 => {
            for b in row.chunks_exact(18) {
                let d = f16_ref(u16_at(b, 0));
                let q = |j: usize| {
                    if j < 16 {
                        b[2 + j] & 15
                    } else {
                        b[2 + j - 16] >> 4
                    }
                };
                for j in 0..32 {
                    out.push(d * (q(j) as f32 - 8.0));
                }
            }
        }
        DType::Q4_1 => {
            for b in row.chunks_exact(20) {
                let d = f16_ref(u16_at(b, 0));
                let m = f16_ref(u16_at(b, 2));
                let q = |j: usize| {
                    if j < 16 {
                        b[4 + j] & 15
                    } else {
                        b[4 + j - 16] >> 4
                    }
                };
                for j in 0..32 {
                    out.push(d * q(j) as f32 + m);
                }
            }
        }
        // The rest follow the loop structure of ggml's dequantize_row_* (not the
        // kernels' layout tables), so the two readings of each layout differ.
        DType::Q5_0 | DType::Q5_1 => {
            let with_min = dtype == DType::Q5_1;
            let h = if with_min { 4 } else { 2 };
            for b in row.chunks_exact(dtype.block_bytes()) {
                let d = f16_ref(u16_at(b, 0));
                let m = if with_min { f16_ref(u16_at(b, 2)) } else { 0.0 };
                let qh = u32::from_le_bytes(b[h..h + 4].try_into().unwrap());
                let qs = &b[h + 4..h + 20];
                let mut y = [0f32; 32];
                for j in 0..16 {
                    let xh0 = ((qh >> j) << 4) & 0x10;
                    let xh1 = (qh >> (j + 12)) & 0x10;
                    let x0 = (qs[j] as u32 & 0xF) | xh0;
                    let x1 = (qs[j] as u32 >> 4) | xh1;
                    if with_min {
                        y[j] = x0 as f32 * d + m;
                        y[j + 16] = x1 as f32 * d + m;
                    } else {
                        y[j] = (x0 as i32 - 16) as f32 * d;
                        y[j + 16] = (x1 as i32 - 16) as f32 * d;
                    }
                }
                out.extend(y);
            }
        }
        DType::Q2_K => {
            for b in row.chunks_exact(84) {
                let (scales, qs) = (&b[0..16], &b[16..80]);
                let (d, min) = (f16_ref(u16_at(b, 80)), f16_ref(u16_at(b, 82)));
                let mut is = 0;
                for n in 0..2 {
                    let q = &qs[32 * n..];
                    for shift in [0, 2, 4, 6] {
                        for half in 0..2 {
                            let sc = scales[is];
                            is += 1;
                            let dl = d * (sc & 0xF) as f32;
                            let ml = min * (sc >> 4) as f32;
                            for l in 0..16 {
                                out.push(dl * ((q[l + 16 * half] >> shift) & 3) as f32 - ml);
                            }
                        }
                    }
                }
            }
        }
        DType::Q3_K => {
            for b in row.chunks_exact(110) {
                let (hm, qs) = (&b[0..32], &b[32..96]);
                let d = f16_ref(u16_at(b, 108));
                // ggml's unpacking of the 12 scale bytes through four u32 words.
                let w =
                    |i: usize| u32::from_le_bytes(b[96 + 4 * i..100 + 4 * i].try_into().unwrap());
                let (k1, k2) = (0x0303_0303u32, 0x0F0F_0F0Fu32);
                let tmp = w(2);
                let aux = [
                    (w(0) & k2) | ((tmp & k1) << 4),
                    (w(1) & k2) | (((tmp >> 2) & k1) << 4),
                    ((w(0) >> 4) & k2) | (((tmp >> 4) & k1) << 4),
                    ((w(1) >> 4) & k2) | (((tmp >> 6) & k1) << 4),
                ];
                let scales: Vec<i8> = aux
                    .iter()
                    .flat_map(|a| a.to_le_bytes())
                    .map(|v| v as i8)
                    .collect();
                let (mut is, mut m) = (0, 1u8);
                for n in 0..2 {
                    let q = &qs[32 * n..];
                    for shift in [0, 2, 4, 6] {
                        for half in 0..2 {
                            let dl = d * (scales[is] as i32 - 32) as f32;
                            is += 1;
                            for l in 16 * half..16 * half + 16 {
                                let sub = if hm[l] & m != 0 { 0 } else { 4 };
                                out.push(dl * (((q[l] >> shift) & 3) as i32 - sub) as f32);
                            }
                        }
                        m <<= 1;
                    }
                }
            }
        }
        DType::Q4_K | DType::Q5_K => {
            let five = dtype == DType::Q5_K;
            for b in row.chunks_exact(dtype.block_bytes()) {
                let (d, min) = (f16_ref(u16_at(b, 0)), f16_ref(u16_at(b, 2)));
                let sb = &b[4..16];
                let scale_min = |j: usize| {
                    if j < 4 {
                        (sb[j] & 63, sb[j + 4] & 63)
                    } else {
                        (
                            (sb[j + 4] & 0xF) | ((sb[j - 4] >> 6) << 4),
                            (sb[j + 4] >> 4) | ((sb[j] >> 6) << 4),
                        )
                    }
                };
                let (qh, qs) = if five {
                    (&b[16..48], &b[48..176])
                } else {
                    (&b[0..0], &b[16..144])
                };
                let (mut u1, mut u2) = (1u8, 2u8);
                for (c, is) in (0..8).step_by(2).enumerate() {
                    let ql = &qs[32 * c..];
                    let (s1, m1) = scale_min(is);
                    let (s2, m2) = scale_min(is + 1);
                    let (d1, m1) = (d * s1 as f32, min * m1 as f32);
                    let (d2, m2) = (d * s2 as f32, min * m2 as f32);
                    let hi = |l: usize, u: u8| if five && qh[l] & u != 0 { 16 } else { 0 };
                    for l in 0..32 {
                        out.push(d1 * ((ql[l] & 0xF) + hi(l, u1)) as f32 - m1);
                    }
                    for l in 0..32 {
                        out.push(d2 * ((ql[l] >> 4) + hi(l, u2)) as f32 - m2);
                    }
                    u1 <<= 2;
                    u2 <<= 2;
                }
            }
        }
        DType::Q6_K => {
            for b in row.chunks_exact(210) {
                let d = f16_ref(u16_at(b, 208));
                let sc = |i: usize| b[192 + i] as i8 as f32;
                for n in 0..2 {
                    let (ql, qh) = (&b[64 * n..], &b[128 + 32 * n..]);
                    let mut y = [0f32; 128];
                    for l in 0..32 {
                        let is = 8 * n + l / 16;
                        let q1 = ((ql[l] & 0xF) | (qh[l] & 3) << 4) as i32 - 32;
                        let q2 = ((ql[l + 32] & 0xF) | ((qh[l] >> 2) & 3) << 4) as i32 - 32;
                        let q3 = ((ql[l] >> 4) | ((qh[l] >> 4) & 3) << 4) as i32 - 32;
                        let q4 = ((ql[l + 32] >> 4) | ((qh[l] >> 6) & 3) << 4) as i32 - 32;
                        y[l] = d * sc(is) * q1 as f32;
                        y[l + 32] = d * sc(is + 2) * q2 as f32;
                        y[l + 64] = d * sc(is + 4) * q3 as f32;
                        y[l + 96] = d * sc(is + 6) * q4 as f32;
                    }
                    out.extend(y);
                }
            }
        }
        DType::IQ4_NL => {
            for b in row.chunks_exact(18) {
                let d = f16_ref(u16_at(b, 0));
                let mut y = [0f32; 32];
                for j in 0..16 {
                    y[j] = d * KVALUES[(b[2 + j] & 0xF) as usize] as f32;
                    y[j + 16] = d * KVALUES[(b[2 + j] >> 4) as usize] as f32;
                }
                out.extend(y);
            }
        }
        DType::IQ4_XS => {
            for b in row.chunks_exact(136) {
                let d = f16_ref(u16_at(b, 0));
                let sh = u16_at(b, 2);
                for ib in 0..8 {
                    let ls = ((b[4 + ib / 2] >> (4 * (ib % 2))) & 0xF) as i32
                        | (((sh >> (2 * ib)) & 3) << 4) as i32;
                    let dl = d * (ls - 32) as f32;
                    let qs = &b[8 + 16 * ib..];
                    let mut y = [0f32; 32];
                    for j in 0..16 {
                        y[j] = dl * KVALUES[(qs[j] & 0xF) as usize] as f32;
                        y[j + 16] = dl * KVALUES[(qs[j] >> 4) as usize] as f32;
                    }
                    out.extend(y);
                }
            }
        }
        DType::TQ1_0 => {
            const POW3: [u8; 6] = [1, 3, 9, 27, 81, 243];
            for b in row.chunks_exact(54) {
                let (qs, qh) = (&b[0..48], &b[48..52]);
                let d = f16_ref(u16_at(b, 52));
                let trit = |byte: u8, n: usize| {
                    let q = byte.wrapping_mul(POW3[n]);
                    (((q as u16 * 3) >> 8) as i32 - 1) as f32
                };
                for n in 0..5 {
                    for m in 0..32 {
                        out.push(trit(qs[m], n) * d);
                    }
                }
                for n in 0..5 {
                    for m in 0..16 {
                        out.push(trit(qs[32 + m], n) * d);
                    }
                }
                for n in 0..4 {
                    for j in 0..4 {
                        out.push(trit(qh[j], n) * d);
                    }
                }
            }
        }
        DType::TQ2_0 => {
            for b in row.chunks_exact(66) {
                let d = f16_ref(u16_at(b, 64));
                for j in [0, 32] {
                    for l in 0..4 {
                        for m in 0..32 {
                            let q = (b[j + m] >> (2 * l)) & 3;
                            out.push((q as i32 - 1) as f32 * d);
                        }
                    }
                }
            }
        }
    }
    out
}

/// ggml's kvalues_iq4nl.
const KVALUES: [i8; 16] = [
    -127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113,
];

/// Finite f16 bit patterns, with the extremes over-represented.
fn f16_bits() -> impl Strategy<Value = u16> {
    prop_oneof![
        4 => any::<u16>().prop_filter("finite", |b| (b >> 10) & 0x1F != 0x1F),
        1 => prop::sample::select(vec![
            0x7BFFu16, 0xFBFF, // ±65504
            0x0001, 0x8001, 0x03FF, // subnormals
            0x0400, // smallest normal
            0x0000, 0x8000,
        ]),
    ]
}

/// Quant payload bytes (codes, packed scales; the f16 fields are overwritten
/// afterwards), random or at the extremes: all-max and all-min codes included.
fn payload(n: usize) -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        4 => prop::collection::vec(any::<u8>(), n),
        1 => prop::sample::select(vec![0x00u8, 0xFF, 0x0F, 0xF0, 0x88, 0x80, 0x7F])
            .prop_map(move |b| vec![b; n]),
    ]
}

/// One stored block of a quantised type (or one element of a float type).
fn block(dtype: DType) -> BoxedStrategy<Vec<u8>> {
    let le = |b: u16| b.to_le_bytes().to_vec();
    let bytes = dtype.block_bytes();
    let zero = Just(vec![0u8; bytes]);
    match dtype {
        DType::F32 => prop_oneof![
            -1e6f32..1e6,
            -1e30f32..1e30,
            (1u32..0x80_0000).prop_map(f32::from_bits), // subnormals
            Just(0.0f32),
            Just(-0.0f32),
        ]
        .prop_map(|v| v.to_le_bytes().to_vec())
        .boxed(),
        DType::F16 => f16_bits().prop_map(le).boxed(),
        // Exponents kept below 2^101 so that products with x cannot overflow.
        DType::BF16 => any::<u16>()
            .prop_filter("small", |b| (b >> 7) & 0xFF < 127 + 100)
            .prop_map(le)
            .boxed(),
        _ => {
            let fields = weft_quant::f16_field_offsets(dtype);
            prop_oneof![
                4 => (prop::collection::vec(f16_bits(), fields.len()), payload(bytes)).prop_map(
                    move |(scales, mut b)| {
                        for (&at, s) in fields.iter().zip(scales) {
                            b[at..at + 2].copy_from_slice(&le(s));
                        }
                        b
                    }
                ),
                1 => zero,
            ]
            .boxed()
        }
    }
}

/// A row of 1..=8 blocks (1..=3 super-blocks; 0..=100 elements for floats) and
/// an x to dot it with.
fn row_and_x(dtype: DType) -> impl Strategy<Value = (Vec<u8>, Vec<f32>)> {
    let blocks = if dtype.block_size() > 32 {
        1..=3usize
    } else if dtype.is_quantized() {
        1..=8usize
    } else {
        0..=100usize
    };
    prop::collection::vec(block(dtype), blocks).prop_flat_map(move |bs| {
        let n = bs.len() * dtype.block_size();
        let x = prop::collection::vec(
            prop_oneof![4 => -8f32..8.0, 1 => -1e-3f32..1e-3, 1 => Just(0.0f32)],
            n,
        );
        (Just(bs.concat()), x)
    })
}

fn check(dtype: DType, row: &[u8], x: &[f32]) -> Result<(), TestCaseError> {
    let kern = kernel_for(dtype);
    prop_assert_eq!(kern.dtype(), dtype);
    let want = decode_ref(dtype, row);
    prop_assert_eq!(want.len(), x.len());
    let mut got = vec![f32::NAN; x.len()];
    kern.decode_row(row, &mut got);
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        prop_assert_eq!(
            g.to_bits(),
            w.to_bits(),
            "{} element {}: {:e} vs {:e}",
            dtype,
            i,
            g,
            w
        );
    }
    let (mut naive, mut abs) = (0f64, 0f64);
    for (v, xi) in got.iter().zip(x) {
        let t = *v as f64 * *xi as f64;
        naive += t;
        abs += t.abs();
    }
    let dot = kern.dot(row, x) as f64;
    // The absolute floor covers f32 products that underflow to subnormals.
    let tol = 1e-5 * abs + 1e-37;
    prop_assert!(
        (dot - naive).abs() <= tol,
        "{dtype}: dot {dot:e}, naive {naive:e}, tol {tol:e}"
    );
    Ok(())
}

macro_rules! per_type {
    ($($name:ident => $dtype:expr),* $(,)?) => {
        proptest! {
            // No regression files: failures print the minimal case instead.
            #![proptest_config(ProptestConfig {
                cases: 512,
                failure_persistence: None,
                ..ProptestConfig::default()
            })]
            $(
                #[test]
                fn $name((row, x) in row_and_x($dtype)) {
                    check($dtype, &row, &x)?;
                }
            )*
        }
    };
}

per_type! {
    f32_matches_reference => DType::F32,
    f16_matches_reference => DType::F16,
    bf16_matches_reference => DType::BF16,
    q8_0_matches_reference => DType::Q8_0,
    q4_0_matches_reference => DType::Q4_0,
    q4_1_matches_reference => DType::Q4_1,
    q5_0_matches_reference => DType::Q5_0,
    q5_1_matches_reference => DType::Q5_1,
    q2_k_matches_reference => DType::Q2_K,
    q3_k_matches_reference => DType::Q3_K,
    q4_k_matches_reference => DType::Q4_K,
    q5_k_matches_reference => DType::Q5_K,
    q6_k_matches_reference => DType::Q6_K,
    iq4_nl_matches_reference => DType::IQ4_NL,
    iq4_xs_matches_reference => DType::IQ4_XS,
    tq1_0_matches_reference => DType::TQ1_0,
    tq2_0_matches_reference => DType::TQ2_0,
}

/// Every finite f16 scale decodes exactly (Q8_0 with q = 1 decodes to d).
#[test]
fn all_f16_scales_decode_exactly() {
    let kern = kernel_for(DType::Q8_0);
    let mut out = [0f32; 32];
    for bits in 0..=u16::MAX {
        if (bits >> 10) & 0x1F == 0x1F {
            continue;
        }
        let block = [bits.to_le_bytes().to_vec(), vec![1u8; 32]].concat();
        kern.decode_row(&block, &mut out);
        assert_eq!(out[0].to_bits(), f16_ref(bits).to_bits(), "f16 {bits:#06x}");
    }
    for (bits, inf) in [(0x7C00u16, f32::INFINITY), (0xFC00, f32::NEG_INFINITY)] {
        let block = [bits.to_le_bytes().to_vec(), vec![1u8; 32]].concat();
        kern.decode_row(&block, &mut out);
        assert_eq!(out[0], inf);
    }
}

#[test]
fn every_type_has_a_kernel() {
    for d in DType::ALL {
        assert_eq!(kernel_for(d).dtype(), d);
    }
}

#[test]
fn block_constants_match_dtype() {
    fn check<T: BlockFormat>() {
        assert_eq!(T::BLOCK, T::DTYPE.block_size(), "{}", T::DTYPE);
        assert_eq!(T::BYTES, T::DTYPE.block_bytes(), "{}", T::DTYPE);
    }
    check::<Q8_0>();
    check::<Q4_0>();
    check::<Q4_1>();
    check::<Q5_0>();
    check::<Q5_1>();
    check::<Q2_K>();
    check::<Q3_K>();
    check::<Q4_K>();
    check::<Q5_K>();
    check::<Q6_K>();
    check::<IQ4_NL>();
    check::<IQ4_XS>();
    check::<TQ1_0>();
    check::<TQ2_0>();
}
