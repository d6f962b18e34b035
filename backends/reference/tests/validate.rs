//! Plan validation: hand-broken plans give one error naming the step; randomly mutated
//! plans never panic the validator, and what it accepts re-infers to its recorded
//! shapes and lowers and runs on the reference backend (zero weights) without a panic.

use proptest::prelude::*;
use proptest::sample::Index;
use std::collections::BTreeMap;
use std::sync::OnceLock;
use weft_backend::{validate_plan, Backend, BackendError, Logits, LowerOptions};
use weft_ir::{
    DType, Dim, Ew, GluAct, Graph, ModelStamp, NodeId, Op, Plan, RopeLayout, RopeParams,
    RopeScaling, WeightProvider, WeightView,
};
use weft_passes::{infer_shapes, optimize, PassSelection};
use weft_reference::REFERENCE;

// ---- building plans -------------------------------------------------------------------

/// A graph under construction, with short ways to add weights and ops.
struct Builder {
    g: Graph,
}

impl Builder {
    fn new() -> Self {
        Builder { g: Graph::new() }
    }

    fn w(&mut self, tensor: &str, dtype: DType, shape: &[usize]) -> NodeId {
        let op = Op::Weight {
            tensor: tensor.into(),
            dtype,
            shape: shape.to_vec(),
            transposed: false,
        };
        self.g.add(op, tensor, "", &[])
    }

    fn op(&mut self, op: Op, name: &str, inputs: &[NodeId]) -> NodeId {
        self.g.add(op, name, "test", inputs)
    }

    /// Shapes inferred, the graph laid out as a plan (optionally through every pass).
    fn plan(mut self, out: NodeId, passes: bool) -> Plan {
        self.g.outputs = vec![out];
        let selection = if passes {
            PassSelection::all()
        } else {
            PassSelection::none()
        };
        let log = optimize(&mut self.g, &selection, |_, _| {}).expect("test plans are well formed");
        let stamp = ModelStamp {
            source: "test".into(),
            file_bytes: 0,
            tensor_table_hash: String::new(),
        };
        Plan::from_graph(&self.g, "test", stamp, BTreeMap::new(), log)
    }
}

fn rms(group: usize) -> Op {
    Op::RmsNorm {
        eps: 1e-6,
        weight_offset: 0.0,
        group,
    }
}

fn attention(layer: usize, n_heads: usize, n_kv_heads: usize, rope: Option<RopeParams>) -> Op {
    Op::Attention {
        layer,
        n_heads,
        n_kv_heads,
        head_dim: 16,
        scale: 0.25,
        window: None,
        softcap: None,
        rope,
    }
}

fn rope_op(r: RopeParams) -> Op {
    Op::Rope {
        head_dim: r.head_dim,
        rot_dim: r.rot_dim,
        base: r.base,
        layout: r.layout,
        scaling: r.scaling,
    }
}

fn rope(rot_dim: usize, layout: RopeLayout, scaling: RopeScaling) -> RopeParams {
    RopeParams {
        head_dim: 16,
        rot_dim,
        base: 10000.0,
        layout,
        scaling,
    }
}

/// tokens, embed weight, token_embed, norm weight, rms_norm, last_position, head, output.
fn tiny() -> Plan {
    let mut b = Builder::new();
    let tokens = b.op(Op::Tokens, "tokens", &[]);
    let embed = b.w("embed", DType::F32, &[32, 8]);
    let x = b.op(Op::TokenEmbed, "x", &[embed, tokens]);
    let norm = b.w("norm", DType::F32, &[8]);
    let h = b.op(rms(8), "h", &[x, norm]);
    let last = b.op(Op::LastPosition, "last", &[h]);
    let head = b.w("head", DType::F32, &[32, 8]);
    let logits = b.op(Op::matmul(), "logits", &[last, head]);
    let out = b.op(Op::Output, "output", &[logits]);
    b.plan(out, false)
}

/// Two llama layers, unfused: biased q/k/v, rope (llama3 scaling on layer 1), GQA,
/// SwiGLU, tied head. Through every pass it becomes the fused forms: matmul with bias
/// epilogues over q/k/v, glu, add_rms_norm, rope in attention.
fn llama(passes: bool) -> Plan {
    let (d, kv, f, v) = (64, 32, 96, 128);
    let mut b = Builder::new();
    let tokens = b.op(Op::Tokens, "tokens", &[]);
    let embed = b.w("token_embd.weight", DType::Q8_0, &[v, d]);
    let mut x = b.op(Op::TokenEmbed, "x", &[embed, tokens]);
    for l in 0..2 {
        let p = |s: &str| format!("blk.{l}.{s}");
        let an = b.w(&p("attn_norm"), DType::F32, &[d]);
        let h = b.op(rms(d), &p("h"), &[x, an]);
        let proj = |b: &mut Builder, what: &str, rows: usize| {
            let w = b.w(&p(&format!("attn_{what}.weight")), DType::Q8_0, &[rows, d]);
            let bias = b.w(&p(&format!("attn_{what}.bias")), DType::F32, &[rows]);
            let m = b.op(Op::matmul(), &p(what), &[h, w]);
            b.op(Op::Bias, &p(what), &[m, bias])
        };
        let (q, k, vv) = (
            proj(&mut b, "q", d),
            proj(&mut b, "k", kv),
            proj(&mut b, "v", kv),
        );
        let scaling = if l == 0 {
            RopeScaling::None
        } else {
            RopeScaling::Llama3 {
                factor: 8.0,
                low_freq_factor: 1.0,
                high_freq_factor: 4.0,
                original_context: 8192.0,
            }
        };
        let r = rope(16, RopeLayout::Halves, scaling);
        let q = b.op(rope_op(r), &p("q"), &[q]);
        let k = b.op(rope_op(r), &p("k"), &[k]);
        let a = b.op(attention(l, 4, 2, None), &p("a"), &[q, k, vv]);
        let wo = b.w(&p("attn_output.weight"), DType::Q8_0, &[d, d]);
        let o = b.op(Op::matmul(), &p("o"), &[a, wo]);
        x = b.op(Op::Add, &p("x"), &[x, o]);
        let fnorm = b.w(&p("ffn_norm"), DType::F32, &[d]);
        let h = b.op(rms(d), &p("h"), &[x, fnorm]);
        let wg = b.w(&p("ffn_gate"), DType::Q8_0, &[f, d]);
        let wu = b.w(&p("ffn_up"), DType::Q8_0, &[f, d]);
        let wd = b.w(&p("ffn_down"), DType::Q8_0, &[d, f]);
        let gate = b.op(Op::matmul(), &p("gate"), &[h, wg]);
        let up = b.op(Op::matmul(), &p("up"), &[h, wu]);
        let act = b.op(Op::Silu, &p("act"), &[gate]);
        let m = b.op(Op::Mul, &p("m"), &[act, up]);
        let down = b.op(Op::matmul(), &p("down"), &[m, wd]);
        x = b.op(Op::Add, &p("x"), &[x, down]);
    }
    let last = b.op(Op::LastPosition, "x", &[x]);
    let on = b.w("output_norm", DType::F32, &[d]);
    let n = b.op(rms(d), "x", &[last, on]);
    let logits = b.op(Op::matmul(), "logits", &[n, embed]);
    let out = b.op(Op::Output, "output", &[logits]);
    b.plan(out, passes)
}

