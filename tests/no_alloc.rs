//! A decode step on the cpu backend allocates nothing: weights, caches, the arena and
//! the JIT's code are made at load, scratch buffers on the first steps; every later
//! step reuses them. A counting allocator sees every allocation of every thread of
//! this process (one test, so no other test runs beside it).
//!
//! The test calls forward from a pool thread. A forward called from outside the pool
//! (as the CLI's and the server's generation threads do) hands its step loop to the
//! pool through rayon's injector queue, which allocates a block (about 1.5 KB) every
//! 63 hand-offs: one allocation per 63 tokens, rayon's rather than weft's.

mod common;
use common::*;
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use weft_runtime::{Activations, BackendKind, Forward, KvType, LowerOptions, PassSelection};

struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn decode_steps_allocate_nothing() {
    rayon::join(decode_on_a_pool_thread, || ());
}

fn decode_on_a_pool_thread() {
    for name in ["smollm2-135m", "gemma3-270m"] {
        let model = open_shared(name);
        let plan = model.compile(&PassSelection::all()).unwrap().plan;
        let modes = [
            (Activations::F32, KvType::F32),
            (Activations::Int8, KvType::F32),
            (Activations::F32, KvType::F16),
        ];
        for (activations, kv) in modes {
            let options = LowerOptions {
                activations,
                kv,
                ..LowerOptions::default()
            };
            let engine = model
                .engine(plan.clone(), BackendKind::Cpu, &options)
                .unwrap();
            // Steps past 128 keys split attention into chunks: the measured steps
            // cross 384 keys, where a fourth chunk's partial sums join.
            let mut s = engine.session(512).unwrap();
            let prompt: Vec<u32> = (1..=330).collect();
            s.forward(&prompt).unwrap();
            // The first steps size the arena for one row, start the thread pool and
            // fill each pool thread's scratch buffers, which a thread sizes when it
            // first runs a step's kernels (any thread of the pool may run a step).
            for t in 0..48 {
                s.forward(&[5 + t]).unwrap();
            }
            let before = ALLOCATIONS.load(Ordering::SeqCst);
            for t in 0..16 {
                let logits = s.forward(&[40 + t]).unwrap();
                assert!(logits.iter().all(|v| v.is_finite()));
            }
            let n = ALLOCATIONS.load(Ordering::SeqCst) - before;
            assert_eq!(
                n, 0,
                "{name} ({activations:?}, KV {kv:?}): {n} allocations in 16 decode steps"
            );
        }
    }
}
