//! Each kernel against a scalar decoder written here from the format definitions,
//! and `dot` against the naive dot of the decoded row.

use proptest::prelude::*;
use weft_cpu::quant::{kernel_for, BlockFormat, Q4_0, Q4_1, Q8_0};
use weft_ir::DType;

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
    }
    out
}

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

/// Quant payload bytes (i8 values or nibble pairs), random or at the extremes.
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
        DType::Q8_0 | DType::Q4_0 => prop_oneof![
            4 => (f16_bits(), payload(bytes - 2)).prop_map(move |(d, q)| [le(d), q].concat()),
            1 => zero,
        ]
        .boxed(),
        DType::Q4_1 => prop_oneof![
            4 => (f16_bits(), f16_bits(), payload(16))
                .prop_map(move |(d, m, q)| [le(d), le(m), q].concat()),
            1 => zero,
        ]
        .boxed(),
    }
}

/// A row of 1..=8 blocks (0..=100 elements for floats) and an x to dot it with.
fn row_and_x(dtype: DType) -> impl Strategy<Value = (Vec<u8>, Vec<f32>)> {
    let blocks = if dtype.is_quantized() {
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
}
