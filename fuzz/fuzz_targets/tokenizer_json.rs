//! Any bytes as a tokenizer.json: loading, encoding and decoding.
#![no_main]
use libfuzzer_sys::fuzz_target;
use weft_runtime::tokenizer::Tokenizer;

fuzz_target!(|data: &[u8]| {
    let dir = weft_fuzz::scratch("tok");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("tokenizer.json");
    std::fs::write(&path, data).unwrap();
    let Ok(tok) = Tokenizer::from_file(&path) else {
        return;
    };
    if let Ok(ids) = tok.encode("Hello, wörld! ab cd 123") {
        std::hint::black_box(tok.decode(&ids));
    }
    std::hint::black_box(tok.decode(&[0, 1, 2, 300, u32::MAX]));
});
