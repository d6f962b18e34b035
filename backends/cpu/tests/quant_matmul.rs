//! matmul and gather_rows against naive loops over decoded rows, for every type.

use weft_backend::Activations;
use weft_cpu::matmul::{gather_rows, matmul, Config};
use weft_cpu::repack::Packed;
use weft_cpu::Isa;
use weft_ir::DType;

mod common;
use common::{decoded, weight, Rng};

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
        // Stored, and packed where int8 kernels pack the type (a tied table read from
        // its packed copy; row 10 is in the stored tail).
        let int8 = Config {
            isa: Isa::detect(),
            activations: Activations::Int8,
        };
        for packed in [Packed::default(), Packed::for_weights(&int8, [&w])] {
            let mut out = vec![f32::NAN; ids.len() * k];
            gather_rows(&packed, &w, &ids, &mut out);
            for (i, &id) in ids.iter().enumerate() {
                let want = &wd[id as usize * k..(id as usize + 1) * k];
                let got = &out[i * k..(i + 1) * k];
                assert!(
                    got.iter()
                        .zip(want)
                        .all(|(a, b)| a.to_bits() == b.to_bits()),
                    "{dtype} id {id}, {} packed",
                    packed.count().0
                );
            }
        }
    }
}
