//! Tokenizers of the tiny fixture models (tests/fixtures/tiny/*) against the
//! ids the Hugging Face tokenizer produced when the fixtures were made: from
//! `tokenizer.json`, and from the vocabulary converted into `model-f32.gguf`.

use std::path::{Path, PathBuf};

use serde_json::Value;
use weft_formats::ModelSource;
use weft_runtime::tokenizer::Tokenizer;

fn fixture_dirs() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/tiny");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&root)
        .map(|rd| {
            rd.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.join("reference.json").is_file())
                .collect()
        })
        .unwrap_or_default();
    dirs.sort();
    if dirs.is_empty() {
        eprintln!("SKIPPED: no fixtures under {}", root.display());
    }
    dirs
}

/// (text, ids) pairs from a fixture's reference.json.
fn checks(dir: &Path) -> Vec<(String, Vec<u32>)> {
    let r: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("reference.json")).unwrap())
            .unwrap();
    let list = match &r["tokenizer_checks"] {
        Value::Array(a) => a.clone(),
        // Older fixtures store the list as Python-repr text; skip those.
        _ => return Vec::new(),
    };
    list.iter()
        .map(|e| {
            let ids = e["ids"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| i.as_u64().unwrap() as u32)
                .collect();
            (e["text"].as_str().unwrap().to_string(), ids)
        })
        .collect()
}

#[test]
fn fixture_tokenizers_match_reference_ids() {
    let mut compared = 0;
    for dir in fixture_dirs() {
        let cases = checks(&dir);
        if cases.is_empty() {
            eprintln!("{}: no tokenizer_checks list", dir.display());
            continue;
        }
        let hf = Tokenizer::from_file(&dir.join("tokenizer.json")).unwrap();
        let gguf = dir.join("model-f32.gguf");
        let from_gguf = gguf.is_file().then(|| {
            let m = ModelSource::open(&gguf).unwrap();
            Tokenizer::from_gguf(&m.metadata).unwrap().unwrap()
        });
        for (text, want) in &cases {
            assert_eq!(
                &hf.encode(text).unwrap(),
                want,
                "{}: tokenizer.json on {text:?}",
                dir.display()
            );
            assert_eq!(hf.decode(want), *text, "{}: decode", dir.display());
            if let Some(g) = &from_gguf {
                assert_eq!(
                    &g.encode(text).unwrap(),
                    want,
                    "{}: GGUF vocabulary on {text:?}",
                    dir.display()
                );
                assert_eq!(g.decode(want), *text);
            }
            compared += 1;
        }
    }
    eprintln!("{compared} fixture strings compared");
}

#[test]
fn gguf_and_safetensors_hold_the_same_weights() {
    for dir in fixture_dirs() {
        let gguf = dir.join("model-f32.gguf");
        if !gguf.is_file() || !dir.join("model.safetensors").is_file() {
            continue;
        }
        let g = ModelSource::open(&gguf).unwrap();
        let h = ModelSource::open(&dir).unwrap();
        let a = g.view("token_embd.weight").unwrap();
        let b = h.view("model.embed_tokens.weight").unwrap();
        assert_eq!(a.shape, b.shape, "{}", dir.display());
        assert_eq!(a.bytes(), b.bytes(), "{}", dir.display());
        let a = g.view("blk.0.ffn_down.weight").unwrap();
        let b = h.view("model.layers.0.mlp.down_proj.weight").unwrap();
        assert_eq!(a.shape, b.shape, "{}", dir.display());
        assert_eq!(a.bytes(), b.bytes(), "{}", dir.display());
    }
}
