//! weft's graph passes.
//!
//! Shape inference always runs (it is validation, not optimisation). The optional
//! portable passes run in [`PIPELINE`] order; kernel routing and memory planning are
//! the backend stage, run at lowering (weft-backend).
//! Each pass returns log lines for what it changed, and the log says "0 change(s)"
//! when it changed nothing, so a fusion that does not fire is visible.
//! docs/passes.md explains the order.

mod cse;
mod dce;
mod fuse_add_norm;
mod fuse_elementwise;
mod fuse_epilogue;
mod fuse_glu;
mod fuse_matmul;
mod fuse_rope_attention;
mod shapes;
mod tie_alias;

pub use cse::Cse;
pub use dce::Dce;
pub use fuse_add_norm::FuseAddNorm;
pub use fuse_elementwise::FuseElementwise;
pub use fuse_epilogue::FuseEpilogue;
pub use fuse_glu::FuseGlu;
pub use fuse_matmul::FuseMatmul;
pub use fuse_rope_attention::FuseRopeAttention;
pub use shapes::infer_shapes;
pub use tie_alias::TieAlias;

use std::collections::BTreeMap;
use weft_ir::{Graph, MetaValue, ModelStamp, Op, Plan};

/// The fused forms the fusion passes make, by the names backends decline them under.
pub mod forms {
    pub const MATMUL_MULTI: &str = "matmul_multi";
    pub const MATMUL_EPILOGUE: &str = "matmul_epilogue";
    pub const GLU: &str = "glu";
    pub const ADD_RMS_NORM: &str = "add_rms_norm";
    pub const ATTENTION_ROPE: &str = "attention_rope";
    pub const ELEMENTWISE: &str = "elementwise";
}

/// The fused forms a step with `op` and `n_inputs` inputs uses (what a backend that
/// declines one of them cannot run).
pub fn fused_forms(op: &Op, n_inputs: usize) -> Vec<&'static str> {
    match op {
        Op::MatMul { bias, softcap } => {
            let weights = match bias {
                true => n_inputs.saturating_sub(1) / 2,
                false => n_inputs.saturating_sub(1),
            };
            let mut f = Vec::new();
            if weights > 1 {
                f.push(forms::MATMUL_MULTI);
            }
            if *bias || softcap.is_some() {
                f.push(forms::MATMUL_EPILOGUE);
            }
            f
        }
        Op::Glu { .. } => vec![forms::GLU],
        Op::AddRmsNorm { .. } => vec![forms::ADD_RMS_NORM],
        Op::Attention { rope: Some(_), .. } => vec![forms::ATTENTION_ROPE],
        Op::Elementwise { .. } => vec![forms::ELEMENTWISE],
        _ => vec![],
    }
}

/// A graph rewrite that preserves meaning.
pub trait Pass: Sync {
    /// The name used in `--passes` and in the log.
    fn name(&self) -> &'static str;
    /// Rewrites the graph; log lines describe the changes (none: nothing changed).
    fn run(&self, g: &mut Graph) -> Vec<String>;
    /// The fused form this pass makes, by the name a backend may decline it under.
    fn produces(&self) -> Option<&'static str> {
        None
    }
}

/// The portable graph passes, in order. Aliasing and CSE first so fusions see shared
/// values once; epilogues into single matmuls before those merge (biases travel with
/// their weights); matmul fusion before GLU fusion (which reads its packed output); the
/// general elementwise rule after the specific fusions; DCE last. Kernel routing and
/// memory planning are backend-stage passes, run at lowering (weft-backend).
pub const PIPELINE: &[&dyn Pass] = &[
    &TieAlias,
    &Cse,
    &FuseEpilogue,
    &FuseMatmul,
    &FuseGlu,
    &FuseAddNorm,
    &FuseRopeAttention,
    &FuseElementwise,
    &Dce,
];

/// The backend-stage passes that `--passes` can leave out: memory planning (without it
/// every value has its own buffer). Kernel routing always runs: a backend needs kernels.
pub const MEMORY: &str = "memory";

fn known_names() -> Vec<&'static str> {
    PIPELINE.iter().map(|p| p.name()).chain([MEMORY]).collect()
}

