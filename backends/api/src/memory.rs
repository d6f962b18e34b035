//! Memory planning: liveness over the plan's step order, then each activation takes a
//! free arena slot (best fit by size) and frees its inputs' slots after their last
//! reader. A value's slot is never its own input's, so kernels need not work in place.

use weft_ir::{Op, Plan};

/// The `seq` used to compare value sizes when choosing a slot.
const SIZING_SEQ: usize = 64;

/// Activations assigned to reusable slots: values whose lifetimes do not overlap
/// share a slot. A slot is sized for its largest value at the step's `seq`.
#[derive(Clone, Debug, PartialEq)]
pub struct MemoryPlan {
    /// Slot of each step's value; `None` for steps that hold no activation (weights).
    pub slots: Vec<Option<usize>>,
    pub n_slots: usize,
}

/// Bytes of activations at `seq` positions with `elem_bytes` per element (the backend's
/// activation type): `(arena, naive)`, where naive gives every value its own buffer and
/// arena follows the memory plan (naive without one). Saturates rather than wraps.
pub fn activation_bytes(
    plan: &Plan,
    memory: Option<&MemoryPlan>,
    seq: usize,
    elem_bytes: usize,
) -> (usize, usize) {
    let sizes = plan.value_sizes(seq);
    let naive = sizes
        .iter()
        .fold(0usize, |a, &s| a.saturating_add(s))
        .saturating_mul(elem_bytes);
    let arena = match memory {
        None => naive,
        Some(m) => {
            let mut slot_max = vec![0usize; m.n_slots];
            for (s, size) in m.slots.iter().zip(&sizes) {
                if let Some(s) = s.filter(|&s| s < m.n_slots) {
                    slot_max[s] = slot_max[s].max(*size);
                }
            }
            slot_max
                .iter()
                .fold(0usize, |a, &s| a.saturating_add(s))
                .saturating_mul(elem_bytes)
        }
    };
    (arena, naive)
}

/// The last step that reads each value, where `owner(j)` is the step whose value step j
/// is read as (itself, or a view's source): 0 for a value nothing reads, `usize::MAX`
/// for the plan's outputs.
pub fn last_uses(plan: &Plan, owner: impl Fn(usize) -> usize) -> Vec<usize> {
    let mut last_use = vec![0usize; plan.steps.len()];
    for (i, st) in plan.steps.iter().enumerate() {
        for &j in &st.inputs {
            last_use[owner(j)] = last_use[owner(j)].max(i);
        }
    }
    for &o in &plan.outputs {
        last_use[owner(o)] = usize::MAX;
    }
    last_use
}

/// Assigns arena slots for activations of `elem_bytes` each; returns the plan and the log.
pub fn plan_memory(plan: &Plan, elem_bytes: usize) -> (MemoryPlan, Vec<String>) {
    plan_memory_with_views(plan, elem_bytes, &[])
}

/// [`plan_memory`] for a backend whose kernels read some values in place of others:
/// `views[j] = Some(s)` (with `s < j`) says step j is read as a view of step s (a
/// column slice read with a stride). A view takes no slot of its own; its source's
/// slot stays live until the view's last reader.
pub fn plan_memory_with_views(
    plan: &Plan,
    elem_bytes: usize,
    views: &[Option<usize>],
) -> (MemoryPlan, Vec<String>) {
    let n = plan.steps.len();
    let sizes = plan.value_sizes(SIZING_SEQ);
    let view_of = |i: usize| views.get(i).copied().flatten().filter(|&s| s < i);
    let mut owner: Vec<usize> = (0..n).collect();
    for i in 0..n {
        if let Some(s) = view_of(i) {
            owner[i] = owner[s];
        }
    }
    let holds = |i: usize| {
        view_of(i).is_none() && !matches!(plan.steps[i].node.op, Op::Weight { .. } | Op::Tokens)
    };
    let last_use = last_uses(plan, |j| owner[j]);
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
        } else if owner[i] != i {
            slots[i] = slots[owner[i]];
        }
        let mut inputs: Vec<usize> = plan.steps[i].inputs.iter().map(|&j| owner[j]).collect();
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
    let memory = MemoryPlan {
        slots,
        n_slots: slot_size.len(),
    };
    let (arena1, naive1) = activation_bytes(plan, Some(&memory), 1, elem_bytes);
    let (arena, naive) = activation_bytes(plan, Some(&memory), SIZING_SEQ, elem_bytes);
    let log = vec![
        format!(
            "{} activations in {} slots",
            (0..n).filter(|&i| holds(i)).count(),
            slot_size.len()
        ),
        format!("  seq=1: arena {arena1} bytes, naive {naive1} bytes"),
        format!("  seq={SIZING_SEQ}: arena {arena} bytes, naive {naive} bytes"),
    ];
    (memory, log)
}
