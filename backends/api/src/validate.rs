//! Plan validation: a plan file is untrusted input (hand-edited JSON, another weft's
//! output), so everything a backend indexes, divides by or allocates from is checked
//! here, once, before lowering. After [`validate_plan`] returns Ok, lowering and running
//! the plan cannot panic for any token sequence that fits the KV cache, given weights
//! whose bytes match their dtype and shape (the weight provider's part).
//!
//! Steps are checked in order and each check may rely on the earlier steps being good:
//! its inputs point backwards; its op has the inputs the executor reads, of the kind it
//! reads them as (activation, token ids, weight matrix, decoded weight vector); its
//! parameters are legal; its recorded shape is bounded and equals what weft-passes'
//! shape rules infer from its inputs' (already checked) shapes. Across steps: a weight
//! is read one way only, attention layers are numbered 0, 1, 2… once each, and only
//! row-wise ops follow a `last_position`. Then the outputs must be activations.

use crate::BackendError;
use std::iter::{once, repeat_n};
use weft_ir::{DType, Dim, Ew, Graph, NodeId, Op, Plan, RopeParams, RopeScaling, Step, Sym};
use weft_passes::{infer_shapes, PassError};

/// The largest dimension a plan may name: a `[seq, width]` f32 buffer then cannot
/// overflow `usize` for any `seq` below 2^31.
const MAX_DIM: usize = 1 << 31;

/// The most experts a mixture may have: far above any model's (hundreds), and shape
/// inference walks them one by one.
const MAX_EXPERTS: usize = 1 << 16;

/// How the executor reads an input (host.rs: `input()`, `weight()`, `small()`).
#[derive(Clone, Copy, Debug, PartialEq)]
enum Slot {
    /// An activation computed by an earlier step.
    Act,
    /// The step's token ids (a `tokens` step).
    Tokens,
    /// A weight read in its stored form, with this many dims (matmul, embedding, experts).
    Matrix(usize),
    /// A weight decoded to f32 at load (norm weights, biases, scalars, rope divisors).
    Vector,
}

impl Slot {
    fn describe(self) -> String {
        match self {
            Slot::Act => "an activation".into(),
            Slot::Tokens => "the token ids".into(),
            Slot::Matrix(rank) => format!("a {rank}-D weight"),
            Slot::Vector => "a weight vector".into(),
        }
    }
}

/// What the checks of earlier steps leave for later ones.
struct Seen {
    /// For each weight step: whether it is read as a vector, and the first step reading
    /// it (the executor binds a weight one way, matrix or decoded vector).
    roles: Vec<Option<(bool, usize)>>,
    /// For each step: the `last_position` step it reads, directly or not.
    after_last: Vec<Option<usize>>,
    /// The attention step holding each layer number.
    layers: Vec<Option<usize>>,
}

/// Checks that `plan` can be lowered and run without panicking: the first problem is
/// one [`BackendError::BadPlan`] naming the step, what was expected and what was found.
pub fn validate_plan(plan: &Plan) -> Result<(), BackendError> {
    let n = plan.steps.len();
    if n == 0 {
        return Err(plan_error(0, "steps", "the plan has no steps".into()));
    }
    let n_layers = plan
        .steps
        .iter()
        .filter(|s| matches!(s.node.op, Op::Attention { .. }))
        .count();
    let mut seen = Seen {
        roles: vec![None; n],
        after_last: vec![None; n],
        layers: vec![None; n_layers],
    };
    for (i, st) in plan.steps.iter().enumerate() {
        check_step(plan, i, st, &mut seen).map_err(|message| BackendError::BadPlan {
            step: i,
            name: st.node.name.clone(),
            message: format!("{}: {message}", st.node.op.kind()),
        })?;
    }
    check_outputs(plan)
}

fn plan_error(step: usize, name: &str, message: String) -> BackendError {
    BackendError::BadPlan {
        step,
        name: name.into(),
        message,
    }
}

/// `Err(message())` unless `ok`.
fn ensure(ok: bool, message: impl FnOnce() -> String) -> Result<(), String> {
    if ok {
        Ok(())
    } else {
        Err(message())
    }
}