/// Gemma- and GPT-like forms built fused: position embedding, scales (plain and with a
/// learned scalar), layer norm, a biased three-weight matmul, rope with divisors,
/// attention with window and softcap, rope fused into attention with divisors,
/// offset and weightless norms, GeGLU, an elementwise program, add_rms_norm, softcaps.
fn gemma_gpt() -> Plan {
    let (d, kv, f, v) = (64, 32, 64, 96);
    let mut b = Builder::new();
    let tokens = b.op(Op::Tokens, "tokens", &[]);
    let embed = b.w("embed", DType::F16, &[v, d]);
    let x = b.op(Op::TokenEmbed, "x", &[embed, tokens]);
    let pos = b.w("pos", DType::F32, &[256, d]);
    let pe = b.op(Op::PositionEmbed, "pos", &[pos]);
    let x = b.op(Op::Add, "x", &[x, pe]);
    let mut x = b.op(Op::Scale { factor: 8.0 }, "x", &[x]);
    let freqs = b.w("rope_freqs", DType::F32, &[8]);
    let pairs = rope(16, RopeLayout::Pairs, RopeScaling::Linear { factor: 2.0 });
    let proportional = rope(
        16,
        RopeLayout::Halves,
        RopeScaling::Proportional {
            pairs: 4,
            factor: 1.0,
        },
    );

    // Layer 0: layer norm, biased q/k/v in one matmul, rope with divisors, windowed attention.
    let lw = b.w("blk.0.ln.weight", DType::F32, &[d]);
    let lb = b.w("blk.0.ln.bias", DType::F32, &[d]);
    let h = b.op(Op::LayerNorm { eps: 1e-5 }, "blk.0.h", &[x, lw, lb]);
    let wq = b.w("blk.0.q", DType::F16, &[d, d]);
    let wk = b.w("blk.0.k", DType::F16, &[kv, d]);
    let wv = b.w("blk.0.v", DType::F16, &[kv, d]);
    let bq = b.w("blk.0.q.bias", DType::F32, &[d]);
    let bk = b.w("blk.0.k.bias", DType::F32, &[kv]);
    let bv = b.w("blk.0.v.bias", DType::F32, &[kv]);
    let biased = Op::MatMul {
        bias: true,
        softcap: None,
    };
    let qkv = b.op(biased, "blk.0.qkv", &[h, wq, wk, wv, bq, bk, bv]);
    let q = b.op(Op::Slice { start: 0, len: d }, "blk.0.q", &[qkv]);
    let k = b.op(Op::Slice { start: d, len: kv }, "blk.0.k", &[qkv]);
    let vv = b.op(
        Op::Slice {
            start: d + kv,
            len: kv,
        },
        "blk.0.v",
        &[qkv],
    );
    let q = b.op(rope_op(pairs), "blk.0.q", &[q, freqs]);
    let k = b.op(rope_op(pairs), "blk.0.k", &[k, freqs]);
    let windowed = Op::Attention {
        layer: 0,
        n_heads: 4,
        n_kv_heads: 2,
        head_dim: 16,
        scale: 0.25,
        window: Some(32),
        softcap: Some(50.0),
        rope: None,
    };
    let a = b.op(windowed, "blk.0.a", &[q, k, vv]);
    let wo = b.w("blk.0.o", DType::F16, &[d, d]);
    let o = b.op(Op::matmul(), "blk.0.o", &[a, wo]);
    let post = b.w("blk.0.post_norm", DType::F32, &[d]);
    let offset = Op::RmsNorm {
        eps: 1e-6,
        weight_offset: 1.0,
        group: d,
    };
    let o = b.op(offset, "blk.0.o", &[o, post]);
    x = b.op(Op::Add, "blk.0.x", &[x, o]);
    let pn = b.w("blk.0.ffn_norm", DType::F32, &[d]);
    let h = b.op(rms(d), "blk.0.h", &[x, pn]);
    let wg = b.w("blk.0.gate", DType::Q8_0, &[f, d]);
    let wu = b.w("blk.0.up", DType::Q8_0, &[f, d]);
    let wd = b.w("blk.0.down", DType::Q4_0, &[d, f]);
    let gu = b.op(Op::matmul(), "blk.0.gate|up", &[h, wg, wu]);
    let g = b.op(Op::Glu { act: GluAct::Gelu }, "blk.0.glu", &[gu]);
    let down = b.op(Op::matmul(), "blk.0.down", &[g, wd]);
    let code = vec![
        Ew::Scale { a: 0, factor: 0.5 },
        Ew::Add { a: 2, b: 1 },
        Ew::Softcap { a: 3, cap: 100.0 },
    ];
    x = b.op(Op::Elementwise { code }, "blk.0.x", &[down, x]);

    // Layer 1: per-head q/k norms, a weightless v norm, rope fused into attention with
    // divisors, a learned output scale, add_rms_norm, a biased gelu MLP.
    let n1 = b.w("blk.1.norm", DType::F32, &[d]);
    let h = b.op(rms(d), "blk.1.h", &[x, n1]);
    let wq = b.w("blk.1.q", DType::BF16, &[d, d]);
    let wk = b.w("blk.1.k", DType::BF16, &[kv, d]);
    let wv = b.w("blk.1.v", DType::BF16, &[kv, d]);
    let qkv = b.op(Op::matmul(), "blk.1.qkv", &[h, wq, wk, wv]);
    let q = b.op(Op::Slice { start: 0, len: d }, "blk.1.q", &[qkv]);
    let k = b.op(Op::Slice { start: d, len: kv }, "blk.1.k", &[qkv]);
    let vv = b.op(
        Op::Slice {
            start: d + kv,
            len: kv,
        },
        "blk.1.v",
        &[qkv],
    );
    let qn = b.w("blk.1.q_norm", DType::F32, &[16]);
    let kn = b.w("blk.1.k_norm", DType::F32, &[16]);
    let q = b.op(rms(16), "blk.1.q", &[q, qn]);
    let k = b.op(rms(16), "blk.1.k", &[k, kn]);
    let vv = b.op(rms(16), "blk.1.v", &[vv]);
    let freqs1 = b.w("rope_freqs.1", DType::F32, &[8]);
    let a = b.op(
        attention(1, 4, 2, Some(proportional)),
        "blk.1.a",
        &[q, k, vv, freqs1],
    );
    let wo = b.w("blk.1.o", DType::BF16, &[d, d]);
    let o = b.op(Op::matmul(), "blk.1.o", &[a, wo]);
    let s = b.w("blk.1.scale", DType::F32, &[1]);
    let o = b.op(Op::Scale { factor: 1.0 }, "blk.1.o", &[o, s]);
    let fnorm = b.w("blk.1.ffn_norm", DType::F32, &[d]);
    let add_norm = Op::AddRmsNorm {
        eps: 1e-6,
        weight_offset: 0.0,
        group: d,
    };
    let xh = b.op(add_norm, "blk.1.x+h", &[x, o, fnorm]);
    let x = b.op(Op::Slice { start: 0, len: d }, "blk.1.x", &[xh]);
    let h = b.op(Op::Slice { start: d, len: d }, "blk.1.h", &[xh]);
    let wu = b.w("blk.1.up", DType::F32, &[f, d]);
    let bu = b.w("blk.1.up.bias", DType::F32, &[f]);
    let wd = b.w("blk.1.down", DType::F32, &[d, f]);
    let up = b.op(Op::matmul(), "blk.1.up", &[h, wu]);
    let up = b.op(Op::Bias, "blk.1.up", &[up, bu]);
    let up = b.op(Op::Gelu, "blk.1.up", &[up]);
    let down = b.op(Op::matmul(), "blk.1.down", &[up, wd]);
    let m = b.op(Op::Mul, "blk.1.m", &[down, x]);
    let x = b.op(Op::Add, "blk.1.x", &[x, m]);
    let x = b.op(Op::Silu, "blk.1.x", &[x]);

    let last = b.op(Op::LastPosition, "x", &[x]);
    let fw = b.w("final.weight", DType::F32, &[d]);
    let fb = b.w("final.bias", DType::F32, &[d]);
    let n = b.op(Op::LayerNorm { eps: 1e-5 }, "x", &[last, fw, fb]);
    let head = b.w("head", DType::F16, &[v, d]);
    let capped = Op::MatMul {
        bias: false,
        softcap: Some(30.0),
    };
    let logits = b.op(capped, "logits", &[n, head]);
    let logits = b.op(Op::Softcap { cap: 30.0 }, "logits", &[logits]);
    let out = b.op(Op::Output, "output", &[logits]);
    b.plan(out, false)
}

