//! Shape inference and validation over the symbolic `seq` dimension. Not optional:
//! every graph goes through it before any other pass and before lowering.

use crate::PassError;
use weft_ir::{Dim, Graph, NodeId, Op};

/// Infers every node's shape, checking each op's rule; the first mismatch is an
/// error naming the node and the template line it came from.
pub fn infer_shapes(g: &mut Graph) -> Result<(), PassError> {
    for n in g.topo_order() {
        let ins: Vec<Vec<Dim>> = g
            .inputs(n)
            .iter()
            .map(|&i| g.node(i).shape.clone())
            .collect();
        let shape = rule(g, n, &ins).map_err(|message| {
            let node = g.node(n);
            PassError::Shape {
                node: node.name.clone(),
                origin: node.origin.clone(),
                message,
            }
        })?;
        g.node_mut(n).shape = shape;
    }
    Ok(())
}

fn show(s: &[Dim]) -> String {
    format!(
        "[{}]",
        s.iter()
            .map(|d| d.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    )
}

fn matrix(s: &[Dim], what: &str) -> Result<(Dim, usize), String> {
    match s {
        [rows, Dim::Known(cols)] => Ok((*rows, *cols)),
        _ => Err(format!(
            "{what} must be a [rows, cols] matrix, found {}",
            show(s)
        )),
    }
}

fn rule(g: &Graph, n: NodeId, ins: &[Vec<Dim>]) -> Result<Vec<Dim>, String> {
    let arity = |k: usize| -> Result<(), String> {
        if ins.len() == k {
            Ok(())
        } else {
            Err(format!(
                "{} takes {k} input(s), found {}",
                g.node(n).op.kind(),
                ins.len()
            ))
        }
    };
    Ok(match &g.node(n).op {
        Op::Tokens => vec![Dim::SEQ],
        Op::Weight { shape, .. } => shape.iter().map(|&d| Dim::Known(d)).collect(),
        Op::TokenEmbed => {
            arity(2)?;
            let (_, d) = matrix(&ins[0], "the embedding table")?;
            if ins[1].len() != 1 {
                return Err(format!(
                    "token ids must be a vector, found {}",
                    show(&ins[1])
                ));
            }
            vec![ins[1][0], Dim::Known(d)]
        }
        Op::MatMul { bias, .. } => {
            let n_weights = if *bias {
                (ins.len() - 1) / 2
            } else {
                ins.len() - 1
            };
            if ins.len() < 2 || (*bias && ins.len().is_multiple_of(2)) {
                return Err(format!(
                    "matmul takes an activation, weight(s) and as many biases when biased, found {} input(s)",
                    ins.len()
                ));
            }
            let (rows, k) = matrix(&ins[0], "the activation")?;
            let mut n_out = 0;
            for (i, w) in ins[1..=n_weights].iter().enumerate() {
                let (wn, wk) = matrix(w, "the weight")?;
                if wk != k {
                    return Err(format!(
                        "weight {} has rows of {wk} values, the activation {} has {k}",
                        show(w),
                        show(&ins[0])
                    ));
                }
                if *bias {
                    let b: usize = ins[1 + n_weights + i].iter().map(|x| x.eval(1)).product();
                    if b != wn.eval(1) {
                        return Err(format!("bias of {b} values for a weight of {wn} rows"));
                    }
                }
                n_out += wn.eval(1);
            }
            vec![rows, Dim::Known(n_out)]
        }
        Op::Slice { start, len } => {
            arity(1)?;
            let (rows, d) = matrix(&ins[0], "the input")?;
            if start + len > d {
                return Err(format!("columns {start}..{} of rows of {d}", start + len));
            }
            vec![rows, Dim::Known(*len)]
        }
        Op::AddRmsNorm { group, .. } => {
            arity(3)?;
            if ins[0] != ins[1] {
                return Err(format!(
                    "operands differ: {} and {}",
                    show(&ins[0]),
                    show(&ins[1])
                ));
            }
            let (rows, d) = matrix(&ins[0], "the input")?;
            let w: usize = ins[2].iter().map(|x| x.eval(1)).product();
            if w != *group || d % group != 0 {
                return Err(format!(
                    "norm weight of {w} values, groups of {group}, over rows of {d}: they must agree"
                ));
            }
            vec![rows, Dim::Known(2 * d)]
        }
        Op::PositionEmbed => {
            arity(1)?;
            let (_, d) = matrix(&ins[0], "the position table")?;
            vec![Dim::SEQ, Dim::Known(d)]
        }
        Op::LayerNorm { .. } => {
            arity(3)?;
            let (_, d) = matrix(&ins[0], "the input")?;
            for (k, what) in [(1, "weight"), (2, "bias")] {
                let n: usize = ins[k].iter().map(|x| x.eval(1)).product();
                if n != d {
                    return Err(format!("layer norm {what} of {n} values over rows of {d}"));
                }
            }
            ins[0].clone()
        }
        Op::Moe {
            n_experts,
            top_k,
            stacked,
            ..
        } => {
            let e = *n_experts;
            let want = if *stacked { 5 } else { 2 + 3 * e };
            arity(want)?;
            let (rows, d) = matrix(&ins[0], "the input")?;
            if ins[1] != [Dim::Known(e), Dim::Known(d)] {
                return Err(format!("router {} is not [{e}, {d}]", show(&ins[1])));
            }
            if *top_k == 0 || *top_k > e {
                return Err(format!("top_k {top_k} of {e} experts"));
            }
            // Each expert: gate and up [f, d], down [d, f].
            let expert = |k: usize, x: usize| -> Vec<Dim> {
                if *stacked {
                    ins[2 + k][1..].to_vec()
                } else {
                    ins[2 + k * e + x].clone()
                }
            };
            let stacked_ok = !*stacked || (2..5).all(|k| ins[k].first() == Some(&Dim::Known(e)));
            for x in 0..e {
                let (g, u, dn) = (expert(0, x), expert(1, x), expert(2, x));
                let f = g.first().copied().unwrap_or(Dim::Known(0));
                if !stacked_ok || g != [f, Dim::Known(d)] || u != g || dn != [Dim::Known(d), f] {
                    return Err(format!(
                        "expert {x}: gate {}, up {}, down {} do not fit rows of {d}",
                        show(&g),
                        show(&u),
                        show(&dn)
                    ));
                }
            }
            vec![rows, Dim::Known(d)]
        }
        Op::Bias => {
            arity(2)?;
            let (_, d) = matrix(&ins[0], "the input")?;
            let b: usize = ins[1].iter().map(|x| x.eval(1)).product();
            if b != d {
                return Err(format!("bias of {b} values over rows of {d}"));
            }
            ins[0].clone()
        }
        Op::Glu { .. } => {
            arity(1)?;
            let (rows, d) = matrix(&ins[0], "the input")?;
            if d % 2 != 0 {
                return Err(format!(
                    "a gated unit needs gate and up halves, found rows of {d}"
                ));
            }
            vec![rows, Dim::Known(d / 2)]
        }
        Op::Elementwise { code } => {
            if ins.is_empty() || ins.iter().any(|s| *s != ins[0]) {
                let all: Vec<String> = ins.iter().map(|s| show(s)).collect();
                return Err(format!(
                    "elementwise inputs must share one shape, found {}",
                    all.join(", ")
                ));
            }
            if code.is_empty() {
                return Err("empty elementwise program".into());
            }
            for (k, e) in code.iter().enumerate() {
                if e.operands().iter().any(|&r| r >= ins.len() + k) {
                    return Err(format!(
                        "elementwise instruction {k} reads a register not yet written"
                    ));
                }
            }
            ins[0].clone()
        }
        Op::Add | Op::Mul => {
            arity(2)?;
            if ins[0] != ins[1] {
                return Err(format!(
                    "operands differ: {} and {}",
                    show(&ins[0]),
                    show(&ins[1])
                ));
            }
            ins[0].clone()
        }
        Op::Silu | Op::Gelu | Op::Softcap { .. } | Op::Output => {
            arity(1)?;
            ins[0].clone()
        }
        Op::Scale { .. } => {
            // One input, or two with a learned scalar.
            arity(ins.len().clamp(1, 2))?;
            if let Some(w) = ins.get(1) {
                let n: usize = w.iter().map(|x| x.eval(1)).product();
                if n != 1 {
                    return Err(format!("a scale weight holds one value, found {n}"));
                }
            }
            ins[0].clone()
        }
        Op::RmsNorm { group, .. } => {
            // The weight is optional.
            arity(ins.len().clamp(1, 2))?;
            let (_, d) = matrix(&ins[0], "the input")?;
            if let Some(w) = ins.get(1) {
                let w: usize = w.iter().map(|x| x.eval(1)).product();
                if w != *group {
                    return Err(format!("norm weight of {w} values for groups of {group}"));
                }
            }
            if *group == 0 || d % group != 0 {
                return Err(format!(
                    "rows of {d} values are not whole groups of {group}"
                ));
            }
            ins[0].clone()
        }
        Op::Rope {
            head_dim, rot_dim, ..
        } => {
            let (_, d) = matrix(&ins[0], "the input")?;
            if d % head_dim != 0 {
                return Err(format!(
                    "rows of {d} values are not whole heads of {head_dim}"
                ));
            }
            if let Some(f) = ins.get(1) {
                let len: usize = f.iter().map(|x| x.eval(1)).product();
                if len != rot_dim / 2 {
                    return Err(format!(
                        "rope frequency factors have {len} values, expected rot_dim/2 = {}",
                        rot_dim / 2
                    ));
                }
            }
            ins[0].clone()
        }
        Op::Attention {
            n_heads,
            n_kv_heads,
            head_dim,
            rope,
            ..
        } => {
            let want = if rope.is_some() && ins.len() == 4 {
                4
            } else {
                3
            };
            arity(want)?;
            let (rows, dq) = matrix(&ins[0], "q")?;
            let (_, dk) = matrix(&ins[1], "k")?;
            let (_, dv) = matrix(&ins[2], "v")?;
            if n_heads % n_kv_heads != 0 {
                return Err(format!(
                    "{n_heads} query heads do not split into groups over {n_kv_heads} kv heads"
                ));
            }
            if dq != n_heads * head_dim
                || dk != n_kv_heads * head_dim
                || dv != n_kv_heads * head_dim
            {
                return Err(format!(
                    "q/k/v widths {dq}/{dk}/{dv} do not match {n_heads} heads and {n_kv_heads} kv heads of {head_dim}"
                ));
            }
            if ins[1][0] != rows || ins[2][0] != rows {
                return Err("q, k and v have different numbers of positions".to_string());
            }
            vec![rows, Dim::Known(dq)]
        }
        Op::LastPosition => {
            arity(1)?;
            let (_, d) = matrix(&ins[0], "the input")?;
            vec![Dim::Known(1), Dim::Known(d)]
        }
    })
}
