//! The backend stage: what a backend decides at lowering, on top of the portable plan.
//! Kernel routing binds each matmul to kernels by its weight's stored type and shape
//! class; memory planning lays activations out in the backend's element type.

use crate::memory::{plan_memory, MemoryPlan};
use weft_ir::{DType, Dim, Op, Plan};

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
/// after `last_position`); with `memory`, activations of `elem_bytes` get arena slots.
pub fn backend_stage(
    plan: &Plan,
    backend: &str,
    route: impl Fn(DType, bool) -> Route,
    memory: bool,
    elem_bytes: usize,
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
        let (m, lines) = plan_memory(plan, elem_bytes);
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
