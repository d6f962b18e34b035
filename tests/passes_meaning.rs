//! Passes preserve meaning: random small graphs built from the op set run on the CPU
//! backend before the pipeline, after it, and after each single pass, and must agree
//! within 1e-5 relative; and the pipeline is idempotent.

use proptest::prelude::*;
use std::collections::HashMap;
use weft_backend::{Backend, Logits, LowerOptions};
use weft_ir::{
    DType, Graph, ModelStamp, NodeId, Op, Plan, RopeLayout, RopeScaling, WeightProvider, WeightView,
};
use weft_passes::{optimize, PassSelection, PIPELINE};
use weft_reference::REFERENCE;

struct Weights(HashMap<String, WeightView>);

impl WeightProvider for Weights {
    fn weight(&self, name: &str) -> Option<WeightView> {
        self.0.get(name).cloned()
    }
}

/// Knobs of one random graph.
#[derive(Clone, Debug)]
struct Shape {
    heads: usize,
    kv_heads: usize,
    layers: usize,
    gelu: bool,
    extra_chain: u8,
    duplicate_norm: bool,
    tied: bool,
    softcap: bool,
    window: Option<usize>,
    qkv_bias: bool,
    seed: u64,
}

fn shapes() -> impl Strategy<Value = Shape> {
    (
        1usize..4,
        prop::bool::ANY,
        1usize..3,
        prop::bool::ANY,
        0u8..4,
        prop::bool::ANY,
        prop::bool::ANY,
        prop::bool::ANY,
        prop::option::of(1usize..4),
        (any::<bool>(), any::<u64>()),
    )
        .prop_map(
            |(
                kv,
                gqa,
                layers,
                gelu,
                extra_chain,
                duplicate_norm,
                tied,
                softcap,
                window,
                (qkv_bias, seed),
            )| {
                Shape {
                    heads: if gqa { kv * 2 } else { kv },
                    kv_heads: kv,
                    layers,
                    gelu,
                    extra_chain,
                    duplicate_norm,
                    tied,
                    softcap,
                    window,
                    qkv_bias,
                    seed,
                }
            },
        )
}

struct Builder {
    g: Graph,
    weights: HashMap<String, WeightView>,
    rng: u64,
}

impl Builder {
    fn next(&mut self) -> f32 {
        self.rng = self
            .rng
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.rng >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 0.6
    }

    fn weight(&mut self, name: &str, shape: &[usize], offset: f32) -> NodeId {
        if !self.weights.contains_key(name) {
            let n: usize = shape.iter().product();
            let bytes: Vec<u8> = (0..n)
                .flat_map(|_| (self.next() + offset).to_le_bytes())
                .collect();
            self.weights.insert(
                name.into(),
                WeightView::owned(name, DType::F32, shape.to_vec(), bytes),
            );
        }
        let op = Op::Weight {
            tensor: name.into(),
            dtype: DType::F32,
            shape: shape.to_vec(),
            transposed: false,
        };
        self.g.add(op, name, "", &[])
    }

    fn op(&mut self, op: Op, name: &str, inputs: &[NodeId]) -> NodeId {
        self.g.add(op, name, "test", inputs)
    }
}

const VOCAB: usize = 37;
const HEAD_DIM: usize = 8;

