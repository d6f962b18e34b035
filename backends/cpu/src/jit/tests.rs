//! Every kernel against the reference backend's interpreted op, on random shapes
//! and values.

use super::*;
use proptest::prelude::*;
use weft_reference::ops;

/// `|a − b| ≤ tol · (1 + |b|)` everywhere, NaN where the reference has NaN.
fn close(jit: &[f32], reference: &[f32], tol: f32) -> Result<(), TestCaseError> {
    prop_assert_eq!(jit.len(), reference.len());
    for (i, (&a, &b)) in jit.iter().zip(reference).enumerate() {
        let ok = match b.is_nan() {
            true => a.is_nan(),
            false => (a - b).abs() <= tol * (1.0 + b.abs()),
        };
        prop_assert!(ok, "value {}: jit {} vs reference {}", i, a, b);
    }
    Ok(())
}

fn run(spec: Spec, ins: &[&[f32]], out: &mut [f32]) {
    let jit = Jit::compile([Some(spec)]).expect("the JIT compiles on this machine");
    assert!(jit.run(0, ins, out), "the kernel accepts its buffers");
}

fn values(n: usize, scale: f32) -> impl Strategy<Value = Vec<f32>> {
    prop::collection::vec(-1f32..1.0, n).prop_map(move |v| v.iter().map(|x| x * scale).collect())
}

fn rows(width: usize) -> Vec<Operand> {
    (0..3)
        .map(|arg| Operand {
            arg,
            stride: width,
            offset: 0,
        })
        .collect()
}

