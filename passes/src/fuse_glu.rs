//! Gated linear units: `act(gate) · up`, where gate and up are the two halves of one
//! two-weight matmul, become one `glu` over the packed output (SwiGLU, GeGLU).

use crate::Pass;
use weft_ir::{GluAct, Graph, NodeId, Op};

pub struct FuseGlu;

/// `(act, packed)` when `a` is `act(slice(P, 0, f))` and `b` is `slice(P, f, f)` for a
/// matmul P of width 2f, with the activation read only here.
fn gated(g: &Graph, a: NodeId, b: NodeId) -> Option<(GluAct, NodeId)> {
    let act = match g.node(a).op {
        Op::Silu => GluAct::Silu,
        Op::Gelu => GluAct::Gelu,
        _ => return None,
    };
    if g.users(a).len() != 1 {
        return None;
    }
    let gate = g.inputs(a)[0];
    let (Op::Slice { start: 0, len: f }, Op::Slice { start: s2, len: f2 }) =
        (&g.node(gate).op, &g.node(b).op)
    else {
        return None;
    };
    let p = g.inputs(gate)[0];
    let packed_width = g.node(p).shape.get(1) == Some(&weft_ir::Dim::Known(2 * f));
    (g.inputs(b)[0] == p
        && *s2 == *f
        && f2 == f
        && matches!(g.node(p).op, Op::MatMul { .. })
        && packed_width)
        .then_some((act, p))
}

impl Pass for FuseGlu {
    fn name(&self) -> &'static str {
        "fuse-glu"
    }

    fn produces(&self) -> Option<&'static str> {
        Some(crate::forms::GLU)
    }

    fn run(&self, g: &mut Graph) -> Vec<String> {
        let mut log = Vec::new();
        for m in g.topo_order() {
            if !matches!(g.node(m).op, Op::Mul) {
                continue;
            }
            let ins = g.inputs(m);
            let Some((act, p)) = gated(g, ins[0], ins[1]).or_else(|| gated(g, ins[1], ins[0]))
            else {
                continue;
            };
            let node = g.node(m).clone();
            let glu = g.add(Op::Glu { act }, node.name.clone(), node.origin, &[p]);
            g.replace_uses(m, glu);
            g.remove(m);
            log.push(format!(
                "'{}': {act:?}(gate)·up over '{}' as one glu",
                node.name,
                g.node(p).name
            ));
        }
        log
    }
}
