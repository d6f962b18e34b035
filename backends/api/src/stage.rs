//! The backend stage: what a backend decides at lowering, on top of the portable plan.
//! Kernel routing binds each matmul to kernels by its weight's stored type and shape
//! class; memory planning lays activations out in the backend's element type.

use crate::memory::{plan_memory_with_views, MemoryPlan};
use crate::BackendError;
use weft_ir::{DType, Dim, KvLayer, Op, Plan};

/// How a matmul reads its weight rows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MatKernel {
    /// Dot each stored row with each activation row, straight from the blocks
    /// (best for one activation row: decode).
    Dot,
    /// Decode each stored row once and reuse it for every activation row (prefill).
    DecodeReuse,
}

/// The kernels a matmul is bound to, by weight type and shape class.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Route {
    pub dtype: DType,
    /// For steps of one position.
    pub decode: MatKernel,
    /// For steps of several positions.
    pub prefill: MatKernel,
}

impl Route {
    pub fn for_rows(&self, rows: usize) -> MatKernel {
        if rows == 1 {
            self.decode
        } else {
            self.prefill
        }
    }
}

/// What the backend stage decided for one plan.
#[derive(Clone, Debug)]
pub struct Stage {
    /// The route of each matmul step (None for other steps).
    pub routes: Vec<Option<Route>>,
    pub memory: Option<MemoryPlan>,
    pub log: Vec<String>,
}

/// Runs the backend stage on a validated plan: `route(dtype, one_row)` picks each
/// matmul's kernels (`one_row`: its shape says one row whatever the step, e.g. a head
/// after `last_position`); with `memory`, activations of `elem_bytes` get arena slots
/// (`views`: steps the backend reads as views of others, see `plan_memory_with_views`).
pub fn backend_stage(
    plan: &Plan,
    backend: &str,
    route: impl Fn(DType, bool) -> Route,
    memory: bool,
    elem_bytes: usize,
    views: &[Option<usize>],
) -> Stage {
    let mut log = Vec::new();
    let mut lines = Vec::new();
    let routes: Vec<Option<Route>> = plan
        .steps
        .iter()
        .map(|st| {
            let Op::MatMul { .. } = st.node.op else {
                return None;
            };
            let dtype = match st.inputs.get(1).map(|&w| &plan.steps[w].node.op) {
                Some(Op::Weight { dtype, .. }) => *dtype,
                _ => return None,
            };
            let one_row = st.node.shape.first() == Some(&Dim::Known(1));
            let r = route(dtype, one_row);
            lines.push(format!(
                "  '{}': {dtype}, decode={:?}, prefill={:?}",
                st.node.name, r.decode, r.prefill
            ));
            Some(r)
        })
        .collect();
    log.push(format!(
        "quant-route ({backend}): {} matmul(s)",
        lines.len()
    ));
    log.append(&mut lines);
    let memory = memory.then(|| {
        let (m, lines) = plan_memory_with_views(plan, elem_bytes, views);
        log.push(format!("memory ({backend}): {} slot(s)", m.n_slots));
        log.extend(lines.into_iter().map(|l| format!("  {l}")));
        m
    });
    Stage {
        routes,
        memory,
        log,
    }
}

impl Stage {
    /// The plan's steps with their kernels and slots, then this stage's log.
    pub fn describe(&self, plan: &Plan) -> String {
        let mut s = String::new();
        for i in 0..plan.steps.len() {
            s += &plan.step_text(i);
            if let Some(r) = self.routes.get(i).copied().flatten() {
                s += &format!(
                    "  [{} decode={:?} prefill={:?}]",
                    r.dtype, r.decode, r.prefill
                );
            }
            if let Some(slot) = self
                .memory
                .as_ref()
                .and_then(|m| m.slots.get(i).copied().flatten())
            {
                s += &format!("  @slot{slot}");
            }
            s.push('\n');
        }
        s += "; backend stage\n";
        for l in &self.log {
            s += &format!("; {l}\n");
        }
        s
    }
}

impl Stage {
    /// The arena slot of each step's value and the number of slots: the memory plan's,
    /// with one spare slot for steps that hold no value; a slot a step without one.
    pub fn arena_slots(&self, plan: &Plan) -> Result<(Vec<usize>, usize), BackendError> {
        let n = plan.steps.len();
        match &self.memory {
            Some(m) if m.slots.len() == n => Ok((
                m.slots.iter().map(|s| s.unwrap_or(m.n_slots)).collect(),
                m.n_slots + 1,
            )),
            Some(_) => Err(BackendError::BadPlan {
                step: 0,
                name: plan
                    .steps
                    .first()
                    .map_or(String::new(), |s| s.node.name.clone()),
                message: "the memory plan does not cover every step".into(),
            }),
            None => Ok(((0..n).collect(), n)),
        }
    }
}

/// Steps at or after a `last_position`: one row per position when all logits are asked.
pub fn after_last(plan: &Plan) -> Vec<bool> {
    let mut after = vec![false; plan.steps.len()];
    for (i, st) in plan.steps.iter().enumerate() {
        after[i] = matches!(st.node.op, Op::LastPosition) || st.inputs.iter().any(|&j| after[j]);
    }
    after
}

/// Rows of step `i`'s value in a call of `seq` positions (`all`: every position's
/// logits asked), given [`after_last`] of the plan.
pub fn value_rows(plan: &Plan, after_last: &[bool], i: usize, seq: usize, all: bool) -> usize {
    match all && after_last[i] {
        true => seq,
        false => plan.steps[i].node.shape[0].eval(seq),
    }
}

/// The KV width (kv heads × head_dim) of each attention layer; layers must be numbered
/// 0, 1, 2… once each.
pub fn kv_widths(plan: &Plan) -> Result<Vec<usize>, BackendError> {
    Ok(kv_layers(plan)?
        .iter()
        .map(|l| l.n_kv_heads * l.head_dim)
        .collect())
}

/// The attention layers' caches, layer k at index k; layers must be numbered 0, 1, 2…
/// once each.
pub fn kv_layers(plan: &Plan) -> Result<Vec<KvLayer>, BackendError> {
    let layers = plan.kv_layout();
    for (k, &KvLayer { layer, .. }) in layers.iter().enumerate() {
        if layer != k {
            return Err(BackendError::BadPlan {
                step: 0,
                name: format!("layer {layer}"),
                message: "attention layers must be numbered 0, 1, 2… once each".into(),
            });
        }
    }
    Ok(layers)
}
