//! Rope on q and k, read only by attention, moves into attention: k is rotated as it
//! enters the KV cache and q in attention's scratch, saving two passes and two buffers.

use crate::Pass;
use weft_ir::{Graph, Op};

pub struct FuseRopeAttention;

impl Pass for FuseRopeAttention {
    fn name(&self) -> &'static str {
        "fuse-rope-attention"
    }

    fn produces(&self) -> Option<&'static str> {
        Some(crate::forms::ATTENTION_ROPE)
    }

    fn run(&self, g: &mut Graph) -> Vec<String> {
        let mut log = Vec::new();
        for a in g.topo_order() {
            let Op::Attention { rope: None, .. } = g.node(a).op else {
                continue;
            };
            let ins = g.inputs(a);
            let (q, k, v) = (ins[0], ins[1], ins[2]);
            let params = |n: weft_ir::NodeId| match g.node(n).op {
                Op::Rope { .. } => g.node(n).op.rope_params(),
                _ => None,
            };
            let (Some(pq), Some(pk)) = (params(q), params(k)) else {
                continue;
            };
            let (iq, ik) = (g.inputs(q), g.inputs(k));
            // Same rotation (params and divisors) on both, and nobody else reads the rotated values.
            if pq != pk
                || iq[1..] != ik[1..]
                || g.users(q) != vec![a]
                || g.users(k) != vec![a]
                || q == k
            {
                continue;
            }
            let node = g.node(a).clone();
            let mut op = node.op.clone();
            if let Op::Attention { rope, .. } = &mut op {
                *rope = Some(pq);
            }
            let mut inputs = vec![iq[0], ik[0], v];
            inputs.extend(iq.get(1));
            let fused = g.add(op, node.name.clone(), node.origin, &inputs);
            g.replace_uses(a, fused);
            g.remove(a);
            g.remove(q);
            g.remove(k);
            log.push(format!(
                "rope of '{}' and '{}' into attention '{}'",
                g.node(iq[0]).name,
                g.node(ik[0]).name,
                node.name
            ));
        }
        log
    }
}
