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

pub use memory::{activation_bytes, last_uses, plan_memory, plan_memory_with_views, MemoryPlan};
pub use stage::{
    after_last, backend_stage, kv_layers, kv_widths, value_rows, MatKernel, Route, Stage,
};
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

/// A greedy step's choice from one logits row.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Pick {
    /// The largest logit's id (the first on ties), as llama.cpp and torch pick.
    Token(u32),
    /// The first logit that is NaN or infinite: an error for the caller to report.
    NonFinite { id: u32, value: f32 },
}

/// The index of the largest value (the first on ties).
pub fn argmax(row: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &v) in row.iter().enumerate() {
        if v > row[best] {
            best = i;
        }
    }
    best as u32
}

/// The first value of `row` that is NaN or infinite, as (index, value).
pub fn first_non_finite(row: &[f32]) -> Option<(usize, f32)> {
    row.iter()
        .copied()
        .enumerate()
        .find(|(_, v)| !v.is_finite())
}

/// What a greedy step picks from `row`, on the host.
pub fn pick(row: &[f32]) -> Pick {
    match first_non_finite(row) {
        Some((id, value)) => Pick::NonFinite {
            id: id as u32,
            value,
        },
        None => Pick::Token(argmax(row)),
    }
}

/// The most candidates [`Session::forward_top`] reads back: a sampler's top-k (40 by
/// default) plus the distinct tokens its repetition penalty may demote, within one
/// GPU workgroup's sort.
pub const MAX_TOP_K: usize = 256;

/// A sampled step's candidates from one logits row.
#[derive(Clone, Debug, PartialEq)]
pub enum Top {
    /// The largest `(logit, id)` pairs, by logit descending then id ascending.
    Candidates(Vec<(f32, u32)>),
    /// The first logit that is NaN or infinite: an error for the caller to report.
    NonFinite { id: u32, value: f32 },
}

/// The order of candidates: value descending (`total_cmp`, so -0 follows +0), then id
/// ascending. A strict total order over distinct ids, so every top-k is one set in one
/// order whichever way it was found.
pub fn by_value_desc(a: &(f32, u32), b: &(f32, u32)) -> std::cmp::Ordering {
    b.0.total_cmp(&a.0).then(a.1.cmp(&b.1))
}

/// Refuses a candidate count outside `1..=MAX_TOP_K` (a count over the vocabulary is
/// clamped to it by [`top_k`] and the backends).
pub fn check_top_k(k: usize) -> Result<(), BackendError> {
    match (1..=MAX_TOP_K).contains(&k) {
        true => Ok(()),
        false => Err(BackendError::TopK { k }),
    }
}

/// The `k` largest values of `row` (all of them where `k` exceeds its length) in
/// [`by_value_desc`] order, or its first non-finite value, on the host.
pub fn top_k(row: &[f32], k: usize) -> Top {
    if let Some((id, value)) = first_non_finite(row) {
        return Top::NonFinite {
            id: id as u32,
            value,
        };
    }
    let k = k.min(row.len());
    if k == 0 {
        return Top::Candidates(Vec::new());
    }
    // At most 2k pairs held, not the row (a sampled step's path): when they fill, the
    // best k stay and the k-th becomes the bar a later value must beat (ids rise, so a
    // tie with it sorts after it).
    let mut c: Vec<(f32, u32)> = Vec::with_capacity(2 * k);
    let mut bar = None;
    let best_k = |c: &mut Vec<(f32, u32)>| {
        if c.len() > k {
            c.select_nth_unstable_by(k - 1, by_value_desc);
            c.truncate(k);
        }
    };
    for e in row.iter().copied().zip(0..) {
        if bar.is_some_and(|b| by_value_desc(&e, &b).is_ge()) {
            continue;
        }
        if c.len() == 2 * k {
            best_k(&mut c);
            bar = c.last().copied();
            if bar.is_some_and(|b| by_value_desc(&e, &b).is_ge()) {
                continue;
            }
        }
        c.push(e);
    }
    best_k(&mut c);
    c.sort_unstable_by(by_value_desc);
    Top::Candidates(c)
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

/// What a session's KV cache stores its keys and values as.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum KvType {
    /// f32, as the graph computes them (the exact mode).
    #[default]
    F32,
    /// f16 (IEEE half): half the cache's memory, keys and values rounded to 11 bits.
    F16,
}

