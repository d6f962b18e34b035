//! One generation on a leased slot, run on a blocking thread: prefill only what the
//! slot's cache does not already hold, then decode, sending text as it becomes final
//! (whole characters, nothing that may begin a stop string) until a stop, the token
//! budget, a client that went away, or shutdown.

use super::batch::{Batcher, Decoder};
use super::protocol::{ApiError, Usage};
use super::slots::Lease;
use crate::tokenizer::StreamDecoder;
use crate::{generate_from, Forward, GenParams, Model, StopReason, StopStrings};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tokio::sync::mpsc::UnboundedSender;

/// What a generation tells the request handler, in order: text, then one `Done` or
/// one `Failed`.
#[derive(Debug)]
pub(crate) enum Event {
    Text(String),
    Done { finish: &'static str, usage: Usage },
    Failed(ApiError),
}

/// A generation to run.
pub(crate) struct Job {
    pub id: String,
    pub prompt: Vec<u32>,
    pub params: GenParams,
    pub stops: Vec<String>,
}

/// Runs `job` on the leased slot; every outcome ends in one event on `tx` (unless the
/// receiver is gone), sent after the lease went back to the pool.
pub(crate) fn run(
    mut lease: Lease,
    job: Job,
    model: &Model,
    batcher: &Batcher,
    closing: &AtomicBool,
    tx: UnboundedSender<Event>,
    log: &(dyn Fn(&str) + Send + Sync),
) {
    let Some(tok) = model.tokenizer.as_ref() else {
        drop(lease);
        let _ = tx.send(Event::Failed(ApiError::internal(
            "the model has no tokenizer",
        )));
        return;
    };
    let slot = lease.slot();
    let reuse = match slot.session.as_ref() {
        Some(session) => crate::executor::reusable(session, &slot.cached, &job.prompt),
        None => 0,
    };
    // Until this generation succeeds, the session holds no more than the shared prefix.
    slot.cached.truncate(reuse);
    let mut stream = StreamDecoder::new();
    let mut stops = StopStrings::new(&job.stops);
    let (mut stopped, mut cancelled) = (false, false);
    let mut decoder = Decoder::new(&mut slot.session, batcher);
    let result = generate_from(&mut decoder, reuse, &job.prompt, &job.params, |id| {
        if closing.load(Ordering::Relaxed) || tx.is_closed() {
            cancelled = true;
            return false;
        }
        let (piece, stop) = stops.push(&stream.push(tok, id));
        if !piece.is_empty() && tx.send(Event::Text(piece)).is_err() {
            cancelled = true;
            return false;
        }
        stopped = stop;
        !stop
    });
    drop(decoder);
    let pool = Arc::clone(lease.pool());
    let g = match result {
        Ok(g) => g,
        Err(e) => {
            // The session's state is unknown after a failed step: cache nothing.
            lease.slot().cached.clear();
            pool.record(|s| {
                s.requests += 1;
                s.errors += 1;
            });
            log(&format!("{}: failed: {e}", job.id));
            drop(lease);
            let _ = tx.send(Event::Failed(ApiError::internal(e.to_string())));
            return;
        }
    };
    // Every token but the last sampled one went through the model.
    let slot = lease.slot();
    let held = slot.session.as_ref().map_or(0, Forward::position);
    slot.cached = job
        .prompt
        .iter()
        .chain(&g.tokens)
        .copied()
        .take(held)
        .collect();
    let index = slot.index;
    let usage = Usage {
        prompt_tokens: g.prompt_tokens.len(),
        completion_tokens: g.tokens.len(),
        cached_tokens: g.reused_tokens,
    };
    let prefilled = usage.prompt_tokens - usage.cached_tokens;
    pool.record(|s| {
        s.requests += 1;
        s.hits += u64::from(g.reused_tokens > 0);
        s.prompt_tokens += usage.prompt_tokens as u64;
        s.reused_tokens += usage.cached_tokens as u64;
        s.prefilled_tokens += prefilled as u64;
        s.completion_tokens += usage.completion_tokens as u64;
        s.prefill_secs += g.prefill_secs;
        if g.reused_tokens == 0 {
            s.cold_prefill_secs += g.prefill_secs;
            s.cold_prefill_tokens += usage.prompt_tokens as u64;
        }
        s.decode_secs += g.decode_secs;
        s.cancelled += u64::from(cancelled);
    });
    let finish = match (g.stop, stopped) {
        (_, true) | (StopReason::Eos, _) => "stop",
        _ => "length",
    };
    let total = g.prefill_secs + g.decode_secs;
    log(&format!(
        "{}: slot {index}, {} prompt tokens ({} reused, {prefilled} prefilled), {} completion tokens, {} in {:.2} s: prefill {:.1} tok/s, decode {:.1} tok/s",
        job.id,
        usage.prompt_tokens,
        usage.cached_tokens,
        usage.completion_tokens,
        if cancelled { "cancelled" } else { finish },
        total,
        g.prefill_tokens_per_s(),
        g.decode_tokens_per_s(),
    ));
    // The slot is free again before the client hears the end: its next request (the
    // next turn of a conversation) finds the slot that holds its prefix.
    drop(lease);
    if cancelled {
        let why = match closing.load(Ordering::Relaxed) {
            true => "the server is shutting down",
            false => "the client went away",
        };
        let _ = tx.send(Event::Failed(ApiError::unavailable(
            format!("generation cancelled: {why}"),
            "cancelled",
        )));
        return;
    }
    if !stopped {
        let (tail, _) = stops.push(&stream.finish());
        let rest = tail + &stops.finish();
        if !rest.is_empty() {
            let _ = tx.send(Event::Text(rest));
        }
    }
    let _ = tx.send(Event::Done { finish, usage });
}
