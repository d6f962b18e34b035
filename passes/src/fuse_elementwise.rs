//! The general rule: a chain (or tree) of elementwise ops whose inner values have one
//! reader becomes one `elementwise` node, which a backend runs as one kernel (the CPU
//! interprets its program a block at a time; the JIT will compile it).

use crate::Pass;
use std::collections::HashMap;
use weft_ir::{Ew, Graph, NodeId, Op};

pub struct FuseElementwise;

/// A scale by a learned weight (a second input) stays a node of its own.
fn is_elementwise(g: &Graph, n: NodeId) -> bool {
    match g.node(n).op {
        Op::Add | Op::Mul | Op::Silu | Op::Gelu | Op::Softcap { .. } => true,
        Op::Scale { .. } => g.inputs(n).len() == 1,
        _ => false,
    }
}

/// Appends the program of `root` (inputs first, left to right) and returns its
/// register. Depth first with a stack of its own: a template may chain thousands of
/// elementwise ops, too deep a recursion for a thread's stack.
fn emit(
    g: &Graph,
    root: NodeId,
    inner: &dyn Fn(NodeId) -> bool,
    leaves: &mut Vec<NodeId>,
    code: &mut Vec<(NodeId, Ew)>,
    done: &mut HashMap<NodeId, usize>,
) -> usize {
    let mut leaf = |n: NodeId| {
        let r = leaves.iter().position(|&l| l == n).unwrap_or_else(|| {
            leaves.push(n);
            leaves.len() - 1
        });
        r | LEAF
    };
    if !inner(root) {
        return leaf(root);
    }
    // Each frame: a node and how many of its inputs have been visited.
    let mut stack = vec![(root, 0usize)];
    while let Some(&mut (n, ref mut next)) = stack.last_mut() {
        if done.contains_key(&n) {
            stack.pop();
            continue;
        }
        let ins = g.inputs(n);
        if let Some(&i) = ins.get(*next) {
            *next += 1;
            match inner(i) {
                true if !done.contains_key(&i) => stack.push((i, 0)),
                true => {}
                false => {
                    leaf(i);
                }
            }
            continue;
        }
        stack.pop();
        let ops: Vec<usize> = ins
            .iter()
            .map(|&i| match inner(i) {
                true => done[&i],
                false => leaf(i),
            })
            .collect();
        let e = match g.node(n).op {
            Op::Add => Ew::Add {
                a: ops[0],
                b: ops[1],
            },
            Op::Mul => Ew::Mul {
                a: ops[0],
                b: ops[1],
            },
            Op::Scale { factor } => Ew::Scale { a: ops[0], factor },
            Op::Silu => Ew::Silu { a: ops[0] },
            Op::Gelu => Ew::Gelu { a: ops[0] },
            Op::Softcap { cap } => Ew::Softcap { a: ops[0], cap },
            _ => unreachable!("only elementwise nodes are inner"),
        };
        code.push((n, e));
        done.insert(n, code.len() - 1);
    }
    done[&root]
}

/// Marks a register as a leaf index until the final numbering is known.
const LEAF: usize = 1 << 40;

impl Pass for FuseElementwise {
    fn name(&self) -> &'static str {
        "fuse-elementwise"
    }

    fn produces(&self) -> Option<&'static str> {
        Some(crate::forms::ELEMENTWISE)
    }

    fn run(&self, g: &mut Graph) -> Vec<String> {
        let mut log = Vec::new();
        // A node folds into its reader when it is elementwise, read once, by an elementwise node.
        let folds = |g: &Graph, n: NodeId| {
            is_elementwise(g, n) && {
                let u = g.users(n);
                u.len() == 1 && is_elementwise(g, u[0]) && !g.outputs.contains(&n)
            }
        };
        let order = g.topo_order();
        for root in order.into_iter().rev() {
            if !g.inner.contains_node(root) || !is_elementwise(g, root) || folds(g, root) {
                continue;
            }
            let inner = |n: NodeId| n == root || folds(g, n);
            if !g.inputs(root).iter().any(|&i| inner(i)) {
                continue;
            }
            let (mut leaves, mut code, mut done) = (Vec::new(), Vec::new(), HashMap::new());
            emit(g, root, &inner, &mut leaves, &mut code, &mut done);
            let nl = leaves.len();
            let fix = |r: usize| if r & LEAF != 0 { r & !LEAF } else { r + nl };
            let program: Vec<Ew> = code
                .iter()
                .map(|(_, e)| match *e {
                    Ew::Add { a, b } => Ew::Add {
                        a: fix(a),
                        b: fix(b),
                    },
                    Ew::Mul { a, b } => Ew::Mul {
                        a: fix(a),
                        b: fix(b),
                    },
                    Ew::Scale { a, factor } => Ew::Scale { a: fix(a), factor },
                    Ew::Silu { a } => Ew::Silu { a: fix(a) },
                    Ew::Gelu { a } => Ew::Gelu { a: fix(a) },
                    Ew::Softcap { a, cap } => Ew::Softcap { a: fix(a), cap },
                })
                .collect();
            let node = g.node(root).clone();
            let names: Vec<String> = code
                .iter()
                .map(|(n, _)| format!("{}:{}", g.node(*n).op.kind(), g.node(*n).name))
                .collect();
            let fused = g.add(
                Op::Elementwise { code: program },
                node.name,
                node.origin,
                &leaves,
            );
            g.replace_uses(root, fused);
            for (n, _) in &code {
                g.remove(*n);
            }
            log.push(format!(
                "{} ops as one elementwise kernel: {}",
                code.len(),
                names.join(", ")
            ));
        }
        log
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A chain far deeper than a recursion over it could go on a test thread's stack.
    #[test]
    fn a_long_chain_fuses_into_one_program() {
        let mut g = Graph::new();
        let x = g.add(Op::Tokens, "x", "test", &[]);
        let mut v = x;
        for k in 0..50_000 {
            v = match k % 3 {
                0 => g.add(Op::Silu, "s", "test", &[v]),
                1 => g.add(Op::Scale { factor: 0.5 }, "c", "test", &[v]),
                _ => g.add(Op::Add, "a", "test", &[v, x]),
            };
        }
        let out = g.add(Op::Output, "out", "test", &[v]);
        g.outputs.push(out);
        FuseElementwise.run(&mut g);
        let programs: Vec<usize> = g
            .inner
            .node_weights()
            .filter_map(|n| match &n.op {
                Op::Elementwise { code } => Some(code.len()),
                _ => None,
            })
            .collect();
        assert_eq!(programs, [50_000]);
    }
}
