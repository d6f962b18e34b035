//! The seam between the compiler and the backends.
//!
//! A [`Backend`] names itself, says which fused forms it declines, and lowers a
//! backend-neutral [`Plan`] with a [`WeightProvider`] into an [`Executable`]: the plan
//! after the backend stage (kernel routing, memory planning, weights bound once),
//! shared by any number of threads. An executable opens [`Session`]s; each owns its KV
//! cache, activation arena and position, so many conversations run on one set of weights.
//!
//! Invariant: this crate knows no model family, no file format and no particular
//! backend. Every plan is checked by [`validate_plan`] before a backend reads it, so a
//! malformed plan file is one error naming the step, never a panic.

mod memory;
mod stage;
mod validate;

pub use memory::{activation_bytes, plan_memory, MemoryPlan};
pub use stage::{backend_stage, MatKernel, Route, Stage};
pub use validate::validate_plan;

/// Refuses a plan that uses a fused form `backend` declines (a plan compiled for
/// another backend), naming the first such step.
pub fn check_declined(
    plan: &Plan,
    backend: &'static str,
    declined: &[&str],
) -> Result<(), BackendError> {
    for (i, st) in plan.steps.iter().enumerate() {
        let forms = weft_passes::fused_forms(&st.node.op, st.inputs.len());
        if let Some(form) = forms.into_iter().find(|f| declined.contains(f)) {
            return Err(BackendError::Declined {
                step: i,
                name: st.node.name.clone(),
                form: form.to_string(),
                backend,
            });
        }
    }
    Ok(())
}

use std::sync::Arc;
use weft_ir::{Plan, WeightProvider};

/// Which logits a forward call returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Logits {
    /// The last position's row only (generation).
    Last,
    /// One row per position of the call (scoring, speculative checks, parity).
    All,
}

/// Logits of one forward call: `rows × vocab`, row-major.
#[derive(Clone, Copy, Debug)]
pub struct Output<'a> {
    pub logits: &'a [f32],
    pub rows: usize,
}

impl<'a> Output<'a> {
    pub fn vocab(&self) -> usize {
        self.logits.len() / self.rows.max(1)
    }

    /// The last row.
    pub fn last(&self) -> &'a [f32] {
        &self.logits[self.logits.len() - self.vocab()..]
    }
}

/// What a quantised matmul multiplies its weight blocks with.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Activations {
    /// f32 activations, as the graph computes them (the exact mode).
    #[default]
    F32,
    /// Activations quantised to 8-bit blocks for integer dot products, as llama.cpp
    /// does; a backend without such kernels runs f32.
    Int8,
}

/// Options of the backend stage.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LowerOptions {
    /// Plan an activation arena (else every value keeps its own buffer).
    pub memory: bool,
    pub activations: Activations,
}

impl Default for LowerOptions {
    fn default() -> Self {
        LowerOptions {
            memory: true,
            activations: Activations::default(),
        }
    }
}

/// Everything lowering or running a plan can report; each names what it is about.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error("step {step} ('{name}'): {message}")]
    BadPlan {
        step: usize,
        name: String,
        message: String,
    },
    #[error("the plan needs tensor '{0}', which the model does not provide")]
    MissingWeight(String),
    #[error("tensor '{tensor}': the plan expects {expected}, the model has {found}")]
    WeightMismatch {
        tensor: String,
        expected: String,
        found: String,
    },
    #[error("step {step} ('{name}'): the {backend} backend does not run {form}; compile the plan with --backend {backend}")]
    Declined {
        step: usize,
        name: String,
        form: String,
        backend: &'static str,
    },
    #[error("context full: {needed} positions needed, the KV cache holds {max_ctx}")]
    ContextFull { needed: usize, max_ctx: usize },
    #[error("cannot truncate to position {to}: the session holds {position}")]
    Truncate { to: usize, position: usize },
    #[error(
        "token id {id} (position {pos}) is out of range for '{tensor}', which has {rows} rows"
    )]
    TokenOutOfRange {
        tensor: String,
        id: u32,
        pos: usize,
        rows: usize,
    },
    #[error("empty step: no tokens given")]
    NoTokens,
    #[error("out of memory: {what} needs {bytes} bytes")]
    Alloc { what: String, bytes: u128 },
}

/// A way to run plans: the reference interpreter, the fast CPU backend, a GPU.
pub trait Backend: Send + Sync {
    /// The name used in `--backend`.
    fn name(&self) -> &'static str;
    /// Fused forms (see `weft_passes::Pass::produces`) this backend cannot run;
    /// compiling for it leaves those fusions out.
    fn declined_fusions(&self) -> &'static [&'static str];
    /// Validates `plan`, runs the backend stage and binds the weights once.
    fn lower(
        &self,
        plan: Plan,
        weights: &dyn WeightProvider,
        options: &LowerOptions,
    ) -> Result<Arc<dyn Executable>, BackendError>;
}

/// A plan lowered onto a backend with its weights: immutable, shared by sessions.
pub trait Executable: Send + Sync {
    /// The backend that lowered it.
    fn backend(&self) -> &'static str;
    /// The portable plan it was lowered from.
    fn plan(&self) -> &Plan;
    /// The lowered form as text: each step with its kernel and arena slot, then the
    /// backend stage's log (`weft compile --dump lowered`).
    fn lowered_text(&self) -> String;
    /// A new session with room for `max_ctx` positions.
    fn session(self: Arc<Self>, max_ctx: usize) -> Result<Box<dyn Session>, BackendError>;
}

/// One sequence on an executable: KV cache, arena, position.
pub trait Session: Send {
    /// Runs `tokens` at the next positions (all at once) and returns their logits.
    fn forward(&mut self, tokens: &[u32], which: Logits) -> Result<Output<'_>, BackendError>;
    /// Rewinds to `pos` positions (a prefix of what was run); later forwards overwrite
    /// the cache from there.
    fn truncate(&mut self, pos: usize) -> Result<(), BackendError>;
    /// Positions held in the KV cache.
    fn position(&self) -> usize;
    /// Positions the KV cache can hold.
    fn max_ctx(&self) -> usize;
}
