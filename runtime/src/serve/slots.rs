//! Slots: N sessions on one engine, each remembering the tokens whose KV rows it holds.
//! A request is admitted while fewer than N + Q are in (else 503), waits for a free slot
//! in arrival order, and takes the free slot whose cached tokens share the longest prefix
//! with its prompt (the prefix cache); the lease puts the slot back when dropped.

use crate::executor::common_prefix;
use crate::GraphSession;
use serde::Serialize;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// One sequence of the pool.
pub(crate) struct Slot {
    pub index: usize,
    /// Away only during a decode step at the batcher.
    pub session: Option<GraphSession>,
    /// The tokens whose KV rows the session holds, in order.
    pub cached: Vec<u32>,
    /// When it was last handed out (a tick of the pool's clock), to break ties.
    last_used: u64,
}

/// Prefix-cache and throughput counters since the server started.
#[derive(Clone, Debug, Default, Serialize)]
pub(crate) struct Stats {
    /// Generations run (successful or not).
    pub requests: u64,
    /// Requests that reused at least one cached token.
    pub hits: u64,
    pub prompt_tokens: u64,
    /// Prompt tokens whose KV rows came from a slot's cache.
    pub reused_tokens: u64,
    /// Prompt tokens that went through prefill.
    pub prefilled_tokens: u64,
    pub completion_tokens: u64,
    pub prefill_secs: f64,
    /// Prefill time and tokens of the requests that reused nothing (the cold rate).
    pub cold_prefill_secs: f64,
    pub cold_prefill_tokens: u64,
    pub decode_secs: f64,
    /// Batched decode passes run, and the steps (rows) in them: their ratio is the
    /// mean batch.
    pub batched_passes: u64,
    pub batched_rows: u64,
    /// Requests refused with 503 because every slot and queue place was taken.
    pub rejected_busy: u64,
    /// Generations ended early because their client went away or the server shut down.
    pub cancelled: u64,
    pub errors: u64,
}

impl Stats {
    /// An estimate of the prefill time the reused tokens saved: their count at the
    /// prefill rate of the requests that reused nothing (0 before there is one).
    pub fn saved_secs(&self) -> f64 {
        match self.cold_prefill_tokens {
            0 => 0.0,
            n => self.reused_tokens as f64 * self.cold_prefill_secs / n as f64,
        }
    }
}

pub(crate) struct Pool {
    free: Mutex<Vec<Slot>>,
    /// One permit per free slot; closed at shutdown, which turns the waiting away.
    permits: Arc<Semaphore>,
    /// Requests holding or waiting for a slot.
    admitted: AtomicUsize,
    slots: usize,
    queue: usize,
    clock: AtomicU64,
    stats: Mutex<Stats>,
}

/// Locks `m` even when a thread panicked holding it (the data is counters and slots,
/// each left whole by every critical section).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Pool {
    /// A pool of these sessions, admitting `queue` waiting requests beyond them.
    pub fn new(sessions: Vec<GraphSession>, queue: usize) -> Arc<Pool> {
        let slots = sessions.len();
        Arc::new(Pool {
            free: Mutex::new(
                sessions
                    .into_iter()
                    .enumerate()
                    .map(|(index, session)| Slot {
                        index,
                        session: Some(session),
                        cached: Vec::new(),
                        last_used: 0,
                    })
                    .collect(),
            ),
            permits: Arc::new(Semaphore::new(slots)),
            admitted: AtomicUsize::new(0),
            slots,
            queue,
            clock: AtomicU64::new(0),
            stats: Mutex::new(Stats::default()),
        })
    }

    /// A place in the server (a slot now, or one of the queue's), or `None` when all
    /// N + Q are taken.
    pub fn admit(self: &Arc<Self>) -> Option<Admission> {
        let limit = self.slots + self.queue;
        let taken = self
            .admitted
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < limit).then_some(n + 1)
            });
        match taken {
            Ok(_) => Some(Admission(Arc::clone(self))),
            Err(_) => {
                lock(&self.stats).rejected_busy += 1;
                None
            }
        }
    }

    /// Waits (in arrival order) for a free slot and takes the one sharing the longest
    /// prefix with `prompt`; `None` once the pool is closed.
    pub async fn acquire(self: &Arc<Self>, admission: Admission, prompt: &[u32]) -> Option<Lease> {
        let permit = Arc::clone(&self.permits).acquire_owned().await.ok()?;
        let mut free = lock(&self.free);
        // A permit stands for a free slot, so the list is not empty.
        let best = (0..free.len()).max_by_key(|&i| {
            let s = &free[i];
            // Longest shared prefix; among equals, the least recently used slot (so a
            // request with nothing in common spares the warm caches).
            (
                common_prefix(&s.cached, prompt),
                std::cmp::Reverse(s.last_used),
            )
        })?;
        let mut slot = free.swap_remove(best);
        slot.last_used = self.clock.fetch_add(1, Ordering::Relaxed) + 1;
        Some(Lease {
            slot: Some(slot),
            pool: Arc::clone(self),
            _permit: permit,
            _admission: admission,
        })
    }

    /// Turns away every waiting and later request.
    pub fn close(&self) {
        self.permits.close();
    }

    pub fn record(&self, f: impl FnOnce(&mut Stats)) {
        f(&mut lock(&self.stats))
    }

    pub fn stats(&self) -> Stats {
        lock(&self.stats).clone()
    }

    /// (slots, busy slots, requests waiting for one).
    pub fn occupancy(&self) -> (usize, usize, usize) {
        let free = lock(&self.free).len();
        let busy = self.slots - free;
        let admitted = self.admitted.load(Ordering::Acquire);
        (self.slots, busy, admitted.saturating_sub(busy))
    }
}

/// A request's place in the pool; dropping it (served, or the client left while
/// queued) frees the place.
pub(crate) struct Admission(Arc<Pool>);

impl Drop for Admission {
    fn drop(&mut self) {
        self.0.admitted.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A slot taken from the pool; dropping it gives the slot back.
pub(crate) struct Lease {
    slot: Option<Slot>,
    pool: Arc<Pool>,
    // Dropped after the slot is back in the list (fields drop after `drop`).
    _permit: OwnedSemaphorePermit,
    _admission: Admission,
}

impl Lease {
    pub fn pool(&self) -> &Arc<Pool> {
        &self.pool
    }

    pub fn slot(&mut self) -> &mut Slot {
        // Only `drop` takes it.
        self.slot
            .as_mut()
            .expect("a lease holds its slot until dropped")
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Some(mut slot) = self.slot.take() {
            if std::thread::panicking() {
                // What the session holds is unknown: reuse nothing of it.
                slot.cached.clear();
            }
            lock(&self.pool.free).push(slot);
        }
    }
}