fn check_step(plan: &Plan, i: usize, st: &Step, seen: &mut Seen) -> Result<(), String> {
    // Backwards only: the executor runs steps in order, and this also rules out cycles.
    for (k, &j) in st.inputs.iter().enumerate() {
        ensure(j < i, || {
            format!("input {k} is step {j}, expected an earlier step (below {i})")
        })?;
    }
    let slots = slots(&st.node.op, st.inputs.len())?;
    for (k, (&j, &slot)) in st.inputs.iter().zip(&slots).enumerate() {
        check_kind(plan, i, k, j, slot, &mut seen.roles)?;
    }
    check_params(plan, st)?;
    check_shape(plan, st)?;

    // Only row-wise ops may follow a last_position: the executor runs what follows on
    // one row, or on every row when all logits are asked, never at its own positions.
    let reads_last = st.inputs.iter().find_map(|&j| seen.after_last[j]);
    seen.after_last[i] = match st.node.op {
        Op::LastPosition => Some(i),
        _ => reads_last,
    };
    if let (Some(l), Op::Attention { .. } | Op::Rope { .. } | Op::TokenEmbed | Op::PositionEmbed) =
        (reads_last, &st.node.op)
    {
        return Err(format!(
            "follows the last_position at step {l}, but needs every position; only row-wise ops may"
        ));
    }
    // One KV cache per layer, indexed by the layer number.
    if let Op::Attention { layer, .. } = st.node.op {
        let n_layers = seen.layers.len();
        match seen.layers.get_mut(layer) {
            None => {
                return Err(format!(
                    "layer {layer}, but the plan has {n_layers} attention step(s): layers must be numbered 0, 1, 2… once each"
                ))
            }
            Some(Some(j)) => {
                return Err(format!(
                    "layer {layer} is also step {j}'s: layers must be numbered 0, 1, 2… once each"
                ))
            }
            Some(slot) => *slot = Some(i),
        }
    }
    Ok(())
}

/// The inputs `op` reads given that it has `n`, in order, as host.rs's `run_step` reads
/// them (and its `small_use` marks them); or what it takes instead.
fn slots(op: &Op, n: usize) -> Result<Vec<Slot>, String> {
    use Slot::{Act, Matrix, Tokens, Vector};
    let exactly = |want: &[Slot]| fits(n, want, None);
    let optional = |want: &[Slot], more: Slot| fits(n, want, Some(more));
    match op {
        Op::Tokens | Op::Weight { .. } => exactly(&[]),
        Op::TokenEmbed => exactly(&[Matrix(2), Tokens]),
        Op::PositionEmbed => exactly(&[Matrix(2)]),
        Op::LayerNorm { .. } => exactly(&[Act, Vector, Vector]),
        Op::AddRmsNorm { .. } => exactly(&[Act, Act, Vector]),
        Op::Add | Op::Mul => exactly(&[Act, Act]),
        Op::Bias => exactly(&[Act, Vector]),
        Op::Slice { .. }
        | Op::Glu { .. }
        | Op::Silu
        | Op::Gelu
        | Op::Softcap { .. }
        | Op::LastPosition
        | Op::Output => exactly(&[Act]),
        // An optional learned scalar, norm weight or rope divisors.
        Op::Scale { .. } | Op::RmsNorm { .. } | Op::Rope { .. } => optional(&[Act], Vector),
        Op::Attention { rope: None, .. } => exactly(&[Act, Act, Act]),
        Op::Attention { rope: Some(_), .. } => optional(&[Act, Act, Act], Vector),
        Op::Elementwise { .. } if n > 0 => Ok(vec![Act; n]),
        Op::Elementwise { .. } => Err("takes one or more activations, found none".into()),
        Op::MatMul { bias, .. } => {
            // x, then w ≥ 1 weights, then one bias per weight when biased.
            let per = 1 + usize::from(*bias);
            let w = n.saturating_sub(1) / per;
            ensure(w > 0 && n == 1 + w * per, || {
                let biases = if *bias { " and as many biases" } else { "" };
                format!("takes an activation, one or more weights{biases}, found {n} input(s)")
            })?;
            let biases = if *bias { w } else { 0 };
            Ok(once(Act)
                .chain(repeat_n(Matrix(2), w))
                .chain(repeat_n(Vector, biases))
                .collect())
        }
        Op::Moe {
            n_experts, stacked, ..
        } => {
            // x and the router, then gates, ups and downs: stacked, or one per expert.
            let (each, rank) = if *stacked { (1, 3) } else { (*n_experts, 2) };
            let want = each.checked_mul(3).and_then(|k| k.checked_add(2));
            ensure(want == Some(n), || {
                let experts = if *stacked {
                    "3 stacked [experts, rows, cols] expert weights".to_string()
                } else {
                    format!("3 × {n_experts} expert weights")
                };
                format!("takes an activation, the router and {experts}, found {n} input(s)")
            })?;
            Ok([Act, Matrix(2)]
                .into_iter()
                .chain(repeat_n(Matrix(rank), 3 * each))
                .collect())
        }
    }
}