/// Qwen3-MoE-like: q/k norms, partial rope fused into MQA attention, add_rms_norm,
/// a stacked mixture (layer 0) and one of separate experts (layer 1), k-quant weights.
fn moe() -> Plan {
    let (d, kv, f, v, e) = (64, 16, 256, 96, 4);
    let mut b = Builder::new();
    let tokens = b.op(Op::Tokens, "tokens", &[]);
    let embed = b.w("embed", DType::Q8_0, &[v, d]);
    let mut x = b.op(Op::TokenEmbed, "x", &[embed, tokens]);
    let an = b.w("blk.0.attn_norm", DType::F32, &[d]);
    let mut h = b.op(rms(d), "blk.0.h", &[x, an]);
    for l in 0..2 {
        let p = |s: &str| format!("blk.{l}.{s}");
        let wq = b.w(&p("q"), DType::Q8_0, &[d, d]);
        let wk = b.w(&p("k"), DType::Q8_0, &[kv, d]);
        let wv = b.w(&p("v"), DType::Q8_0, &[kv, d]);
        let qkv = b.op(Op::matmul(), &p("qkv"), &[h, wq, wk, wv]);
        let q = b.op(Op::Slice { start: 0, len: d }, &p("q"), &[qkv]);
        let k = b.op(Op::Slice { start: d, len: kv }, &p("k"), &[qkv]);
        let vv = b.op(
            Op::Slice {
                start: d + kv,
                len: kv,
            },
            &p("v"),
            &[qkv],
        );
        let qn = b.w(&p("q_norm"), DType::F32, &[16]);
        let kn = b.w(&p("k_norm"), DType::F32, &[16]);
        let q = b.op(rms(16), &p("q"), &[q, qn]);
        let k = b.op(rms(16), &p("k"), &[k, kn]);
        let partial = rope(8, RopeLayout::Halves, RopeScaling::None);
        let a = b.op(attention(l, 4, 1, Some(partial)), &p("a"), &[q, k, vv]);
        let wo = b.w(&p("o"), DType::Q8_0, &[d, d]);
        let o = b.op(Op::matmul(), &p("o"), &[a, wo]);
        let fnorm = b.w(&p("ffn_norm"), DType::F32, &[d]);
        let add_norm = Op::AddRmsNorm {
            eps: 1e-6,
            weight_offset: 0.0,
            group: d,
        };
        let xh = b.op(add_norm, &p("x+h"), &[x, o, fnorm]);
        x = b.op(Op::Slice { start: 0, len: d }, &p("x"), &[xh]);
        let hh = b.op(Op::Slice { start: d, len: d }, &p("h"), &[xh]);
        let router = b.w(&p("router"), DType::F32, &[e, d]);
        let m = if l == 0 {
            let g = b.w(&p("gate_exps"), DType::Q8_0, &[e, f, d]);
            let u = b.w(&p("up_exps"), DType::Q8_0, &[e, f, d]);
            let dn = b.w(&p("down_exps"), DType::Q4_K, &[e, d, f]);
            let op = Op::Moe {
                n_experts: e,
                top_k: 2,
                norm_topk: true,
                act: GluAct::Silu,
                stacked: true,
            };
            b.op(op, &p("moe"), &[hh, router, g, u, dn])
        } else {
            let mut ins = vec![hh, router];
            for (what, dtype, shape) in [
                ("gate", DType::Q8_0, [f, d]),
                ("up", DType::Q8_0, [f, d]),
                ("down", DType::Q6_K, [d, f]),
            ] {
                for x in 0..e {
                    ins.push(b.w(&p(&format!("{what}.{x}")), dtype, &shape));
                }
            }
            let op = Op::Moe {
                n_experts: e,
                top_k: 1,
                norm_topk: false,
                act: GluAct::Gelu,
                stacked: false,
            };
            b.op(op, &p("moe"), &ins)
        };
        let nn = b.w(&format!("blk.{}.attn_norm", l + 1), DType::F32, &[d]);
        let add_norm = Op::AddRmsNorm {
            eps: 1e-6,
            weight_offset: 0.0,
            group: d,
        };
        let xh = b.op(add_norm, &p("x+h"), &[x, m, nn]);
        x = b.op(Op::Slice { start: 0, len: d }, &p("x"), &[xh]);
        h = b.op(Op::Slice { start: d, len: d }, &p("h"), &[xh]);
    }
    let last = b.op(Op::LastPosition, "h", &[h]);
    let head = b.w("head", DType::Q8_0, &[v, d]);
    let logits = b.op(Op::matmul(), "logits", &[last, head]);
    let out = b.op(Op::Output, "output", &[logits]);
    b.plan(out, false)
}

