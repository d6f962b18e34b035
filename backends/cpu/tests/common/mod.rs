//! Test data shared by the kernel tests: a seeded generator and random stored weights.
#![allow(dead_code)]

use weft_ir::{DType, WeightView};
use weft_quant::kernel_for;

/// xorshift64*: deterministic data without a rand dependency.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform in [-1, 1).
    pub fn f(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }
    pub fn byte(&mut self) -> u8 {
        (self.next() >> 56) as u8
    }
}

pub fn f16_le(v: f32) -> [u8; 2] {
    half::f16::from_f32(v).to_bits().to_le_bytes()
}

/// Random stored bytes of an [n, k] weight with moderate scales.
pub fn weight(dtype: DType, n: usize, k: usize, rng: &mut Rng) -> WeightView {
    let mut bytes = Vec::new();
    for _ in 0..n * k / dtype.block_size() {
        match dtype {
            DType::F32 => bytes.extend(rng.f().to_le_bytes()),
            DType::F16 => bytes.extend(f16_le(rng.f())),
            DType::BF16 => bytes.extend((half::bf16::from_f32(rng.f()).to_bits()).to_le_bytes()),
            _ => {
                // Random codes and packed sub-scales; then d small and positive,
                // the minimum (if any) of either sign.
                let mut block: Vec<u8> = (0..dtype.block_bytes()).map(|_| rng.byte()).collect();
                for (i, &at) in weft_quant::f16_field_offsets(dtype).iter().enumerate() {
                    let v = if i == 0 {
                        0.01 + 0.05 * rng.f().abs()
                    } else {
                        0.3 * rng.f()
                    };
                    block[at..at + 2].copy_from_slice(&f16_le(v));
                }
                bytes.extend(block);
            }
        }
    }
    assert_eq!(Some(bytes.len()), dtype.tensor_bytes(&[n, k]));
    WeightView::owned("w", dtype, vec![n, k], bytes)
}

pub fn decoded(w: &WeightView) -> Vec<f32> {
    let (n, k) = (w.rows(), w.cols());
    let mut d = vec![0f32; n * k];
    for j in 0..n {
        kernel_for(w.dtype).decode_row(w.row(j), &mut d[j * k..(j + 1) * k]);
    }
    d
}
