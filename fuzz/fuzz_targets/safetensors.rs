//! Any bytes as the safetensors file of an HF directory (the seed's config.json).
#![no_main]
use libfuzzer_sys::fuzz_target;
use weft_runtime::load::ModelSource;

fuzz_target!(|data: &[u8]| {
    let dir = weft_fuzz::scratch("hf");
    std::fs::create_dir_all(&dir).unwrap();
    let config = weft_fuzz::seeds().join("tiny-hf").join("config.json");
    if !dir.join("config.json").exists() {
        std::fs::copy(config, dir.join("config.json")).unwrap();
    }
    std::fs::write(dir.join("model.safetensors"), data).unwrap();
    let Ok(src) = ModelSource::open(&dir) else {
        return;
    };
    for t in &src.tensors {
        if let Ok(v) = src.view(&t.name) {
            std::hint::black_box(v.bytes().last());
        }
    }
});
