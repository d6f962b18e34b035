//! Common-subexpression elimination: nodes with the same op over the same inputs
//! compute the same value; keep the first.

use crate::Pass;
use std::collections::HashMap;
use weft_ir::{Graph, Op};

pub struct Cse;

impl Pass for Cse {
    fn name(&self) -> &'static str {
        "cse"
    }

    fn run(&self, g: &mut Graph) -> Vec<String> {
        let mut seen: HashMap<(String, Vec<weft_ir::NodeId>), weft_ir::NodeId> = HashMap::new();
        let mut log = Vec::new();
        for n in g.topo_order() {
            // Attention reads and writes its layer's cache; outputs are distinct by identity.
            if matches!(g.node(n).op, Op::Attention { .. } | Op::Output | Op::Tokens) {
                continue;
            }
            // The op's Debug text is a faithful key (ops hold floats, so no Hash).
            let key = (format!("{:?}", g.node(n).op), g.inputs(n));
            match seen.get(&key) {
                None => {
                    seen.insert(key, n);
                }
                Some(&keep) => {
                    log.push(format!(
                        "'{}' is '{}' again ({})",
                        g.node(n).name,
                        g.node(keep).name,
                        g.node(n).op.kind()
                    ));
                    g.replace_uses(n, keep);
                    g.remove(n);
                }
            }
        }
        log
    }
}
