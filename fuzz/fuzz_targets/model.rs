//! Any bytes as a GGUF model, end to end: open (with its tokenizer), compile, lower
//! onto the reference backend, generate; and the curated decoder on the same file.
#![no_main]
use libfuzzer_sys::fuzz_target;
use weft_runtime::{BackendKind, LowerOptions, Model, PassSelection};

fuzz_target!(|data: &[u8]| {
    weft_fuzz::seed_model(); // one compute thread
    let path = weft_fuzz::scratch_file("m.gguf", data);
    let Ok(model) = Model::open(path.to_str().unwrap(), &mut |_| {}) else {
        return;
    };
    let prompt = model.encode("ab cd").unwrap_or_else(|_| vec![2, 3]);
    if prompt.is_empty() {
        return;
    }
    if let Ok(c) = model.compile_for(&PassSelection::all(), BackendKind::Reference) {
        let engine = model.engine(c.plan, BackendKind::Reference, &LowerOptions::default());
        if let Ok(mut s) = engine.and_then(|e| e.session(8)) {
            weft_fuzz::run_briefly(&mut s, &prompt);
        }
    }
    if let Ok(mut c) = model.curated(8) {
        weft_fuzz::run_briefly(&mut c, &prompt);
    }
});
