//! The real SmolLM2-135M-Instruct Q4_1 GGUF (fetched on first use) against two outside
//! references and against the curated decoder.
//!
//! - transformers loading the same GGUF (dequantised to f32 by the `gguf` package):
//!   the exact oracle for the weights weft reads.
//! - llama.cpp: a loose oracle (8-bit activations in its matmuls, f16 KV cache), so
//!   tokens are compared only up to the first step where its top-1/top-2 gap is < 1.0.

mod common;
use common::*;
use weft_runtime::{parity, BackendKind, Model, PassSelection};

const PROMPTS: [&str; 3] = [
    "The capital of France is",
    "def fibonacci(n):",
    "Once upon a time",
];

fn smollm2() -> &'static Model {
    open_shared("smollm2-135m")
}

#[test]
fn tokenizer_matches_llama_cpp_on_the_prompts() {
    let fx = json(&fixtures().join("smollm2/llamacpp.json"));
    for (i, p) in PROMPTS.iter().enumerate() {
        let case = &fx["prompts"][i];
        assert_eq!(case["prompt"], *p);
        assert_eq!(
            smollm2().encode(p).unwrap(),
            ids(&case["prompt_tokens"]),
            "{p:?}"
        );
    }
}

#[test]
fn matches_transformers_on_the_same_gguf() {
    let fx = json(&fixtures().join("smollm2/transformers_gguf.json"));
    for (i, p) in PROMPTS.iter().enumerate() {
        let case = &fx["prompts"][i];
        let want_logits = read_f32(&fixtures().join("smollm2").join(format!("tf_gguf_{i}.f32")));
        let want = ids(&case["tokens"]);
        let gaps = floats(&case["gaps"]);
        let (logits, tokens) = greedy_run(smollm2(), &ids(&case["prompt_tokens"]), want.len());
        let scale = max_abs(&want_logits);
        let rel = max_abs_diff(&logits, &want_logits) / scale;
        eprintln!("{p:?}: max |Δlogit| / max|logit| vs transformers = {rel:.2e}");
        assert!(rel <= 1e-3, "{p:?}: {rel:.2e}");
        // A step whose reference gap is below 1e-3·max|logit| may flip; everything
        // after it then follows a different sequence.
        match tokens.iter().zip(&want).position(|(a, b)| a != b) {
            None => {}
            Some(k) => assert!(
                gaps[k] < 1e-3 * scale,
                "{p:?}: token {k} differs at reference gap {}",
                gaps[k]
            ),
        }
    }
}

#[test]
fn matches_llama_cpp_until_its_gap_falls_below_one() {
    let fx = json(&fixtures().join("smollm2/llamacpp.json"));
    for (i, p) in PROMPTS.iter().enumerate() {
        let case = &fx["prompts"][i];
        let want = ids(&case["tokens"]);
        let gaps = floats(&case["gaps"]);
        let n = llama_cpp_decided_steps(&gaps);
        let (_, tokens) = greedy_run(smollm2(), &ids(&case["prompt_tokens"]), want.len());
        let agree = tokens.iter().zip(&want).take_while(|(a, b)| a == b).count();
        eprintln!("{p:?}: compared {n} step(s) against llama.cpp; {agree} of 32 agree");
        assert_eq!(tokens[..n], want[..n], "{p:?}");
    }
}

#[test]
fn graph_and_curated_agree_for_32_steps() {
    for p in PROMPTS {
        let model = smollm2();
        let prompt = model.encode(p).unwrap();
        let plan = model.compile(&PassSelection::all()).unwrap().plan;
        let mut g = model
            .session(BackendKind::Cpu, plan, prompt.len() + 33)
            .unwrap();
        let mut c = model.curated(prompt.len() + 33).unwrap();
        let r = parity::compare(&mut g, &mut c, &prompt, 32, 1e-4).unwrap();
        eprintln!(
            "{p:?}: graph vs curated max rel {:.2e}, tokens agree {}",
            r.max_rel(),
            r.tokens_agree()
        );
        assert!(
            r.passed(),
            "{p:?}: rel {:.2e}, tokens agree {}",
            r.max_rel(),
            r.tokens_agree()
        );
    }
}

#[test]
fn passes_on_and_off_give_the_same_logits() {
    let model = smollm2();
    let prompt = model.encode(PROMPTS[0]).unwrap();
    let mut on = model
        .session(
            BackendKind::Cpu,
            model.compile(&PassSelection::all()).unwrap().plan,
            prompt.len() + 1,
        )
        .unwrap();
    let mut off = model
        .session(
            BackendKind::Cpu,
            model.compile(&PassSelection::none()).unwrap().plan,
            prompt.len() + 1,
        )
        .unwrap();
    let r = parity::compare(&mut on, &mut off, &prompt, 0, 1e-5).unwrap();
    eprintln!("passes on vs off: max rel {:.2e}", r.max_rel());
    assert!(r.passed(), "rel {:.2e}", r.max_rel());
}
