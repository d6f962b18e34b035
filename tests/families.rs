//! Every family against transformers (random-weight models made by
//! scripts/families/make_family_models.py, as HF directories and as GGUF files converted
//! by llama.cpp's script), and graph vs curated on each.

mod common;
use common::*;
use std::path::PathBuf;

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
fn gemma4() {
    all_sources("gemma4");
}

/// The Gemma 4 fixture's weights under a new config.json, tensor names passed through
/// `rename`, in a scratch directory (with the fixture's tokenizer).
fn gemma4_variant(
    name: &str,
    config: &serde_json::Value,
    rename: impl Fn(&str) -> String,
) -> PathBuf {
    let src = family("gemma4");
    let dir = std::env::temp_dir().join(format!("weft-gemma4-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    for f in ["tokenizer.json", "reference.json"] {
        std::fs::copy(src.join(f), dir.join(f)).unwrap();
    }
    let bytes = std::fs::read(src.join("model.safetensors")).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    let header: serde_json::Map<_, _> = header
        .into_iter()
        .map(|(k, v)| match k.as_str() {
            "__metadata__" => (k, v),
            _ => (rename(&k), v),
        })
        .collect();
    let mut text = serde_json::Value::Object(header).to_string();
    while !text.len().is_multiple_of(8) {
        text.push(' ');
    }
    let mut out = (text.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(text.as_bytes());
    out.extend_from_slice(&bytes[8 + n..]);
    std::fs::write(dir.join("model.safetensors"), out).unwrap();
    dir
}

/// Google's published config form (global_head_dim, num_global_key_value_heads instead
/// of transformers' per_layer_config), and a multimodal checkpoint (keys under
/// text_config, tensors under model.language_model.): the same model, both paths.
#[test]
fn gemma4_config_forms() {
    let mut config = json(&family("gemma4").join("config.json"));
    let c = config.as_object_mut().unwrap();
    c.remove("per_layer_config");
    c.insert("global_head_dim".into(), 32.into());
    c.insert("num_global_key_value_heads".into(), 1.into());
    check_against_reference(
        &gemma4_variant("global", &config, |n| n.to_string()),
        "",
        "reference.json",
    );

    let text = json(&family("gemma4").join("config.json"));
    let config = serde_json::json!({
        "model_type": "gemma4",
        "architectures": ["Gemma4ForConditionalGeneration"],
        "text_config": text,
        "tie_word_embeddings": true,
    });
    let dir = gemma4_variant("mm", &config, |n| {
        n.replacen("model.", "model.language_model.", 1)
    });
    check_against_reference(&dir, "", "reference.json");
}

/// KV sharing and MoE blocks are not described: both paths refuse them.
#[test]
fn gemma4_refuses_kv_sharing_and_moe() {
    for (key, value, says) in [
        ("num_kv_shared_layers", serde_json::json!(2), "KV sharing"),
        (
            "enable_moe_block",
            serde_json::json!(true),
            "mixture-of-experts",
        ),
    ] {
        let mut config = json(&family("gemma4").join("config.json"));
        config[key] = value;
        let dir = gemma4_variant(key, &config, |n| n.to_string());
        let model = weft_runtime::Model::open(dir.to_str().unwrap(), &mut |_| {}).unwrap();
        let err = model.curated(8).err().expect("refused").to_string();
        assert!(err.contains(says), "{key}: {err}");
        let err = model.expand().err().expect("refused").to_string();
        assert!(err.contains("does not hold"), "{key}: {err}");
    }
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
fn gpt2() {
    check_against_reference(&family("gpt2"), "", "reference.json");
    check_against_reference(&family("gpt2"), "model-f32.gguf", "reference.json");
    check_against_reference(&family("gpt2"), "model-f16.gguf", "reference-f16.json");
}
