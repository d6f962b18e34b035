//! Any bytes as a GGUF file: the loader, every tensor view, the GGUF tokenizer.
#![no_main]
use libfuzzer_sys::fuzz_target;
use weft_runtime::load::ModelSource;
use weft_runtime::tokenizer::Tokenizer;

fuzz_target!(|data: &[u8]| {
    let path = weft_fuzz::scratch_file("x.gguf", data);
    let Ok(src) = ModelSource::open(&path) else {
        return;
    };
    for t in &src.tensors {
        if let Ok(v) = src.view(&t.name) {
            std::hint::black_box(v.bytes().first());
        }
    }
    if let Ok(Some(tok)) = Tokenizer::from_gguf(&src.metadata) {
        if let Ok(ids) = tok.encode("ab cd a b") {
            std::hint::black_box(tok.decode(&ids));
        }
    }
});
