//! The curated decoder against transformers on random-weight models of each
//! family (`tests/fixtures/families/<name>/`), from both sources: the HF
//! directory and llama.cpp's GGUF conversions (f32 and f16), and on the real
//! Gemma 3 270M Q4_K_M GGUF against transformers loading that same GGUF.
//!
//! Every fixture is required: a missing file fails the test.

use std::path::{Path, PathBuf};
use weft_curated::{Curated, CuratedError};
use weft_formats::ModelSource;
use weft_runtime::resolve;
use weft_runtime::sampler::argmax;

const REL_TOL: f32 = 1e-3;
const GREEDY_STEPS: usize = 16;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures")
}

fn json(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("missing fixture {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn ids(v: &serde_json::Value) -> Vec<u32> {
    v.as_array()
        .expect("an id list")
        .iter()
        .map(|x| x.as_u64().expect("an id") as u32)
        .collect()
}

fn floats(v: &serde_json::Value) -> Vec<f32> {
    v.as_array()
        .expect("a float list")
        .iter()
        .map(|x| x.as_f64().expect("a float") as f32)
        .collect()
}

fn open(path: &Path, ctx: usize) -> Curated {
    assert!(path.exists(), "missing fixture {}", path.display());
    let src = ModelSource::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    Curated::new(&src, ctx).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn max_abs(v: &[f32]) -> f32 {
    v.iter().fold(0.0, |m, x| m.max(x.abs()))
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "vocabulary sizes differ");
    a.iter().zip(b).fold(0.0, |m, (x, y)| m.max((x - y).abs()))
}

/// Prompt logits, then greedy tokens (the first is the prompt's argmax).
fn run(model: &mut Curated, prompt: &[u32], steps: usize) -> (Vec<f32>, Vec<u32>) {
    let logits = model.forward(prompt).unwrap().to_vec();
    let mut tokens = vec![argmax(&logits)];
    while tokens.len() < steps {
        let l = model.forward(&[*tokens.last().unwrap()]).unwrap();
        tokens.push(argmax(l));
    }
    (logits, tokens)
}

/// One source of one family against its reference file; returns the relative
/// logit difference.
fn check_source(family: &str, source: &str, reference: &str) -> f32 {
    let dir = fixtures().join("families").join(family);
    let r = json(&dir.join(reference));
    let prompt = ids(&r["input_ids"]);
    let want = floats(&r["last_logits"]);
    let greedy = ids(&r["greedy"]);
    let path = if source == "hf" {
        dir.clone()
    } else {
        dir.join(source)
    };
    let mut m = open(&path, prompt.len() + GREEDY_STEPS + 1);
    let (logits, tokens) = run(&mut m, &prompt, GREEDY_STEPS);
    let scale = r["max_abs_logit"].as_f64().unwrap() as f32;
    assert!((max_abs(&want) - scale).abs() <= 1e-6 * scale.max(1.0));
    let rel = max_diff(&logits, &want) / scale;
    let agree = tokens
        .iter()
        .zip(&greedy)
        .take_while(|(a, b)| a == b)
        .count();
    eprintln!(
        "{family:18} {source:15} max|Δ|/max|logit| = {rel:.2e}   greedy {agree}/{GREEDY_STEPS}"
    );
    assert!(
        rel <= REL_TOL,
        "{family} {source}: logits differ by {rel:.3e} of max|logit| (limit {REL_TOL:e})"
    );
    assert_eq!(
        tokens,
        greedy[..GREEDY_STEPS],
        "{family} {source}: greedy tokens differ"
    );
    rel
}

fn check_family(family: &str) {
    check_source(family, "hf", "reference.json");
    check_source(family, "model-f32.gguf", "reference.json");
    check_source(family, "model-f16.gguf", "reference-f16.json");
}

#[test]
fn qwen2() {
    check_family("qwen2");
}

#[test]
fn qwen3() {
    check_family("qwen3");
}

#[test]
fn qwen3moe() {
    check_family("qwen3moe");
}

#[test]
fn gemma2() {
    check_family("gemma2");
}

#[test]
fn gemma3_p6() {
    check_family("gemma3-p6");
}

#[test]
fn phi3() {
    check_family("phi3");
}

#[test]
fn phi3_partial_rope() {
    check_family("phi3-partial-rope");
}

/// The `gemma3` fixture (pattern 3, query_pre_attn_scalar 24 ≠ head_dim 16)
/// cannot be written to GGUF faithfully: the converter drops both values
/// (`gguf_lossy` in reference.json) and llama.cpp assumes pattern 6 and
/// 1/sqrt(head_dim). So the HF directory is checked against transformers,
/// and the GGUF files against llama.cpp's greedy tokens (it read the same
/// lossy file).
#[test]
fn gemma3() {
    check_source("gemma3", "hf", "reference.json");
    check_lossy_gguf("gemma3", "query_pre_attn_scalar");
}

/// A fixture whose config cannot be written to GGUF faithfully (the converter
/// drops `lost`, listed in `gguf_lossy`): its GGUF files are compared with
/// llama.cpp's greedy tokens, since llama.cpp read the same lossy file.
fn check_lossy_gguf(family: &str, lost: &str) {
    let dir = fixtures().join("families").join(family);
    let r = json(&dir.join("reference.json"));
    assert!(
        r["gguf_lossy"][lost].is_string(),
        "{family}: reference.json no longer lists '{lost}' as lost in GGUF: \
         check the GGUF files against transformers instead"
    );
    let cpp = json(&dir.join("llamacpp.json"));
    let prompt = ids(&r["input_ids"]);
    for file in ["model-f32.gguf", "model-f16.gguf"] {
        let want = ids(&cpp[file]["greedy"]);
        let mut m = open(&dir.join(file), prompt.len() + want.len() + 1);
        let (_, tokens) = run(&mut m, &prompt, want.len());
        let agree = tokens.iter().zip(&want).take_while(|(a, b)| a == b).count();
        eprintln!(
            "{family:18} {file:15} (lossy GGUF) greedy vs llama.cpp {agree}/{}",
            want.len()
        );
        assert_eq!(
            tokens, want,
            "{family} {file}: greedy differs from llama.cpp"
        );
    }
}

#[test]
fn phi2() {
    check_family("phi2");
}

/// starcoder2's GGUF has no sliding window (the converter drops it, llama.cpp
/// attends to the whole context), so as for gemma3 the GGUF files are checked
/// against llama.cpp's greedy tokens and the HF directory against transformers.
#[test]
fn starcoder2() {
    check_source("starcoder2", "hf", "reference.json");
    check_lossy_gguf("starcoder2", "sliding_window");
}

/// Gemma 4: per-layer-kind head sizes and kv heads, K as V, weight-free V norm,
/// proportional rope, per-layer embeddings, layer scalars.
#[test]
fn gemma4() {
    check_source("gemma4", "hf", "reference.json");
    check_source("gemma4", "model-f32.gguf", "reference.json");
    check_source("gemma4", "model-f16.gguf", "reference-f16.json");
}

/// GPT-2 (learned positions, LayerNorm with bias, fused qkv, gelu_new, tied head)
/// against transformers: the HF directory (Conv1D weights stored [in, out]) and GGUF.
#[test]
fn gpt2() {
    check_source("gpt2", "hf", "reference.json");
    check_source("gpt2", "model-f32.gguf", "reference.json");
    check_source("gpt2", "model-f16.gguf", "reference-f16.json");
}

/// Past the learned positions a gpt2 model has no position row: an error.
#[test]
fn gpt2_beyond_learned_positions_is_an_error() {
    let path = fixtures().join("families/gpt2/model-f32.gguf");
    // A session longer than the trained context is refused when it opens...
    let src = ModelSource::open(&path).unwrap();
    match Curated::new(&src, 128) {
        Err(e) => assert!(
            e.to_string().contains("128 positions are more than the 64"),
            "{e}"
        ),
        Ok(_) => panic!("a session of 128 positions with 64 learned should be refused"),
    }
    // ...and a prompt longer than the session's room when it runs.
    let mut m = open(&path, 64);
    let prompt = vec![0u32; 65];
    match m.forward(&prompt) {
        Err(CuratedError::Model(msg)) => assert!(msg.contains("room for 64"), "{msg}"),
        Err(e) => panic!("wrong error: {e}"),
        Ok(_) => panic!("65 positions with 64 learned should be refused"),
    }
}

/// An architecture the curated decoder does not know is refused, naming it and the
/// ones it handles.
#[test]
fn unsupported_architecture_is_a_clear_error() {
    let dir = std::env::temp_dir().join(format!("weft-curated-arch-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let src = fixtures().join("families/gpt2");
    let config = std::fs::read_to_string(src.join("config.json")).unwrap();
    let config = config.replace(
        "\"model_type\": \"gpt2\"",
        "\"model_type\": \"frobnicator\"",
    );
    std::fs::write(dir.join("config.json"), config).unwrap();
    std::fs::copy(src.join("model.safetensors"), dir.join("model.safetensors")).unwrap();
    let src = ModelSource::open(&dir).unwrap();
    match Curated::new(&src, 8) {
        Err(CuratedError::Model(msg)) => {
            assert!(
                msg.contains("'frobnicator'") && msg.contains("handles"),
                "{msg}"
            )
        }
        Err(e) => panic!("wrong error: {e}"),
        Ok(_) => panic!("an unknown architecture should be refused"),
    }
    std::fs::remove_dir_all(dir).unwrap();
}

/// Gemma 3 270M Q4_K_M against transformers loading the same GGUF (dequantised
/// to f32): logits of each prompt, then 32 greedy tokens. A step whose
/// reference top-1/top-2 gap is below the logit tolerance may differ; after
/// such a step the two continuations are no longer comparable.
#[test]
fn gemma3_270m_real_model() {
    let path = resolve("gemma3-270m", &mut |m| eprintln!("{m}"))
        .unwrap_or_else(|e| panic!("fetching gemma3-270m: {e}"));
    let fx_dir = fixtures().join("gemma3");
    let fx = json(&fx_dir.join("transformers_gguf.json"));
    let prompts = fx["prompts"].as_array().expect("prompts");
    assert_eq!(prompts.len(), 3);
    let mut m = open(&path, 64);
    for (i, case) in prompts.iter().enumerate() {
        let prompt = ids(&case["prompt_tokens"]);
        let want_tokens = ids(&case["tokens"]);
        let gaps = floats(&case["gaps"]);
        let file = fx_dir.join(case["logits_file"].as_str().unwrap());
        assert!(file.exists(), "missing fixture {}", file.display());
        let want: Vec<f32> = std::fs::read(&file)
            .unwrap()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        m.reset();
        let (logits, tokens) = run(&mut m, &prompt, want_tokens.len());
        let scale = max_abs(&want);
        let rel = max_diff(&logits, &want) / scale;
        let tol = REL_TOL * scale;
        let first_diff = tokens.iter().zip(&want_tokens).position(|(a, b)| a != b);
        eprintln!(
            "gemma3-270m prompt {i}: max|Δ|/max|logit| = {rel:.2e}, greedy agree up to {:?} of {}",
            first_diff,
            want_tokens.len()
        );
        assert!(
            rel <= REL_TOL,
            "prompt {i}: logits differ by {rel:.3e} of max|logit|"
        );
        if let Some(s) = first_diff {
            assert!(
                gaps[s] < tol,
                "prompt {i}: greedy token {s} differs ({} vs {}) where the reference gap {} is not below {tol}",
                tokens[s],
                want_tokens[s],
                gaps[s]
            );
            eprintln!(
                "gemma3-270m prompt {i}: step {s} differs ({} vs {}), allowed: reference gap {} < {tol}",
                tokens[s], want_tokens[s], gaps[s]
            );
        }
    }
}