/// `want`, or `want` and `more` when there is one input more, if `n` is one of those.
fn fits(n: usize, want: &[Slot], more: Option<Slot>) -> Result<Vec<Slot>, String> {
    let mut slots = want.to_vec();
    if n == want.len() {
        return Ok(slots);
    }
    slots.extend(more);
    if n == slots.len() {
        return Ok(slots);
    }
    let list: Vec<String> = want.iter().map(|s| s.describe()).collect();
    let (count, extra) = match more {
        Some(m) => (
            format!("{} or {}", want.len(), want.len() + 1),
            format!(", then optionally {}", m.describe()),
        ),
        None => (want.len().to_string(), String::new()),
    };
    Err(format!(
        "takes {count} input(s) ({}{extra}), found {n}",
        list.join(", ")
    ))
}

/// Input `k` of step `i`, step `j`, is what `slot` needs; a weight keeps one role.
fn check_kind(
    plan: &Plan,
    i: usize,
    k: usize,
    j: usize,
    slot: Slot,
    roles: &mut [Option<(bool, usize)>],
) -> Result<(), String> {
    let src = &plan.steps[j].node.op;
    let found = match src {
        Op::Weight { shape, .. } => format!("a weight of shape {shape:?}"),
        Op::Tokens => "the token ids".into(),
        op => format!("an activation ({})", op.kind()),
    };
    let ok = match (slot, src) {
        (Slot::Act, Op::Weight { .. } | Op::Tokens) => false,
        (Slot::Act, _) => true,
        (Slot::Tokens, op) => matches!(op, Op::Tokens),
        (Slot::Matrix(rank), Op::Weight { shape, .. }) => shape.len() == rank,
        (Slot::Vector, Op::Weight { .. }) => true,
        (Slot::Matrix(_) | Slot::Vector, _) => false,
    };
    ensure(ok, || {
        format!(
            "input {k} (step {j}) must be {}, found {found}",
            slot.describe()
        )
    })?;
    if matches!(slot, Slot::Matrix(_) | Slot::Vector) {
        let vector = slot == Slot::Vector;
        let as_what = |v: bool| if v { "a decoded vector" } else { "a matrix" };
        match roles[j] {
            Some((v, user)) if v != vector => {
                return Err(format!(
                    "input {k} (weight step {j}) is read as {} here but as {} by step {user}; a weight is bound one way",
                    as_what(vector),
                    as_what(v)
                ))
            }
            Some(_) => {}
            None => roles[j] = Some((vector, i)),
        }
    }
    Ok(())
}

fn positive_eps(eps: f32) -> Result<(), String> {
    ensure(eps.is_finite() && eps > 0.0, || {
        format!("eps must be finite and positive, found {eps}")
    })
}

fn finite(what: &str, v: f32) -> Result<(), String> {
    ensure(v.is_finite(), || {
        format!("{what} must be finite, found {v}")
    })
}

fn positive(what: &str, v: f32) -> Result<(), String> {
    ensure(v.is_finite() && v > 0.0, || {
        format!("{what} must be finite and positive, found {v}")
    })
}