fn realistic() -> &'static [Plan] {
    static PLANS: OnceLock<Vec<Plan>> = OnceLock::new();
    PLANS.get_or_init(|| vec![tiny(), llama(false), llama(true), gemma_gpt(), moe()])
}

// ---- a shadow of the host executor ----------------------------------------------------

/// Zero-filled weights of the shapes and types a plan's weight steps declare.
struct Zeros(BTreeMap<String, WeightView>);

impl Zeros {
    fn for_plan(plan: &Plan) -> Zeros {
        let mut m = BTreeMap::new();
        for st in &plan.steps {
            if let Op::Weight {
                tensor,
                dtype,
                shape,
                transposed,
            } = &st.node.op
            {
                let stored: Vec<usize> = match (transposed, &shape[..]) {
                    (true, [r, c]) => vec![*c, *r],
                    _ => shape.clone(),
                };
                let bytes = dtype.tensor_bytes(&stored).expect("validated sizes");
                m.insert(
                    tensor.clone(),
                    WeightView::owned(tensor.clone(), *dtype, stored, vec![0; bytes]),
                );
            }
        }
        Zeros(m)
    }
}

impl WeightProvider for Zeros {
    fn weight(&self, name: &str) -> Option<WeightView> {
        self.0.get(name).cloned()
    }
}

/// Lowers a validated plan on the reference backend (zero weights) and runs `seq`
/// positions, asking all logits or the last: the executor itself, so any index or length
/// it trusts the validator for panics here.
fn lower_and_run(plan: &Plan, seq: usize, all: bool) {
    let zeros = Zeros::for_plan(plan);
    // A tensor declared twice with different shapes is for the binder to refuse.
    let Ok(exe) = REFERENCE.lower(plan.clone(), &zeros, &LowerOptions::default()) else {
        return;
    };
    let mut s = exe.session(2 * seq + 2).expect("a small session");
    let tokens: Vec<u32> = (0..seq as u32).collect();
    let which = if all { Logits::All } else { Logits::Last };
    let _ = s.forward(&tokens, which);
    let _ = s.forward(&[0], which);
}

// ---- hand-broken plans ----------------------------------------------------------------

/// The first step of kind `kind`.
fn first(plan: &Plan, kind: &str) -> usize {
    plan.steps
        .iter()
        .position(|s| s.node.op.kind() == kind)
        .unwrap_or_else(|| panic!("no {kind} step"))
}

fn index(plan: &Plan, name: &str) -> usize {
    plan.steps
        .iter()
        .position(|s| s.node.name == name)
        .unwrap_or_else(|| panic!("no step '{name}'"))
}

/// The step and the message of the plan's error, checking that the message names it.
fn error(plan: &Plan) -> (usize, String) {
    match validate_plan(plan) {
        Err(e @ BackendError::BadPlan { step, .. }) => {
            let text = e.to_string();
            assert!(text.contains(&format!("step {step}")), "{text}");
            (step, text)
        }
        Err(e) => panic!("not a BadPlan: {e}"),
        Ok(()) => panic!("accepted:\n{}", plan.to_text()),
    }
}

/// Asserts that `plan` fails at step `at` with a message containing each of `words`.
fn fails_at(plan: &Plan, at: usize, words: &[&str]) {
    let (step, text) = error(plan);
    assert_eq!(step, at, "{text}");
    assert!(
        text.contains(&format!("'{}'", plan.steps[at].node.name)),
        "{text}"
    );
    for w in words {
        assert!(text.contains(w), "{text} lacks {w:?}");
    }
}

#[test]
fn realistic_plans_pass() {
    for plan in realistic() {
        validate_plan(plan).unwrap_or_else(|e| panic!("{e}\n{}", plan.to_text()));
        for (seq, all) in [(1, false), (5, false), (5, true)] {
            lower_and_run(plan, seq, all);
        }
    }
    // The fused llama plan has the fused forms.
    let fused = realistic()[2].to_text();
    for form in ["glu(", "add_rms_norm(", "bias", "rope(rot_dim"] {
        assert!(fused.contains(form), "{form} missing:\n{fused}");
    }
}

