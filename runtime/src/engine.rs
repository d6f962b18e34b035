//! The engine: a plan lowered onto a backend with the model's weights, shared by any
//! number of sessions (and threads); a session is one sequence with its own KV cache.

use crate::model::check_context;
use crate::{Forward, RuntimeError};
use std::sync::Arc;
use weft_backend::{Backend, Executable, Logits, Pick, Session, Top};
use weft_ir::Plan;

/// The backends this build can run plans on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BackendKind {
    /// The scalar interpreter every other backend is checked against.
    Reference,
    /// The fast CPU backend.
    Cpu,
    /// The GPU backend (wgpu over Vulkan).
    Gpu,
}

impl BackendKind {
    pub const ALL: [BackendKind; 3] = [BackendKind::Reference, BackendKind::Cpu, BackendKind::Gpu];

    pub fn backend(self) -> &'static dyn Backend {
        match self {
            BackendKind::Reference => &weft_reference::REFERENCE,
            BackendKind::Cpu => &weft_cpu::CPU,
            BackendKind::Gpu => &weft_wgpu::GPU,
        }
    }

    pub fn name(self) -> &'static str {
        self.backend().name()
    }
}

impl std::str::FromStr for BackendKind {
    type Err = RuntimeError;

    fn from_str(s: &str) -> Result<Self, RuntimeError> {
        BackendKind::ALL
            .into_iter()
            .find(|b| b.name() == s)
            .ok_or_else(|| RuntimeError::UnknownBackend(s.to_string()))
    }
}

impl std::fmt::Display for BackendKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A lowered plan with its weights: cheap to clone, `Send + Sync`.
#[derive(Clone)]
pub struct Engine {
    exe: Arc<dyn Executable>,
}

impl Engine {
    pub(crate) fn new(exe: Arc<dyn Executable>) -> Self {
        Engine { exe }
    }

    /// A new sequence with room for `max_ctx` positions.
    pub fn session(&self, max_ctx: usize) -> Result<GraphSession, RuntimeError> {
        check_context(&self.plan().hparams, max_ctx)?;
        Ok(GraphSession {
            inner: Arc::clone(&self.exe).session(max_ctx)?,
        })
    }

    pub fn backend(&self) -> &'static str {
        self.exe.backend()
    }

    pub fn plan(&self) -> &Plan {
        self.exe.plan()
    }

    /// The plan after the backend stage, as text.
    pub fn lowered_text(&self) -> String {
        self.exe.lowered_text()
    }
    /// One decode step of several sessions of this engine at once: `tokens[i]` runs at
    /// session `i`'s next position, and `out` receives one row of logits per session.
    /// The host backends run the step as one matrix-matrix pass over all the rows.
    pub fn forward_batch(
        &self,
        sessions: &mut [&mut GraphSession],
        tokens: &[u32],
        out: &mut Vec<f32>,
    ) -> Result<(), RuntimeError> {
        let mut inner: Vec<&mut dyn Session> = sessions
            .iter_mut()
            .map(|s| &mut *s.inner as &mut dyn Session)
            .collect();
        Ok(self.exe.forward_batch(&mut inner, tokens, out)?)
    }
}

/// One sequence on an [`Engine`].
pub struct GraphSession {
    inner: Box<dyn Session>,
}

impl GraphSession {
    /// Runs `tokens` at the next positions; the logits of every one of them, as
    /// `(rows × vocab, rows)`.
    pub fn forward_all(&mut self, tokens: &[u32]) -> Result<(&[f32], usize), RuntimeError> {
        let out = self.inner.forward(tokens, Logits::All)?;
        Ok((out.logits, out.rows))
    }

    /// Rewinds to the first `pos` positions (a prefix of what ran).
    pub fn truncate(&mut self, pos: usize) -> Result<(), RuntimeError> {
        Ok(self.inner.truncate(pos)?)
    }

    pub fn max_ctx(&self) -> usize {
        self.inner.max_ctx()
    }
}

impl Forward for GraphSession {
    fn forward(&mut self, tokens: &[u32]) -> Result<&[f32], RuntimeError> {
        Ok(self.inner.forward(tokens, Logits::Last)?.last())
    }

    fn forward_pick(&mut self, tokens: &[u32]) -> Result<Pick, RuntimeError> {
        Ok(self.inner.forward_pick(tokens)?)
    }

    fn forward_top(&mut self, tokens: &[u32], k: usize) -> Result<Top, RuntimeError> {
        Ok(self.inner.forward_top(tokens, k)?)
    }

    fn reset(&mut self) {
        // Position 0 is a prefix of every sequence.
        let _ = self.inner.truncate(0);
    }

    fn truncate(&mut self, pos: usize) -> Result<(), RuntimeError> {
        Ok(self.inner.truncate(pos)?)
    }

    fn position(&self) -> usize {
        self.inner.position()
    }

    fn rewind_point(&self, pos: usize) -> usize {
        self.inner.rewind_point(pos)
    }

    fn locate_non_finite(&mut self, tokens: &[u32]) -> Option<String> {
        self.inner.locate_non_finite(tokens).ok().flatten()
    }
}

impl Forward for weft_curated::Curated {
    fn forward(&mut self, tokens: &[u32]) -> Result<&[f32], RuntimeError> {
        Ok(weft_curated::Curated::forward(self, tokens)?)
    }

    fn reset(&mut self) {
        weft_curated::Curated::reset(self)
    }

    fn truncate(&mut self, pos: usize) -> Result<(), RuntimeError> {
        match weft_curated::Curated::truncate(self, pos) {
            true => Ok(()),
            false => Err(weft_backend::BackendError::Truncate {
                to: pos,
                position: self.position(),
            }
            .into()),
        }
    }

    fn position(&self) -> usize {
        weft_curated::Curated::position(self)
    }
}
