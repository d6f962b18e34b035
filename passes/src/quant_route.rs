//! Quant-aware matmul routing: binds each matmul to kernels by its weight's stored
//! type and by shape class — one activation row (decode, or a head after
//! `last_position`) reads blocks with dot products; several rows (prefill) decode each
//! weight row once and reuse it.

use crate::Pass;
use weft_ir::{Dim, Graph, MatKernel, Op, Route};

pub struct QuantRoute;

impl Pass for QuantRoute {
    fn name(&self) -> &'static str {
        "quant-route"
    }

    fn run(&self, g: &mut Graph) -> Vec<String> {
        let mut log = Vec::new();
        for n in g.topo_order() {
            if !matches!(g.node(n).op, Op::MatMul { route: None, .. }) {
                continue;
            }
            let w = g.inputs(n)[1];
            let Op::Weight { dtype, .. } = g.node(w).op else {
                continue;
            };
            let one_row = g.node(n).shape.first() == Some(&Dim::Known(1));
            let route = Route {
                dtype,
                decode: MatKernel::Dot,
                prefill: if one_row {
                    MatKernel::Dot
                } else {
                    MatKernel::DecodeReuse
                },
            };
            let node = g.node_mut(n);
            if let Op::MatMul { route: r, .. } = &mut node.op {
                *r = Some(route);
            }
            log.push(format!(
                "'{}': {dtype}, decode={:?}, prefill={:?}",
                node.name, route.decode, route.prefill
            ));
        }
        log
    }
}