#[test]
fn input_past_the_end() {
    let mut plan = tiny();
    let h = index(&plan, "h");
    plan.steps[h].inputs[0] = 99;
    fails_at(&plan, h, &["input 0 is step 99", "earlier step"]);
}

#[test]
fn forward_input_and_cycle() {
    let mut plan = tiny();
    let h = index(&plan, "h");
    plan.steps[h].inputs[0] = h;
    fails_at(&plan, h, &["input 0 is step"]);
    // x reads h, which reads x.
    let mut plan = tiny();
    let (x, h) = (index(&plan, "x"), index(&plan, "h"));
    plan.steps[x].inputs[1] = h;
    fails_at(&plan, x, &[&format!("is step {h}")]);
}

#[test]
fn too_few_inputs() {
    let mut plan = tiny();
    let x = index(&plan, "x");
    plan.steps[x].inputs.pop();
    fails_at(&plan, x, &["token_embed", "takes 2 input(s)", "found 1"]);

    let mut plan = tiny();
    let logits = index(&plan, "logits");
    plan.steps[logits].inputs.truncate(1);
    fails_at(&plan, logits, &["matmul", "found 1 input(s)"]);

    // Without its arity checked first, shape inference would index a missing input.
    let mut plan = tiny();
    let h = index(&plan, "h");
    plan.steps[h].node.op = Op::Rope {
        head_dim: 8,
        rot_dim: 8,
        base: 1e4,
        layout: RopeLayout::Halves,
        scaling: RopeScaling::None,
    };
    plan.steps[h].inputs.clear();
    fails_at(&plan, h, &["rope", "takes 1 or 2 input(s)", "found 0"]);

    let mut plan = moe();
    let m = index(&plan, "blk.1.moe");
    plan.steps[m].inputs.pop();
    fails_at(&plan, m, &["3 × 4 expert weights", "found 13"]);
}

#[test]
fn zero_heads() {
    for field in 0..3 {
        let mut plan = llama(false);
        let a = index(&plan, "blk.1.a");
        let Op::Attention {
            n_heads,
            n_kv_heads,
            head_dim,
            ..
        } = &mut plan.steps[a].node.op
        else {
            unreachable!()
        };
        *[n_heads, n_kv_heads, head_dim][field] = 0;
        fails_at(&plan, a, &["attention", "must be positive"]);
    }
    let mut plan = llama(false);
    let a = index(&plan, "blk.0.a");
    if let Op::Attention { n_kv_heads, .. } = &mut plan.steps[a].node.op {
        *n_kv_heads = 3;
    }
    fails_at(&plan, a, &["4 query heads do not split evenly over 3"]);
}

#[test]
fn slice_past_its_source() {
    let mut plan = moe();
    let k = plan
        .steps
        .iter()
        .position(|s| s.node.name == "blk.0.k" && matches!(s.node.op, Op::Slice { .. }))
        .unwrap();
    plan.steps[k].node.op = Op::Slice { start: 90, len: 16 };
    fails_at(&plan, k, &["start=90 len=16", "96 columns"]);
    // start + len overflows: one error, no arithmetic panic.
    plan.steps[k].node.op = Op::Slice {
        start: usize::MAX,
        len: 2,
    };
    fails_at(&plan, k, &["run past the source's 96 columns"]);
    plan.steps[k].node.op = Op::Slice { start: 0, len: 0 };
    fails_at(&plan, k, &["len must be positive"]);
}

#[test]
fn output_must_be_an_activation() {
    let mut plan = tiny();
    let embed = index(&plan, "embed");
    plan.outputs = vec![embed];
    fails_at(
        &plan,
        embed,
        &["output 0 must be an activation, found a weight"],
    );
    let tokens = index(&plan, "tokens");
    plan.outputs = vec![tokens];
    fails_at(&plan, tokens, &["found the token ids"]);

    plan.outputs = vec![1000];
    let (step, text) = error(&plan);
    assert!(step == 1000 && text.contains("'outputs'") && text.contains("has 9 steps"));
    plan.outputs.clear();
    assert!(error(&plan).1.contains("no outputs"));
    plan.steps.clear();
    assert!(error(&plan).1.contains("no steps"));
}

#[test]
fn shape_mismatch() {
    let mut plan = tiny();
    let h = index(&plan, "h");
    plan.steps[h].node.shape = vec![Dim::SEQ, Dim::Known(9)];
    fails_at(
        &plan,
        h,
        &["recorded shape [seq, 9], but its inputs give [seq, 8]"],
    );
    // A weight's recorded shape is its stored one.
    let mut plan = tiny();
    let norm = index(&plan, "norm");
    if let Op::Weight { shape, .. } = &mut plan.steps[norm].node.op {
        *shape = vec![9];
    }
    fails_at(
        &plan,
        norm,
        &["recorded shape [8], but its inputs give [9]"],
    );
    // The rules' own errors name the step too.
    plan.steps[norm].node.shape = vec![Dim::Known(9)];
    fails_at(&plan, index(&plan, "h"), &["norm weight of 9 values"]);
    // Rows other than seq (or 1 after last_position) are not inferred.
    let mut plan = tiny();
    let x = index(&plan, "x");
    plan.steps[x].node.shape[0] = Dim::Known(5);
    fails_at(&plan, x, &["recorded shape [5, 8]"]);
}

