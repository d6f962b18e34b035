//! Kernel throughput on model-like shapes: `cargo run --release -p weft-cpu --example
//! matmul_bench [TYPE...]`. Prints GMAC/s for decode (m = 1) and prefill (m = 128),
//! each mode (int8 also with the weights packed, where the type packs), SIMD and
//! portable. Time is CPU time summed over the process's threads
//! (`/proc/self/task/*/schedstat`), best of several runs, so a shared machine skews
//! it less than wall time; run with `RAYON_NUM_THREADS=1` for per-core figures (idle
//! rayon workers spin, which CPU time counts). In brackets: GMAC/s by wall time.

use std::time::Instant;
use weft_backend::{Activations, MatKernel};
use weft_cpu::matmul::{matmul_with, Config};
use weft_cpu::repack::Packed;
use weft_cpu::Isa;
use weft_ir::{DType, WeightView};

fn weight(dtype: DType, n: usize, k: usize) -> WeightView {
    let mut s = 0x9E37_79B9_7F4A_7C15u64;
    let mut bytes = Vec::new();
    for _ in 0..n * k / dtype.block_size() {
        let mut block: Vec<u8> = (0..dtype.block_bytes())
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                (s >> 56) as u8
            })
            .collect();
        for &at in weft_quant::f16_field_offsets(dtype) {
            block[at..at + 2].copy_from_slice(&half::f16::from_f32(0.01).to_bits().to_le_bytes());
        }
        if matches!(dtype, DType::F16 | DType::BF16) {
            block[1] &= 0x3F;
        }
        bytes.extend(block);
    }
    WeightView::owned("w", dtype, vec![n, k], bytes)
}

/// Nanoseconds on a CPU, all threads of this process.
fn cpu_ns() -> u64 {
    std::fs::read_dir("/proc/self/task")
        .map(|d| {
            d.filter_map(|e| {
                let s = std::fs::read_to_string(e.ok()?.path().join("schedstat")).ok()?;
                s.split_whitespace().next()?.parse::<u64>().ok()
            })
            .sum()
        })
        .unwrap_or(0)
}

fn main() {
    // The calling thread as the pool's worker (no hand-off to another thread per call,
    // as when the whole forward runs inside the pool).
    rayon::ThreadPoolBuilder::new()
        .build()
        .expect("a thread pool")
        .install(run);
}

fn run() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let types: Vec<DType> = if args.is_empty() {
        vec![
            DType::Q4_1,
            DType::Q8_0,
            DType::Q5_0,
            DType::Q4_K,
            DType::Q6_K,
        ]
    } else {
        args.iter()
            .map(|a| {
                *DType::ALL
                    .iter()
                    .find(|d| d.to_string() == *a)
                    .expect("a type")
            })
            .collect()
    };
    let env = |name: &str, default: usize| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    // BENCH_N, BENCH_K: the weight's shape; BENCH_M: one activation-row count.
    let (n, k) = (env("BENCH_N", 1536), env("BENCH_K", 1024));
    let ms: Vec<usize> = match std::env::var("BENCH_M") {
        Ok(m) => vec![m.parse().expect("BENCH_M is a number")],
        Err(_) => vec![1, 128],
    };
    for dtype in types {
        let w = weight(dtype, n, k);
        for &m in &ms {
            let x: Vec<f32> = (0..m * k)
                .map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0)
                .collect();
            let mut out = vec![0f32; m * n];
            let mut line = format!("{dtype:>5} m={m:<4}");
            for (isa, act, pack) in [
                (Isa::detect(), Activations::F32, false),
                (Isa::detect(), Activations::Int8, false),
                (Isa::detect(), Activations::Int8, true),
                (Isa::Portable, Activations::F32, false),
            ] {
                let cfg = Config {
                    isa,
                    activations: act,
                };
                let packed = match pack {
                    true => Packed::for_weights(&cfg, [&w]),
                    false => Packed::default(),
                };
                if pack && packed.count().0 == 0 {
                    continue;
                }
                let reps = (2_000_000_000 / (m * n * k)).max(2);
                let (mut best, mut best_wall) = (f64::MAX, f64::MAX);
                for _ in 0..env("BENCH_RUNS", 5) {
                    let (t, c) = (Instant::now(), cpu_ns());
                    for _ in 0..reps {
                        matmul_with(
                            &cfg,
                            &packed,
                            &x,
                            m,
                            &[&w],
                            MatKernel::DecodeReuse,
                            &mut out,
                        );
                    }
                    let cpu = (cpu_ns() - c) as f64 * 1e-9;
                    let secs = if cpu > 0.0 {
                        cpu
                    } else {
                        t.elapsed().as_secs_f64()
                    };
                    best = best.min(secs / reps as f64);
                    best_wall = best_wall.min(t.elapsed().as_secs_f64() / reps as f64);
                }
                let gmacs = (m * n * k) as f64 / best / 1e9;
                let wall = (m * n * k) as f64 / best_wall / 1e9;
                let how = if pack { " packed" } else { "" };
                line += &format!(
                    "  {}/{act:?}{how}: {gmacs:6.2} ({wall:.1} wall)",
                    isa.name()
                );
            }
            println!("{line}");
        }
    }
}
