//! Random-weight `LlamaForCausalLM` models made by transformers
//! (scripts/fixtures/make_tiny_llama.py): the same weights as an HF directory and
//! as GGUF files converted by llama.cpp's script must give transformers' logits and
//! greedy tokens, through the graph executor, and graph and curated must agree.

mod common;
use common::*;
use weft_runtime::{BackendKind, Forward, PassSelection};

/// (directory, weights inside it or "" for the HF directory itself, reference file)
const CASES: &[(&str, &str, &str)] = &[
    ("llama-tied", "", "reference.json"),
    ("llama-tied", "model-f32.gguf", "reference.json"),
    ("llama-tied", "model-f16.gguf", "reference-f16.json"),
    ("llama-gqa-untied", "", "reference.json"),
    ("llama-gqa-untied", "model-f32.gguf", "reference.json"),
    ("llama-gqa-untied", "model-f16.gguf", "reference-f16.json"),
    ("llama-gqa-untied-sharded", "", "reference.json"),
    ("llama-odd", "", "reference.json"),
    ("llama-odd", "model-f32.gguf", "reference.json"),
    ("llama-odd", "model-f16.gguf", "reference-f16.json"),
];

#[test]
fn tiny_llama_matches_transformers_through_every_path() {
    for (dir, weights, reference) in CASES {
        check_against_reference(&tiny(dir), weights, reference);
    }
}

#[test]
fn passes_off_gives_identical_logits() {
    let model = open_shared(tiny("llama-tied").join("model-f32.gguf").to_str().unwrap());
    let input = [0u32, 5, 9, 77, 12];
    let mut on = model
        .session(
            BackendKind::Cpu,
            model.compile(&PassSelection::all()).unwrap().plan,
            8,
        )
        .unwrap();
    let mut off = model
        .session(
            BackendKind::Cpu,
            model.compile(&PassSelection::none()).unwrap().plan,
            8,
        )
        .unwrap();
    let a = on.forward(&input).unwrap().to_vec();
    let b = off.forward(&input).unwrap().to_vec();
    assert_eq!(a, b);
}
