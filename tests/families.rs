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
fn qwen3moe() {
    all_sources("qwen3moe");
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

/// For a fixture whose config holds what GGUF cannot carry, the GGUFs are held to
/// llama.cpp's greedy tokens instead: llama.cpp reads them as weft must.
fn gguf_against_llama_cpp(name: &str) {
    let input = ids(&json(&family(name).join("reference.json"))["input_ids"]);
    for file in ["model-f32.gguf", "model-f16.gguf"] {
        let want = ids(&json(&family(name).join("llamacpp.json"))[file]["greedy"]);
        let model = open_shared(family(name).join(file).to_str().unwrap());
        let (_, tokens) = greedy_run(model, &input, want.len());
        assert_eq!(tokens, want, "{name}/{file} vs llama.cpp");
    }
}

#[test]
fn gemma3() {
    all_sources("gemma3-p6");
    // A global layer every 3rd and query_pre_attn_scalar ≠ head_dim: GGUF keeps neither
    // (llama.cpp assumes pattern 6 and 1/√head_dim).
    check_against_reference(&family("gemma3"), "", "reference.json");
    gguf_against_llama_cpp("gemma3");
}

#[test]
fn starcoder2() {
    // GGUF keeps no sliding window; llama.cpp attends to the whole context.
    check_against_reference(&family("starcoder2"), "", "reference.json");
    gguf_against_llama_cpp("starcoder2");
}

#[test]
fn phi2() {
    all_sources("phi2");
}

#[test]
fn gpt2_gguf() {
    check_against_reference(&family("gpt2"), "model-f32.gguf", "reference.json");
    check_against_reference(&family("gpt2"), "model-f16.gguf", "reference-f16.json");
}
