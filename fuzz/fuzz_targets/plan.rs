//! Any bytes as a plan file: parsed, validated, lowered onto both host backends with
//! the seed model's weights, and run for a few tokens. (The GPU backend runs the same
//! `validate_plan` first; it is left out here so that fuzzing needs no Vulkan driver.)
#![no_main]
use libfuzzer_sys::fuzz_target;
use weft_ir::Plan;
use weft_runtime::{BackendKind, Logits, LowerOptions};

fuzz_target!(|data: &[u8]| {
    let Ok(plan) = serde_json::from_slice::<Plan>(data) else {
        return;
    };
    for backend in [BackendKind::Reference, BackendKind::Cpu] {
        let lowered = backend.backend().lower(
            plan.clone(),
            weft_fuzz::seed_model(),
            &LowerOptions::default(),
        );
        let Ok(exe) = lowered else {
            continue;
        };
        std::hint::black_box(exe.lowered_text());
        let Ok(mut s) = exe.session(8) else {
            continue;
        };
        let _ = s.forward(&[2, 3], Logits::All).map(|o| o.rows);
        let _ = s.forward(&[4], Logits::Last).map(|o| o.rows);
        let _ = s.truncate(1);
    }
});