/// Options of the backend stage.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LowerOptions {
    /// Plan an activation arena (else every value keeps its own buffer).
    pub memory: bool,
    pub activations: Activations,
    pub kv: KvType,
    /// Compile what the backend can compile (the cpu backend's JIT); off: interpret
    /// every op, to measure what the JIT buys.
    pub jit: bool,
}

impl Default for LowerOptions {
    fn default() -> Self {
        LowerOptions {
            memory: true,
            activations: Activations::default(),
            kv: KvType::default(),
            jit: true,
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
        "cannot rewind to position {to}: a sliding-window layer's ring keeps positions from {held_from} on, and position {to} reads earlier ones; rewind to 0 and run the tokens again"
    )]
    Rewind { to: usize, held_from: usize },
    #[error(
        "token id {id} (position {pos}) is out of range for '{tensor}', which has {rows} rows"
    )]
    TokenOutOfRange {
        tensor: String,
        id: u32,
        pos: usize,
        rows: usize,
    },
    #[error("top-k of {k} candidates: a step reads back 1 to {max}", max = MAX_TOP_K)]
    TopK { k: usize },
    #[error("empty step: no tokens given")]
    NoTokens,
    #[error("out of memory: {what} needs {bytes} bytes")]
    Alloc { what: String, bytes: u128 },
    /// The device a backend runs on is missing or failed (no GPU adapter, a lost device).
    #[error("{backend}: {message}")]
    Device {
        backend: &'static str,
        message: String,
    },
    /// A step's output holds a value that is not finite (found by a checked rerun).
    #[error("step {step} ('{name}', {op}): {value} in its output")]
    NonFinite {
        step: usize,
        name: String,
        op: String,
        value: f32,
    },
    /// A batched step whose sessions or tokens do not fit together.
    #[error("batched step: {0}")]
    Batch(String),
    #[error("step {step} ('{name}'): the {backend} backend cannot run {what}")]
    Unsupported {
        step: usize,
        name: String,
        what: String,
        backend: &'static str,
    },
}

/// The checks every session makes before a forward call of `seq` positions at `pos`.
pub fn check_forward(pos: usize, seq: usize, max_ctx: usize) -> Result<(), BackendError> {
    if seq == 0 {
        return Err(BackendError::NoTokens);
    }
    match pos.checked_add(seq) {
        Some(needed) if needed <= max_ctx => Ok(()),
        needed => Err(BackendError::ContextFull {
            needed: needed.unwrap_or(usize::MAX),
            max_ctx,
        }),
    }
}

/// The position a session rewinds to: `to`, a prefix of the `position` it holds.
pub fn check_truncate(to: usize, position: usize) -> Result<usize, BackendError> {
    match to <= position {
        true => Ok(to),
        false => Err(BackendError::Truncate { to, position }),
    }
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
    /// One decode step of several sessions of this executable: `tokens[i]` runs at
    /// session `i`'s next position, and `out` receives `sessions.len() × vocab` logits,
    /// in order. A backend with a batched pass runs them as one matrix-matrix forward
    /// (continuous batching); by default they run one after another. After an error the
    /// sessions' positions are unspecified: rewind them before reuse.
    fn forward_batch(
        &self,
        sessions: &mut [&mut dyn Session],
        tokens: &[u32],
        out: &mut Vec<f32>,
    ) -> Result<(), BackendError> {
        check_batch(sessions.len(), tokens.len())?;
        out.clear();
        for (s, &t) in sessions.iter_mut().zip(tokens) {
            out.extend_from_slice(s.forward(&[t], Logits::Last)?.last());
        }
        Ok(())
    }
}

