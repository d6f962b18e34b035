//! matmul and gather_rows against naive loops over decoded rows, for every type.

use weft_cpu::matmul::{gather_rows, matmul};
use weft_ir::{DType, WeightView};
use weft_quant::kernel_for;

/// xorshift64*: deterministic data without a rand dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform in [-1, 1).
    fn f(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }
    fn byte(&mut self) -> u8 {
        (self.next() >> 56) as u8
    }
}

fn f16_le(v: f32) -> [u8; 2] {
    half::f16::from_f32(v).to_bits().to_le_bytes()
}

/// Random stored bytes of an [n, k] weight with moderate scales.
fn weight(dtype: DType, n: usize, k: usize, rng: &mut Rng) -> WeightView {
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

fn decoded(w: &WeightView) -> Vec<f32> {
    let (n, k) = (w.rows(), w.cols());
    let mut d = vec![0f32; n * k];
    for j in 0..n {
        kernel_for(w.dtype).decode_row(w.row(j), &mut d[j * k..(j + 1) * k]);
    }
    d
}

fn check_matmul(dtype: DType, m: usize, n: usize, k: usize, seed: u64) {
    let mut rng = Rng(seed);
    let w = weight(dtype, n, k, &mut rng);
    let x: Vec<f32> = (0..m * k).map(|_| 4.0 * rng.f()).collect();
    let mut out = vec![f32::NAN; m * n];
    matmul(&x, m, &w, &mut out);
    let wd = decoded(&w);
    for i in 0..m {
        for j in 0..n {
            let (mut want, mut abs) = (0f64, 0f64);
            for c in 0..k {
                let t = x[i * k + c] as f64 * wd[j * k + c] as f64;
                want += t;
                abs += t.abs();
            }
            let got = out[i * n + j] as f64;
            assert!(
                (got - want).abs() <= 1e-5 * abs + 1e-30,
                "{dtype} m={m} n={n} k={k} [{i},{j}]: got {got}, want {want}"
            );
        }
    }
}

fn k_for(dtype: DType) -> usize {
    // Odd lengths exercise the tails of the float loops; two super-blocks for
    // the 256-element types, three 32-blocks for the others.
    match dtype.block_size() {
        1 => 45,
        256 => 512,
        _ => 96,
    }
}

#[test]
fn matmul_small_matches_naive() {
    for dtype in DType::ALL {
        for m in [1, 3, 17] {
            check_matmul(dtype, m, 37, k_for(dtype), 7 + m as u64);
        }
    }
}

#[test]
fn matmul_many_tasks_matches_naive() {
    for dtype in DType::ALL {
        for m in [1, 5] {
            check_matmul(dtype, m, 301, 256, 99 + m as u64);
        }
    }
}

#[test]
fn matmul_empty() {
    let w = weight(DType::Q4_0, 4, 32, &mut Rng(1));
    let mut out = [];
    matmul(&[], 0, &w, &mut out);
}

#[test]
fn gather_rows_decodes_the_asked_rows() {
    for dtype in DType::ALL {
        let (n, k) = (11, k_for(dtype));
        let w = weight(dtype, n, k, &mut Rng(3));
        let wd = decoded(&w);
        let ids = [2u32, 0, 2, 10, 5];
        let mut out = vec![f32::NAN; ids.len() * k];
        gather_rows(&w, &ids, &mut out);
        for (i, &id) in ids.iter().enumerate() {
            let want = &wd[id as usize * k..(id as usize + 1) * k];
            let got = &out[i * k..(i + 1) * k];
            assert!(
                got.iter()
                    .zip(want)
                    .all(|(a, b)| a.to_bits() == b.to_bits()),
                "{dtype} id {id}"
            );
        }
    }
}
