//! Matmuls that read the same activation (q/k/v, gate/up) become one matmul over
//! several weights: one pass over the activation, one parallel dispatch, outputs side
//! by side and handed on through column slices. Biases come along; a softcap epilogue
//! does not (it would reach the neighbours' columns too).

use crate::Pass;
use std::collections::BTreeMap;
use weft_ir::{Graph, NodeId, Op};

pub struct FuseMatmul;

/// A single-weight matmul reading the activation: (node, weight [, bias], rows).
type Member = (NodeId, Vec<NodeId>, usize);

impl Pass for FuseMatmul {
    fn name(&self) -> &'static str {
        "fuse-matmul"
    }

    fn produces(&self) -> Option<&'static str> {
        Some(crate::forms::MATMUL_MULTI)
    }

    fn run(&self, g: &mut Graph) -> Vec<String> {
        let mut log = Vec::new();
        for x in g.topo_order() {
            // Grouped by weight type and by whether they carry a bias.
            let mut groups: BTreeMap<(String, bool), Vec<Member>> = BTreeMap::new();
            for u in g.users(x) {
                let Op::MatMul {
                    bias,
                    softcap: None,
                    ..
                } = g.node(u).op
                else {
                    continue;
                };
                let ins = g.inputs(u);
                if ins[0] != x || ins.len() != 2 + usize::from(bias) {
                    continue;
                }
                if let Op::Weight { dtype, shape, .. } = &g.node(ins[1]).op {
                    let key = (dtype.name().to_string(), bias);
                    groups
                        .entry(key)
                        .or_default()
                        .push((u, ins[1..].to_vec(), shape[0]));
                }
            }
            for ((dtype, bias), members) in groups {
                if members.len() < 2 {
                    continue;
                }
                let names: Vec<String> = members.iter().map(|m| g.node(m.0).name.clone()).collect();
                let origin = g.node(members[0].0).origin.clone();
                let mut inputs = vec![x];
                inputs.extend(members.iter().map(|m| m.1[0]));
                inputs.extend(members.iter().filter_map(|m| m.1.get(1)));
                let op = Op::MatMul {
                    bias,
                    softcap: None,
                };
                let fused = g.add(op, names.join("|"), origin, &inputs);
                let mut start = 0;
                for (u, _, rows) in &members {
                    let node = g.node(*u).clone();
                    let slice = g.add(
                        Op::Slice { start, len: *rows },
                        node.name,
                        node.origin,
                        &[fused],
                    );
                    g.replace_uses(*u, slice);
                    g.remove(*u);
                    start += rows;
                }
                log.push(format!(
                    "{} ({dtype}) read one activation: one matmul of {start} rows",
                    names.join(", ")
                ));
            }
        }
        log
    }
}
