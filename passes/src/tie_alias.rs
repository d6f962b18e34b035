//! Tied-embedding aliasing: weight nodes that read the same tensor become one, so
//! the head and the embedding share one view of the same bytes.

use crate::Pass;
use std::collections::HashMap;
use weft_ir::{Graph, Op};

pub struct TieAlias;

impl Pass for TieAlias {
    fn name(&self) -> &'static str {
        "tie-alias"
    }

    fn run(&self, g: &mut Graph) -> Vec<String> {
        let mut first: HashMap<(String, bool), weft_ir::NodeId> = HashMap::new();
        let mut log = Vec::new();
        for n in g.topo_order() {
            let Op::Weight {
                tensor,
                dtype,
                shape,
                transposed,
            } = &g.node(n).op
            else {
                continue;
            };
            match first.get(&(tensor.clone(), *transposed)) {
                None => {
                    first.insert((tensor.clone(), *transposed), n);
                }
                Some(&keep) => {
                    let bytes = dtype.tensor_bytes(shape).unwrap_or(0);
                    log.push(format!(
                        "'{}' aliases '{}': both read tensor {tensor} ({bytes} bytes, not copied)",
                        g.node(n).name,
                        g.node(keep).name
                    ));
                    g.replace_uses(n, keep);
                    g.remove(n);
                }
            }
        }
        log
    }
}
