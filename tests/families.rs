//! Every family against transformers (random-weight models made by
//! scripts/families/make_family_models.py, as HF directories and as GGUF files converted
//! by llama.cpp's script), and graph vs curated on each.

mod common;
use common::*;

fn family(name: &str) -> std::path::PathBuf {
    fixtures().join("families").join(name)
}

fn all_sources(name: &str) {
    check_against_reference(&family(name), "", "reference.json");
    check_against_reference(&family(name), "model-f32.gguf", "reference.json");
    check_against_reference(&family(name), "model-f16.gguf", "reference-f16.json");
}

#[test]
fn qwen2() {
    all_sources("qwen2");
}

#[test]
fn qwen3() {
    all_sources("qwen3");
}

#[test]
fn phi3() {
    all_sources("phi3");
    all_sources("phi3-partial-rope");
}

#[test]
fn gemma2() {
    all_sources("gemma2");
}

#[test]
fn gemma3() {
    all_sources("gemma3-p6");
    // This fixture's config holds what GGUF cannot carry (a global layer every 3rd,
    // query_pre_attn_scalar ≠ head_dim), so its GGUFs are checked against llama.cpp,
    // which reads them as weft must: pattern 6, scale 1/√head_dim.
    check_against_reference(&family("gemma3"), "", "reference.json");
    let r = json(&family("gemma3").join("reference.json"));
    let input = ids(&r["input_ids"]);
    for file in ["model-f32.gguf", "model-f16.gguf"] {
        let want = ids(&json(&family("gemma3").join("llamacpp.json"))[file]["greedy"]);
        let model = open_shared(family("gemma3").join(file).to_str().unwrap());
        let plan = model
            .compile(&weft_runtime::PassSelection::all())
            .unwrap()
            .plan;
        let mut g = model.cpu(plan, input.len() + want.len()).unwrap();
        let logits = weft_runtime::Forward::forward(&mut g, &input)
            .unwrap()
            .to_vec();
        assert_eq!(
            greedy_after(&mut g, &logits, want.len()),
            want,
            "gemma3/{file} vs llama.cpp"
        );
    }
}