fn build(s: &Shape) -> (Graph, Weights) {
    let d = 16;
    let ffn = 24;
    let mut b = Builder {
        g: Graph::new(),
        weights: HashMap::new(),
        rng: s.seed | 1,
    };
    let tokens = b.op(Op::Tokens, "tokens", &[]);
    let emb = b.weight("embed", &[VOCAB, d], 0.0);
    let mut x = b.op(Op::TokenEmbed, "x", &[emb, tokens]);
    let norm = |b: &mut Builder, x: NodeId, name: &str| {
        let w = b.weight(name, &[d], 1.0);
        b.op(
            Op::RmsNorm {
                eps: 1e-5,
                weight_offset: 0.0,
                group: d,
            },
            name,
            &[x, w],
        )
    };
    let rope = Op::Rope {
        head_dim: HEAD_DIM,
        rot_dim: HEAD_DIM,
        base: 10000.0,
        layout: RopeLayout::Halves,
        scaling: RopeScaling::None,
    };
    for l in 0..s.layers {
        let h = norm(&mut b, x, &format!("n{l}"));
        let h2 = if s.duplicate_norm {
            norm(&mut b, x, &format!("n{l}"))
        } else {
            h
        };
        let (qw, kw, vw, ow) = (
            format!("q{l}"),
            format!("k{l}"),
            format!("v{l}"),
            format!("o{l}"),
        );
        let wq = b.weight(&qw, &[s.heads * HEAD_DIM, d], 0.0);
        let wk = b.weight(&kw, &[s.kv_heads * HEAD_DIM, d], 0.0);
        let wv = b.weight(&vw, &[s.kv_heads * HEAD_DIM, d], 0.0);
        let q = b.op(Op::matmul(), "q", &[h, wq]);
        let k = b.op(Op::matmul(), "k", &[h2, wk]);
        let mut v = b.op(Op::matmul(), "v", &[h, wv]);
        let mut q = q;
        if s.qkv_bias {
            let bq = b.weight(&format!("bq{l}"), &[s.heads * HEAD_DIM], 0.0);
            let bv = b.weight(&format!("bv{l}"), &[s.kv_heads * HEAD_DIM], 0.0);
            q = b.op(Op::Bias, "q", &[q, bq]);
            v = b.op(Op::Bias, "v", &[v, bv]);
        }
        let q = b.op(rope.clone(), "q", &[q]);
        let k = b.op(rope.clone(), "k", &[k]);
        let att = Op::Attention {
            layer: l,
            n_heads: s.heads,
            n_kv_heads: s.kv_heads,
            head_dim: HEAD_DIM,
            scale: 0.35,
            window: s.window,
            softcap: s.softcap.then_some(5.0),
            rope: None,
        };
        let a = b.op(att, "a", &[q, k, v]);
        let wo = b.weight(&ow, &[d, s.heads * HEAD_DIM], 0.0);
        let a = b.op(Op::matmul(), "o", &[a, wo]);
        x = b.op(Op::Add, "x", &[x, a]);
        let h = norm(&mut b, x, &format!("f{l}"));
        let wg = b.weight(&format!("g{l}"), &[ffn, d], 0.0);
        let wu = b.weight(&format!("u{l}"), &[ffn, d], 0.0);
        let wd = b.weight(&format!("d{l}"), &[d, ffn], 0.0);
        let gt = b.op(Op::matmul(), "g", &[h, wg]);
        let up = b.op(Op::matmul(), "u", &[h, wu]);
        let act = b.op(if s.gelu { Op::Gelu } else { Op::Silu }, "g", &[gt]);
        let m = b.op(Op::Mul, "m", &[act, up]);
        let dn = b.op(Op::matmul(), "d", &[m, wd]);
        x = b.op(Op::Add, "x", &[x, dn]);
        // Elementwise chains for the general fusion rule.
        for c in 0..s.extra_chain {
            x = match c {
                0 => b.op(Op::Scale { factor: 0.9 }, "s", &[x]),
                1 => {
                    let t = b.op(Op::Softcap { cap: 3.0 }, "c", &[x]);
                    b.op(Op::Add, "x", &[t, x])
                }
                _ => {
                    let t = b.op(Op::Gelu, "e", &[x]);
                    let t = b.op(Op::Mul, "e", &[t, x]);
                    b.op(Op::Scale { factor: 0.5 }, "s", &[t])
                }
            };
        }
    }
    let x = b.op(Op::LastPosition, "last", &[x]);
    let x = norm(&mut b, x, "out_norm");
    let head = if s.tied {
        b.weight("embed", &[VOCAB, d], 0.0)
    } else {
        b.weight("head", &[VOCAB, d], 0.0)
    };
    let mut logits = b.op(Op::matmul(), "logits", &[x, head]);
    if s.softcap {
        logits = b.op(Op::Softcap { cap: 8.0 }, "logits", &[logits]);
    }
    let out = b.op(Op::Output, "out", &[logits]);
    b.g.outputs.push(out);
    (b.g, Weights(b.weights))
}