#[derive(Debug, thiserror::Error)]
pub enum PassError {
    #[error("shape error at '{node}' ({origin}): {message}")]
    Shape {
        node: String,
        origin: String,
        message: String,
    },
    #[error("unknown pass '{0}' (known: {known}, and fusion for every fuse-* pass)", known = known_names().join(", "))]
    UnknownPass(String),
}

/// Which optional passes run: `all`, `none`, a list (`tie-alias,dce`), or removals
/// from all (`-fusion,-cse`); `fusion` names every fuse-* pass.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PassSelection(Vec<&'static str>);

impl PassSelection {
    pub fn all() -> Self {
        PassSelection(known_names())
    }

    pub fn none() -> Self {
        PassSelection(vec![])
    }

    pub fn parse(spec: &str) -> Result<Self, PassError> {
        let spec = spec.trim();
        match spec {
            "all" | "" => return Ok(Self::all()),
            "none" => return Ok(Self::none()),
            _ => {}
        }
        // A name, or `fusion` for every fuse-* pass.
        let find = |name: &str| -> Result<Vec<&'static str>, PassError> {
            let names: Vec<&'static str> = known_names()
                .into_iter()
                .filter(|p| *p == name || (name == "fusion" && p.starts_with("fuse-")))
                .collect();
            if names.is_empty() {
                return Err(PassError::UnknownPass(name.to_string()));
            }
            Ok(names)
        };
        let items: Vec<&str> = spec
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect();
        let mut listed = Vec::new();
        for item in &items {
            listed.extend(find(item.trim_start_matches('-'))?);
        }
        if items.iter().all(|s| s.starts_with('-')) {
            Ok(PassSelection(
                Self::all()
                    .0
                    .into_iter()
                    .filter(|p| !listed.contains(p))
                    .collect(),
            ))
        } else if items.iter().any(|s| s.starts_with('-')) {
            Err(PassError::UnknownPass(format!(
                "{spec} (list passes to run, or only -PASS to leave out)"
            )))
        } else {
            // Keep pipeline order whatever order they were listed in.
            Ok(PassSelection(
                Self::all()
                    .0
                    .into_iter()
                    .filter(|p| listed.contains(p))
                    .collect(),
            ))
        }
    }

    pub fn contains(&self, name: &str) -> bool {
        self.0.contains(&name)
    }

    pub fn memory(&self) -> bool {
        self.contains(MEMORY)
    }

    /// This selection less the fusions whose product a backend declines (it then runs
    /// the unfused form); the log lines say which were left out.
    pub fn declining(&self, declined: &[&str]) -> (Self, Vec<String>) {
        let mut log = Vec::new();
        let kept = self
            .0
            .iter()
            .copied()
            .filter(|name| {
                let product = PIPELINE
                    .iter()
                    .find(|p| p.name() == *name)
                    .and_then(|p| p.produces());
                match product.filter(|p| declined.contains(p)) {
                    Some(p) => {
                        log.push(format!("{name}: declined by the backend ({p})"));
                        false
                    }
                    None => true,
                }
            })
            .collect();
        (PassSelection(kept), log)
    }
}

/// Validates the graph, runs the selected graph passes in pipeline order and returns
/// the log. `after(pass, graph)` sees the graph after each pass that ran.
pub fn optimize(
    g: &mut Graph,
    selection: &PassSelection,
    mut after: impl FnMut(&str, &Graph),
) -> Result<Vec<String>, PassError> {
    infer_shapes(g)?;
    let mut log = Vec::new();
    for pass in PIPELINE.iter().filter(|p| selection.contains(p.name())) {
        let lines = pass.run(g);
        log.push(format!("{}: {} change(s)", pass.name(), lines.len()));
        log.extend(lines.into_iter().map(|l| format!("  {l}")));
        infer_shapes(g)?;
        after(pass.name(), g);
    }
    Ok(log)
}

/// Optimises `graph` with the selected portable passes and lays it out as a plan for
/// `model`; the plan's log says what every pass did.
pub fn build_plan(
    mut graph: Graph,
    selection: &PassSelection,
    family: &str,
    model: ModelStamp,
    hparams: BTreeMap<String, MetaValue>,
    after: impl FnMut(&str, &Graph),
) -> Result<Plan, PassError> {
    let log = optimize(&mut graph, selection, after)?;
    Ok(Plan::from_graph(&graph, family, model, hparams, log))
}
