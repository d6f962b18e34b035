//! Continuous batching of decode steps. Every generation prefills on its own thread;
//! its decode steps go to one batcher thread, which gathers the pending step of every
//! decoding generation and runs them as one matrix-matrix pass
//! ([`Engine::forward_batch`]), then hands each its row of logits. A generation joins
//! the next pass as soon as its prompt is in and leaves when it ends: no waiting for
//! the others to finish.
//!
//! The session travels with its step (moved to the batcher and back), so no session is
//! ever shared. The batcher waits for the steps of all decoding generations, but never
//! longer than [`GATHER`] after the first: a generation busy elsewhere delays the others
//! by that much at most.

use super::slots::Pool;
use crate::{Engine, Forward, GraphSession, RuntimeError};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The longest a pass waits for the steps of decoding generations after the first
/// step arrived (the time a generation needs between steps is sampling and sending
/// text: microseconds).
const GATHER: Duration = Duration::from_millis(3);

/// One generation's decode step, and where its answer goes.
struct Step {
    session: GraphSession,
    token: u32,
    /// The generation's logits buffer, filled and sent back (no allocation per step).
    logits: Vec<f32>,
    reply: Sender<Reply>,
}

struct Reply {
    session: GraphSession,
    logits: Vec<f32>,
    result: Result<(), RuntimeError>,
}

/// The handle generations submit their steps through.
pub(crate) struct Batcher {
    steps: Sender<Step>,
    /// Generations between their first decode step and their end.
    decoding: Arc<AtomicUsize>,
}

impl Batcher {
    /// Starts the batcher thread on `engine`; it records its passes in `pool`'s stats
    /// and ends when the handle is dropped.
    pub fn start(engine: Engine, pool: Arc<Pool>) -> Result<Batcher, RuntimeError> {
        let (steps, rx) = channel();
        let decoding = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&decoding);
        std::thread::Builder::new()
            .name("weft-batcher".into())
            .spawn(move || run(&engine, &pool, &rx, &counted))
            .map_err(|e| RuntimeError::Serve(format!("starting the decode batcher: {e}")))?;
        Ok(Batcher { steps, decoding })
    }
}

/// Gathers steps and runs them until every handle is gone.
fn run(engine: &Engine, pool: &Pool, rx: &Receiver<Step>, decoding: &AtomicUsize) {
    // Reused by every pass.
    let (mut out, mut tokens, mut before) = (Vec::new(), Vec::new(), Vec::new());
    let mut batch = Vec::new();
    while let Ok(first) = rx.recv() {
        batch.push(first);
        let deadline = Instant::now() + GATHER;
        while batch.len() < decoding.load(Ordering::Acquire) {
            match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(step) => batch.push(step),
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => break,
            }
        }
        pool.record(|s| {
            s.batched_passes += 1;
            s.batched_rows += batch.len() as u64;
        });
        pass(engine, &mut batch, &mut out, &mut tokens, &mut before);
    }
}

/// Runs one pass over `batch` and answers every step, emptying it. After a failed pass each step
/// is rewound and run alone, so that only the failing generation hears of its error.
fn pass(
    engine: &Engine,
    batch: &mut Vec<Step>,
    out: &mut Vec<f32>,
    tokens: &mut Vec<u32>,
    before: &mut Vec<usize>,
) {
    tokens.clear();
    tokens.extend(batch.iter().map(|s| s.token));
    before.clear();
    before.extend(batch.iter().map(|s| s.session.position()));
    let mut sessions: Vec<&mut GraphSession> = batch.iter_mut().map(|s| &mut s.session).collect();
    let results: Vec<Result<(), RuntimeError>> =
        match engine.forward_batch(&mut sessions, tokens, out) {
            Ok(()) => {
                let vocab = (out.len() / batch.len().max(1)).max(1);
                for (step, row) in batch.iter_mut().zip(out.chunks_exact(vocab)) {
                    step.logits.clear();
                    step.logits.extend_from_slice(row);
                }
                batch.iter().map(|_| Ok(())).collect()
            }
            Err(_) if batch.len() > 1 => batch
                .iter_mut()
                .zip(before.iter())
                .map(|(step, &pos)| {
                    step.session.truncate(pos)?;
                    engine.forward_batch(&mut [&mut step.session], &[step.token], out)?;
                    step.logits.clear();
                    step.logits.extend_from_slice(out);
                    Ok(())
                })
                .collect(),
            Err(e) => vec![Err(e)],
        };
    for (step, result) in batch.drain(..).zip(results) {
        // A generation that went away has dropped its receiver: nothing to tell.
        let _ = step.reply.send(Reply {
            session: step.session,
            logits: step.logits,
            result,
        });
    }
}

fn lost() -> RuntimeError {
    RuntimeError::Serve("the slot's session was lost with the decode batcher".into())
}

/// A generation's session as [`Forward`]: prompts run on the calling thread, single
/// decode steps through the batcher.
pub(crate) struct Decoder<'a> {
    /// `None` only while a step is at the batcher (or was lost with it).
    session: &'a mut Option<GraphSession>,
    batcher: &'a Batcher,
    logits: Vec<f32>,
    replies: (Sender<Reply>, Receiver<Reply>),
    /// Counted in the batcher's decoding generations.
    counted: bool,
}

impl<'a> Decoder<'a> {
    pub fn new(session: &'a mut Option<GraphSession>, batcher: &'a Batcher) -> Self {
        Decoder {
            session,
            batcher,
            logits: Vec::new(),
            replies: channel(),
            counted: false,
        }
    }

    fn session(&mut self) -> Result<&mut GraphSession, RuntimeError> {
        self.session.as_mut().ok_or_else(lost)
    }

    fn step(&mut self, token: u32) -> Result<&[f32], RuntimeError> {
        let session = self.session.take().ok_or_else(lost)?;
        if !self.counted {
            self.batcher.decoding.fetch_add(1, Ordering::AcqRel);
            self.counted = true;
        }
        let step = Step {
            session,
            token,
            logits: std::mem::take(&mut self.logits),
            reply: self.replies.0.clone(),
        };
        self.batcher.steps.send(step).map_err(|_| lost())?;
        let reply = self.replies.1.recv().map_err(|_| lost())?;
        *self.session = Some(reply.session);
        self.logits = reply.logits;
        reply.result?;
        Ok(&self.logits)
    }
}

impl Drop for Decoder<'_> {
    fn drop(&mut self) {
        if self.counted {
            self.batcher.decoding.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

impl Forward for Decoder<'_> {
    fn forward(&mut self, tokens: &[u32]) -> Result<&[f32], RuntimeError> {
        match tokens {
            [token] => self.step(*token),
            _ => self.session()?.forward(tokens),
        }
    }

    fn reset(&mut self) {
        if let Ok(s) = self.session() {
            s.reset()
        }
    }

    fn truncate(&mut self, pos: usize) -> Result<(), RuntimeError> {
        self.session()?.truncate(pos)
    }

    fn position(&self) -> usize {
        self.session.as_ref().map_or(0, |s| s.position())
    }

    fn rewind_point(&self, pos: usize) -> usize {
        self.session.as_ref().map_or(0, |s| s.rewind_point(pos))
    }
}
