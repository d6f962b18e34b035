//! Dead-code elimination: drops nodes no output depends on.

use crate::Pass;
use weft_ir::Graph;

pub struct Dce;

impl Pass for Dce {
    fn name(&self) -> &'static str {
        "dce"
    }

    fn run(&self, g: &mut Graph) -> Vec<String> {
        let mut live = std::collections::HashSet::new();
        let mut stack = g.outputs.clone();
        while let Some(n) = stack.pop() {
            if live.insert(n) {
                stack.extend(g.inputs(n));
            }
        }
        let dead: Vec<_> = g
            .node_ids()
            .into_iter()
            .filter(|n| !live.contains(n))
            .collect();
        let mut log = Vec::new();
        for n in dead {
            let node = g.remove(n).expect("listed nodes exist");
            log.push(format!(
                "removed {} '{}' (no output depends on it)",
                node.op.kind(),
                node.name
            ));
        }
        log
    }
}