/// A batch has one token per session.
pub fn check_batch(sessions: usize, tokens: usize) -> Result<(), BackendError> {
    match sessions == tokens {
        true => Ok(()),
        false => Err(BackendError::Batch(format!(
            "one token per session: {sessions} sessions, {tokens} tokens"
        ))),
    }
}

/// One sequence on an executable: KV cache, arena, position.
pub trait Session: Send {
    /// Runs `tokens` at the next positions (all at once) and returns their logits.
    fn forward(&mut self, tokens: &[u32], which: Logits) -> Result<Output<'_>, BackendError>;
    /// Runs `tokens` like [`Session::forward`] and picks the last position's largest
    /// logit, as a greedy step does. A backend that can pick on the device overrides it
    /// to read back the choice rather than the logits row.
    fn forward_pick(&mut self, tokens: &[u32]) -> Result<Pick, BackendError> {
        Ok(pick(self.forward(tokens, Logits::Last)?.last()))
    }
    /// Runs `tokens` like [`Session::forward`] and returns the last position's `k`
    /// largest logits ([`top_k`]; `k` in `1..=MAX_TOP_K`, clamped to the vocabulary), as
    /// a sampled step needs. A backend that can select on the device overrides it to
    /// read back the candidates rather than the logits row.
    fn forward_top(&mut self, tokens: &[u32], k: usize) -> Result<Top, BackendError> {
        check_top_k(k)?;
        Ok(top_k(self.forward(tokens, Logits::Last)?.last(), k))
    }
    /// Rewinds to `pos` positions (a prefix of what was run); later forwards overwrite
    /// the cache from there. Only to a [`Session::rewind_point`].
    fn truncate(&mut self, pos: usize) -> Result<(), BackendError>;
    /// The longest prefix of at most `pos` positions that [`Session::truncate`] can keep:
    /// `pos` (or the positions held, if fewer), or 0 where a sliding-window layer's ring
    /// has overwritten positions that `pos` reads.
    fn rewind_point(&self, pos: usize) -> usize {
        pos.min(self.position())
    }
    /// Positions held in the KV cache.
    fn position(&self) -> usize;
    /// Positions the KV cache can hold.
    fn max_ctx(&self) -> usize;
    /// The session as `Any`, so that its executable can batch it with others.
    fn as_any_mut(&mut self) -> &mut dyn std::any::Any;
    /// Reruns the last forward call, of `tokens`, checking every step's output, and
    /// names the first step whose output holds a value that is not finite ("step N
    /// ('name', op)"). `None` where the backend has no such check.
    fn locate_non_finite(&mut self, _tokens: &[u32]) -> Result<Option<String>, BackendError> {
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Value descending, then id ascending (+0 before -0); a count past the row is
    /// clamped; a non-finite value anywhere is the answer.
    #[test]
    fn host_top_k_orders_ties_by_id() {
        let row = [1.0, 3.0, 3.0, -0.0, 0.0, 2.0];
        let top = |k| match top_k(&row, k) {
            Top::Candidates(c) => c.iter().map(|&(_, id)| id).collect::<Vec<_>>(),
            t => panic!("{t:?}"),
        };
        assert_eq!(top(1), [1]);
        assert_eq!(top(4), [1, 2, 5, 0]);
        assert_eq!(top(10), [1, 2, 5, 0, 4, 3]);
        assert_eq!(top(0), [0u32; 0]);
        let row = [1.0, f32::NEG_INFINITY, f32::NAN];
        assert_eq!(
            top_k(&row, 2),
            Top::NonFinite {
                id: 1,
                value: f32::NEG_INFINITY
            }
        );
        assert!(check_top_k(0).is_err() && check_top_k(MAX_TOP_K + 1).is_err());
        assert!(check_top_k(1).is_ok() && check_top_k(MAX_TOP_K).is_ok());
    }
}
