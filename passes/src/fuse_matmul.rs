//! Matmuls that read the same activation (q/k/v, gate/up) become one `matmul_cat`:
//! one pass over the activation, one parallel dispatch, outputs side by side and
//! handed on through column slices.

use crate::Pass;
use std::collections::BTreeMap;
use weft_ir::{Graph, Op};

pub struct FuseMatmul;

impl Pass for FuseMatmul {
    fn name(&self) -> &'static str {
        "fuse-matmul"
    }

    fn run(&self, g: &mut Graph) -> Vec<String> {
        let mut log = Vec::new();
        for x in g.topo_order() {
            // Matmul readers of x, grouped by the weight's stored type.
            let mut groups: BTreeMap<String, Vec<(weft_ir::NodeId, weft_ir::NodeId, usize)>> =
                BTreeMap::new();
            for u in g.users(x) {
                if !matches!(g.node(u).op, Op::MatMul { .. }) {
                    continue;
                }
                let ins = g.inputs(u);
                if ins[0] != x {
                    continue;
                }
                if let Op::Weight { dtype, shape, .. } = &g.node(ins[1]).op {
                    groups
                        .entry(dtype.name().to_string())
                        .or_default()
                        .push((u, ins[1], shape[0]));
                }
            }
            for (dtype, members) in groups {
                if members.len() < 2 {
                    continue;
                }
                let names: Vec<String> = members.iter().map(|m| g.node(m.0).name.clone()).collect();
                let origin = g.node(members[0].0).origin.clone();
                let mut inputs = vec![x];
                inputs.extend(members.iter().map(|m| m.1));
                let cat = g.add(
                    Op::MatMulCat { route: None },
                    names.join("|"),
                    origin,
                    &inputs,
                );
                let mut start = 0;
                for (u, _, rows) in &members {
                    let node = g.node(*u).clone();
                    let slice = g.add(
                        Op::Slice { start, len: *rows },
                        node.name,
                        node.origin,
                        &[cat],
                    );
                    g.replace_uses(*u, slice);
                    g.remove(*u);
                    start += rows;
                }
                log.push(format!(
                    "{} ({dtype}) read one activation: one matmul_cat of {start} rows",
                    names.join(", ")
                ));
            }
        }
        log
    }
}