/// Values divided by (`x / cap`) or scaling every score.
fn nonzero(what: &str, v: f32) -> Result<(), String> {
    ensure(v.is_finite() && v != 0.0, || {
        format!("{what} must be finite and nonzero, found {v}")
    })
}

/// Elements of a shape, when they fit `usize`.
fn numel(shape: &[usize]) -> Option<usize> {
    shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d))
}

fn check_params(plan: &Plan, st: &Step) -> Result<(), String> {
    // Rope steps and rope-fused attention rotate alike.
    if let Some(r) = st.node.op.rope_params() {
        check_rope(&r)?;
    }
    match &st.node.op {
        Op::Weight {
            dtype,
            shape,
            transposed,
            ..
        } => check_weight(*dtype, shape, *transposed),
        Op::LayerNorm { eps } => positive_eps(*eps),
        Op::RmsNorm {
            eps,
            weight_offset,
            group,
        }
        | Op::AddRmsNorm {
            eps,
            weight_offset,
            group,
        } => {
            positive_eps(*eps)?;
            finite("weight_offset", *weight_offset)?;
            ensure(*group > 0, || "group must be positive, found 0".into())
        }
        Op::MatMul { softcap, .. } => softcap.map_or(Ok(()), |c| nonzero("softcap", c)),
        Op::Softcap { cap } => nonzero("cap", *cap),
        Op::Scale { factor } => finite("factor", *factor),
        Op::Slice { start, len } => {
            // The source is an earlier activation, its shape already checked.
            let width = match st
                .inputs
                .first()
                .map(|&j| plan.steps[j].node.shape.as_slice())
            {
                Some([_, Dim::Known(d)]) => *d,
                _ => return Err("the source must be a [rows, cols] matrix".into()),
            };
            ensure(*len > 0, || "len must be positive, found 0".into())?;
            ensure(
                start.checked_add(*len).is_some_and(|end| end <= width),
                || format!("columns start={start} len={len} run past the source's {width} columns"),
            )
        }
        Op::Elementwise { code } => check_program(code, st.inputs.len()),
        Op::Attention {
            n_heads,
            n_kv_heads,
            head_dim,
            scale,
            window,
            softcap,
            rope,
            ..
        } => {
            let (nh, nkv, hd) = (*n_heads, *n_kv_heads, *head_dim);
            ensure(nh > 0 && nkv > 0 && hd > 0, || {
                format!(
                    "n_heads, n_kv_heads and head_dim must be positive, found {nh}, {nkv}, {hd}"
                )
            })?;
            ensure(nh % nkv == 0, || {
                format!("{nh} query heads do not split evenly over {nkv} kv heads")
            })?;
            // q is the widest of q, k and v (nkv ≤ nh).
            ensure(nh.checked_mul(hd).is_some_and(|w| w <= MAX_DIM), || {
                format!("{nh} heads of {hd} exceed the largest width, 2^31")
            })?;
            nonzero("scale", *scale)?;
            ensure(*window != Some(0), || {
                "window must be positive, found 0".into()
            })?;
            softcap.map_or(Ok(()), |c| nonzero("softcap", c))?;
            if let Some(r) = rope {
                // Fused rope rotates k's and q's rows in heads of its own width (q's
                // width is a multiple of k's).
                ensure((nkv * hd) % r.head_dim == 0, || {
                    format!(
                        "k rows of {} values are not whole rope heads of {}",
                        nkv * hd,
                        r.head_dim
                    )
                })?;
                // Shape inference does not look at the divisors of a fused rope.
                if let Some(&j) = st.inputs.get(3) {
                    let count = match &plan.steps[j].node.op {
                        Op::Weight { shape, .. } => numel(shape),
                        _ => None,
                    };
                    ensure(count == Some(r.rot_dim / 2), || {
                        format!(
                            "rope divisors (input 3) must hold rot_dim/2 = {} values, found {count:?}",
                            r.rot_dim / 2
                        )
                    })?;
                }
            }
            Ok(())
        }
        Op::Moe {
            n_experts, top_k, ..
        } => {
            let e = *n_experts;
            ensure((1..=MAX_EXPERTS).contains(&e), || {
                format!("n_experts must be in 1..={MAX_EXPERTS}, found {e}")
            })?;
            ensure((1..=e).contains(top_k), || {
                format!("top_k must be in 1..={e}, found {top_k}")
            })
        }
        Op::Tokens
        | Op::Rope { .. }
        | Op::TokenEmbed
        | Op::PositionEmbed
        | Op::Glu { .. }
        | Op::Add
        | Op::Mul
        | Op::Bias
        | Op::Silu
        | Op::Gelu
        | Op::LastPosition
        | Op::Output => Ok(()),
    }
}