/// A random program over three inputs, each instruction reading earlier registers.
fn program() -> impl Strategy<Value = Vec<Ew>> {
    prop::collection::vec((0u8..6, any::<u16>(), any::<u16>(), 0.1f32..4.0), 1..7).prop_map(|ops| {
        ops.iter()
            .enumerate()
            .map(|(k, &(op, a, b, f))| {
                let (a, b) = (a as usize % (3 + k), b as usize % (3 + k));
                match op {
                    0 => Ew::Add { a, b },
                    1 => Ew::Mul { a, b },
                    2 => Ew::Scale { a, factor: f },
                    3 => Ew::Silu { a },
                    4 => Ew::Gelu { a },
                    _ => Ew::Softcap { a, cap: f * 10.0 },
                }
            })
            .collect()
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn programs_match_the_interpreter(
        width in 1usize..70, n_rows in 0usize..4, code in program(), scale in prop_oneof![Just(1f32), Just(8.0), Just(100.0)],
        seed in values(3 * 4 * 70, 1.0),
    ) {
        let n = width * n_rows;
        let xs: Vec<Vec<f32>> = (0..3).map(|k| seed[k * n..(k + 1) * n].iter().map(|v| v * scale).collect()).collect();
        let ins: Vec<&[f32]> = xs.iter().map(|x| x.as_slice()).collect();
        let mut want = vec![0f32; n];
        ops::elementwise(&ins, &code, &mut want);
        let mut got = vec![f32::NAN; n];
        run(Spec::Map { width, operands: rows(width), code }, &ins, &mut got);
        // Chains compound each instruction's few-ulp difference.
        close(&got, &want, 2e-5)?;
    }

    #[test]
    fn gated_units_match_the_interpreter(
        f in 1usize..300, n_rows in 1usize..4, gelu in any::<bool>(), x in values(2 * 3 * 300, 12.0),
    ) {
        let x = &x[..2 * f * n_rows];
        let act = if gelu { GluAct::Gelu } else { GluAct::Silu };
        let mut want = vec![0f32; f * n_rows];
        ops::glu(x, f, act, &mut want);
        let mut got = vec![f32::NAN; f * n_rows];
        run(Spec::glu(f, act), &[x], &mut got);
        close(&got, &want, 4e-6)?;
    }

    #[test]
    fn a_bias_is_added_to_every_row(width in 1usize..40, n_rows in 0usize..4, x in values(3 * 40, 3.0), b in values(40, 3.0)) {
        let (x, b) = (&x[..width * n_rows], &b[..width]);
        let want: Vec<f32> = x.chunks(width).flat_map(|r| r.iter().zip(b).map(|(x, b)| x + b)).collect();
        let bias = Operand { arg: 1, stride: 0, offset: 0 };
        let mut got = vec![f32::NAN; width * n_rows];
        run(Spec::Map { width, operands: vec![rows(width)[0], bias], code: vec![Ew::Add { a: 0, b: 1 }] }, &[x, b], &mut got);
        prop_assert_eq!(got, want);
    }

    #[test]
    fn rms_norms_match_the_interpreter(
        group in 1usize..200, groups in 0usize..5, weighted in any::<bool>(), offset in prop_oneof![Just(0f32), Just(1.0)],
        eps in prop_oneof![Just(1e-6f32), Just(1e-5), Just(0.5)], x in values(5 * 200, 30.0), w in values(200, 2.0),
    ) {
        let (x, w) = (&x[..group * groups], &w[..group]);
        let mut want = vec![0f32; x.len()];
        ops::rms_norm(x, group, weighted.then_some(w), eps, offset, &mut want);
        let mut got = vec![f32::NAN; x.len()];
        let spec = Spec::Norm { group, eps, offset, weighted, add: false };
        let ins: &[&[f32]] = if weighted { &[x, w] } else { &[x] };
        run(spec, ins, &mut got);
        close(&got, &want, 2e-6)?;
    }

    #[test]
    fn residual_add_norms_match_the_interpreter(
        d in 1usize..200, n_rows in 0usize..4, offset in prop_oneof![Just(0f32), Just(1.0)],
        a in values(4 * 200, 10.0), b in values(4 * 200, 10.0), w in values(200, 2.0),
    ) {
        let (a, b, w) = (&a[..d * n_rows], &b[..d * n_rows], &w[..d]);
        let mut want = vec![0f32; 2 * d * n_rows];
        ops::add_rms_norm(a, b, d, w, 1e-6, offset, &mut want);
        let mut got = vec![f32::NAN; want.len()];
        run(Spec::Norm { group: d, eps: 1e-6, offset, weighted: true, add: true }, &[a, b, w], &mut got);
        close(&got, &want, 2e-6)?;
    }
}

#[test]
fn nan_stays_nan_and_large_values_saturate() {
    let x = [f32::NAN, 100.0, -100.0, 1e-30, 0.0, -0.0, 30.0, -30.0];
    for code in [
        vec![Ew::Silu { a: 0 }],
        vec![Ew::Gelu { a: 0 }],
        vec![Ew::Softcap { a: 0, cap: 30.0 }],
    ] {
        let mut want = [0f32; 8];
        ops::elementwise(&[&x], &code, &mut want);
        let mut got = [0f32; 8];
        let spec = Spec::Map {
            width: 8,
            operands: rows(8)[..1].to_vec(),
            code: code.clone(),
        };
        run(spec, &[&x], &mut got);
        for (g, w) in got.iter().zip(&want) {
            assert!(
                (g.is_nan() && w.is_nan()) || (g - w).abs() <= 1e-6 * (1.0 + w.abs()),
                "{code:?}: jit {got:?} vs reference {want:?}"
            );
        }
    }
}

#[test]
fn small_tanh_keeps_its_relative_precision() {
    // softcap(x) = cap·tanh(x/cap) ≈ x for small x: the Taylor branch must hold it.
    let x: Vec<f32> = (1..=64).map(|i| i as f32 * 1e-4).collect();
    let mut got = vec![0f32; x.len()];
    let spec = Spec::Map {
        width: x.len(),
        operands: rows(x.len())[..1].to_vec(),
        code: vec![Ew::Softcap { a: 0, cap: 50.0 }],
    };
    run(spec, &[&x], &mut got);
    for (g, v) in got.iter().zip(&x) {
        let want = 50.0 * (*v as f64 / 50.0).tanh();
        assert!(
            ((*g as f64 - want) / want).abs() < 1e-6,
            "softcap({v}) = {g}, want {want}"
        );
    }
}

#[test]
fn wrong_buffers_are_left_to_the_interpreter() {
    let spec = Spec::Map {
        width: 4,
        operands: rows(4)[..2].to_vec(),
        code: vec![Ew::Add { a: 0, b: 1 }],
    };
    let jit = Jit::compile([None, Some(spec)]).unwrap();
    let (a, b) = ([1f32; 8], [2f32; 7]);
    let mut out = [0f32; 8];
    assert!(!jit.run(0, &[&a, &b], &mut out), "no kernel for step 0");
    assert!(!jit.run(1, &[&a, &b], &mut out), "b is one value short");
    assert!(!jit.run(1, &[&a], &mut out), "an input missing");
    assert!(
        !jit.run(1, &[&a, &a], &mut out[..7]),
        "out is not whole rows"
    );
    assert!(jit.run(1, &[&a, &a], &mut out));
    assert_eq!(out, [2f32; 8]);
}

#[test]
fn same_specs_share_a_function() {
    let norm = |eps| {
        Some(Spec::Norm {
            group: 64,
            eps,
            offset: 0.0,
            weighted: true,
            add: false,
        })
    };
    let jit = Jit::compile([norm(1e-6), None, norm(1e-6), norm(1e-5)]).unwrap();
    assert_eq!(jit.counts(), (3, 2));
}

#[test]
fn large_calls_split_over_threads_and_agree() {
    let (f, n_rows) = (640, 100);
    let x: Vec<f32> = (0..2 * f * n_rows)
        .map(|i| ((i * 7919) % 2000) as f32 / 100.0 - 10.0)
        .collect();
    let mut want = vec![0f32; f * n_rows];
    ops::glu(&x, f, GluAct::Gelu, &mut want);
    let mut got = vec![f32::NAN; f * n_rows];
    run(Spec::glu(f, GluAct::Gelu), &[&x], &mut got);
    for (g, w) in got.iter().zip(&want) {
        assert!((g - w).abs() <= 4e-6 * (1.0 + w.abs()), "{g} vs {w}");
    }
}

#[test]
fn malformed_specs_are_not_compiled_and_overlapping_reads_are_checked() {
    let one = |arg, stride, offset| Operand {
        arg,
        stride,
        offset,
    };
    let bad = [
        // A register read before it is defined.
        Spec::Map {
            width: 4,
            operands: vec![one(0, 4, 0)],
            code: vec![Ew::Add { a: 0, b: 1 }],
        },
        // An input the host never passes.
        Spec::Map {
            width: 4,
            operands: vec![one(MAX_ARGS, 4, 0)],
            code: vec![Ew::Silu { a: 0 }],
        },
        Spec::Norm {
            group: 0,
            eps: 1e-6,
            offset: 0.0,
            weighted: false,
            add: false,
        },
    ];
    let jit = Jit::compile(bad.into_iter().map(Some)).unwrap();
    assert_eq!(jit.counts(), (0, 0));
    // Rows of 4 read 8 values past each 4-value step: the last row needs 4 more.
    let spec = Spec::Map {
        width: 4,
        operands: vec![one(0, 4, 4)],
        code: vec![Ew::Scale { a: 0, factor: 2.0 }],
    };
    let jit = Jit::compile([Some(spec)]).unwrap();
    let x: Vec<f32> = (0..12).map(|v| v as f32).collect();
    let mut out = [0f32; 12];
    assert!(
        !jit.run(0, &[&x], &mut out),
        "3 rows need 16 values, x has 12"
    );
    assert!(jit.run(0, &[&x], &mut out[..8]));
    assert_eq!(out[..8], [8., 10., 12., 14., 16., 18., 20., 22.]);
}
