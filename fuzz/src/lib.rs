//! What the fuzz targets share: scratch files (the loaders take paths and map them),
//! the seed model, and a bounded run of whatever loaded.
//!
//! A target may return any error; it must never panic, abort or allocate without bound.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use weft_runtime::load::ModelSource;
use weft_runtime::{generate, Forward, GenParams, SamplerParams};

/// A file (or folder) of this process under the temp dir, rewritten for each input.
pub fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("weft-fuzz-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a scratch folder");
    dir.join(name)
}

/// Writes `bytes` to the scratch file `name` and returns its path.
pub fn scratch_file(name: &str, bytes: &[u8]) -> PathBuf {
    let p = scratch(name);
    std::fs::write(&p, bytes).expect("a scratch file");
    p
}

/// The seed files (fuzz/seeds, made by make_seeds.py).
pub fn seeds() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/seeds"))
}

/// The seed GGUF model, opened once (plans are lowered onto its weights).
pub fn seed_model() -> &'static ModelSource {
    static SRC: OnceLock<ModelSource> = OnceLock::new();
    SRC.get_or_init(|| {
        weft_runtime::set_threads(Some(1)).expect("one thread");
        ModelSource::open(&seeds().join("tiny.gguf")).expect("the seed model opens")
    })
}

/// A few greedy tokens from `model`: loading is not enough, running must not panic.
pub fn run_briefly(model: &mut dyn Forward, prompt: &[u32]) {
    let params = GenParams {
        max_tokens: 3,
        sampler: SamplerParams::greedy(),
        stop_ids: vec![],
        ignore_eos: true,
    };
    let _ = generate(model, prompt, &params, |_| true);
}