fn stamp() -> ModelStamp {
    ModelStamp {
        source: "random".into(),
        file_bytes: 0,
        tensor_table_hash: String::new(),
    }
}

/// Logits after a 3-token prefill and two decode steps, concatenated.
fn run(g: &Graph, w: &Weights, memory: bool) -> Vec<f32> {
    let plan = Plan::from_graph(g, "random", stamp(), Default::default(), vec![]);
    let exe = REFERENCE
        .lower(
            plan,
            w,
            &LowerOptions {
                memory,
                ..LowerOptions::default()
            },
        )
        .unwrap();
    let mut p = exe.session(8).unwrap();
    let mut all = Vec::new();
    for step in [&[3u32, 17, 5][..], &[9], &[30]] {
        let out = p.forward(step, Logits::Last).unwrap();
        assert_eq!(out.rows, 1);
        all.extend_from_slice(out.logits);
    }
    all
}

fn close(a: &[f32], b: &[f32]) -> Result<(), TestCaseError> {
    let scale = a.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-6);
    let diff = a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs()));
    prop_assert!(diff <= 1e-5 * scale, "max |Δ| {diff} vs scale {scale}");
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn every_pass_and_the_pipeline_preserve_logits(s in shapes()) {
        let (g, w) = build(&s);
        let mut base = g.clone();
        weft_passes::infer_shapes(&mut base).unwrap();
        let want = run(&base, &w, false);
        for pass in PIPELINE {
            let mut one = base.clone();
            let sel = PassSelection::parse(pass.name()).unwrap();
            optimize(&mut one, &sel, |_, _| {}).unwrap();
            close(&want, &run(&one, &w, false))?;
        }
        let mut all = base.clone();
        optimize(&mut all, &PassSelection::all(), |_, _| {}).unwrap();
        prop_assert!(all.len() < base.len(), "the pipeline found nothing to do");
        close(&want, &run(&all, &w, true))?;
    }

    #[test]
    fn the_pipeline_is_idempotent(s in shapes()) {
        let (mut g, _) = build(&s);
        optimize(&mut g, &PassSelection::all(), |_, _| {}).unwrap();
        let text = g.to_text();
        let log = optimize(&mut g, &PassSelection::all(), |_, _| {}).unwrap();
        prop_assert_eq!(g.to_text(), text);
        prop_assert!(log.iter().filter(|l| !l.starts_with(' ')).all(|l| l.ends_with(": 0 change(s)")), "{:?}", log);
    }
}

#[test]
fn a_declined_fusion_leaves_the_unfused_form() {
    let s = Shape {
        heads: 2,
        kv_heads: 1,
        layers: 1,
        gelu: false,
        extra_chain: 0,
        duplicate_norm: false,
        tied: true,
        softcap: false,
        window: None,
        qkv_bias: false,
        seed: 7,
    };
    let (g, w) = build(&s);
    let mut base = g.clone();
    weft_passes::infer_shapes(&mut base).unwrap();
    // Without glu and the general elementwise rule, silu and mul stay separate ops.
    let (sel, log) = PassSelection::all().declining(&["glu", "elementwise"]);
    assert_eq!(
        log,
        vec![
            "fuse-glu: declined by the backend (glu)".to_string(),
            "fuse-elementwise: declined by the backend (elementwise)".to_string()
        ]
    );
    let mut fused = base.clone();
    optimize(&mut fused, &sel, |_, _| {}).unwrap();
    let text = fused.to_text();
    assert!(
        !text.contains("= glu(") && text.contains("= silu("),
        "{text}"
    );
    let want = run(&base, &w, false);
    let got = run(&fused, &w, true);
    let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
    assert!(want
        .iter()
        .zip(&got)
        .all(|(a, b)| (a - b).abs() <= 1e-5 * scale));
}
