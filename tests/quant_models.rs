//! SmolLM2-135M re-quantised by llama.cpp's quantize tool into every common type
//! (scripts/quant_models/make_models.sh builds the tool and the files into
//! $WEFT_HOME/quant-models; CI runs it first). For every file and two prompts, weft's
//! f32 logits match transformers loading that same GGUF (dequantised to f32), its 16
//! greedy tokens match transformers', and they match llama.cpp's: on the quantised
//! file while llama.cpp is decided (gap ≥ 1.0), and all 16 from llama.cpp's f32 forward
//! on an f32-dequantised copy of the file (made by the reference script).
//!
//! The ternary types are exempt from the first llama.cpp rule: on those files llama.cpp's
//! 8-bit activations move its logits by up to 32 (the fixture records it), so a gap of
//! 1.0 says nothing there; its f32 forward still agrees with weft on every token.

mod common;
use common::*;
use weft_runtime::weft_home;

const TYPES: [&str; 13] = [
    "Q4_0", "Q5_0", "Q5_1", "Q8_0", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K", "IQ4_NL", "IQ4_XS",
    "TQ1_0", "TQ2_0",
];

#[test]
fn every_quant_type_matches_transformers_and_llama_cpp() {
    let refs = json(&fixtures().join("quant_models").join("references.json"));
    for ty in TYPES {
        let entry = &refs["models"][ty];
        let path = weft_home()
            .join("quant-models")
            .join(entry["file"].as_str().unwrap());
        assert!(
            path.exists(),
            "{} is missing: run scripts/quant_models/make_models.sh",
            path.display()
        );
        let model = open_shared(path.to_str().unwrap());
        // The file holds the type it is named after.
        assert!(
            model.source.tensors.iter().any(|t| t.type_name == ty),
            "{ty}: no tensor of that type"
        );
        for case in entry["cases"].as_array().unwrap() {
            let prompt = ids(&case["prompt_tokens"]);
            let tf = &case["tf"];
            let want_logits = read_f32(
                &fixtures()
                    .join("quant_models")
                    .join(tf["logits_file"].as_str().unwrap()),
            );
            let want = ids(&tf["tokens"]);
            let gaps = floats(&tf["gaps"]);
            let (logits, tokens) = greedy_run(model, &prompt, want.len());
            let scale = max_abs(&want_logits);
            let rel = max_abs_diff(&logits, &want_logits) / scale;
            let lc = &case["llamacpp"];
            let n = llama_cpp_decided_steps(&floats(&lc["gaps"]));
            let lc_agree = tokens
                .iter()
                .zip(&ids(&lc["tokens"]))
                .take_while(|(a, b)| a == b)
                .count();
            eprintln!(
                "{ty} {:?}: rel {rel:.2e} vs transformers; llama.cpp decided for {n} step(s), agrees for {lc_agree} of 16",
                case["prompt"].as_str().unwrap()
            );
            assert!(
                rel <= 1e-3,
                "{ty}: logits differ from transformers by {rel:.2e}"
            );
            if let Some(k) = tokens.iter().zip(&want).position(|(a, b)| a != b) {
                assert!(
                    gaps[k] < 1e-3 * scale,
                    "{ty}: token {k} differs from transformers at gap {}",
                    gaps[k]
                );
            }
            if !ty.starts_with("TQ") {
                assert_eq!(tokens[..n], ids(&lc["tokens"])[..n], "{ty} vs llama.cpp");
            }
            assert_eq!(
                tokens,
                ids(&case["llamacpp_f32"]["tokens"]),
                "{ty} vs llama.cpp in f32"
            );
        }
    }
}