/// A weight's shape is positive and bounded, its bytes and its decoded f32 copy are
/// addressable, and its rows are whole blocks of its type.
fn check_weight(dtype: DType, shape: &[usize], transposed: bool) -> Result<(), String> {
    ensure(shape.iter().all(|&d| (1..=MAX_DIM).contains(&d)), || {
        format!("weight shape {shape:?} must have every dimension in 1..=2^31")
    })?;
    let addressable = numel(shape)
        .and_then(|e| e.checked_mul(4))
        .is_some_and(|b| b <= isize::MAX as usize);
    ensure(addressable, || {
        format!("weight shape {shape:?} holds more values than memory can address")
    })?;
    ensure(dtype.tensor_bytes(shape).is_some(), || {
        format!(
            "weight rows of {} values are not whole {dtype} blocks of {}",
            shape.last().copied().unwrap_or(1),
            dtype.block_size()
        )
    })?;
    ensure(
        !transposed || (shape.len() == 2 && !dtype.is_quantized()),
        || format!("only 2-D float weights are stored transposed, found {dtype} {shape:?}"),
    )
}

/// Every operand names an input or an earlier instruction's register.
fn check_program(code: &[Ew], n_inputs: usize) -> Result<(), String> {
    ensure(!code.is_empty(), || "the program is empty".into())?;
    for (k, e) in code.iter().enumerate() {
        let written = n_inputs + k;
        if let Some(r) = e.operands().into_iter().find(|&r| r >= written) {
            return Err(format!(
                "instruction {k} reads register {r}, but only {written} are written by then (inputs, then one per instruction)"
            ));
        }
        match *e {
            Ew::Scale { factor, .. } => finite("factor", factor)?,
            Ew::Softcap { cap, .. } => nonzero("cap", cap)?,
            Ew::Add { .. } | Ew::Mul { .. } | Ew::Silu { .. } | Ew::Gelu { .. } => {}
        }
    }
    Ok(())
}

/// Rope rotates pairs within a head (dims 2i, 2i+1 or i, i + rot_dim/2), so the rotated
/// width is even and within the head; its frequencies must be finite.
fn check_rope(r: &RopeParams) -> Result<(), String> {
    let (hd, rot) = (r.head_dim, r.rot_dim);
    ensure(hd > 0 && hd % 2 == 0, || {
        format!("rope head_dim must be even and positive, found {hd}")
    })?;
    ensure(rot > 0 && rot % 2 == 0 && rot <= hd, || {
        format!("rot_dim must be even, in 2..={hd} (head_dim), found {rot}")
    })?;
    positive("rope base", r.base)?;
    match r.scaling {
        RopeScaling::None => Ok(()),
        RopeScaling::Linear { factor } => positive("rope factor", factor),
        RopeScaling::Llama3 {
            factor,
            low_freq_factor,
            high_freq_factor,
            original_context,
        } => {
            positive("rope factor", factor)?;
            positive("low_freq_factor", low_freq_factor)?;
            positive("high_freq_factor", high_freq_factor)?;
            positive("original_context", original_context)?;
            // The ramp between them divides by their difference.
            ensure(high_freq_factor > low_freq_factor, || {
                format!("high_freq_factor ({high_freq_factor}) must exceed low_freq_factor ({low_freq_factor})")
            })
        }
        RopeScaling::Proportional { pairs, factor } => {
            positive("rope factor", factor)?;
            ensure(pairs <= rot / 2, || {
                format!("{pairs} turning pairs of {} (rot_dim/2)", rot / 2)
            })
        }
    }
}

