//! Bad input gets one clear error, never a panic: each case checks the CLI exits
//! non-zero with a message naming what is wrong.

mod common;
use common::*;
use std::path::{Path, PathBuf};

/// A scratch copy of a tiny model directory, edited by `edit`.
fn scratch_dir(name: &str, edit: impl FnOnce(&Path)) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("weft-bad-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    for f in ["config.json", "model.safetensors"] {
        std::fs::copy(tiny("llama-gqa-untied").join(f), dir.join(f)).unwrap();
    }
    edit(&dir);
    dir
}

fn edit_config(dir: &Path, f: impl FnOnce(&mut serde_json::Map<String, serde_json::Value>)) {
    let mut cfg = json(&dir.join("config.json"));
    f(cfg.as_object_mut().unwrap());
    std::fs::write(
        dir.join("config.json"),
        serde_json::to_string(&cfg).unwrap(),
    )
    .unwrap();
}

fn fails_with(args: &[&str], needles: &[&str]) {
    let (code, _, err) = weft(args);
    assert_ne!(code, 0, "{args:?} should fail");
    assert!(!err.contains("panicked"), "{args:?} panicked: {err}");
    for n in needles {
        assert!(
            err.contains(n),
            "{args:?}: message {err:?} should mention {n:?}"
        );
    }
    assert_eq!(
        err.trim()
            .lines()
            .filter(|l| l.starts_with("error"))
            .count(),
        1,
        "one error message: {err}"
    );
}

#[test]
fn unknown_architecture() {
    let dir = scratch_dir("arch", |d| {
        edit_config(d, |c| {
            c.insert("model_type".into(), "frobnicator".into());
        })
    });
    fails_with(
        &["run", dir.to_str().unwrap(), "--tokens", "1,2"],
        &["model_type", "frobnicator", "llama"],
    );
}

#[test]
fn missing_tensor() {
    // One layer more than the file holds.
    let dir = scratch_dir("layers", |d| {
        edit_config(d, |c| {
            c.insert("num_hidden_layers".into(), 4.into());
        })
    });
    fails_with(
        &["run", dir.to_str().unwrap(), "--tokens", "1,2"],
        &["missing tensor", "model.layers.3."],
    );
}

#[test]
fn config_without_required_key() {
    let dir = scratch_dir("key", |d| {
        edit_config(d, |c| {
            c.remove("hidden_size");
        })
    });
    fails_with(
        &["run", dir.to_str().unwrap(), "--tokens", "1,2"],
        &["hidden", "hidden_size", "config.json"],
    );
}

#[test]
fn config_contradicting_the_weights() {
    let dir = scratch_dir("shape", |d| {
        edit_config(d, |c| {
            c.insert("num_attention_heads".into(), 8.into());
            c.insert("head_dim".into(), 8.into());
        })
    });
    // The template's declared shape catches it, naming the tensor and both shapes.
    fails_with(
        &["run", dir.to_str().unwrap(), "--tokens", "1,2"],
        &[
            "model.layers.0.self_attn.q_proj.weight",
            "has shape [48, 48]",
            "expects [64, 48]",
        ],
    );
}

/// A Gemma 4 whose later layers share K/V (E2B/E4B): the template says it does not
/// describe that, instead of running a wrong graph.
#[test]
fn family_feature_the_template_does_not_describe() {
    let dir = std::env::temp_dir().join(format!("weft-bad-kvshare-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let src = fixtures().join("families").join("gemma4");
    std::fs::copy(src.join("model.safetensors"), dir.join("model.safetensors")).unwrap();
    std::fs::copy(src.join("config.json"), dir.join("config.json")).unwrap();
    edit_config(&dir, |c| {
        c.insert("num_kv_shared_layers".into(), 2.into());
    });
    fails_with(
        &["run", dir.to_str().unwrap(), "--tokens", "1,2"],
        &["gemma4.toml", "kv_shared_layers == 0"],
    );
}

/// A bare config.json is priced by --budget but not run.
#[test]
fn config_json_without_weights_does_not_run() {
    let cfg = fixtures()
        .join("standins")
        .join("qwen2.5-coder-14b")
        .join("config.json");
    fails_with(
        &["run", cfg.to_str().unwrap(), "--tokens", "1,2"],
        &["config.json without weights"],
    );
    fails_with(
        &[
            "inspect",
            cfg.to_str().unwrap(),
            "--budget",
            "--quant",
            "Q9_Z",
        ],
        &["unknown quantisation 'Q9_Z'"],
    );
}

#[test]
fn truncated_gguf() {
    let src = std::fs::read(tiny("llama-tied").join("model-f32.gguf")).unwrap();
    let dir = std::env::temp_dir().join(format!("weft-bad-trunc-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for cut in [3, 40, 1000, src.len() / 2, src.len() - 1] {
        let p = dir.join(format!("cut{cut}.gguf"));
        std::fs::write(&p, &src[..cut]).unwrap();
        fails_with(
            &["run", p.to_str().unwrap(), "--tokens", "1,2"],
            &[p.file_name().unwrap().to_str().unwrap()],
        );
    }
}

#[test]
fn gguf_tensor_size_not_matching_its_shape() {
    // Double the first dimension of token_embd.weight in the tensor table: the data
    // no longer fits. The table stores dims as u64 after the name.
    let mut b = std::fs::read(tiny("llama-tied").join("model-f32.gguf")).unwrap();
    let name = b"token_embd.weight";
    let at = b
        .windows(name.len())
        .position(|w| w == name)
        .expect("tensor name in table")
        + name.len();
    let n_dims = u32::from_le_bytes(b[at..at + 4].try_into().unwrap()) as usize;
    assert_eq!(n_dims, 2);
    let d1 = at + 4 + 8;
    let v = u64::from_le_bytes(b[d1..d1 + 8].try_into().unwrap());
    b[d1..d1 + 8].copy_from_slice(&(v * 1000).to_le_bytes());
    let p = std::env::temp_dir().join(format!("weft-bad-size-{}.gguf", std::process::id()));
    std::fs::write(&p, &b).unwrap();
    fails_with(
        &["run", p.to_str().unwrap(), "--tokens", "1,2"],
        &["token_embd.weight"],
    );
}

#[test]
fn token_outside_vocabulary() {
    let p = tiny("llama-tied").join("model-f32.gguf");
    fails_with(
        &["run", p.to_str().unwrap(), "--tokens", "1,99999"],
        &["99999"],
    );
}

#[test]
fn text_prompt_without_tokenizer() {
    let dir = scratch_dir("notok", |_| {});
    fails_with(
        &["run", dir.to_str().unwrap(), "--prompt", "hi"],
        &["no tokenizer", "--tokens"],
    );
}

#[test]
fn missing_model_path() {
    fails_with(
        &["inspect", "/nonexistent/model.gguf"],
        &["/nonexistent/model.gguf"],
    );
}
