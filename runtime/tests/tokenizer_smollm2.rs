//! The GGUF tokenizer of the real SmolLM2 model against llama.cpp's ids.
//!
//! Needs `$WEFT_HOME/models/smollm2-135m.gguf` (`scripts/fetch_model.py
//! smollm2-135m`) and `tests/fixtures/smollm2/llamacpp.json`; each test says
//! so and returns when one is absent.

use std::path::{Path, PathBuf};

use serde_json::Value;
use weft_formats::ModelSource;
use weft_runtime::tokenizer::{StreamDecoder, Tokenizer};

fn model_path() -> PathBuf {
    weft_runtime::resolve("smollm2-135m", &mut |m| eprintln!("{m}")).expect("fetch smollm2-135m")
}

fn fixture_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/smollm2/llamacpp.json")
}

fn tokenizer() -> Tokenizer {
    let m = ModelSource::open(&model_path()).expect("open model");
    Tokenizer::from_gguf(&m.metadata)
        .expect("build tokenizer")
        .expect("model has a tokenizer")
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .expect("ids array")
        .iter()
        .map(|i| i.as_u64().expect("id") as u32)
        .collect()
}

#[test]
fn matches_llamacpp_fixture() {
    let tok = tokenizer();
    let path = fixture_path();
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let fixture: Value = serde_json::from_str(&text).expect("fixture JSON");
    let mut checked = 0;
    let mut failures = Vec::new();
    let mut check = |text: &str, want: Vec<u32>| {
        let got = tok.encode(text).expect("encode");
        checked += 1;
        if got != want {
            failures.push(format!(
                "{text:?}\n  llama.cpp {want:?}\n  weft      {got:?}"
            ));
        }
    };
    for e in fixture
        .get("tokenize")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        check(e["text"].as_str().expect("text"), ids(&e["ids"]));
    }
    for e in fixture
        .get("prompts")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        check(
            e["prompt"].as_str().expect("prompt"),
            ids(&e["prompt_tokens"]),
        );
    }
    eprintln!(
        "{} of {checked} fixture strings agree with llama.cpp",
        checked - failures.len()
    );
    assert!(checked > 0, "fixture has no entries");
    assert!(
        failures.is_empty(),
        "{} mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn special_ids_and_round_trips() {
    let tok = tokenizer();
    assert_eq!(tok.vocab_size(), 49152);
    assert_eq!(tok.bos_id(), Some(1));
    // add_bos_token is false in this file: no BOS.
    assert!(!tok.adds_bos());
    let eos = tok.eos_ids();
    assert!(eos.contains(&2), "eos {eos:?}");
    for text in [
        "Hello, world!",
        "The capital of France is",
        "  leading spaces and trailing   ",
        "digits 1234567 and 3.14159",
        "naïve café — 日本語 🙂",
        "line one\nline two\n\n\ttabbed",
        "<|im_start|>user\nHi<|im_end|>",
        "it's we're they've I'm you'll he'd",
    ] {
        let ids = tok.encode(text).unwrap();
        assert!(!ids.is_empty());
        assert_eq!(tok.decode(&ids), text, "ids {ids:?}");
        let mut stream = StreamDecoder::new();
        let mut streamed: String = ids.iter().map(|&i| stream.push(&tok, i)).collect();
        streamed.push_str(&stream.finish());
        assert_eq!(streamed, text);
    }
    // Digits are split one by one (the smollm pre-tokenizer).
    let d = tok.encode("12345").unwrap();
    assert_eq!(d.len(), 5, "{d:?}");
    // Control tokens in text are not parsed.
    let ids = tok.encode("<|im_start|>").unwrap();
    assert!(ids.len() > 1, "{ids:?}");
}
