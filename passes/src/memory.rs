//! Memory planning: liveness over the plan's step order, then each activation takes a
//! free arena slot (best fit by size) and frees its inputs' slots after their last
//! reader. A value's slot is never its own input's, so kernels need not work in place.

use weft_ir::{MemoryPlan, Op, Plan};

/// The `seq` used to compare value sizes when choosing a slot.
const SIZING_SEQ: usize = 64;

/// Assigns arena slots; returns the log.
pub fn plan_memory(plan: &mut Plan) -> Vec<String> {
    let n = plan.steps.len();
    let sizes = plan.value_sizes(SIZING_SEQ);
    let holds = |i: usize| !matches!(plan.steps[i].node.op, Op::Weight { .. } | Op::Tokens);
    let mut last_use = vec![0usize; n];
    for (i, st) in plan.steps.iter().enumerate() {
        for &j in &st.inputs {
            last_use[j] = last_use[j].max(i);
        }
    }
    for &o in &plan.outputs {
        last_use[o] = usize::MAX;
    }
    let mut slots = vec![None; n];
    let mut slot_size: Vec<usize> = Vec::new();
    let mut free: Vec<usize> = Vec::new();
    for i in 0..n {
        if holds(i) {
            // Best fit: the smallest free slot at least as large, else the largest (it grows).
            let pick = free
                .iter()
                .enumerate()
                .filter(|(_, &s)| slot_size[s] >= sizes[i])
                .min_by_key(|(_, &s)| slot_size[s])
                .or_else(|| free.iter().enumerate().max_by_key(|(_, &s)| slot_size[s]))
                .map(|(k, _)| k);
            let s = match pick {
                Some(k) => free.swap_remove(k),
                None => {
                    slot_size.push(0);
                    slot_size.len() - 1
                }
            };
            slot_size[s] = slot_size[s].max(sizes[i]);
            slots[i] = Some(s);
        }
        let mut inputs = plan.steps[i].inputs.clone();
        inputs.sort_unstable();
        inputs.dedup();
        for j in inputs {
            if last_use[j] == i {
                if let Some(s) = slots[j] {
                    free.push(s);
                }
            }
        }
    }
    plan.memory = Some(MemoryPlan {
        slots,
        n_slots: slot_size.len(),
    });
    let (arena1, naive1) = plan.activation_bytes(1);
    let (arena, naive) = plan.activation_bytes(SIZING_SEQ);
    vec![
        format!(
            "{} activations in {} slots",
            (0..n).filter(|&i| holds(i)).count(),
            slot_size.len()
        ),
        format!("  seq=1: arena {arena1} bytes, naive {naive1} bytes"),
        format!("  seq={SIZING_SEQ}: arena {arena} bytes, naive {naive} bytes"),
    ]
}
