use std::time::Instant;
use weft_cpu::matmul::matmul;
use weft_ir::{DType, WeightView};

#[test]
#[ignore]
fn timing() {
    let mut s = 1u64;
    let mut rnd = || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        s
    };
    for dtype in [
        DType::Q4_1,
        DType::Q4_0,
        DType::Q8_0,
        DType::F16,
        DType::F32,
    ] {
        for (n, k) in [(1536usize, 576usize), (576, 1536)] {
            let nb = dtype.tensor_bytes(&[n, k]).unwrap();
            let mut bytes: Vec<u8> = (0..nb).map(|_| rnd() as u8).collect();
            if dtype.is_quantized() {
                for b in bytes.chunks_exact_mut(dtype.block_bytes()) {
                    b[0..2].copy_from_slice(&half::f16::from_f32(0.01).to_bits().to_le_bytes());
                    if dtype == DType::Q4_1 {
                        b[2..4]
                            .copy_from_slice(&half::f16::from_f32(-0.05).to_bits().to_le_bytes());
                    }
                }
            } else if dtype == DType::F16 {
                for b in bytes.chunks_exact_mut(2) {
                    b.copy_from_slice(&half::f16::from_f32(0.01).to_bits().to_le_bytes());
                }
            } else {
                for b in bytes.chunks_exact_mut(4) {
                    b.copy_from_slice(&0.01f32.to_le_bytes());
                }
            }
            let w = WeightView::owned("w", dtype, vec![n, k], bytes);
            for m in [1usize, 16] {
                let x: Vec<f32> = (0..m * k).map(|i| (i % 7) as f32 * 0.1).collect();
                let mut out = vec![0f32; m * n];
                for _ in 0..20 {
                    matmul(&x, m, &w, &mut out);
                }
                let iters = if m == 1 { 2000 } else { 300 };
                let t = Instant::now();
                for _ in 0..iters {
                    matmul(&x, m, &w, &mut out);
                }
                let us = t.elapsed().as_secs_f64() * 1e6 / iters as f64;
                let gflops = 2.0 * (m * n * k) as f64 / us / 1e3;
                println!(
                    "{dtype} [{n}x{k}] m={m}: {us:.1} us  {gflops:.2} GFLOP/s  {:.2} GB/s weights",
                    nb as f64 / us / 1e3
                );
            }
        }
    }
}