fn show(shape: &[Dim]) -> String {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    format!("[{}]", dims.join(", "))
}

/// The recorded shape is bounded and is what the shape rules give.
fn check_shape(plan: &Plan, st: &Step) -> Result<(), String> {
    let shape = &st.node.shape;
    let bounded = |d: &Dim| {
        matches!(d, Dim::Sym(_)) || matches!(d, Dim::Known(n) if (1..=MAX_DIM).contains(n))
    };
    ensure(shape.iter().all(bounded), || {
        format!(
            "recorded shape {} must have every dimension seq or in 1..=2^31",
            show(shape)
        )
    })?;
    let inferred = reinfer(plan, st)?;
    ensure(inferred == *shape, || {
        format!(
            "recorded shape {}, but its inputs give {}",
            show(shape),
            show(&inferred)
        )
    })
}

/// Re-infers a step's shape with weft-passes' rules from its inputs' recorded shapes.
/// One step at a time: those shapes are checked already (so by induction this is what
/// inference over the whole plan gives), a wrong shape is reported where it first
/// appears, and the rules never compute with an unchecked width.
fn reinfer(plan: &Plan, st: &Step) -> Result<Vec<Dim>, String> {
    let mut g = Graph::new();
    let tokens = g.add(Op::Tokens, "", "", &[]);
    let mut ins = Vec::with_capacity(st.inputs.len());
    for &j in &st.inputs {
        ins.push(stand_in(&mut g, &plan.steps[j], tokens)?);
    }
    let n = g.add(
        st.node.op.clone(),
        st.node.name.clone(),
        st.node.origin.clone(),
        &ins,
    );
    infer_shapes(&mut g).map_err(|e| match e {
        PassError::Shape { message, .. } => message,
        other => other.to_string(),
    })?;
    Ok(g.node(n).shape.clone())
}

/// A node whose inferred shape is `src`'s recorded one: a copy of a leaf, a weight of
/// that shape, or for `[seq, d]` an embedding of the token ids.
fn stand_in(g: &mut Graph, src: &Step, tokens: NodeId) -> Result<NodeId, String> {
    let weight = |shape: Vec<usize>| Op::Weight {
        tensor: String::new(),
        dtype: DType::F32,
        shape,
        transposed: false,
    };
    Ok(match (&src.node.op, src.node.shape.as_slice()) {
        (Op::Weight { .. } | Op::Tokens, _) => g.add(src.node.op.clone(), "", "", &[]),
        (_, [Dim::Sym(Sym::Seq), Dim::Known(d)]) => {
            let table = g.add(weight(vec![1, *d]), "", "", &[]);
            g.add(Op::TokenEmbed, "", "", &[table, tokens])
        }
        (_, [Dim::Known(r), Dim::Known(d)]) => g.add(weight(vec![*r, *d]), "", "", &[]),
        // Inference gives activations no other shape, so an earlier step failed already.
        (_, shape) => return Err(format!("an input has shape {}, not a matrix", show(shape))),
    })
}

/// At least one output, each an activation (the executor returns `outputs[0]`'s rows).
fn check_outputs(plan: &Plan) -> Result<(), BackendError> {
    if plan.outputs.is_empty() {
        return Err(plan_error(0, "outputs", "the plan lists no outputs".into()));
    }
    for (k, &o) in plan.outputs.iter().enumerate() {
        let Some(node) = plan.steps.get(o).map(|s| &s.node) else {
            let message = format!(
                "output {k} is step {o}, but the plan has {} steps",
                plan.steps.len()
            );
            return Err(plan_error(o, "outputs", message));
        };
        let found = match node.op {
            Op::Weight { .. } => "a weight",
            Op::Tokens => "the token ids",
            _ => continue,
        };
        let message = format!("output {k} must be an activation, found {found}");
        return Err(plan_error(o, &node.name, message));
    }
    Ok(())
}
