//! The expanded and optimised graphs of every family, the pass log, and the plan as
//! the reference backend lowers it (kernels and arena slots; the cpu backend's kernel
//! line names the machine's instruction set, so it is not snapshotted), as text under insta. A changed
//! template, expander, pass or backend stage shows up here as a diff.

mod common;
use common::*;
use weft_runtime::{BackendKind, LowerOptions, PassSelection};

fn snapshot(name: &str, path: std::path::PathBuf) {
    let model = open_shared(path.to_str().unwrap());
    let c = model.compile(&PassSelection::all()).unwrap();
    insta::assert_snapshot!(format!("{name}_expanded"), c.expanded_text);
    insta::assert_snapshot!(format!("{name}_optimized"), c.plan.to_text());
    insta::assert_snapshot!(format!("{name}_pass_log"), c.plan.pass_log.join("\n"));
    let engine = model
        .engine(c.plan, BackendKind::Reference, &LowerOptions::default())
        .unwrap();
    insta::assert_snapshot!(format!("{name}_lowered"), engine.lowered_text());
}

#[test]
fn llama_tied_gguf() {
    snapshot("llama_tied_gguf", tiny("llama-tied").join("model-f32.gguf"));
}

#[test]
fn llama_gqa_untied_hf() {
    snapshot("llama_gqa_untied_hf", tiny("llama-gqa-untied"));
}

fn family(name: &str) -> std::path::PathBuf {
    fixtures()
        .join("families")
        .join(name)
        .join("model-f32.gguf")
}

#[test]
fn qwen2_gguf() {
    snapshot("qwen2_gguf", family("qwen2"));
}

#[test]
fn qwen3_gguf() {
    snapshot("qwen3_gguf", family("qwen3"));
}

#[test]
fn phi3_gguf() {
    snapshot("phi3_gguf", family("phi3-partial-rope"));
}

#[test]
fn gemma2_gguf() {
    snapshot("gemma2_gguf", family("gemma2"));
}

#[test]
fn gemma3_gguf() {
    snapshot("gemma3_gguf", family("gemma3-p6"));
}

#[test]
fn gemma3_hf() {
    snapshot("gemma3_hf", fixtures().join("families").join("gemma3"));
}

#[test]
fn starcoder2_gguf() {
    snapshot("starcoder2_gguf", family("starcoder2"));
}

#[test]
fn phi2_gguf() {
    snapshot("phi2_gguf", family("phi2"));
}

#[test]
fn gpt2_gguf() {
    snapshot("gpt2_gguf", family("gpt2"));
}

#[test]
fn qwen3moe_gguf() {
    snapshot("qwen3moe_gguf", family("qwen3moe"));
}

#[test]
fn qwen3moe_hf() {
    snapshot("qwen3moe_hf", fixtures().join("families").join("qwen3moe"));
}

#[test]
fn gpt2_hf() {
    snapshot("gpt2_hf", fixtures().join("families").join("gpt2"));
}

#[test]
fn gemma4_gguf() {
    snapshot("gemma4_gguf", family("gemma4"));
}

#[test]
fn gemma4_hf() {
    snapshot("gemma4_hf", fixtures().join("families").join("gemma4"));
}
