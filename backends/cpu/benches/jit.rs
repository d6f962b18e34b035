//! What the JIT buys per node kind: each compiled kernel against the interpreted op
//! it replaces, on the widths of SmolLM2-135M and Gemma 3 270M, for one row (a
//! decode step) and 512 rows (a prompt). Medians of 5 timings, alternating the two.
//!
//! `cargo bench -p weft-cpu --bench jit`

use std::hint::black_box;
use std::time::{Duration, Instant};
use weft_cpu::jit::{Jit, Operand, Spec};
use weft_ir::{Ew, GluAct};
use weft_reference::ops;

/// Seconds per call of `f`, over enough calls to fill about 50 ms.
fn per_call(f: &mut dyn FnMut()) -> f64 {
    let mut n = 1u32;
    loop {
        let t = Instant::now();
        for _ in 0..n {
            f();
        }
        let dt = t.elapsed();
        if dt > Duration::from_millis(50) {
            return dt.as_secs_f64() / n as f64;
        }
        n *= 2;
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// The interpreted op a kernel replaces: inputs, output.
type Interpreted = Box<dyn Fn(&[&[f32]], &mut [f32]) + Send + Sync>;

struct Case {
    name: String,
    spec: Spec,
    ins: Vec<Vec<f32>>,
    out_len: usize,
    interpret: Interpreted,
}

fn data(n: usize, salt: usize) -> Vec<f32> {
    (0..n)
        .map(|i| (((i * 7919 + salt * 104_729) % 2001) as f32 / 1000.0 - 1.0) * 3.0)
        .collect()
}

fn norm(model: &str, width: usize, group: usize, rows: usize) -> Case {
    Case {
        name: format!("rms_norm {model} [{rows}×{width}] group {group}"),
        spec: Spec::Norm {
            group,
            eps: 1e-6,
            offset: 0.0,
            weighted: true,
            add: false,
        },
        ins: vec![data(rows * width, 1), data(group, 2)],
        out_len: rows * width,
        interpret: Box::new(move |ins, out| {
            ops::rms_norm(ins[0], group, Some(ins[1]), 1e-6, 0.0, out)
        }),
    }
}

fn add_norm(model: &str, d: usize, rows: usize) -> Case {
    Case {
        name: format!("add_rms_norm {model} [{rows}×{d}]"),
        spec: Spec::Norm {
            group: d,
            eps: 1e-6,
            offset: 0.0,
            weighted: true,
            add: true,
        },
        ins: vec![data(rows * d, 1), data(rows * d, 2), data(d, 3)],
        out_len: 2 * rows * d,
        interpret: Box::new(move |ins, out| {
            ops::add_rms_norm(ins[0], ins[1], d, ins[2], 1e-6, 0.0, out)
        }),
    }
}

fn glu(model: &str, act: GluAct, f: usize, rows: usize) -> Case {
    Case {
        name: format!("glu {act:?} {model} [{rows}×{f}]"),
        spec: Spec::glu(f, act),
        ins: vec![data(rows * 2 * f, 1)],
        out_len: rows * f,
        interpret: Box::new(move |ins, out| ops::glu(ins[0], f, act, out)),
    }
}

fn scale(model: &str, d: usize, rows: usize) -> Case {
    Case {
        name: format!("scale {model} [{rows}×{d}]"),
        spec: Spec::Map {
            width: d,
            operands: vec![Operand {
                arg: 0,
                stride: d,
                offset: 0,
            }],
            code: vec![Ew::Scale { a: 0, factor: 25.3 }],
        },
        ins: vec![data(rows * d, 1)],
        out_len: rows * d,
        interpret: Box::new(|ins, out| ops::scale(ins[0], 25.3, out)),
    }
}

fn main() {
    let mut cases = Vec::new();
    for rows in [1, 512] {
        cases.push(norm("smollm2", 576, 576, rows));
        cases.push(add_norm("smollm2", 576, rows));
        cases.push(glu("smollm2", GluAct::Silu, 1536, rows));
        cases.push(norm("gemma3 q", 1024, 256, rows));
        cases.push(add_norm("gemma3", 640, rows));
        cases.push(glu("gemma3", GluAct::Gelu, 2048, rows));
        cases.push(scale("gemma3", 640, rows));
    }
    println!("| kernel | interpreted µs | jit µs | interpreted / jit |");
    println!("|---|---|---|---|");
    let pool = rayon::ThreadPoolBuilder::new()
        .build()
        .expect("a thread pool");
    for c in cases {
        let jit = Jit::compile([Some(c.spec.clone())]).expect("the JIT compiles here");
        let ins: Vec<&[f32]> = c.ins.iter().map(|v| v.as_slice()).collect();
        let mut out = vec![0f32; c.out_len];
        let (mut a, mut b) = (Vec::new(), Vec::new());
        // As the host runs them: on a pool worker.
        pool.install(|| {
            for _ in 0..5 {
                a.push(per_call(&mut || {
                    (c.interpret)(black_box(&ins), black_box(&mut out))
                }));
                b.push(per_call(&mut || {
                    assert!(jit.run(0, black_box(&ins), black_box(&mut out)));
                }));
            }
        });
        let (a, b) = (median(a) * 1e6, median(b) * 1e6);
        println!("| {} | {a:.2} | {b:.2} | {:.2} |", c.name, a / b);
    }
}
