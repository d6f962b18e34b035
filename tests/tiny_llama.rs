//! Random-weight `LlamaForCausalLM` models made by transformers
//! (scripts/fixtures/make_tiny_llama.py): the same weights as an HF directory and
//! as GGUF files converted by llama.cpp's script must give transformers' logits and
//! greedy tokens, through the graph executor, and graph and curated must agree.

mod common;
use common::*;
use weft_runtime::sampler::argmax;
use weft_runtime::{parity, Forward, PassSelection};

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

fn check(dir: &str, weights: &str, reference: &str) {
    let path = tiny(dir).join(weights);
    let r = json(&tiny(dir).join(reference));
    let input = ids(&r["input_ids"]);
    let want_logits = floats(&r["last_logits"]);
    let want_greedy = ids(&r["greedy"]);
    let model = open_shared(path.to_str().unwrap());
    let plan = model.compile(&PassSelection::all()).unwrap().plan;
    let mut graph = model.cpu(plan, input.len() + want_greedy.len()).unwrap();

    let logits = graph.forward(&input).unwrap().to_vec();
    let rel = max_abs_diff(&logits, &want_logits) / max_abs(&want_logits);
    eprintln!("{dir}/{weights}: max |Δlogit| / max|logit| vs transformers = {rel:.2e}");
    assert!(
        rel <= 1e-3,
        "{dir}/{weights}: logits differ from transformers by {rel:.2e} (relative)"
    );

    let mut tokens = vec![argmax(&logits)];
    while tokens.len() < want_greedy.len() {
        let l = graph.forward(&[*tokens.last().unwrap()]).unwrap();
        tokens.push(argmax(l));
    }
    assert_eq!(
        tokens, want_greedy,
        "{dir}/{weights}: greedy tokens differ from transformers"
    );

    let mut graph = model
        .cpu(
            model.compile(&PassSelection::all()).unwrap().plan,
            input.len() + 17,
        )
        .unwrap();
    let mut curated = model.curated(input.len() + 17).unwrap();
    let rep = parity::compare(&mut graph, &mut curated, &input, 16, 1e-4).unwrap();
    assert!(
        rep.passed(),
        "{dir}/{weights}: graph vs curated: rel {:.2e}, tokens agree {}",
        rep.max_rel(),
        rep.tokens_agree()
    );
}

#[test]
fn tiny_llama_matches_transformers_through_every_path() {
    for (dir, weights, reference) in CASES {
        check(dir, weights, reference);
    }
}

#[test]
fn passes_off_gives_identical_logits() {
    let model = open_shared(tiny("llama-tied").join("model-f32.gguf").to_str().unwrap());
    let input = [0u32, 5, 9, 77, 12];
    let mut on = model
        .cpu(model.compile(&PassSelection::all()).unwrap().plan, 8)
        .unwrap();
    let mut off = model
        .cpu(model.compile(&PassSelection::none()).unwrap().plan, 8)
        .unwrap();
    let a = on.forward(&input).unwrap().to_vec();
    let b = off.forward(&input).unwrap().to_vec();
    assert_eq!(a, b);
}
