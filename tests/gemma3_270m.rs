//! The real Gemma 3 270M Q4_K_M GGUF (fetched on first use): tokenizer against
//! llama.cpp, logits against transformers loading the same file (f32), greedy tokens
//! against llama.cpp up to its first step with a top-1/top-2 gap below 1.0, and graph
//! vs curated.

mod common;
use common::*;
use weft_runtime::{parity, BackendKind, Model, PassSelection};

fn gemma() -> &'static Model {
    open_shared("gemma3-270m")
}

fn fx(name: &str) -> serde_json::Value {
    json(&fixtures().join("gemma3").join(name))
}

#[test]
fn tokenizer_matches_llama_cpp() {
    let lc = fx("llamacpp.json");
    let mut cases: Vec<(String, Vec<u32>)> = lc["prompts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["prompt"].as_str().unwrap().to_string(),
                ids(&p["prompt_tokens"]),
            )
        })
        .collect();
    cases.extend(
        lc["tokenize"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| (t["text"].as_str().unwrap().to_string(), ids(&t["ids"]))),
    );
    for (text, want) in &cases {
        assert_eq!(&gemma().encode(text).unwrap(), want, "{text:?}");
    }
    eprintln!("{} strings tokenised as llama.cpp does", cases.len());
}

#[test]
fn matches_transformers_and_llama_cpp() {
    let (tf, lc) = (fx("transformers_gguf.json"), fx("llamacpp.json"));
    for i in 0..3 {
        let (t, l) = (&tf["prompts"][i], &lc["prompts"][i]);
        let prompt = ids(&t["prompt_tokens"]);
        let want_logits = read_f32(&fixtures().join("gemma3").join(format!("tf_gguf_{i}.f32")));
        let want = ids(&t["tokens"]);
        let gaps = floats(&t["gaps"]);
        let (logits, tokens) = greedy_run(gemma(), &prompt, want.len());
        let scale = max_abs(&want_logits);
        let rel = max_abs_diff(&logits, &want_logits) / scale;
        eprintln!("prompt {i}: max |Δlogit| / max|logit| vs transformers = {rel:.2e}");
        assert!(rel <= 1e-3, "prompt {i}: {rel:.2e}");
        if let Some(k) = tokens.iter().zip(&want).position(|(a, b)| a != b) {
            assert!(
                gaps[k] < 1e-3 * scale,
                "prompt {i}: token {k} differs from transformers at gap {}",
                gaps[k]
            );
        }
        let lgaps = floats(&l["gaps"]);
        let n = llama_cpp_decided_steps(&lgaps);
        eprintln!("prompt {i}: compared {n} step(s) against llama.cpp");
        assert_eq!(
            tokens[..n],
            ids(&l["tokens"])[..n],
            "prompt {i} vs llama.cpp"
        );
    }
}

#[test]
fn graph_and_curated_agree() {
    let prompt = gemma().encode("Once upon a time").unwrap();
    let plan = gemma().compile(&PassSelection::all()).unwrap().plan;
    let mut g = gemma()
        .session(BackendKind::Cpu, plan, prompt.len() + 33)
        .unwrap();
    let mut c = gemma().curated(prompt.len() + 33).unwrap();
    let r = parity::compare(&mut g, &mut c, &prompt, 32, 1e-4).unwrap();
    eprintln!(
        "graph vs curated: max rel {:.2e}, tokens agree {}",
        r.max_rel(),
        r.tokens_agree()
    );
    assert!(r.passed(), "rel {:.2e}", r.max_rel());
}