#[test]
fn nan_and_bad_parameters() {
    let mut plan = tiny();
    let h = index(&plan, "h");
    plan.steps[h].node.op = Op::RmsNorm {
        eps: f32::NAN,
        weight_offset: 0.0,
        group: 8,
    };
    fails_at(&plan, h, &["eps must be finite and positive, found NaN"]);
    plan.steps[h].node.op = rms(0);
    fails_at(&plan, h, &["group must be positive"]);

    let mut plan = gemma_gpt();
    let q = first(&plan, "rope");
    for (head_dim, rot_dim, what) in [
        (0, 16, "head_dim"),
        (16, 17, "rot_dim"),
        (16, 32, "rot_dim"),
    ] {
        if let Op::Rope {
            head_dim: h,
            rot_dim: r,
            ..
        } = &mut plan.steps[q].node.op
        {
            (*h, *r) = (head_dim, rot_dim);
        }
        fails_at(&plan, q, &[what]);
    }
    let mut plan = gemma_gpt();
    let a = index(&plan, "blk.0.a");
    if let Op::Attention { window, .. } = &mut plan.steps[a].node.op {
        *window = Some(0);
    }
    fails_at(&plan, a, &["window must be positive"]);
    let mut plan = gemma_gpt();
    let cap = first(&plan, "softcap");
    plan.steps[cap].node.op = Op::Softcap { cap: 0.0 };
    fails_at(&plan, cap, &["cap must be finite and nonzero"]);
}

#[test]
fn huge_shapes() {
    let mut plan = tiny();
    let embed = index(&plan, "embed");
    plan.steps[embed].node.op = Op::Weight {
        tensor: "embed".into(),
        dtype: DType::F32,
        shape: vec![1 << 40, 8],
        transposed: false,
    };
    fails_at(&plan, embed, &["every dimension in 1..=2^31"]);
    // Each dim in range, the product not.
    plan.steps[embed].node.op = Op::Weight {
        tensor: "embed".into(),
        dtype: DType::F32,
        shape: vec![1 << 31; 3],
        transposed: false,
    };
    fails_at(&plan, embed, &["more values than memory can address"]);

    let mut plan = tiny();
    let x = index(&plan, "x");
    plan.steps[x].node.shape = vec![Dim::SEQ, Dim::Known(1 << 40)];
    fails_at(
        &plan,
        x,
        &["[seq, 1099511627776] must have every dimension seq or in 1..=2^31"],
    );

    let mut plan = llama(false);
    let a = index(&plan, "blk.0.a");
    if let Op::Attention {
        n_heads,
        n_kv_heads,
        ..
    } = &mut plan.steps[a].node.op
    {
        (*n_heads, *n_kv_heads) = (1 << 62, 1 << 61);
    }
    fails_at(&plan, a, &["exceed the largest width"]);
}

#[test]
fn weights_whole_blocks() {
    let mut plan = tiny();
    let head = index(&plan, "head");
    let shape = vec![32, 8];
    plan.steps[head].node.op = Op::Weight {
        tensor: "head".into(),
        dtype: DType::Q4_K,
        shape,
        transposed: false,
    };
    fails_at(
        &plan,
        head,
        &["rows of 8 values are not whole Q4_K blocks of 256"],
    );
}

#[test]
fn input_kinds() {
    // Token ids where an activation goes.
    let mut plan = tiny();
    let (h, tokens) = (index(&plan, "h"), index(&plan, "tokens"));
    plan.steps[h].inputs[0] = tokens;
    fails_at(
        &plan,
        h,
        &["input 0", "must be an activation, found the token ids"],
    );
    // A weight where the token ids go.
    let mut plan = tiny();
    let (x, embed) = (index(&plan, "x"), index(&plan, "embed"));
    plan.steps[x].inputs[1] = embed;
    fails_at(
        &plan,
        x,
        &["input 1", "must be the token ids, found a weight"],
    );
    // An activation where a weight goes.
    let mut plan = tiny();
    let (logits, h) = (index(&plan, "logits"), index(&plan, "h"));
    plan.steps[logits].inputs[1] = h;
    fails_at(
        &plan,
        logits,
        &["must be a 2-D weight, found an activation"],
    );
    // One weight read as a matrix and as a decoded vector.
    let mut plan = tiny();
    let (h, embed) = (index(&plan, "h"), index(&plan, "embed"));
    plan.steps[h].inputs[1] = embed;
    fails_at(&plan, h, &["read as a decoded vector here but as a matrix"]);
    // A stacked expert weight that is not 3-D (shape inference would slice it).
    let mut plan = moe();
    let g = index(&plan, "blk.0.gate_exps");
    plan.steps[g].node.op = Op::Weight {
        tensor: "blk.0.gate_exps".into(),
        dtype: DType::F32,
        shape: vec![],
        transposed: false,
    };
    plan.steps[g].node.shape.clear();
    fails_at(
        &plan,
        index(&plan, "blk.0.moe"),
        &["must be a 3-D weight, found a weight of shape []"],
    );
}

#[test]
fn layers_and_last_position() {
    let mut plan = llama(false);
    let a1 = index(&plan, "blk.1.a");
    if let Op::Attention { layer, .. } = &mut plan.steps[a1].node.op {
        *layer = 0;
    }
    fails_at(&plan, a1, &["layer 0 is also step"]);
    if let Op::Attention { layer, .. } = &mut plan.steps[a1].node.op {
        *layer = 2;
    }
    fails_at(
        &plan,
        a1,
        &["layer 2, but the plan has 2 attention step(s)"],
    );

    // A rope after last_position (it would rotate the one row at the first position).
    let mut plan = tiny();
    let last = index(&plan, "last");
    let head = index(&plan, "head");
    plan.steps[head + 1].node.op = Op::Rope {
        head_dim: 8,
        rot_dim: 8,
        base: 1e4,
        layout: RopeLayout::Pairs,
        scaling: RopeScaling::None,
    };
    plan.steps[head + 1].inputs = vec![last];
    plan.steps[head + 1].node.shape = plan.steps[last].node.shape.clone();
    fails_at(
        &plan,
        head + 1,
        &[&format!("follows the last_position at step {last}")],
    );
}

