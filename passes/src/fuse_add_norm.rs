//! Residual add followed by RMSNorm becomes one `add_rms_norm`, which writes the sum
//! (still needed by the next residual) and its norm in one pass.

use crate::Pass;
use weft_ir::{Graph, Op};

pub struct FuseAddNorm;

impl Pass for FuseAddNorm {
    fn name(&self) -> &'static str {
        "fuse-add-norm"
    }

    fn produces(&self) -> Option<&'static str> {
        Some(crate::forms::ADD_RMS_NORM)
    }

    fn run(&self, g: &mut Graph) -> Vec<String> {
        let mut log = Vec::new();
        for r in g.topo_order() {
            let Op::RmsNorm {
                eps,
                weight_offset,
                group,
            } = g.node(r).op
            else {
                continue;
            };
            let Some(&[add, w]) = Some(g.inputs(r).as_slice()) else {
                continue;
            };
            if !matches!(g.node(add).op, Op::Add) {
                continue;
            }
            let Some(&weft_ir::Dim::Known(d)) = g.node(add).shape.get(1) else {
                continue;
            };
            let ab = g.inputs(add);
            let (norm, sum) = (g.node(r).clone(), g.node(add).clone());
            let fused = g.add(
                Op::AddRmsNorm {
                    eps,
                    weight_offset,
                    group,
                },
                format!("{}+{}", sum.name, norm.name),
                norm.origin.clone(),
                &[ab[0], ab[1], w],
            );
            let s = g.add(
                Op::Slice { start: 0, len: d },
                sum.name.clone(),
                sum.origin,
                &[fused],
            );
            let n = g.add(
                Op::Slice { start: d, len: d },
                norm.name.clone(),
                norm.origin,
                &[fused],
            );
            g.replace_uses(r, n);
            g.remove(r);
            g.replace_uses(add, s);
            g.remove(add);
            log.push(format!(
                "'{}' then '{}': one add_rms_norm",
                sum.name, norm.name
            ));
        }
        log
    }
}
