//! Epilogues into the matmul: a bias add or a softcap whose input is a matmul read
//! only by it runs inside that matmul, on its output rows while they are hot.

use crate::Pass;
use weft_ir::{Graph, Op};

pub struct FuseEpilogue;

impl Pass for FuseEpilogue {
    fn name(&self) -> &'static str {
        "fuse-epilogue"
    }

    fn produces(&self) -> Option<&'static str> {
        Some(crate::forms::MATMUL_EPILOGUE)
    }

    fn run(&self, g: &mut Graph) -> Vec<String> {
        let mut log = Vec::new();
        for n in g.topo_order() {
            let ins = g.inputs(n);
            let Some(&m) = ins.first() else { continue };
            let Op::MatMul {
                bias,
                softcap: None,
            } = g.node(m).op
            else {
                continue;
            };
            if g.users(m) != vec![n] || g.outputs.contains(&m) {
                continue;
            }
            let mut m_ins = g.inputs(m);
            let op = match g.node(n).op {
                // Only a single-weight matmul takes a bias here; fuse-matmul merges later.
                Op::Bias if !bias && m_ins.len() == 2 => {
                    m_ins.push(ins[1]);
                    Op::MatMul {
                        bias: true,
                        softcap: None,
                    }
                }
                Op::Softcap { cap } => Op::MatMul {
                    bias,
                    softcap: Some(cap),
                },
                _ => continue,
            };
            let (mm, ep) = (g.node(m).clone(), g.node(n).clone());
            let fused = g.add(op, ep.name.clone(), mm.origin, &m_ins);
            g.replace_uses(n, fused);
            g.remove(n);
            g.remove(m);
            log.push(format!(
                "{} '{}' into matmul '{}'",
                ep.op.kind(),
                ep.name,
                mm.name
            ));
        }
        log
    }
}