#[test]
fn programs_and_fused_rope_divisors() {
    let mut plan = gemma_gpt();
    let e = plan
        .steps
        .iter()
        .position(|s| matches!(s.node.op, Op::Elementwise { .. }))
        .unwrap();
    if let Op::Elementwise { code } = &mut plan.steps[e].node.op {
        code[1] = Ew::Add { a: 2, b: 4 };
    }
    fails_at(&plan, e, &["instruction 1 reads register 4, but only 3"]);
    if let Op::Elementwise { code } = &mut plan.steps[e].node.op {
        code.clear();
    }
    fails_at(&plan, e, &["the program is empty"]);

    // Shape inference does not check a fused rope's divisors; host.rs indexes them.
    let mut plan = gemma_gpt();
    let f = index(&plan, "rope_freqs.1");
    if let Op::Weight { shape, .. } = &mut plan.steps[f].node.op {
        *shape = vec![4];
    }
    plan.steps[f].node.shape = vec![Dim::Known(4)];
    fails_at(
        &plan,
        index(&plan, "blk.1.a"),
        &["rot_dim/2 = 8 values, found Some(4)"],
    );
}

// ---- random mutations ------------------------------------------------------------------

/// One random change to a plan; indices pick steps, inputs and fields modulo their count.
#[derive(Clone, Debug)]
enum Mutation {
    Input(Index, Index, usize),
    DropInput(Index, Index),
    AddInput(Index, usize),
    Dim(Index, Index, Option<usize>),
    WeightDim(Index, Index, usize, bool),
    Usize(Index, Index, usize),
    Float(Index, Index, f32),
    Toggle(Index, Index),
    SwapOps(Index, Index),
    Delete(Index),
    Output(Index, usize),
    Outputs(Vec<usize>),
    Dtype(Index, Index),
}

fn sizes() -> impl Strategy<Value = usize> {
    prop_oneof![
        0usize..=4,
        Just(8),
        Just(16),
        Just(32),
        Just(64),
        Just(80),
        Just(1 << 31),
        Just((1 << 31) + 1),
        Just(1 << 40),
        Just(usize::MAX),
        any::<usize>(),
    ]
}

fn floats() -> impl Strategy<Value = f32> {
    prop_oneof![
        Just(0.0f32),
        Just(-1.0),
        Just(f32::NAN),
        Just(f32::INFINITY),
        Just(f32::NEG_INFINITY),
        Just(1e-6),
        Just(1e30),
        -10.0f32..10.0,
    ]
}

/// Step indices: mostly in or near a plan's range, sometimes absurd.
fn targets() -> impl Strategy<Value = usize> {
    prop_oneof![4 => 0usize..200, 1 => Just(usize::MAX)]
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let ix = any::<Index>;
    prop_oneof![
        (ix(), ix(), targets()).prop_map(|(s, k, t)| Mutation::Input(s, k, t)),
        (ix(), ix()).prop_map(|(s, k)| Mutation::DropInput(s, k)),
        (ix(), targets()).prop_map(|(s, t)| Mutation::AddInput(s, t)),
        (ix(), ix(), proptest::option::of(sizes())).prop_map(|(s, k, d)| Mutation::Dim(s, k, d)),
        (ix(), ix(), sizes(), any::<bool>())
            .prop_map(|(s, k, d, b)| Mutation::WeightDim(s, k, d, b)),
        (ix(), ix(), sizes()).prop_map(|(s, k, v)| Mutation::Usize(s, k, v)),
        (ix(), ix(), floats()).prop_map(|(s, k, v)| Mutation::Float(s, k, v)),
        (ix(), ix()).prop_map(|(s, k)| Mutation::Toggle(s, k)),
        (ix(), ix()).prop_map(|(a, b)| Mutation::SwapOps(a, b)),
        ix().prop_map(Mutation::Delete),
        (ix(), targets()).prop_map(|(k, t)| Mutation::Output(k, t)),
        proptest::collection::vec(targets(), 0..3).prop_map(Mutation::Outputs),
        (ix(), ix()).prop_map(|(s, d)| Mutation::Dtype(s, d)),
    ]
}

/// The op's numeric fields, to overwrite.
fn knobs(op: &mut Op) -> (Vec<&mut usize>, Vec<&mut f32>) {
    fn rope_knobs<'a>(
        head_dim: &'a mut usize,
        rot_dim: &'a mut usize,
        base: &'a mut f32,
        scaling: &'a mut RopeScaling,
    ) -> (Vec<&'a mut usize>, Vec<&'a mut f32>) {
        let (mut us, mut fs) = (vec![head_dim, rot_dim], vec![base]);
        match scaling {
            RopeScaling::None => {}
            RopeScaling::Linear { factor } => fs.push(factor),
            RopeScaling::Llama3 {
                factor,
                low_freq_factor,
                high_freq_factor,
                original_context,
            } => fs.extend([factor, low_freq_factor, high_freq_factor, original_context]),
            RopeScaling::Proportional { pairs, factor } => {
                us.push(pairs);
                fs.push(factor);
            }
        }
        (us, fs)
    }
    match op {
        Op::Weight { shape, .. } => (shape.iter_mut().collect(), vec![]),
        Op::LayerNorm { eps } => (vec![], vec![eps]),
        Op::RmsNorm {
            eps,
            weight_offset,
            group,
        }
        | Op::AddRmsNorm {
            eps,
            weight_offset,
            group,
        } => (vec![group], vec![eps, weight_offset]),
        Op::MatMul { softcap, .. } => (vec![], softcap.iter_mut().collect()),
        Op::Slice { start, len } => (vec![start, len], vec![]),
        Op::Scale { factor } => (vec![], vec![factor]),
        Op::Softcap { cap } => (vec![], vec![cap]),
        Op::Elementwise { code } => {
            let (mut us, mut fs) = (vec![], vec![]);
            for e in code {
                match e {
                    Ew::Add { a, b } | Ew::Mul { a, b } => us.extend([a, b]),
                    Ew::Silu { a } | Ew::Gelu { a } => us.push(a),
                    Ew::Scale { a, factor: f } | Ew::Softcap { a, cap: f } => {
                        us.push(a);
                        fs.push(f);
                    }
                }
            }
            (us, fs)
        }
        Op::Rope {
            head_dim,
            rot_dim,
            base,
            scaling,
            ..
        } => rope_knobs(head_dim, rot_dim, base, scaling),
        Op::Attention {
            layer,
            n_heads,
            n_kv_heads,
            head_dim,
            scale,
            window,
            softcap,
            rope,
        } => {
            let (mut us, mut fs) = (vec![layer, n_heads, n_kv_heads, head_dim], vec![scale]);
            us.extend(window.iter_mut());
            fs.extend(softcap.iter_mut());
            if let Some(r) = rope {
                let (u, f) =
                    rope_knobs(&mut r.head_dim, &mut r.rot_dim, &mut r.base, &mut r.scaling);
                us.extend(u);
                fs.extend(f);
            }
            (us, fs)
        }
        Op::Moe {
            n_experts, top_k, ..
        } => (vec![n_experts, top_k], vec![]),
        _ => (vec![], vec![]),
    }
}

/// Flips the op's `k`-th flag or option.
fn toggle(op: &mut Op, k: usize) {
    match op {
        Op::Weight { transposed, .. } => *transposed = !*transposed,
        Op::MatMul { bias, softcap } => match k % 2 {
            0 => *bias = !*bias,
            _ => *softcap = softcap.xor(Some(30.0)),
        },
        Op::Attention {
            window,
            softcap,
            rope,
            ..
        } => match k % 3 {
            0 => *window = window.xor(Some(4)),
            1 => *softcap = softcap.xor(Some(50.0)),
            _ => {
                *rope = match rope {
                    Some(_) => None,
                    None => Some(rope_params(16, 16)),
                }
            }
        },
        Op::Moe {
            stacked, norm_topk, ..
        } => match k % 2 {
            0 => *stacked = !*stacked,
            _ => *norm_topk = !*norm_topk,
        },
        Op::Rope { layout, .. } => {
            *layout = match layout {
                RopeLayout::Pairs => RopeLayout::Halves,
                RopeLayout::Halves => RopeLayout::Pairs,
            }
        }
        _ => {}
    }
}

fn rope_params(head_dim: usize, rot_dim: usize) -> RopeParams {
    RopeParams {
        head_dim,
        ..rope(rot_dim, RopeLayout::Halves, RopeScaling::None)
    }
}

fn apply(plan: &mut Plan, m: &Mutation) {
    let n = plan.steps.len();
    if n == 0 {
        return;
    }
    match m {
        Mutation::Input(s, k, t) => {
            let ins = &mut plan.steps[s.index(n)].inputs;
            if !ins.is_empty() {
                let k = k.index(ins.len());
                ins[k] = *t;
            }
        }
        Mutation::DropInput(s, k) => {
            let ins = &mut plan.steps[s.index(n)].inputs;
            if !ins.is_empty() {
                ins.remove(k.index(ins.len()));
            }
        }
        Mutation::AddInput(s, t) => plan.steps[s.index(n)].inputs.push(*t),
        Mutation::Dim(s, k, d) => {
            let shape = &mut plan.steps[s.index(n)].node.shape;
            let d = d.map_or(Dim::SEQ, Dim::Known);
            match k.index(shape.len() + 1) {
                i if i == shape.len() => shape.push(d),
                i => shape[i] = d,
            }
        }
        Mutation::WeightDim(s, k, d, recorded_too) => {
            let st = &mut plan.steps[s.index(n)];
            if let Op::Weight { shape, .. } = &mut st.node.op {
                match k.index(shape.len() + 2) {
                    i if i < shape.len() => shape[i] = *d,
                    i if i == shape.len() => shape.push(*d),
                    _ => {
                        shape.pop();
                    }
                }
                if *recorded_too {
                    st.node.shape = shape.iter().map(|&d| Dim::Known(d)).collect();
                }
            }
        }
        Mutation::Usize(s, k, v) => {
            let (us, _) = knobs(&mut plan.steps[s.index(n)].node.op);
            if !us.is_empty() {
                let k = k.index(us.len());
                *us.into_iter().nth(k).unwrap() = *v;
            }
        }
        Mutation::Float(s, k, v) => {
            let (_, fs) = knobs(&mut plan.steps[s.index(n)].node.op);
            if !fs.is_empty() {
                let k = k.index(fs.len());
                *fs.into_iter().nth(k).unwrap() = *v;
            }
        }
        Mutation::Toggle(s, k) => toggle(&mut plan.steps[s.index(n)].node.op, k.index(6)),
        Mutation::SwapOps(a, b) => {
            let (a, b) = (a.index(n), b.index(n));
            let op = plan.steps[a].node.op.clone();
            plan.steps[a].node.op = std::mem::replace(&mut plan.steps[b].node.op, op);
        }
        Mutation::Delete(s) => {
            let s = s.index(n);
            plan.steps.remove(s);
            // Later steps move down one; readers of the deleted step now read its successor.
            let shift = |i: &mut usize| {
                if *i > s && *i != usize::MAX {
                    *i -= 1
                }
            };
            plan.steps
                .iter_mut()
                .flat_map(|st| st.inputs.iter_mut())
                .for_each(shift);
            plan.outputs.iter_mut().for_each(shift);
        }
        Mutation::Output(k, t) => {
            if !plan.outputs.is_empty() {
                let k = k.index(plan.outputs.len());
                plan.outputs[k] = *t;
            }
        }
        Mutation::Outputs(o) => plan.outputs = o.clone(),
        Mutation::Dtype(s, d) => {
            if let Op::Weight { dtype, .. } = &mut plan.steps[s.index(n)].node.op {
                *dtype = DType::ALL[d.index(DType::ALL.len())];
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 256,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// The validator never panics on a mutated plan; what it accepts re-infers to its
    /// recorded shapes over the whole graph and passes the host executor's indexing.
    #[test]
    fn mutated_plans_never_panic(
        which in 0..5usize,
        mutations in proptest::collection::vec(mutation(), 1..5),
    ) {
        let mut plan = realistic()[which].clone();
        for m in &mutations {
            apply(&mut plan, m);
        }
        if validate_plan(&plan).is_ok() {
            let mut g = plan.to_graph();
            infer_shapes(&mut g).expect("a valid plan's shapes re-infer");
            for (id, st) in g.node_ids().into_iter().zip(&plan.steps) {
                prop_assert_eq!(&g.node(id).shape, &st.node.shape);
            }
            for (seq, all) in [(1, false), (3, false), (3, true)] {
                lower_and_run(&plan, seq, all);
            }
        }
    }
}
